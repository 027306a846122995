package sink_test

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/produktly/produktly-segment/sink"
	"github.com/produktly/produktly-segment/sink/segmenttest"
)

func TestRetryResendsSameMessages(t *testing.T) {
	srv := newServer(t)
	rec := record(t, srv)
	srv.FailNext(503)
	h := start(t, srv, rec.URL, nil)
	ids := h.enqueue("m", 5, 0, nil)
	if c := outcomes(h.res.wait(5, 5*time.Second)); c[sink.Delivered] != 5 {
		t.Fatalf("outcomes %v, want 5 delivered", c)
	}
	reqs := rec.requests()
	if len(reqs) != 2 || reqs[0].status != 503 || reqs[1].status != 200 {
		t.Fatalf("requests %d, want a 503 then a 200", len(reqs))
	}
	first, sent1 := batchOf(t, reqs[0].body)
	second, sent2 := batchOf(t, reqs[1].body)
	if !slices.Equal(first, ids) || !slices.Equal(second, ids) {
		t.Errorf("messageIds: first %v, retry %v, want %v both times", first, second, ids)
	}
	// Segment corrects timestamps by sentAt, so each attempt stamps its own.
	if !sent2.After(sent1) {
		t.Errorf("sentAt of the retry %s is not after the first %s", sent2, sent1)
	}
	if got := metric(t, h.reg, "produktly_segment_sink_retries_total"); got != 1 {
		t.Errorf("retries = %v, want 1", got)
	}
	if got := metric(t, h.reg, "produktly_segment_sink_requests_total", "status", "503"); got != 1 {
		t.Errorf(`requests{status="503"} = %v, want 1`, got)
	}
	// One structured warn line for the failed attempt.
	var warned bool
	for line := range strings.Lines(h.logs.String()) {
		var l struct {
			Level, Status, Message string
			Attempt                int
			Backoff                float64
		}
		if json.Unmarshal([]byte(line), &l) == nil && l.Level == "warn" {
			warned = l.Status == "503" && l.Attempt == 1 && l.Backoff > 0
		}
	}
	if !warned {
		t.Errorf("no warn line with status, attempt and backoff in:\n%s", h.logs)
	}
}

func TestRetryAfterHonoured(t *testing.T) {
	srv := newServer(t)
	rec := record(t, srv)
	srv.SetRetryAfter(2 * time.Second)
	srv.FailNext(429)
	h := start(t, srv, rec.URL, nil) // backoff alone would wait ≤ 5ms
	h.enqueue("m", 1, 0, nil)
	h.res.wait(1, 10*time.Second)
	reqs := rec.requests()
	if len(reqs) != 2 {
		t.Fatalf("requests = %d, want 2", len(reqs))
	}
	if gap := reqs[1].at.Sub(reqs[0].at); gap < 1900*time.Millisecond {
		t.Errorf("retried after %s, want at least the 2s of Retry-After", gap)
	}
}

func TestBadRequestSplitsBatch(t *testing.T) {
	for _, tc := range []struct {
		name   string
		n      int
		bad    []int
		status int // FailNext status instead of bad messages
	}{
		{name: "one bad of ten", n: 10, bad: []int{3}},
		{name: "first and last of twenty", n: 20, bad: []int{0, 19}},
		{name: "all bad", n: 4, bad: []int{0, 1, 2, 3}},
		{name: "413 once", n: 4, status: 413},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := newServer(t)
			bad := map[string]bool{}
			for _, i := range tc.bad {
				bad[fmt.Sprintf("m-%d", i)] = true
			}
			srv.RejectMessages(func(m segmenttest.Received) bool { return bad[m.MessageID] })
			if tc.status != 0 {
				srv.FailNext(tc.status)
			}
			h := start(t, srv, srv.URL(), func(o *sink.Options) {
				o.BatchSize = tc.n
				o.FlushInterval = time.Hour
			})
			h.enqueue("m", tc.n, 0, nil)
			got := h.res.wait(tc.n, 5*time.Second)
			for id, r := range got {
				var rej *sink.RejectedError
				switch {
				case bad[id] && (r.Outcome != sink.Rejected || !errors.As(r.Err, &rej) || rej.Status != 400):
					t.Errorf("%s: %v %v, want Rejected with status 400", id, r.Outcome, r.Err)
				case bad[id] && !strings.Contains(rej.Body, id):
					t.Errorf("%s: RejectedError body %q does not carry Segment's answer", id, rej.Body)
				case !bad[id] && r.Outcome != sink.Delivered:
					t.Errorf("%s: %v %v, want Delivered", id, r.Outcome, r.Err)
				}
			}
			if d := srv.Distinct(); d != tc.n-len(tc.bad) {
				t.Errorf("server has %d messages, want %d", d, tc.n-len(tc.bad))
			}
			if len(tc.bad) > 0 && !strings.Contains(h.logs.String(), `"level":"error"`) {
				t.Error("no error log line for a rejected message")
			}
		})
	}
}

func TestTransportFailuresRetried(t *testing.T) {
	for _, tc := range []struct {
		name   string
		fault  func(*segmenttest.Server)
		label  string
		copies int // how many times the server accepted the batch
	}{
		{"dropped connections", func(s *segmenttest.Server) { s.DropConnections(2) }, "error", 1},
		{"request timeout", func(s *segmenttest.Server) { s.FailNext(segmenttest.Hang) }, "timeout", 1},
		{"latency past timeout", func(s *segmenttest.Server) { s.SetLatency(time.Second) }, "timeout", 1},
		{"response cut after acceptance", func(s *segmenttest.Server) { s.FailNext(segmenttest.Cut) }, "error", 2},
		{"500 502", func(s *segmenttest.Server) { s.FailNext(500, 502) }, "502", 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := newServer(t)
			tc.fault(srv)
			// A low backoff cap keeps the retry after the fault prompt however
			// many attempts a loaded machine needed to see the fault.
			h := start(t, srv, srv.URL(), func(o *sink.Options) {
				o.Timeout = 200 * time.Millisecond
				o.MaxBackoff = 200 * time.Millisecond
			})
			h.enqueue("m", 5, 0, nil)
			if tc.name == "latency past timeout" {
				eventually(t, 30*time.Second, "a timed out request", func() bool {
					return metric(t, h.reg, "produktly_segment_sink_requests_total", "status", "timeout") > 0
				})
				srv.SetLatency(0)
			}
			if c := outcomes(h.res.wait(5, 30*time.Second)); c[sink.Delivered] != 5 {
				t.Fatalf("outcomes %v, want 5 delivered", c)
			}
			if got := metric(t, h.reg, "produktly_segment_sink_requests_total", "status", tc.label); got < 1 {
				t.Errorf(`requests{status=%q} = %v, want ≥ 1`, tc.label, got)
			}
			if srv.Count() != 5*tc.copies || srv.Distinct() != 5 {
				t.Errorf("server: %d messages, %d distinct; want %d and 5", srv.Count(), srv.Distinct(), 5*tc.copies)
			}
		})
	}
}

func TestUnauthorizedKeepsRetrying(t *testing.T) {
	t.Run("wrong key", func(t *testing.T) {
		srv := newServer(t)
		h := start(t, srv, srv.URL(), func(o *sink.Options) {
			o.WriteKey = "wk_wrong"
			o.MaxBackoff = 200 * time.Millisecond
		})
		h.enqueue("m", 2, 0, nil)
		// The sink counts an answer after the server counted the request.
		eventually(t, 30*time.Second, "five 401 answers", func() bool {
			return metric(t, h.reg, "produktly_segment_sink_requests_total", "status", "401") >= 5
		})
		if n := h.res.count(); n != 0 {
			t.Fatalf("%d messages finished while the key is refused, want none", n)
		}
		h.stop()
		if c := outcomes(h.res.wait(2, time.Second)); c[sink.Abandoned] != 2 {
			t.Errorf("after stop: %v, want 2 abandoned", c)
		}
	})
	t.Run("key fixed", func(t *testing.T) {
		srv := newServer(t)
		srv.FailNext(401, 403, 401)
		h := start(t, srv, srv.URL(), nil)
		h.enqueue("m", 2, 0, nil)
		if c := outcomes(h.res.wait(2, 5*time.Second)); c[sink.Delivered] != 2 {
			t.Errorf("outcomes %v, want 2 delivered", c)
		}
	})
}

func TestCancelAbandonsAndStopsRetrying(t *testing.T) {
	t.Run("mixed batch", func(t *testing.T) {
		srv := newServer(t)
		rec := record(t, srv)
		srv.SetOutage(503)
		h := start(t, srv, rec.URL, nil)
		revoked := make(chan struct{})
		h.enqueue("gone", 3, 0, revoked)
		h.enqueue("kept", 2, 0, nil)
		eventually(t, 5*time.Second, "two failed requests", func() bool { return srv.Requests() >= 2 })
		close(revoked)
		got := h.res.wait(3, time.Second)
		for id, r := range got {
			if r.Outcome != sink.Abandoned || !errors.Is(r.Err, sink.ErrCanceled) || !strings.HasPrefix(id, "gone") {
				t.Errorf("%s: %v %v, want only gone-* Abandoned wrapping ErrCanceled", id, r.Outcome, r.Err)
			}
		}
		srv.ClearOutage()
		h.res.wait(5, 5*time.Second)
		reqs := rec.requests()
		last, _ := batchOf(t, reqs[len(reqs)-1].body)
		if !slices.Equal(last, []string{"kept-0", "kept-1"}) {
			t.Errorf("last request carried %v, want only the kept messages", last)
		}
	})

	for _, tc := range []struct {
		name  string
		fault func(*segmenttest.Server)
	}{
		{"during a long backoff", func(s *segmenttest.Server) { s.SetOutage(503) }},
		{"during a request", func(s *segmenttest.Server) { s.SetOutage(segmenttest.Hang) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := newServer(t)
			rec := record(t, srv)
			tc.fault(srv)
			// One sender: the probe below can only go once that sender
			// has let go of the cancelled batch.
			h := start(t, srv, rec.URL, func(o *sink.Options) {
				o.MinBackoff, o.MaxBackoff = 20*time.Second, 20*time.Second
				o.Timeout = 20 * time.Second
				o.Concurrency = 1
			})
			revoked := make(chan struct{})
			h.enqueue("m", 3, 0, revoked)
			eventually(t, 5*time.Second, "a request", func() bool { return srv.Requests() >= 1 })
			close(revoked)
			begin := time.Now()
			if c := outcomes(h.res.wait(3, 5*time.Second)); c[sink.Abandoned] != 3 {
				t.Errorf("outcomes %v, want 3 abandoned", c)
			}
			if d := time.Since(begin); d > 4*time.Second {
				t.Errorf("abandoned %s after cancel, want promptly (the backoff and the timeout are 20s)", d)
			}
			srv.ClearOutage()
			h.enqueue("probe", 1, 0, nil)
			if r := h.res.wait(4, 5*time.Second)["probe-0"]; r.Outcome != sink.Delivered {
				t.Fatalf("probe: %v %v, want Delivered", r.Outcome, r.Err)
			}
			h.stop()
			for i, r := range rec.requests() {
				if ids, _ := batchOf(t, r.body); r.at.After(begin) && !slices.Equal(ids, []string{"probe-0"}) {
					t.Errorf("request %d after the cancel carried %v, want only the probe", i, ids)
				}
			}
		})
	}

	t.Run("cancelled before batching", func(t *testing.T) {
		srv := newServer(t)
		h := start(t, srv, srv.URL(), nil)
		revoked := make(chan struct{})
		close(revoked)
		h.enqueue("m", 2, 0, revoked)
		if c := outcomes(h.res.wait(2, time.Second)); c[sink.Abandoned] != 2 || srv.Requests() != 0 {
			t.Errorf("outcomes %v after %d requests, want 2 abandoned and no request", c, srv.Requests())
		}
	})
}

func TestHealthy(t *testing.T) {
	srv := newServer(t)
	h := start(t, srv, srv.URL(), nil)
	if !h.sink.Healthy() {
		t.Error("unhealthy before any request")
	}
	srv.SetOutage(503)
	h.enqueue("a", 1, 0, nil)
	eventually(t, 5*time.Second, "a failed request", func() bool { return srv.Requests() >= 1 })
	eventually(t, time.Second, "Healthy() == false", func() bool { return !h.sink.Healthy() })
	srv.ClearOutage()
	h.res.wait(1, 5*time.Second)
	if !h.sink.Healthy() {
		t.Error("unhealthy after a delivered request")
	}
}

// TestLogLevels checks that payloads stay out of info-level logs.
func TestLogLevels(t *testing.T) {
	srv := newServer(t)
	srv.FailNext(503)
	h := start(t, srv, srv.URL(), nil)
	h.enqueue("m", 1, 0, nil)
	h.res.wait(1, 5*time.Second)
	sc := bufio.NewScanner(strings.NewReader(h.logs.String()))
	for sc.Scan() {
		if strings.Contains(sc.Text(), "Tour Start") {
			t.Errorf("a log line carries the payload: %s", sc.Text())
		}
	}
}

// TestRecoveryWakesBackoff: after an outage the oldest batch sits in the
// longest backoff; the first success of another batch must wake it rather
// than leave its partition's commit point waiting out the backoff.
func TestRecoveryWakesBackoff(t *testing.T) {
	srv := newServer(t)
	srv.SetOutage(503)
	h := start(t, srv, srv.URL(), func(o *sink.Options) {
		o.BatchSize = 1
		o.MinBackoff = 40 * time.Second // the first retry waits at least 20 s
		o.MaxBackoff = 40 * time.Second
	})
	h.enqueue("old", 1, 0, nil)
	eventually(t, 30*time.Second, "the old batch failing", func() bool { return srv.Requests() >= 1 })
	srv.ClearOutage()
	healed := time.Now()
	h.enqueue("new", 1, 0, nil)
	got := h.res.wait(2, 15*time.Second)
	if c := outcomes(got); c[sink.Delivered] != 2 {
		t.Fatalf("outcomes %v, want both delivered", c)
	}
	// Without the wake-up the old batch would wait out at least 20 s.
	if waited := time.Since(healed); waited > 15*time.Second {
		t.Fatalf("old batch delivered %s after Segment recovered", waited)
	}
}

// TestRetryAfterIsNotWoken: a batch told to wait by Retry-After keeps
// waiting even when another batch succeeds meanwhile.
func TestRetryAfterIsNotWoken(t *testing.T) {
	srv := newServer(t)
	srv.SetRetryAfter(3 * time.Second)
	srv.FailNext(429)
	h := start(t, srv, srv.URL(), func(o *sink.Options) { o.BatchSize = 1 })
	first := time.Now()
	h.enqueue("limited", 1, 0, nil)
	eventually(t, 30*time.Second, "the 429", func() bool { return srv.Requests() >= 1 })
	h.enqueue("other", 1, 0, nil)
	h.res.wait(2, 30*time.Second)
	var limitedAt time.Time
	for _, m := range srv.Messages() {
		if m.MessageID == "limited-0" {
			limitedAt = m.At
		}
	}
	if gap := limitedAt.Sub(first); gap < 2900*time.Millisecond {
		t.Fatalf("the rate-limited batch was retried %s after its 429 (Retry-After: 3), woken by another batch's success", gap)
	}
}

// TestBackoffStartsOverAfterRecovery: the failures a batch met during an
// outage say nothing about Segment once it is back. A batch woken by the
// recovery that then meets one ordinary failure (30 % of requests failing
// at random, say) must back off from MinBackoff again, not from where the
// outage left it: that wait would hold its partition's commit point for
// longer than a shutdown or revoke allows, and everything delivered behind
// it would be read and delivered again.
func TestBackoffStartsOverAfterRecovery(t *testing.T) {
	srv := newServer(t)
	srv.SetOutage(503)
	h := start(t, srv, srv.URL(), func(o *sink.Options) {
		o.BatchSize = 1
		o.MinBackoff = 500 * time.Millisecond
		o.MaxBackoff = time.Minute
	})
	h.enqueue("old", 1, 0, nil)
	// Five failed attempts, each counted once the sink has taken its
	// answer (a request the server has only planned a 503 for could be
	// answered after the recovery and miss its wake-up): its sixth
	// failure would wait 8–16 s.
	eventually(t, 30*time.Second, "five failed attempts of the old batch", func() bool {
		return metric(t, h.reg, "produktly_segment_sink_retries_total") >= 5
	})
	var mu sync.Mutex
	var failedAt time.Time
	srv.FailMessages(503, func(m segmenttest.Received) bool {
		mu.Lock()
		defer mu.Unlock()
		if m.MessageID != "old-0" || !failedAt.IsZero() {
			return false
		}
		failedAt = time.Now()
		return true // its first attempt after the recovery fails
	})
	srv.ClearOutage()
	h.enqueue("new", 1, 0, nil) // succeeds: Segment is back, which wakes the old batch
	deliveredAt := bothDelivered(t, h, srv, "old-0")
	mu.Lock()
	defer mu.Unlock()
	if failedAt.IsZero() {
		t.Fatal("the old batch was never failed after the recovery")
	}
	// From MinBackoff its next wait is 0.25–0.5 s; carried over from the
	// outage it would be at least 8 s.
	if gap := deliveredAt.Sub(failedAt); gap > 4*time.Second {
		t.Fatalf("the old batch waited %s after one failure following the recovery: its backoff carried the outage's attempts over", gap)
	}
}

// TestRecoveryDuringRequestStartsBackoffOver: a batch whose request is out
// when Segment comes back from an outage cannot be sleeping on the wake-up;
// when that request then fails, the batch still backs off from
// MinBackoff, not from its outage attempts.
func TestRecoveryDuringRequestStartsBackoffOver(t *testing.T) {
	srv := newServer(t)
	const outageAttempts = 9 // this failure carried over waits 2.6–5.1 s
	var mu sync.Mutex
	attempts := 0
	var failedAt time.Time
	inFlight, newDone := make(chan struct{}), make(chan struct{})
	srv.FailMessages(503, func(m segmenttest.Received) bool {
		if m.MessageID != "old-0" {
			return false
		}
		mu.Lock()
		attempts++
		n := attempts
		mu.Unlock()
		switch {
		case n < outageAttempts:
			return true
		case n == outageAttempts:
			// Held at Segment while another batch ends the outage, then
			// failed.
			close(inFlight)
			<-newDone
			mu.Lock()
			failedAt = time.Now()
			mu.Unlock()
			return true
		}
		return false
	})
	h := start(t, srv, srv.URL(), func(o *sink.Options) {
		o.BatchSize = 1
		o.MinBackoff = 20 * time.Millisecond
		o.MaxBackoff = time.Minute
	})
	h.enqueue("old", 1, 0, nil)
	select {
	case <-inFlight:
	case <-time.After(30 * time.Second):
		t.Fatal("the old batch did not reach its attempt during the recovery")
	}
	h.enqueue("new", 1, 0, nil)
	if got := h.res.wait(1, 30*time.Second); got["new-0"].Outcome != sink.Delivered {
		t.Fatalf("the new batch: %v, want delivered", got)
	}
	close(newDone)
	deliveredAt := bothDelivered(t, h, srv, "old-0")
	mu.Lock()
	defer mu.Unlock()
	// From MinBackoff its next wait is 10–20 ms; carried over from the
	// outage it would be at least 2.6 s.
	if gap := deliveredAt.Sub(failedAt); gap > time.Second {
		t.Fatalf("the old batch waited %s after its request failed across the recovery: its backoff carried the outage's attempts over", gap)
	}
}

// bothDelivered waits for two outcomes, both Delivered, and returns when
// the message with id arrived at srv.
func bothDelivered(t *testing.T, h *harness, srv *segmenttest.Server, id string) time.Time {
	t.Helper()
	got := h.res.wait(2, 30*time.Second)
	if c := outcomes(got); c[sink.Delivered] != 2 {
		t.Fatalf("outcomes %v, want both delivered", c)
	}
	var at time.Time
	for _, m := range srv.Messages() {
		if m.MessageID == id {
			at = m.At
		}
	}
	return at
}
