package sink_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/produktly/produktly-segment/sink"
	"github.com/produktly/produktly-segment/sink/segmenttest"
)

// BenchmarkDeliver pushes b.N messages through a sink to a segmenttest
// server over loopback HTTP and reports delivered messages per second. The
// server runs in the same process, so this measures the sink's overhead
// and the loopback stack, not Segment.
func BenchmarkDeliver(b *testing.B) {
	srv := segmenttest.NewServer(testKey, segmenttest.WithoutBodies())
	defer srv.Close()
	s, err := sink.NewSegment(sink.Options{Endpoint: srv.URL(), WriteKey: testKey, FlushInterval: 5 * time.Millisecond})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var run sync.WaitGroup
	run.Go(func() { _ = s.Run(ctx) })
	defer func() { cancel(); run.Wait() }()

	msgs := make([][]byte, 1000)
	for i := range msgs {
		msgs[i] = track(fmt.Sprintf("bench-%d", i), 100)
	}
	var wg sync.WaitGroup
	done := func(r sink.Result) {
		if r.Outcome != sink.Delivered {
			b.Errorf("outcome %v: %v", r.Outcome, r.Err)
		}
		wg.Done()
	}
	b.ReportAllocs()
	b.ResetTimer()
	begin := time.Now()
	for i := range b.N {
		wg.Add(1)
		if err := s.Enqueue(ctx, sink.Message{ID: "bench", JSON: msgs[i%len(msgs)], Done: done}); err != nil {
			b.Fatal(err)
		}
	}
	wg.Wait()
	b.ReportMetric(float64(b.N)/time.Since(begin).Seconds(), "msgs/s")
}
