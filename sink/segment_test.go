package sink_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/produktly/produktly-segment/sink"
)

func TestBatchesBySize(t *testing.T) {
	srv := newServer(t)
	h := start(t, srv, srv.URL(), func(o *sink.Options) {
		o.BatchSize = 10
		o.FlushInterval = time.Hour // only size may flush
		o.Concurrency = 1
	})
	h.enqueue("m", 35, 0, nil)
	if c := outcomes(h.res.wait(30, 5*time.Second)); c[sink.Delivered] != 30 {
		t.Errorf("outcomes %v, want 30 delivered", c)
	}
	// Once Run has returned nothing more can be sent: a fourth, partial
	// batch must not have gone.
	h.stop()
	if n := srv.Requests(); n != 3 {
		t.Errorf("requests = %d, want 3", n)
	}
	if n := srv.Count(); n != 30 {
		t.Errorf("server accepted %d messages, want 30", n)
	}
	got := h.res.wait(35, time.Second)
	for i := 30; i < 35; i++ {
		r := got[fmt.Sprintf("m-%d", i)]
		if r.Outcome != sink.Abandoned || !errors.Is(r.Err, sink.ErrClosed) {
			t.Errorf("m-%d: got %v %v, want Abandoned wrapping ErrClosed", i, r.Outcome, r.Err)
		}
	}
	if got := metric(t, h.reg, "produktly_segment_sink_batch_messages"); got != 3 {
		t.Errorf("batch size observations = %v, want 3", got)
	}
}

func TestBatchesByBytes(t *testing.T) {
	srv := newServer(t)
	rec := record(t, srv)
	const limit = 2500
	h := start(t, srv, rec.URL, func(o *sink.Options) {
		o.BatchBytes = limit
		o.FlushInterval = time.Hour
		o.Concurrency = 1
	})
	// Each message is about 1.1 KB: two fit in 2500 bytes, three do not.
	// The eleventh closes the fifth batch and stays behind.
	h.enqueue("m", 11, 900, nil)
	h.res.wait(10, 5*time.Second)
	reqs := rec.requests()
	if len(reqs) != 5 {
		t.Fatalf("requests = %d, want 5", len(reqs))
	}
	for i, r := range reqs {
		ids, _ := batchOf(t, r.body)
		if len(r.body) > limit {
			t.Errorf("request %d: body is %d bytes, over BatchBytes %d", i, len(r.body), limit)
		}
		if len(ids) != 2 {
			t.Errorf("request %d carries %d messages, want 2", i, len(ids))
		}
	}
}

func TestBatchesByInterval(t *testing.T) {
	srv := newServer(t)
	rec := record(t, srv)
	const interval = 80 * time.Millisecond
	h := start(t, srv, rec.URL, func(o *sink.Options) { o.FlushInterval = interval })
	begin := time.Now()
	h.enqueue("m", 3, 0, nil)
	h.res.wait(3, 5*time.Second)
	reqs := rec.requests()
	if len(reqs) != 1 {
		t.Fatalf("requests = %d, want 1", len(reqs))
	}
	if wait := reqs[0].at.Sub(begin); wait < interval || wait > interval+time.Second {
		t.Errorf("partial batch sent after %s, want about FlushInterval %s", wait, interval)
	}
}

// TestEveryMessageFinishedOnce enqueues from several goroutines while the
// server fails a third of the requests in every way it can, and cancels one
// "partition" half way. Every message must finish exactly once (results
// fails the test on a second Done), and every message reported Delivered
// must be at the server.
func TestEveryMessageFinishedOnce(t *testing.T) {
	srv := newServer(t)
	srv.SetFaultRate(0.3, 7)
	h := start(t, srv, srv.URL(), func(o *sink.Options) {
		o.BatchSize = 20
		o.Concurrency = 8
		o.Timeout = 300 * time.Millisecond
	})
	const producers, each = 4, 500
	revoked := make(chan struct{})
	var wg sync.WaitGroup
	for p := range producers {
		wg.Go(func() {
			var cancel <-chan struct{}
			if p == 0 {
				cancel = revoked
			}
			for i := range each {
				id := fmt.Sprintf("p%d-%d", p, i)
				if err := h.sink.Enqueue(context.Background(), h.res.message(id, track(id, 100), cancel)); err != nil {
					t.Errorf("Enqueue: %v", err)
				}
				if p == 0 && i == each/2 {
					close(revoked)
				}
			}
		})
	}
	wg.Wait()
	got := h.res.wait(producers*each, 30*time.Second)

	at := map[string]bool{}
	for _, m := range srv.Messages() {
		at[m.MessageID] = true
	}
	for id, r := range got {
		switch {
		case r.Outcome == sink.Delivered && !at[id]:
			t.Errorf("%s reported Delivered but the server does not have it", id)
		case r.Outcome == sink.Rejected:
			t.Errorf("%s rejected: %v", id, r.Err)
		case r.Outcome == sink.Abandoned && !strings.HasPrefix(id, "p0-"):
			t.Errorf("%s abandoned although not cancelled: %v", id, r.Err)
		case r.Outcome == sink.Abandoned && !errors.Is(r.Err, sink.ErrCanceled):
			t.Errorf("%s abandoned with %v, want ErrCanceled", id, r.Err)
		}
	}
	c := outcomes(got)
	if c[sink.Delivered] < (producers-1)*each {
		t.Errorf("outcomes %v: want at least %d delivered", c, (producers-1)*each)
	}
	t.Logf("outcomes %v; server: %d requests, %d messages, %d distinct", c, srv.Requests(), srv.Count(), srv.Distinct())
}

func TestRunCancelAbandonsPending(t *testing.T) {
	srv := newServer(t)
	srv.SetOutage(503)
	h := start(t, srv, srv.URL(), nil)
	h.enqueue("m", 50, 0, nil)
	eventually(t, 5*time.Second, "two failed requests", func() bool { return srv.Requests() >= 2 })

	begin := time.Now()
	h.stop()
	if d := time.Since(begin); d > time.Second {
		t.Errorf("Run took %s to return after cancel", d)
	}
	if n := h.res.count(); n != 50 {
		t.Fatalf("%d of 50 messages finished when Run returned", n)
	}
	for id, r := range h.res.wait(50, time.Second) {
		if r.Outcome != sink.Abandoned || !errors.Is(r.Err, sink.ErrClosed) {
			t.Errorf("%s: %v %v, want Abandoned wrapping ErrClosed", id, r.Outcome, r.Err)
		}
	}
	err := h.sink.Enqueue(context.Background(), h.res.message("late", track("late", 0), nil))
	if !errors.Is(err, sink.ErrClosed) {
		t.Errorf("Enqueue after Run returned: %v, want ErrClosed", err)
	}
	if err := h.sink.Run(context.Background()); err == nil {
		t.Error("second Run returned nil, want an error")
	}
}

func TestEnqueueBlocksWhenFull(t *testing.T) {
	srv := newServer(t)
	srv.SetOutage(503)
	// One sender with one message, the batcher holding one, a queue of one:
	// the fourth Enqueue must block.
	h := start(t, srv, srv.URL(), func(o *sink.Options) {
		o.BatchSize = 1
		o.Concurrency = 1
	})
	accepted := 0
	var blocked error
	for i := range 10 {
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		id := fmt.Sprintf("m-%d", i)
		blocked = h.sink.Enqueue(ctx, h.res.message(id, track(id, 0), nil))
		cancel()
		if blocked != nil {
			break
		}
		accepted++
	}
	if !errors.Is(blocked, context.DeadlineExceeded) {
		t.Fatalf("Enqueue never blocked (last error %v)", blocked)
	}
	if accepted != 3 {
		t.Errorf("accepted %d messages before blocking, want 3", accepted)
	}
	srv.ClearOutage()
	h.res.wait(accepted, 5*time.Second)

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := h.sink.Enqueue(ctx, h.res.message("x", track("x", 0), nil)); !errors.Is(err, context.Canceled) {
		t.Errorf("Enqueue with a cancelled ctx: %v, want context.Canceled", err)
	}
	// Run finishes every message it holds before it returns; after that,
	// the messages whose Enqueue failed must not have been finished.
	h.stop()
	got := h.res.wait(accepted, time.Second)
	for _, id := range []string{fmt.Sprintf("m-%d", accepted), "x"} {
		if _, ok := got[id]; ok {
			t.Errorf("Done was called for %s, whose Enqueue failed", id)
		}
	}
	if n := h.res.count(); n != accepted {
		t.Errorf("%d messages finished, want the %d accepted", n, accepted)
	}
}

func TestUnsendableMessagesRejectedWithoutRequest(t *testing.T) {
	srv := newServer(t)
	h := start(t, srv, srv.URL(), nil)
	big := track("big", sink.MaxMessageBytes)
	for id, js := range map[string][]byte{"big": big, "empty": nil, "array": []byte(`[1,2]`)} {
		if err := h.sink.Enqueue(context.Background(), h.res.message(id, js, nil)); err != nil {
			t.Fatal(err)
		}
	}
	for id, r := range h.res.wait(3, 5*time.Second) {
		var rej *sink.RejectedError
		if r.Outcome != sink.Rejected || !errors.As(r.Err, &rej) || rej.Status != 0 {
			t.Errorf("%s: %v %v, want Rejected with a *RejectedError of Status 0", id, r.Outcome, r.Err)
		}
	}
	if n := srv.Requests(); n != 0 {
		t.Errorf("%d requests, want none", n)
	}
	if err := h.sink.Enqueue(context.Background(), sink.Message{ID: "x", JSON: track("x", 0)}); err == nil {
		t.Error("Enqueue accepted a message without Done")
	}
}

func TestEnqueueBeforeRun(t *testing.T) {
	srv := newServer(t)
	s, err := sink.NewSegment(sink.Options{Endpoint: srv.URL(), WriteKey: testKey, FlushInterval: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	res := newResults(t)
	if err := s.Enqueue(context.Background(), res.message("early", track("early", 0), nil)); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- s.Run(ctx) }()
	if r := res.wait(1, 5*time.Second)["early"]; r.Outcome != sink.Delivered {
		t.Errorf("early: %v %v, want Delivered", r.Outcome, r.Err)
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run: %v", err)
	}
}

func TestMetricsRegisteredOnce(t *testing.T) {
	srv := newServer(t)
	h := start(t, srv, srv.URL(), nil)
	_, err := sink.NewSegment(sink.Options{WriteKey: "k", Registerer: h.reg})
	if err == nil {
		t.Error("a second sink on the same registry: want a registration error")
	}
	h.enqueue("m", 3, 0, nil)
	h.res.wait(3, 5*time.Second)
	for _, c := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{"produktly_segment_sink_messages_total", []string{"outcome", "delivered"}, 3},
		{"produktly_segment_sink_messages_total", []string{"outcome", "rejected"}, 0},
		{"produktly_segment_sink_queue_messages", nil, 0},
	} {
		if got := metric(t, h.reg, c.name, c.labels...); got != c.want {
			t.Errorf("%s%v = %v, want %v", c.name, c.labels, got, c.want)
		}
	}
	// On a busy machine the three messages may leave in more than one
	// request (a flush interval passes between them), or a request may be
	// retried; every request is timed and sized once either way.
	ok := metric(t, h.reg, "produktly_segment_sink_requests_total", "status", "200")
	if ok < 1 || ok > 3 {
		t.Errorf("requests answered 200 = %v, want 1 to 3", ok)
	}
	timed := metric(t, h.reg, "produktly_segment_sink_request_duration_seconds")
	sized := metric(t, h.reg, "produktly_segment_sink_batch_bytes")
	if timed < ok || sized != timed {
		t.Errorf("requests timed %v, sized %v, answered 200 %v: want every request timed and sized once", timed, sized, ok)
	}
}

// TestReusesConnections guards against analytics-go's habit of closing a
// successful response unread, which costs a new connection (and, against
// Segment, a TLS handshake) per request.
func TestReusesConnections(t *testing.T) {
	srv := newServer(t)
	var conns atomic.Int64
	hs := httptest.NewUnstartedServer(srv.Handler())
	hs.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		if st == http.StateNew {
			conns.Add(1)
		}
	}
	hs.Start()
	t.Cleanup(hs.Close)
	h := start(t, srv, hs.URL, func(o *sink.Options) { o.Concurrency = 1 })
	for i := range 10 {
		h.enqueue(fmt.Sprintf("m%d", i), 1, 0, nil)
		h.res.wait(i+1, 5*time.Second)
	}
	if n := conns.Load(); n != 1 {
		t.Errorf("10 sequential requests used %d connections, want 1", n)
	}
}

// TestLargeBodiesOverHTTP sends batches filled up to MaxBatchBytes, whose
// bodies are read from their messages, through net/http's transport to a
// real server: every body arrives whole (the server reads exactly its
// Content-Length), is a batch, and carries its messages in order.
func TestLargeBodiesOverHTTP(t *testing.T) {
	srv := newServer(t)
	rec := record(t, srv)
	h := start(t, srv, rec.URL, func(o *sink.Options) {
		o.Concurrency = 1 // requests in order
	})
	const n = 120
	ids := h.enqueue("m", n, 20_000, nil)
	if c := outcomes(h.res.wait(n, 30*time.Second)); c[sink.Delivered] != n {
		t.Fatalf("outcomes %v, want %d delivered", c, n)
	}
	var got []string
	large := 0
	for i, r := range rec.requests() {
		if r.status != http.StatusOK {
			t.Errorf("request %d: status %d", i, r.status)
		}
		b, _ := batchOf(t, r.body)
		got = append(got, b...)
		if len(r.body) > sink.MaxBatchBytes/2 {
			large++
		}
	}
	if strings.Join(got, ",") != strings.Join(ids, ",") {
		t.Errorf("the requests carried %d messages, not the %d enqueued in order", len(got), n)
	}
	if large == 0 {
		t.Error("no request body was larger than half of MaxBatchBytes: the test sent no large body")
	}
}
