package sink_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/produktly/produktly-segment/sink"
	"github.com/produktly/produktly-segment/sink/segmenttest"
)

// accounts starts a sink in accounts mode (no single write key).
func accounts(t *testing.T, srv *segmenttest.Server, tune func(*sink.Options)) *harness {
	return start(t, srv, srv.URL(), func(o *sink.Options) {
		o.WriteKey = ""
		o.Accounts = true
		if tune != nil {
			tune(o)
		}
	})
}

// send hands n messages named prefix-0... for d to the sink.
func (h *harness) send(d sink.Destination, prefix string, n int, retry bool) []string {
	h.t.Helper()
	ids := make([]string, n)
	for i := range n {
		ids[i] = fmt.Sprintf("%s-%d", prefix, i)
		m := h.res.message(ids[i], track(ids[i], 0), nil)
		m.Destination, m.Retry = d, retry
		if err := h.sink.Enqueue(context.Background(), m); err != nil {
			h.t.Fatalf("Enqueue(%s): %v", ids[i], err)
		}
	}
	return ids
}

// noSecrets fails if a write key appears in the sink's logs, its status,
// its metrics or the errors of the results.
func (h *harness) noSecrets(keys ...string) {
	h.t.Helper()
	var where []string
	where = append(where, h.logs.String(), fmt.Sprintf("%+v %#v", h.sink.Status(), h.sink.Status()))
	mfs, err := h.reg.Gather()
	if err != nil {
		h.t.Fatal(err)
	}
	for _, mf := range mfs {
		where = append(where, fmt.Sprint(mf))
	}
	h.res.mu.Lock()
	for _, r := range h.res.got {
		if r.Err != nil {
			where = append(where, r.Err.Error())
		}
	}
	h.res.mu.Unlock()
	for _, k := range keys {
		for _, w := range where {
			if strings.Contains(w, k) {
				h.t.Errorf("write key %s appears in the sink's output: %.300s", k, w)
				break
			}
		}
	}
}

// ids returns the message ids of rs.
func ids(rs []segmenttest.Received) []string {
	out := make([]string, len(rs))
	for i, r := range rs {
		out[i] = r.MessageID
	}
	sort.Strings(out)
	return out
}

func TestAccountsRouting(t *testing.T) {
	us := newServer(t, segmenttest.WithWriteKeys("wk_us_a", "wk_us_b"))
	eu := segmenttest.NewServer("wk_eu_c")
	t.Cleanup(eu.Close)
	h := accounts(t, us, func(o *sink.Options) { o.FlushInterval = 5 * time.Millisecond })
	dests := map[string]sink.Destination{
		"a": {Account: "a", WriteKey: "wk_us_a", Endpoint: us.URL()},
		"b": {Account: "b", WriteKey: "wk_us_b", Endpoint: us.URL()},
		"c": {Account: "c", WriteKey: "wk_eu_c", Endpoint: eu.URL() + "/"},
	}
	want := map[string][]string{}
	for i := range 30 { // interleaved, so one batch would mix accounts
		for _, acc := range []string{"a", "b", "c"} {
			want[acc] = append(want[acc], h.send(dests[acc], fmt.Sprintf("%s%d", acc, i), 1, false)...)
		}
	}
	if c := outcomes(h.res.wait(90, 10*time.Second)); c[sink.Delivered] != 90 {
		t.Fatalf("outcomes %v, want 90 delivered", c)
	}
	for acc, srv := range map[string]*segmenttest.Server{"a": us, "b": us, "c": eu} {
		got := ids(srv.MessagesFor(dests[acc].WriteKey))
		slices.Sort(want[acc])
		if !slices.Equal(got, want[acc]) {
			t.Errorf("account %s: its source got %v, want %v", acc, got, want[acc])
		}
	}
	if us.Count() != 60 || eu.Count() != 30 {
		t.Errorf("US got %d, EU %d messages; want 60 and 30", us.Count(), eu.Count())
	}
	err := h.sink.Enqueue(context.Background(), h.res.message("nowhere", track("nowhere", 0), nil))
	if !errors.Is(err, sink.ErrNoDestination) {
		t.Errorf("Enqueue without a destination in accounts mode: %v, want ErrNoDestination", err)
	}
	h.noSecrets("wk_us_a", "wk_us_b", "wk_eu_c")
}

// TestOneFailingDestination: one account's source fails (503, or 429 with
// a long Retry-After) while three others flow. Their deliveries do not wait
// for it, the sink stays healthy, and Status names the failing one.
func TestOneFailingDestination(t *testing.T) {
	for _, tc := range []struct {
		name       string
		status     int
		retryAfter time.Duration
	}{
		{"503", 503, 0},
		{"429 Retry-After", 429, time.Minute},
	} {
		t.Run(tc.name, func(t *testing.T) {
			good := []string{"wk_g1", "wk_g2", "wk_g3"}
			srv := newServer(t, segmenttest.WithWriteKeys(append(good, "wk_bad")...))
			srv.FailKey("wk_bad", tc.status, tc.retryAfter)
			h := accounts(t, srv, func(o *sink.Options) { o.Concurrency = 8 })
			bad := sink.Destination{Account: "bad", WriteKey: "wk_bad", Endpoint: srv.URL()}
			h.send(bad, "bad", 1, false)
			eventually(t, 10*time.Second, "the bad account failing", func() bool { return len(h.sink.Status()) == 1 })
			h.send(bad, "more", 49, false) // a 429 told the sink to wait: not one request more

			var mu sync.Mutex
			var lat []time.Duration
			const rounds, each = 5, 40
			n := 0
			for r := range rounds {
				for i, k := range good {
					d := sink.Destination{Account: fmt.Sprint("g", i), WriteKey: k, Endpoint: srv.URL()}
					for j := range each {
						id := fmt.Sprintf("g%d-%d-%d", i, r, j)
						begin := time.Now()
						m := h.res.message(id, track(id, 0), nil)
						done := m.Done
						m.Done = func(res sink.Result) {
							mu.Lock()
							lat = append(lat, time.Since(begin))
							mu.Unlock()
							done(res)
						}
						m.Destination = d
						if err := h.sink.Enqueue(context.Background(), m); err != nil {
							t.Fatal(err)
						}
						n++
					}
				}
				h.res.wait(n, 10*time.Second)
			}
			got := h.res.wait(n, 10*time.Second)
			if c := outcomes(got); c[sink.Delivered] != n || len(got) != n {
				t.Fatalf("outcomes %v, want the %d good ones delivered and the bad ones still held", c, n)
			}
			for _, k := range good {
				if m := len(srv.MessagesFor(k)); m != rounds*each {
					t.Errorf("%s got %d messages, want %d", k, m, rounds*each)
				}
			}
			if !h.sink.Healthy() {
				t.Error("one failing destination made the sink unhealthy")
			}
			st := h.sink.Status()
			if len(st) != 1 || st[0].Account != "bad" || st[0].State != sink.StateFailing || st[0].LastError == "" || st[0].Waiting != 50 {
				t.Errorf("Status() = %+v, want the bad account failing with its 50 messages and a last error", st)
			}
			if v := metric(t, h.reg, "produktly_segment_sink_destinations_failing"); v != 1 {
				t.Errorf("destinations_failing = %v, want 1", v)
			}
			if tc.retryAfter > 0 {
				if r := srv.RequestsFor("wk_bad"); r != 1 {
					t.Errorf("the paused account made %d requests during its Retry-After, want 1", r)
				}
			}
			slices.Sort(lat)
			t.Logf("healthy accounts: %d messages, latency p50 %s p99 %s max %s while one account fails (%d requests of it)",
				len(lat), lat[len(lat)/2], lat[len(lat)*99/100], lat[len(lat)-1], srv.RequestsFor("wk_bad"))

			if tc.retryAfter == 0 {
				srv.ClearKey("wk_bad")
				if c := outcomes(h.res.wait(n+50, 10*time.Second)); c[sink.Delivered] != n+50 {
					t.Errorf("after recovery: %v, want all %d delivered", c, n+50)
				}
				if st := h.sink.Status(); len(st) != 0 {
					t.Errorf("Status() after recovery = %+v, want none", st)
				}
			}
			h.noSecrets(append(good, "wk_bad")...)
		})
	}
}

func TestParkAfter(t *testing.T) {
	srv := newServer(t, segmenttest.WithWriteKeys("wk_bad", "wk_good"))
	srv.FailKey("wk_bad", 503, 0)
	h := accounts(t, srv, func(o *sink.Options) { o.ParkAfter = 300 * time.Millisecond })
	bad := sink.Destination{Account: "bad", WriteKey: "wk_bad", Endpoint: srv.URL()}
	good := sink.Destination{Account: "good", WriteKey: "wk_good", Endpoint: srv.URL()}

	h.send(bad, "waiting", 10, false)
	got := h.res.wait(10, 10*time.Second)
	for id, r := range got {
		if r.Outcome != sink.Parked || !errors.Is(r.Err, sink.ErrParked) {
			t.Errorf("%s: %v %v, want Parked wrapping ErrParked", id, r.Outcome, r.Err)
		}
	}
	st := h.sink.Status()
	if len(st) != 1 || st[0].State != sink.StateParked || st[0].Account != "bad" || st[0].Endpoint != srv.URL() {
		t.Errorf("Status() = %+v, want the bad account parked", st)
	}
	if v := metric(t, h.reg, "produktly_segment_sink_destinations_parked"); v != 1 {
		t.Errorf("destinations_parked = %v, want 1", v)
	}
	if v := metric(t, h.reg, "produktly_segment_sink_messages_total", "outcome", "parked"); v != 10 {
		t.Errorf(`messages_total{outcome="parked"} = %v, want 10`, v)
	}

	// While parked: a new message completes Parked without an attempt; a
	// message back from the retry topic gets its attempt.
	before := srv.RequestsFor("wk_bad")
	h.send(bad, "new", 1, false)
	if r := h.res.wait(11, 5*time.Second)["new-0"]; r.Outcome != sink.Parked {
		t.Errorf("new message to a parked destination: %v, want Parked", r.Outcome)
	}
	if n := srv.RequestsFor("wk_bad"); n != before {
		t.Errorf("%d requests for a new message to a parked destination, want none", n-before)
	}
	h.send(bad, "retry", 1, true)
	if r := h.res.wait(12, 5*time.Second)["retry-0"]; r.Outcome != sink.Parked {
		t.Errorf("retried message while still failing: %v, want Parked", r.Outcome)
	}
	if n := srv.RequestsFor("wk_bad"); n != before+1 {
		t.Errorf("%d requests for a retried message, want 1", n-before)
	}
	h.send(good, "good", 5, false)
	if c := outcomes(h.res.wait(17, 5*time.Second)); c[sink.Delivered] != 5 || !h.sink.Healthy() {
		t.Errorf("the other account: %v, healthy %v; want 5 delivered and healthy", c, h.sink.Healthy())
	}

	// A 400 for the call alone is Rejected, parked or not.
	srv.ClearKey("wk_bad")
	srv.RejectMessages(func(m segmenttest.Received) bool { return m.MessageID == "bad400-0" })
	h.send(bad, "bad400", 1, true)
	var rej *sink.RejectedError
	if r := h.res.wait(18, 5*time.Second)["bad400-0"]; r.Outcome != sink.Rejected || !errors.As(r.Err, &rej) {
		t.Errorf("a retried call Segment refuses: %v %v, want Rejected", r.Outcome, r.Err)
	}

	// A delivered retry unparks.
	h.send(bad, "back", 1, true)
	if r := h.res.wait(19, 5*time.Second)["back-0"]; r.Outcome != sink.Delivered {
		t.Errorf("retried message after recovery: %v %v, want Delivered", r.Outcome, r.Err)
	}
	h.send(bad, "after", 1, false)
	if r := h.res.wait(20, 5*time.Second)["after-0"]; r.Outcome != sink.Delivered {
		t.Errorf("new message after unparking: %v %v, want Delivered", r.Outcome, r.Err)
	}
	if st := h.sink.Status(); len(st) != 0 {
		t.Errorf("Status() after unparking = %+v, want none", st)
	}
	if v := metric(t, h.reg, "produktly_segment_sink_destinations_parked"); v != 0 {
		t.Errorf("destinations_parked = %v after unparking, want 0", v)
	}
	if !strings.Contains(h.logs.String(), "destination parked") || !strings.Contains(h.logs.String(), "unparked") {
		t.Error("no log lines for parking and unparking")
	}
	h.noSecrets("wk_bad", "wk_good")
}

// TestParkAbove: a failing destination holding more than ParkAbove
// messages is parked at once, long before ParkAfter; a healthy one holding
// as many is not.
func TestParkAbove(t *testing.T) {
	srv := newServer(t, segmenttest.WithWriteKeys("wk_bad", "wk_good"))
	srv.FailKey("wk_bad", segmenttest.Drop, 0)
	h := accounts(t, srv, func(o *sink.Options) {
		o.ParkAbove = 20
		o.ParkAfter = time.Hour
		o.BatchSize = 10
	})
	bad := sink.Destination{Account: "bad", WriteKey: "wk_bad", Endpoint: srv.URL()}
	good := sink.Destination{Account: "good", WriteKey: "wk_good", Endpoint: srv.URL()}
	h.send(good, "good", 200, false)
	h.send(bad, "bad", 5, false)
	eventually(t, 10*time.Second, "the bad account failing", func() bool {
		st := h.sink.Status()
		return len(st) == 1 && st[0].State == sink.StateFailing
	})
	h.send(bad, "more", 30, false)
	got := h.res.wait(235, 10*time.Second)
	c := outcomes(got)
	if c[sink.Delivered] != 200 || c[sink.Parked] != 35 {
		t.Errorf("outcomes %v, want the 200 good delivered and the 35 bad parked", c)
	}
	if st := h.sink.Status(); len(st) != 1 || st[0].State != sink.StateParked {
		t.Errorf("Status() = %+v, want the bad account parked", st)
	}
	h.noSecrets("wk_bad", "wk_good")
}

// TestPacing: at its MaxRPS a destination's batches fill up instead of
// queueing more requests.
func TestPacing(t *testing.T) {
	srv := newServer(t, segmenttest.WithWriteKeys("wk_a"))
	rec := record(t, srv)
	const rps = 4
	h := start(t, srv, rec.URL, func(o *sink.Options) {
		o.WriteKey, o.Accounts = "", true
		o.MaxRPS = rps
		o.BatchSize = 1
		o.FlushInterval = time.Millisecond
	})
	a := sink.Destination{Account: "a", WriteKey: "wk_a", Endpoint: rec.URL}
	begin := time.Now()
	h.send(a, "m", 40, false)
	if c := outcomes(h.res.wait(40, 20*time.Second)); c[sink.Delivered] != 40 {
		t.Fatalf("outcomes %v, want 40 delivered", c)
	}
	elapsed := time.Since(begin)
	reqs := rec.requests()
	if max := int(elapsed.Seconds()*rps) + 2; len(reqs) > max {
		t.Errorf("%d requests in %s, MaxRPS %d allows %d", len(reqs), elapsed, rps, max)
	}
	biggest := 0
	for _, r := range reqs {
		ids, _ := batchOf(t, r.body)
		biggest = max(biggest, len(ids))
	}
	if biggest < 2 {
		t.Errorf("every request carried one message; at the cap batches must fill up past BatchSize")
	}
	t.Logf("40 messages in %d requests over %s (largest %d)", len(reqs), elapsed.Round(time.Millisecond), biggest)
}

// TestSuccessWakesOnlyItsDestination: after an outage of one account's
// source, another account's successes must not wake its sleeping batches
// (nor make it look healthy); the sink is unhealthy only while every
// destination fails.
func TestSuccessWakesOnlyItsDestination(t *testing.T) {
	srv := newServer(t, segmenttest.WithWriteKeys("wk_a", "wk_b"))
	srv.FailKey("wk_a", 503, 0)
	srv.FailKey("wk_b", 503, 0)
	h := accounts(t, srv, func(o *sink.Options) {
		o.MinBackoff, o.MaxBackoff = 40*time.Second, 40*time.Second // a retry waits at least 20s
	})
	a := sink.Destination{Account: "a", WriteKey: "wk_a", Endpoint: srv.URL()}
	b := sink.Destination{Account: "b", WriteKey: "wk_b", Endpoint: srv.URL()}
	h.send(a, "a", 1, false)
	h.send(b, "b", 1, false)
	eventually(t, 10*time.Second, "both accounts failing", func() bool { return len(h.sink.Status()) == 2 })
	if h.sink.Healthy() {
		t.Error("healthy while every destination fails")
	}
	srv.ClearKey("wk_b")
	h.send(b, "b2", 1, false) // a new batch of b succeeds; b's sleeper wakes
	got := h.res.wait(2, 10*time.Second)
	if got["b-0"].Outcome != sink.Delivered || got["b2-0"].Outcome != sink.Delivered {
		t.Fatalf("b: %v, want both delivered after its recovery", got)
	}
	if !h.sink.Healthy() {
		t.Error("unhealthy while one destination delivers")
	}
	if n := srv.RequestsFor("wk_a"); n != 1 {
		t.Errorf("account a made %d requests: another account's success woke its backoff", n)
	}
	if st := h.sink.Status(); len(st) != 1 || st[0].Account != "a" {
		t.Errorf("Status() = %+v, want only a failing", st)
	}
}

// TestRequestHeaders: every request carries its own destination's write
// key as basic auth, the JSON content type and the sender's User-Agent,
// whatever the other destinations' requests carry at the same time. The
// requests share their destination's headers (a template); with a cookie
// Jar, which adds a Cookie header to each, they must not: the cookies
// would pile up in the template, request after request.
func TestRequestHeaders(t *testing.T) {
	for _, jar := range []bool{false, true} {
		t.Run(fmt.Sprintf("jar=%v", jar), func(t *testing.T) {
			type seen struct{ user, contentType, agent, cookie string }
			var mu sync.Mutex
			var got []seen
			api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				user, _, _ := r.BasicAuth()
				mu.Lock()
				got = append(got, seen{user, r.Header.Get("Content-Type"), r.Header.Get("User-Agent"), r.Header.Get("Cookie")})
				mu.Unlock()
				http.SetCookie(w, &http.Cookie{Name: "lb", Value: "node-1"})
				_, _ = io.WriteString(w, "{}")
			}))
			t.Cleanup(api.Close)
			srv := newServer(t) // the harness's; this test's requests go to api
			h := accounts(t, srv, func(o *sink.Options) {
				o.FlushInterval = time.Millisecond
				o.BatchSize = 2
				if jar {
					j, err := cookiejar.New(nil)
					if err != nil {
						t.Fatal(err)
					}
					o.Client = &http.Client{Jar: j}
				}
			})
			keys := []string{"wk_a", "wk_b", "wk_c"}
			for i := range 20 {
				for _, k := range keys {
					h.send(sink.Destination{Account: k, WriteKey: k, Endpoint: api.URL}, fmt.Sprintf("%s%d", k, i), 1, false)
				}
			}
			if c := outcomes(h.res.wait(60, 10*time.Second)); c[sink.Delivered] != 60 {
				t.Fatalf("outcomes %v, want 60 delivered", c)
			}
			mu.Lock()
			defer mu.Unlock()
			users := map[string]int{}
			cookies := 0
			for _, s := range got {
				users[s.user]++
				if s.contentType != "application/json" || s.agent != "produktly-segment/1.0.0" {
					t.Errorf("request of %s: Content-Type %q, User-Agent %q", s.user, s.contentType, s.agent)
				}
				if s.cookie != "" {
					cookies++
					if s.cookie != "lb=node-1" {
						t.Errorf("request of %s carried Cookie %q, want the jar's one cookie: a request's header written into the next", s.user, s.cookie)
					}
				}
			}
			for _, k := range keys {
				if users[k] == 0 {
					t.Errorf("no request authenticated as %s: %v", k, users)
				}
			}
			if len(users) != len(keys) {
				t.Errorf("requests authenticated as %v, want only %v", users, keys)
			}
			if jar && cookies == 0 {
				t.Error("with a Jar, no request carried the cookie the server set")
			}
			if !jar && cookies != 0 {
				t.Errorf("without a Jar, %d requests carried a cookie", cookies)
			}
		})
	}
}
