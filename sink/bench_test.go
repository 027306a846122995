package sink_test

import (
	"context"
	"fmt"
	"slices"
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

// BenchmarkDeliverAccounts is BenchmarkDeliver in accounts mode with 1000
// destinations, the messages spread over them round robin: the cost of
// per-destination batches (smaller requests) and of the per-message lookup.
func BenchmarkDeliverAccounts(b *testing.B) {
	const accounts = 1000
	keys := make([]string, accounts)
	for i := range keys {
		keys[i] = fmt.Sprintf("wk_account_%04d", i)
	}
	srv := segmenttest.NewServer(testKey, segmenttest.WithoutBodies(), segmenttest.WithWriteKeys(keys...))
	defer srv.Close()
	s, err := sink.NewSegment(sink.Options{Accounts: true, Endpoint: srv.URL(), FlushInterval: 5 * time.Millisecond})
	if err != nil {
		b.Fatal(err)
	}
	dests := make([]sink.Destination, accounts)
	for i := range dests {
		dests[i] = sink.Destination{Account: fmt.Sprint(i), WriteKey: keys[i], Endpoint: srv.URL()}
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
		// Runs of 20 messages per account, as a partition's records of
		// one account tend to come together.
		d := dests[(i/20)%accounts]
		if err := s.Enqueue(ctx, sink.Message{ID: "bench", JSON: msgs[i%len(msgs)], Destination: d, Done: done}); err != nil {
			b.Fatal(err)
		}
	}
	wg.Wait()
	b.ReportMetric(float64(b.N)/time.Since(begin).Seconds(), "msgs/s")
}

// BenchmarkOneFailingAccount measures the latency (enqueue to Done) of 49
// healthy accounts sent 2000 messages a second, while a 50th account fails
// with 503 throughout ("one failing") or not at all ("none failing"), and
// reports the p50 and p99 in milliseconds. The default FlushInterval
// (100ms) is the floor: a batch waits that long for more messages.
func BenchmarkOneFailingAccount(b *testing.B) {
	for _, failing := range []bool{false, true} {
		name := "none failing"
		if failing {
			name = "one failing"
		}
		b.Run(name, func(b *testing.B) { benchmarkAccountLatency(b, failing) })
	}
}

func benchmarkAccountLatency(b *testing.B, failing bool) {
	const accounts, rate = 50, 2000
	keys := make([]string, accounts)
	for i := range keys {
		keys[i] = fmt.Sprintf("wk_account_%02d", i)
	}
	srv := segmenttest.NewServer(testKey, segmenttest.WithoutBodies(), segmenttest.WithWriteKeys(keys...))
	defer srv.Close()
	if failing {
		srv.FailKey(keys[0], 503, 0)
	}
	s, err := sink.NewSegment(sink.Options{Accounts: true, Endpoint: srv.URL(), ParkAfter: sink.DefaultParkAfter})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var run sync.WaitGroup
	run.Go(func() { _ = s.Run(ctx) })
	defer func() { cancel(); run.Wait() }()
	dest := func(i int) sink.Destination {
		return sink.Destination{Account: fmt.Sprint(i), WriteKey: keys[i], Endpoint: srv.URL()}
	}
	var held sync.WaitGroup // the failing account's messages, finished when Run ends
	for i := range 1000 {
		held.Add(1)
		_ = s.Enqueue(ctx, sink.Message{ID: "bad", JSON: track(fmt.Sprint("bad-", i), 100), Destination: dest(0), Done: func(sink.Result) { held.Done() }})
	}
	js := track("good", 100)
	var mu sync.Mutex
	lat := make([]time.Duration, 0, b.N)
	var wg sync.WaitGroup
	b.ResetTimer()
	start := time.Now()
	for i := range b.N {
		if ahead := time.Until(start.Add(time.Duration(i) * time.Second / rate)); ahead > 0 {
			time.Sleep(ahead)
		}
		wg.Add(1)
		begin := time.Now()
		if err := s.Enqueue(ctx, sink.Message{ID: "good", JSON: js, Destination: dest(1 + i%(accounts-1)), Done: func(r sink.Result) {
			if r.Outcome != sink.Delivered {
				b.Errorf("outcome %v: %v", r.Outcome, r.Err)
			}
			mu.Lock()
			lat = append(lat, time.Since(begin))
			mu.Unlock()
			wg.Done()
		}}); err != nil {
			b.Fatal(err)
		}
	}
	wg.Wait()
	b.StopTimer()
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(srv.RequestsFor(keys[0])), "failing-requests")
	cancel()
	run.Wait()
	held.Wait()
}
