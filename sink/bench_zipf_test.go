package sink_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"runtime/metrics"
	"sort"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sync/semaphore"

	"github.com/produktly/produktly-segment/sink"
	"github.com/produktly/produktly-segment/sink/segmenttest"
)

// BenchmarkDeliverZipf drains a backlog through the sink the way the
// service does under a Kafka backlog: a producer hands messages over as
// fast as the consumer's in-flight caps allow (MaxInFlight 50,000 records
// and MaxInFlightBytes 32 MiB, each record weighing what the consumer
// charges for it), and a Done releases its share. "accounts" spreads the
// messages over 1,000 destinations whose volumes follow a Zipf law
// (exponent 1: the busiest has 13 %, the quietest 0.013 %), the bench's
// accounts-mode workload; "single" sends the same messages to the single
// source.
//
// One op is one message: b.N messages make one drain, so ns/op, B/op and
// allocs/op are per message, and -benchtime Nx drains N messages. The
// figures of docs/performance.md are for drains of zipfMessages
// (-benchtime 200000x); a much shorter drain gives each account too few
// messages to say anything about batching. (One op used to be a whole
// drain of 200,000 messages, so -benchtime 3000x meant 600 million
// messages, hours of work.)
//
// Reported per message besides: cpu-µs (user + system time of the whole
// process, the in-process test server included, so compare the two modes
// with each other) and requests; and per drain: msgs/request, new TCP
// connections, and the peak of the live heap (sampled every 5 ms).
func BenchmarkDeliverZipf(b *testing.B) {
	for _, mode := range []string{"single", "accounts"} {
		b.Run(mode, func(b *testing.B) { benchmarkZipf(b, mode == "accounts") })
	}
}

const (
	zipfMessages = 200_000
	zipfAccounts = 1000
	// The consumer's defaults (consumer.DefaultMaxInFlight,
	// DefaultMaxInFlightBytes) and its per-record weight: key and value,
	// the captured message's overhead, and the mapped JSON twice.
	zipfMaxInFlight      = 50_000
	zipfMaxInFlightBytes = 32 << 20
	zipfOverhead         = 512
)

func benchmarkZipf(b *testing.B, accounts bool) {
	keys := make([]string, zipfAccounts)
	for i := range keys {
		keys[i] = fmt.Sprintf("bench-key-%04d", i)
	}
	srv := segmenttest.NewServer(testKey, segmenttest.WithoutBodies(), segmenttest.WithWriteKeys(keys...))
	defer srv.Close()
	var conns atomic.Int64
	hs := httptest.NewUnstartedServer(srv.Handler())
	hs.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		if st == http.StateNew {
			conns.Add(1)
		}
	}
	hs.Start()
	defer hs.Close()

	o := sink.Options{Endpoint: hs.URL, WriteKey: testKey}
	if accounts {
		o = sink.Options{Endpoint: hs.URL, Accounts: true}
	}
	s, err := sink.NewSegment(o)
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var run sync.WaitGroup
	run.Go(func() { _ = s.Run(ctx) })
	defer func() { cancel(); run.Wait() }()

	// The messages, their destinations drawn from the Zipf law (every
	// third account in the EU region, here the same server).
	dests := make([]sink.Destination, zipfAccounts)
	for i := range dests {
		dests[i] = sink.Destination{Account: fmt.Sprintf("acct-%04d", i), WriteKey: keys[i], Endpoint: hs.URL}
	}
	cdf := make([]float64, zipfAccounts)
	sum := 0.0
	for k := range cdf {
		sum += 1 / float64(k+1)
		cdf[k] = sum
	}
	rng := rand.New(rand.NewPCG(1, 2))
	type msg struct {
		json []byte
		dst  sink.Destination
	}
	bodies := make([][]byte, 1000)
	for i := range bodies {
		bodies[i] = track(fmt.Sprintf("3f1c2b9e-8d4a-4b7e-9c1d-%012d", i), 180)
	}
	msgs := make([]msg, zipfMessages)
	for i := range msgs {
		msgs[i].json = bodies[i%len(bodies)]
		if accounts {
			k := sort.SearchFloat64s(cdf, rng.Float64()*sum)
			msgs[i].dst = dests[min(k, zipfAccounts-1)]
		}
	}
	cancelCh := make(chan struct{}) // the consumer gives every message its partition's
	slots := semaphore.NewWeighted(zipfMaxInFlight)
	bytesCap := semaphore.NewWeighted(zipfMaxInFlightBytes)

	var heapPeak int64
	b.ReportAllocs()
	b.ResetTimer()
	req0 := srv.Requests()
	cpu0 := cpuTime()
	stopSampling := sampleHeap(&heapPeak)
	var wg sync.WaitGroup
	wg.Add(b.N)
	for i := range b.N {
		m := &msgs[i%len(msgs)]
		w := int64(zipfOverhead + 3*len(m.json))
		if err := slots.Acquire(ctx, 1); err != nil {
			b.Fatal(err)
		}
		if err := bytesCap.Acquire(ctx, w); err != nil {
			b.Fatal(err)
		}
		if err := s.Enqueue(ctx, sink.Message{ID: "bench", JSON: m.json, Cancel: cancelCh, Destination: m.dst, Done: func(r sink.Result) {
			if r.Outcome != sink.Delivered {
				b.Errorf("outcome %v: %v", r.Outcome, r.Err)
			}
			bytesCap.Release(w)
			slots.Release(1)
			wg.Done()
		}}); err != nil {
			b.Fatal(err)
		}
	}
	wg.Wait()
	stopSampling()
	cpu := cpuTime() - cpu0
	reqs := srv.Requests() - req0
	b.StopTimer()
	n := float64(b.N)
	b.ReportMetric(float64(cpu.Microseconds())/n, "cpu-µs/msg")
	b.ReportMetric(float64(reqs)/n, "requests/msg")
	b.ReportMetric(n/float64(reqs), "msgs/request")
	b.ReportMetric(float64(conns.Load()), "conns")
	b.ReportMetric(float64(heapPeak)/(1<<20), "peak-heap-MB")
}

// cpuTime is the user + system time of this process.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// sampleHeap records the peak of the heap's live and not yet swept objects
// into *peak every 5 ms until the returned func is called.
func sampleHeap(peak *int64) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	sample := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	read := func() {
		metrics.Read(sample)
		if v := int64(sample[0].Value.Uint64()); v > *peak {
			*peak = v
		}
	}
	wg.Go(func() {
		t := time.NewTicker(5 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-done:
				read()
				return
			case <-t.C:
				read()
			}
		}
	})
	return func() { close(done); wg.Wait() }
}

// BenchmarkOutageZipf is the accounts-mode workload of BenchmarkDeliverZipf
// during an outage of every destination (503 for zipfOutage), parking
// after ParkAfter as the service does, then the outage ends and the
// backlog drains. It reports the peak of the live heap and of the
// goroutines during the outage and after it, so that "flat" can be read
// off: the consumer's caps bound the messages, and nothing per batch or
// destination may grow with the outage's length.
func BenchmarkOutageZipf(b *testing.B) {
	const zipfOutage, parkAfter = 10 * time.Second, 3 * time.Second
	keys := make([]string, zipfAccounts)
	for i := range keys {
		keys[i] = fmt.Sprintf("bench-key-%04d", i)
	}
	srv := segmenttest.NewServer(testKey, segmenttest.WithoutBodies(), segmenttest.WithWriteKeys(keys...))
	defer srv.Close()
	s, err := sink.NewSegment(sink.Options{Endpoint: srv.URL(), Accounts: true, ParkAfter: parkAfter, MaxBackoff: time.Second})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var run sync.WaitGroup
	run.Go(func() { _ = s.Run(ctx) })
	defer func() { cancel(); run.Wait() }()
	dests := make([]sink.Destination, zipfAccounts)
	for i := range dests {
		dests[i] = sink.Destination{Account: fmt.Sprintf("acct-%04d", i), WriteKey: keys[i], Endpoint: srv.URL()}
	}
	cdf := make([]float64, zipfAccounts)
	sum := 0.0
	for k := range cdf {
		sum += 1 / float64(k+1)
		cdf[k] = sum
	}
	rng := rand.New(rand.NewPCG(1, 2))
	js := track("3f1c2b9e-8d4a-4b7e-9c1d-000000000000", 180)
	slots := semaphore.NewWeighted(zipfMaxInFlight)
	bytesCap := semaphore.NewWeighted(zipfMaxInFlightBytes)
	var parked atomic.Int64
	var peakOutage, peakAfter int64
	var goOutage, goAfter int
	b.ResetTimer()
	for range b.N {
		srv.SetOutage(503)
		stopSampling := sampleHeap(&peakOutage)
		stopG := sampleGoroutines(&goOutage)
		end := time.Now().Add(zipfOutage)
		var wg sync.WaitGroup
		send := func() {
			w := int64(zipfOverhead + 3*len(js))
			if err := slots.Acquire(ctx, 1); err != nil {
				b.Fatal(err)
			}
			if err := bytesCap.Acquire(ctx, w); err != nil {
				b.Fatal(err)
			}
			wg.Add(1)
			k := min(sort.SearchFloat64s(cdf, rng.Float64()*sum), zipfAccounts-1)
			if err := s.Enqueue(ctx, sink.Message{ID: "bench", JSON: js, Destination: dests[k], Done: func(r sink.Result) {
				if r.Outcome == sink.Parked {
					parked.Add(1)
				}
				bytesCap.Release(w)
				slots.Release(1)
				wg.Done()
			}}); err != nil {
				b.Fatal(err)
			}
		}
		for time.Now().Before(end) {
			send()
		}
		stopSampling()
		stopG()
		srv.ClearOutage()
		stopSampling = sampleHeap(&peakAfter)
		stopG = sampleGoroutines(&goAfter)
		for range zipfMessages / 4 {
			send()
		}
		wg.Wait()
		stopSampling()
		stopG()
	}
	b.StopTimer()
	b.ReportMetric(float64(peakOutage)/(1<<20), "outage-peak-heap-MB")
	b.ReportMetric(float64(peakAfter)/(1<<20), "after-peak-heap-MB")
	b.ReportMetric(float64(goOutage), "outage-peak-goroutines")
	b.ReportMetric(float64(goAfter), "after-peak-goroutines")
	b.ReportMetric(float64(parked.Load())/float64(b.N), "parked")
}

// sampleGoroutines records the peak number of goroutines into *peak every
// 5 ms until the returned func is called.
func sampleGoroutines(peak *int) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(5 * time.Millisecond)
		defer t.Stop()
		for {
			if n := runtime.NumGoroutine(); n > *peak {
				*peak = n
			}
			select {
			case <-done:
				return
			case <-t.C:
			}
		}
	})
	return func() { close(done); wg.Wait() }
}
