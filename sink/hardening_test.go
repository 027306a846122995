package sink_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httptrace"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/produktly/produktly-segment/sink"
	"github.com/produktly/produktly-segment/sink/segmenttest"
)

// attempts counts the requests that carried each messageId of a prefix.
type attempts struct {
	mu sync.Mutex
	n  map[string]int
}

func (a *attempts) add(id string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.n == nil {
		a.n = map[string]int{}
	}
	a.n[id]++
}

func (a *attempts) get() map[string]int {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make(map[string]int, len(a.n))
	for k, v := range a.n {
		out[k] = v
	}
	return out
}

// failing serves srv's handler, except that a batch carrying a message whose
// messageId starts with bad is answered 503 for ever.
func failing(t *testing.T, h http.Handler, bad string, seen *attempts) string {
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if ids, ok := messageIDs(body); ok {
			for _, id := range ids {
				if strings.HasPrefix(id, bad) {
					seen.add(id)
					w.Header().Set("Content-Type", "application/json")
					w.WriteHeader(http.StatusServiceUnavailable)
					_, _ = io.WriteString(w, `{"success":false}`)
					return
				}
			}
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(hs.Close)
	return hs.URL
}

func messageIDs(body []byte) ([]string, bool) {
	var env struct {
		Batch []struct {
			MessageID string `json:"messageId"`
		} `json:"batch"`
	}
	if json.Unmarshal(body, &env) != nil {
		return nil, false
	}
	ids := make([]string, len(env.Batch))
	for i, m := range env.Batch {
		ids[i] = m.MessageID
	}
	return ids, true
}

// scheduleAttempts is the most attempts the backoff schedule allows one
// batch within d: every wait is at least half of MinBackoff·2^attempt,
// capped at MaxBackoff.
func scheduleAttempts(d, minB, maxB time.Duration) int {
	n, t := 1, time.Duration(0)
	for {
		w := maxB
		if n-1 < 32 {
			w = min(minB<<(n-1), maxB)
		}
		t += w / 2
		if t > d {
			return n
		}
		n++
	}
}

// TestRetryRateUnderPartialFailure: 3 of 10 batches fail for ever while the
// others succeed. The successes must not wake the failing batches: their
// attempts stay within the backoff schedule.
func TestRetryRateUnderPartialFailure(t *testing.T) {
	srv := newServer(t)
	var seen attempts
	url := failing(t, srv.Handler(), "bad-", &seen)
	const minB, maxB = 20 * time.Millisecond, 2 * time.Second
	h := start(t, srv, url, func(o *sink.Options) {
		o.BatchSize = 1
		o.Concurrency = 10
		o.FlushInterval = time.Millisecond
		o.MinBackoff, o.MaxBackoff = minB, maxB
	})
	h.enqueue("bad", 3, 0, nil)
	eventually(t, 10*time.Second, "every failing batch tried once", func() bool { return len(seen.get()) == 3 })
	begin := time.Now()
	const good = 1000
	h.enqueue("good", good, 0, nil)
	got := h.res.wait(good, 60*time.Second)
	elapsed := time.Since(begin)
	if c := outcomes(got); c[sink.Delivered] != good {
		t.Fatalf("outcomes %v, want %d delivered", c, good)
	}
	// One more than the schedule allows since begin, for the attempt that
	// may have been under way at begin.
	allowed := scheduleAttempts(elapsed, minB, maxB) + 1
	total := 0
	for id, n := range seen.get() {
		total += n
		if n > allowed {
			t.Errorf("%s: %d attempts in %s, the backoff schedule allows %d", id, n, elapsed.Round(time.Millisecond), allowed)
		}
	}
	t.Logf("failing batches: %.1f attempts/s each over %s while %d good batches were delivered (schedule allows ≤ %d attempts each)",
		float64(total)/3/elapsed.Seconds(), elapsed.Round(time.Millisecond), good, allowed)
}

// TestSystemicBadRequestIsAnOutage: when every call is answered 400 (a proxy
// or envelope bug), the sink must stop dead-lettering after a run of
// single-message rejections and retry instead, report unhealthy, and say
// so in a metric.
func TestSystemicBadRequestIsAnOutage(t *testing.T) {
	srv := newServer(t)
	var refuse atomic.Bool
	refuse.Store(true)
	srv.RejectMessages(func(segmenttest.Received) bool { return refuse.Load() })
	h := start(t, srv, srv.URL(), func(o *sink.Options) {
		o.BatchSize = 1
		o.Concurrency = 1 // one request at a time: the count of rejections is exact
	})
	const n = 60
	var feed sync.WaitGroup
	feed.Go(func() { h.enqueue("m", n, 0, nil) }) // blocks while the sink holds what it can
	defer feed.Wait()
	eventually(t, 10*time.Second, "the systemic rejection gauge", func() bool {
		return metric(t, h.reg, "produktly_segment_sink_systemic_rejection") == 1
	})
	eventually(t, 10*time.Second, "retries of the refused calls", func() bool {
		return metric(t, h.reg, "produktly_segment_sink_retries_total") >= 4
	})
	if h.sink.Healthy() {
		t.Error("Healthy() while every call is refused")
	}
	rejected := outcomes(h.res.wait(0, time.Second))[sink.Rejected]
	if want := sink.DefaultSystemicRejects - 1; rejected != want {
		t.Errorf("%d calls rejected, want the %d before the sink called it an outage", rejected, want)
	}
	refuse.Store(false)
	got := h.res.wait(n, 30*time.Second)
	if c := outcomes(got); c[sink.Delivered] != n-rejected {
		t.Errorf("outcomes %v after the 400s stopped, want %d delivered", c, n-rejected)
	}
	if metric(t, h.reg, "produktly_segment_sink_systemic_rejection") != 0 || !h.sink.Healthy() {
		t.Error("still reporting the outage after a delivery")
	}
}

// TestSingle413IsNotRejected: the sink checks every message against
// Segment's limits before sending, so a 413 for one message means something
// in between refuses what Segment takes: it splits batches, never rejects.
func TestSingle413IsNotRejected(t *testing.T) {
	srv := newServer(t)
	srv.FailNext(413, 413, 413)
	h := start(t, srv, srv.URL(), func(o *sink.Options) { o.BatchSize = 1 })
	h.enqueue("m", 1, 0, nil)
	if r := h.res.wait(1, 10*time.Second)["m-0"]; r.Outcome != sink.Delivered {
		t.Errorf("m-0: %v %v, want Delivered after the 413s", r.Outcome, r.Err)
	}
}

// lateReader is a RoundTripper that answers at once and reads the request
// body only afterwards, once the next request has started: the
// RoundTripper contract allows that (the body may be read and closed after
// Do returns). Every third request is answered 503, so the sink stamps and
// resends a body too.
type lateReader struct {
	t      *testing.T
	mu     sync.Mutex
	n      int
	next   chan struct{} // closed when the next request starts
	wg     sync.WaitGroup
	bodies map[int]string // request number → messageIds read late
}

func (l *lateReader) RoundTrip(req *http.Request) (*http.Response, error) {
	l.mu.Lock()
	l.n++
	n := l.n
	if l.next != nil {
		close(l.next)
	}
	next := make(chan struct{})
	l.next = next
	l.mu.Unlock()
	body := req.Body
	l.wg.Go(func() {
		select {
		case <-next:
		case <-time.After(2 * time.Second):
		}
		b, err := io.ReadAll(body)
		_ = body.Close()
		ids, ok := messageIDs(b)
		l.mu.Lock()
		defer l.mu.Unlock()
		if err != nil || !ok {
			l.t.Errorf("request %d: body read late is not a batch (%v): %.200q", n, err, b)
			return
		}
		l.bodies[n] = strings.Join(ids, ",")
	})
	status := http.StatusOK
	if n%3 == 0 {
		status = http.StatusServiceUnavailable
	}
	return &http.Response{
		StatusCode: status,
		Status:     http.StatusText(status),
		Header:     http.Header{"Content-Type": {"application/json"}},
		Body:       io.NopCloser(strings.NewReader(`{"success":true}`)),
		Request:    req,
	}, nil
}

// deliverThrough delivers n messages of pad bytes through rt, in full
// batches of batch messages, one request at a time, and stops the sink:
// every attempt is over when it returns. It returns the messages' ids.
func deliverThrough(t *testing.T, rt http.RoundTripper, n, batch, pad int) []string {
	t.Helper()
	srv := newServer(t)
	h := start(t, srv, "http://segment.invalid", func(o *sink.Options) {
		o.BatchSize = batch
		o.FlushInterval = time.Hour // only size may flush: every batch is full
		o.Concurrency = 1
		o.Client = &http.Client{Transport: rt}
	})
	ids := h.enqueue("m", n, pad, nil)
	if c := outcomes(h.res.wait(n, 30*time.Second)); c[sink.Delivered] != n {
		t.Fatalf("outcomes %v, want %d delivered", c, n)
	}
	h.stop()
	return ids
}

// TestBodyReadAfterDo: run it with -race. The sink must not stamp, reuse
// or pool a request body while the transport may still read it: neither
// a sealed body (one message a request) nor one read from its messages
// (three messages of 30 KB a request, a body above largeBody).
func TestBodyReadAfterDo(t *testing.T) {
	for _, tc := range []struct {
		batch, pad int
	}{{1, 200}, {3, 30_000}} {
		t.Run(fmt.Sprintf("%d-messages-of-%d", tc.batch, tc.pad), func(t *testing.T) {
			lr := &lateReader{t: t, bodies: map[int]string{}}
			const n = 30
			ids := deliverThrough(t, lr, n, tc.batch, tc.pad)
			lr.mu.Lock()
			if lr.next != nil {
				close(lr.next)
				lr.next = nil
			}
			lr.mu.Unlock()
			lr.wg.Wait()
			carried := map[string]bool{}
			for _, b := range lr.bodies {
				carried[b] = true
			}
			for i := 0; i < n; i += tc.batch {
				if want := strings.Join(ids[i:i+tc.batch], ","); !carried[want] {
					t.Errorf("no request body read late carried %s, and only that: the body changed under the transport", want)
				}
			}
			if len(carried) != n/tc.batch {
				t.Errorf("bodies read late carried %d lists of messages, want %d: %v", len(carried), n/tc.batch, carried)
			}
		})
	}
}

// redirectReader is a RoundTripper that answers a request's first
// attempt 308 (to the same URL) at once and reads its body only when told
// to, and reads the redirected request's body before answering 200 and
// reports it written, as net/http's transport does. So the attempt's one
// trace sees a request written while the first body is still unread.
type redirectReader struct {
	t     *testing.T
	mu    sync.Mutex
	read  chan struct{} // closed: read the first bodies now
	wg    sync.WaitGroup
	late  []string // messageIds of each first body, read late
	sends int
}

func (r *redirectReader) RoundTrip(req *http.Request) (*http.Response, error) {
	r.mu.Lock()
	r.sends++
	first := r.sends%2 == 1
	r.mu.Unlock()
	answer := func(status int, h http.Header) *http.Response {
		return &http.Response{StatusCode: status, Status: http.StatusText(status), Header: h,
			Body: io.NopCloser(strings.NewReader(`{"success":true}`)), Request: req}
	}
	if first {
		body := req.Body
		r.wg.Go(func() {
			<-r.read
			b, err := io.ReadAll(body)
			ids, ok := messageIDs(b)
			r.mu.Lock()
			defer r.mu.Unlock()
			if err != nil || !ok {
				r.t.Errorf("first body read late is not a batch (%v): %.200q", err, b)
				return
			}
			r.late = append(r.late, strings.Join(ids, ","))
		})
		return answer(http.StatusPermanentRedirect, http.Header{"Location": {req.URL.String()}}), nil
	}
	_, err := io.Copy(io.Discard, req.Body)
	if tr := httptrace.ContextClientTrace(req.Context()); tr != nil && tr.WroteRequest != nil {
		tr.WroteRequest(httptrace.WroteRequestInfo{Err: err})
	}
	return answer(http.StatusOK, http.Header{"Content-Type": {"application/json"}}), nil
}

// TestBodyReadAfterRedirect: run it with -race. The transport may still
// read the body of the first request of a redirect after the attempt is
// over, its messages finished and its batch reused: it must read the same
// bytes, from a sealed body (one message a request) and from one read from
// its messages (three of 30 KB, above largeBody).
func TestBodyReadAfterRedirect(t *testing.T) {
	for _, tc := range []struct {
		batch, pad int
	}{{1, 200}, {3, 30_000}} {
		t.Run(fmt.Sprintf("%d-messages-of-%d", tc.batch, tc.pad), func(t *testing.T) {
			rr := &redirectReader{t: t, read: make(chan struct{})}
			const n = 12
			ids := deliverThrough(t, rr, n, tc.batch, tc.pad)
			close(rr.read)
			rr.wg.Wait()
			var want []string
			for i := 0; i < n; i += tc.batch {
				want = append(want, strings.Join(ids[i:i+tc.batch], ","))
			}
			slices.Sort(want)
			slices.Sort(rr.late) // read in any order
			if got, w := strings.Join(rr.late, " "), strings.Join(want, " "); got != w {
				t.Errorf("first bodies read late carried\n%s\nwant\n%s", got, w)
			}
		})
	}
}
