package sink

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/produktly/produktly-segment/sink/segmenttest"
)

func TestValidate(t *testing.T) {
	ok := Options{WriteKey: "k"}
	for _, tc := range []struct {
		name string
		o    func(*Options)
		want string // substring of the error; "" for valid
	}{
		{"defaults", func(*Options) {}, ""},
		{"all set", func(o *Options) {
			*o = Options{Endpoint: "http://127.0.0.1:1", WriteKey: "k", BatchSize: 2500, BatchBytes: 500000,
				FlushInterval: time.Second, Concurrency: 1, Timeout: time.Second, MinBackoff: time.Second, MaxBackoff: time.Second}
		}, ""},
		{"no write key", func(o *Options) { o.WriteKey = "" }, "WriteKey is required"},
		{"relative endpoint", func(o *Options) { o.Endpoint = "api.segment.io" }, "Endpoint"},
		{"ftp endpoint", func(o *Options) { o.Endpoint = "ftp://api.segment.io" }, "Endpoint"},
		{"batch too big", func(o *Options) { o.BatchSize = 2501 }, "BatchSize"},
		{"negative batch", func(o *Options) { o.BatchSize = -1 }, "BatchSize"},
		{"bytes too big", func(o *Options) { o.BatchBytes = 500001 }, "BatchBytes"},
		{"negative interval", func(o *Options) { o.FlushInterval = -1 }, "FlushInterval"},
		{"negative timeout", func(o *Options) { o.Timeout = -1 }, "Timeout"},
		{"negative concurrency", func(o *Options) { o.Concurrency = -1 }, "Concurrency"},
		{"min over max", func(o *Options) { o.MaxBackoff = time.Millisecond }, "MinBackoff"},
		{"accounts without a key", func(o *Options) { o.WriteKey, o.Accounts = "", true }, ""},
		{"accounts all set", func(o *Options) {
			*o = Options{Accounts: true, MaxRPS: 50, DestinationConcurrency: 8, ParkAfter: time.Second, ParkAbove: 100}
		}, ""},
		{"negative rps", func(o *Options) { o.MaxRPS = -1 }, "MaxRPS"},
		{"negative destination concurrency", func(o *Options) { o.DestinationConcurrency = -1 }, "DestinationConcurrency"},
		{"negative park after", func(o *Options) { o.ParkAfter = -1 }, "ParkAfter"},
		{"negative park above", func(o *Options) { o.ParkAbove = -1 }, "ParkAbove"},
		{"negative systemic rejects", func(o *Options) { o.SystemicRejects = -1 }, "SystemicRejects"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := ok
			tc.o(&o)
			err := o.Validate()
			switch {
			case tc.want == "" && err != nil:
				t.Errorf("Validate() = %v, want nil", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Errorf("Validate() = %v, want an error about %s", err, tc.want)
			}
		})
	}
}

func TestAccountsDefaults(t *testing.T) {
	o := Options{Accounts: true}.withDefaults()
	if o.MaxRPS != DefaultAccountMaxRPS || o.DestinationConcurrency != DefaultAccountConcurrency || o.ParkAfter != 0 {
		t.Errorf("accounts defaults: MaxRPS %v, DestinationConcurrency %d, ParkAfter %s; want %v, %d, 0",
			o.MaxRPS, o.DestinationConcurrency, o.ParkAfter, DefaultAccountMaxRPS, DefaultAccountConcurrency)
	}
	o = Options{WriteKey: "k"}.withDefaults()
	if o.MaxRPS != 0 || o.DestinationConcurrency != o.Concurrency || o.Concurrency != DefaultConcurrency {
		t.Errorf("single-source defaults: MaxRPS %v, DestinationConcurrency %d, Concurrency %d; want 0, %d, %d",
			o.MaxRPS, o.DestinationConcurrency, o.Concurrency, DefaultConcurrency, DefaultConcurrency)
	}
}

func TestOptionsStringHidesWriteKey(t *testing.T) {
	o := Options{WriteKey: "secret-key"}
	for _, s := range []string{o.String(), fmt.Sprintf("%v", o), fmt.Sprintf("%+v", o)} {
		if strings.Contains(s, "secret-key") {
			t.Errorf("%q shows the write key", s)
		}
	}
}

func TestBackoff(t *testing.T) {
	s := &Segment{o: Options{MinBackoff: 100 * time.Millisecond, MaxBackoff: 30 * time.Second}}
	for _, tc := range []struct {
		attempt    int
		retryAfter time.Duration
		lo, hi     time.Duration
	}{
		{0, 0, 50 * time.Millisecond, 100 * time.Millisecond},
		{3, 0, 400 * time.Millisecond, 800 * time.Millisecond},
		{20, 0, 15 * time.Second, 30 * time.Second},
		{1000, 0, 15 * time.Second, 30 * time.Second},
		{0, 2 * time.Second, 2 * time.Second, 2 * time.Second},
		{0, time.Hour, maxRetryAfter, maxRetryAfter},
	} {
		for range 100 {
			if got := s.backoff(tc.attempt, tc.retryAfter); got < tc.lo || got > tc.hi {
				t.Fatalf("backoff(%d, %s) = %s, want within [%s, %s]", tc.attempt, tc.retryAfter, got, tc.lo, tc.hi)
			}
		}
	}
}

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		in   string
		want time.Duration
	}{
		{"", 0},
		{"2", 2 * time.Second},
		{" 120 ", 2 * time.Minute},
		{"0", 0},
		{"-5", 0},
		{"99999999999", maxRetryAfter},
		{now.Add(90 * time.Second).Format(http.TimeFormat), 90 * time.Second},
		{now.Add(-time.Minute).Format(http.TimeFormat), 0},
		{"soon", 0},
	} {
		if got := parseRetryAfter(tc.in, now); got != tc.want {
			t.Errorf("parseRetryAfter(%q) = %s, want %s", tc.in, got, tc.want)
		}
	}
}

func TestBody(t *testing.T) {
	s := &Segment{o: Options{BatchSize: 10}}
	msgs := []Message{
		{ID: "a", JSON: []byte(`{"type":"track","messageId":"a"}`)},
		{ID: "b", JSON: []byte(`{"type":"track","messageId":"b","properties":{"x":"é\u2028"}}`)},
	}
	b := s.encode(nil, msgs)
	at := time.Date(2024, 5, 1, 12, 0, 0, 123456789, time.FixedZone("CEST", 2*3600))
	stamp(b.buf, at)
	if len(b.buf) != b.size {
		t.Errorf("body is %d bytes, batch accounted %d", len(b.buf), b.size)
	}
	var got struct {
		Batch   []json.RawMessage
		SentAt  string
		Context struct {
			Library struct{ Name, Version string }
		}
	}
	if err := json.Unmarshal(b.buf, &got); err != nil {
		t.Fatalf("body is not JSON: %v\n%s", err, b.buf)
	}
	if len(got.Batch) != 2 || string(got.Batch[1]) != string(msgs[1].JSON) {
		t.Errorf("batch = %s, want the messages byte for byte", got.Batch)
	}
	if got.SentAt != "2024-05-01T10:00:00.123Z" {
		t.Errorf("sentAt = %q, want 2024-05-01T10:00:00.123Z", got.SentAt)
	}
	if got.Context.Library.Name != "produktly-segment" {
		t.Errorf("context.library = %+v", got.Context.Library)
	}
	// The empty batch is valid too (never sent, but must not corrupt).
	e := s.encode(nil, nil)
	stamp(e.buf, at)
	if !json.Valid(e.buf) || len(e.buf) != envelope {
		t.Errorf("empty body %s: valid=%v len=%d want %d", e.buf, json.Valid(e.buf), len(e.buf), envelope)
	}
}

func TestFits(t *testing.T) {
	s := &Segment{o: Options{BatchSize: 10}}
	b := s.newBatch(nil, 0)
	m := Message{JSON: make([]byte, 100)}
	limit := envelope + 100 + 1 + 100
	if !b.fits(m, 10) {
		t.Error("an empty batch must take any message")
	}
	b.add(m)
	if !b.fits(m, limit) {
		t.Error("second message should fit exactly")
	}
	b.add(m)
	if b.fits(Message{JSON: make([]byte, 1)}, limit) {
		t.Error("a message past the limit fits")
	}
}

func TestCheck(t *testing.T) {
	for _, tc := range []struct {
		js   string
		want bool
	}{
		{`{}`, true},
		{` {"a":1} `, true},
		{"\n{}\r\n", true},
		{``, false},
		{`{`, false},
		{` { `, false},
		{`{"a":1}]`, false},
		{`[]`, false},
		{`"x"`, false},
		{`{` + strings.Repeat(" ", MaxMessageBytes) + `}`, false},
	} {
		if got := check([]byte(tc.js)) == nil; got != tc.want {
			t.Errorf("check(%.20q) ok = %v, want %v", tc.js, got, tc.want)
		}
	}
}

func TestHealthState(t *testing.T) {
	var h health
	now := time.Now()
	if !h.healthy(now) {
		t.Error("unhealthy before any request")
	}
	h.record(now, false)
	if h.healthy(now.Add(time.Second)) {
		t.Error("healthy right after a failure")
	}
	if !h.healthy(now.Add(2 * time.Minute)) {
		t.Error("unhealthy two minutes after a failure with nothing failing")
	}
	h.failing.Add(1)
	if h.healthy(now.Add(2 * time.Minute)) {
		t.Error("healthy while a batch is still being retried")
	}
	h.record(now.Add(3*time.Minute), true)
	if !h.healthy(now.Add(3 * time.Minute)) {
		t.Error("unhealthy after a success")
	}
}

// TestRecoveryWakesOnlyAfterOutage: a success wakes the sleepers only when
// it ends a time without successes, not when it follows one failure among
// successes.
func TestRecoveryWakesOnlyAfterOutage(t *testing.T) {
	var h health
	now := time.Now()
	h.record(now, true)
	e := h.epoch()
	wake, _ := h.since(e)
	h.record(now.Add(10*time.Millisecond), false)
	h.record(now.Add(20*time.Millisecond), true)
	if _, missed := h.since(e); closed(wake) || missed {
		t.Fatal("a success 20ms after the last one woke the sleepers")
	}
	h.record(now.Add(30*time.Millisecond), false)
	h.record(now.Add(30*time.Millisecond+outageGap), true)
	if !closed(wake) {
		t.Fatal("the first success after an outage did not wake the sleepers")
	}
	if _, missed := h.since(e); !missed {
		t.Fatal("a request out during the recovery is not told it missed it")
	}
}

func TestWakeupsHeap(t *testing.T) {
	var h wakeups
	base := time.Now()
	for _, ms := range []int{50, 10, 40, 10, 30, 20, 0} {
		h.push(wakeup{at: base.Add(time.Duration(ms) * time.Millisecond)})
	}
	var got []int
	for len(h) > 0 {
		got = append(got, int(h.pop().at.Sub(base)/time.Millisecond))
	}
	if fmt.Sprint(got) != "[0 10 10 20 30 40 50]" {
		t.Errorf("popped %v, want ascending", got)
	}
}

// TestIdleDestinationsForgotten: per-destination state is bounded by the
// destinations in use; the single source of Options is kept. The sweep is
// driven by the clock it is given, not by the machine's speed: three
// destinations used, none forgotten while they are not idle, and all but
// the single source forgotten once they are.
func TestIdleDestinationsForgotten(t *testing.T) {
	srv := segmenttest.NewServer("wk_0", segmenttest.WithWriteKeys("wk_1", "wk_2"))
	defer srv.Close()
	s, err := NewSegment(Options{Endpoint: srv.URL(), WriteKey: "wk_0", FlushInterval: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	// Longer than any run of this test: Run's own sweep forgets nothing
	// here, however slowly the deliveries go.
	s.idleAfter = time.Hour
	ctx, cancel := context.WithCancel(context.Background())
	var run sync.WaitGroup
	run.Go(func() { _ = s.Run(ctx) })
	stopped := false
	stop := func() {
		if !stopped {
			stopped = true
			cancel()
			run.Wait()
		}
	}
	defer stop()

	var done sync.WaitGroup
	for i := range 3 {
		done.Add(1)
		d := Destination{}
		if i > 0 {
			d = Destination{Account: fmt.Sprint(i), WriteKey: fmt.Sprint("wk_", i), Endpoint: srv.URL()}
		}
		js := fmt.Appendf(nil, `{"type":"track","event":"E","messageId":"m%d","userId":"u"}`, i)
		if err := s.Enqueue(ctx, Message{ID: "m", JSON: js, Destination: d, Done: func(r Result) {
			if r.Outcome != Delivered {
				t.Errorf("outcome %v: %v", r.Outcome, r.Err)
			}
			done.Done()
		}}); err != nil {
			t.Fatal(err)
		}
	}
	done.Wait()
	// Run owns the destinations; with it stopped the test may sweep.
	stop()
	if n := len(s.dests); n != 3 {
		t.Fatalf("%d destinations known after three were used, want 3", n)
	}
	s.sweep(time.Now())
	if n := len(s.dests); n != 3 {
		t.Fatalf("%d destinations known after a sweep before they were idle, want 3", n)
	}
	s.sweep(time.Now().Add(s.idleAfter))
	if n := len(s.dests); n != 1 {
		t.Fatalf("%d destinations known after a sweep once they were idle, want only the single source", n)
	}
	for _, d := range s.dests {
		if !d.single {
			t.Errorf("the destination kept is not the single source")
		}
	}
	if srv.Count() != 3 {
		t.Errorf("server got %d messages, want 3", srv.Count())
	}
}

func TestDestinationHidesWriteKey(t *testing.T) {
	d := Destination{Account: "42", WriteKey: "wk_secret", Endpoint: "https://api.segment.io"}
	m := Message{ID: "x", Destination: d}
	for _, s := range []string{fmt.Sprint(d), fmt.Sprintf("%+v", d), fmt.Sprintf("%#v", d), fmt.Sprintf("%v %+v", m, m)} {
		if strings.Contains(s, "wk_secret") {
			t.Errorf("%q shows the write key", s)
		}
	}
}

// The metrics label of a status is its number, whether it has a constant
// of its own or not.
func TestStatusLabel(t *testing.T) {
	for code := 100; code < 600; code++ {
		if got, want := statusLabel(code), fmt.Sprint(code); got != want {
			t.Errorf("statusLabel(%d) = %q, want %q", code, got, want)
		}
	}
}
