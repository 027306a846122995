package sink_test

import (
	"net/http"
	"net/http/httptest"
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
