package sink_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/produktly/produktly-segment/sink"
	"github.com/produktly/produktly-segment/sink/segmenttest"
)

// TestSplitHalvesInParallel: isolating a bad message in a rejected batch
// sends its two halves at the same time, so the search takes as many round
// trips as the batch has halvings, not as many as it has sub-batches. Done
// one after the other, a 400 batch of 500 behind a slow or flaky Segment
// needs dozens of round trips in a row, which outlasts a revoke's drain
// and leaves everything delivered behind it to be read again.
func TestSplitHalvesInParallel(t *testing.T) {
	srv := newServer(t)
	srv.SetLatency(100 * time.Millisecond) // long enough for the halves to overlap
	srv.RejectMessages(func(m segmenttest.Received) bool { return m.MessageID == "m-5" })
	var live, peak atomic.Int64
	front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := live.Add(1)
		defer live.Add(-1)
		for p := peak.Load(); n > p && !peak.CompareAndSwap(p, n); p = peak.Load() {
		}
		srv.ServeHTTP(w, r)
	}))
	t.Cleanup(front.Close)
	h := start(t, srv, front.URL, func(o *sink.Options) {
		o.BatchSize = 16
		o.FlushInterval = time.Hour
	})
	h.enqueue("m", 16, 0, nil)
	got := h.res.wait(16, 30*time.Second)
	if c := outcomes(got); c[sink.Delivered] != 15 || c[sink.Rejected] != 1 {
		t.Fatalf("outcomes %v, want 15 delivered and 1 rejected", c)
	}
	if p := peak.Load(); p < 2 {
		t.Fatalf("at most %d request at a time while splitting: the halves were sent one after the other", p)
	}
}

// TestSplitReportsRejectionsInOrder: the halves of a rejected batch go out
// together, but their outcomes are reported in the batch's order, so that
// the dead letters of one source partition keep their order (a replay puts
// them back in the order the records were written). Requests that carry
// the first bad message are made slow here, so the later halves answer
// first.
func TestSplitReportsRejectionsInOrder(t *testing.T) {
	srv := newServer(t)
	bad := map[string]bool{"m-3": true, "m-6": true, "m-9": true, "m-12": true}
	srv.RejectMessages(func(m segmenttest.Received) bool { return bad[m.MessageID] })
	front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			return
		}
		if bytes.Contains(body, []byte(`"m-3"`)) {
			time.Sleep(300 * time.Millisecond)
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		srv.ServeHTTP(w, r)
	}))
	t.Cleanup(front.Close)
	h := start(t, srv, front.URL, func(o *sink.Options) {
		o.BatchSize = 16
		o.FlushInterval = time.Hour
	})
	var mu sync.Mutex
	var rejected []string
	done := make(chan struct{}, 16)
	for i := range 16 {
		id := fmt.Sprintf("m-%d", i)
		m := sink.Message{ID: id, JSON: track(id, 0), Done: func(r sink.Result) {
			if r.Outcome == sink.Rejected {
				mu.Lock()
				rejected = append(rejected, id)
				mu.Unlock()
			}
			done <- struct{}{}
		}}
		if err := h.sink.Enqueue(context.Background(), m); err != nil {
			t.Fatal(err)
		}
	}
	for range 16 {
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			t.Fatal("not every message finished")
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if want := []string{"m-3", "m-6", "m-9", "m-12"}; !slices.Equal(rejected, want) {
		t.Fatalf("rejections reported in order %v, want %v", rejected, want)
	}
}
