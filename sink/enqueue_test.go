package sink_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/produktly/produktly-segment/sink"
)

// seqAcker is one Acker for a whole batch; it fails the test on a second
// outcome for one seq.
type seqAcker struct {
	t    *testing.T
	mu   sync.Mutex
	got  map[int]sink.Result
	cond chan struct{}
}

func newSeqAcker(t *testing.T) *seqAcker {
	return &seqAcker{t: t, got: map[int]sink.Result{}, cond: make(chan struct{})}
}

func (a *seqAcker) Ack(seq int, r sink.Result) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if prev, dup := a.got[seq]; dup {
		a.t.Errorf("Ack called twice for seq %d: %v then %v", seq, prev, r)
	}
	a.got[seq] = r
	close(a.cond)
	a.cond = make(chan struct{})
}

func (a *seqAcker) wait(n int, timeout time.Duration) map[int]sink.Result {
	a.t.Helper()
	deadline := time.After(timeout)
	for {
		a.mu.Lock()
		if len(a.got) >= n {
			out := make(map[int]sink.Result, len(a.got))
			for k, v := range a.got {
				out[k] = v
			}
			a.mu.Unlock()
			return out
		}
		c, have := a.cond, len(a.got)
		a.mu.Unlock()
		select {
		case <-c:
		case <-deadline:
			a.t.Fatalf("%d of %d outcomes after %s", have, n, timeout)
		}
	}
}

func ackedBatch(a sink.Acker, prefix string, n int) []sink.Message {
	msgs := make([]sink.Message, n)
	for i := range msgs {
		id := fmt.Sprintf("%s-%d", prefix, i)
		msgs[i] = sink.Message{ID: id, JSON: track(id, 10), Acker: a, Seq: i}
	}
	return msgs
}

// One Acker for a batch gets every message's outcome once, under its Seq.
func TestEnqueueBatchAcker(t *testing.T) {
	srv := newServer(t)
	h := start(t, srv, srv.URL(), nil)
	a := newSeqAcker(t)
	const n = 250
	if err := h.sink.EnqueueBatch(context.Background(), ackedBatch(a, "b", n)); err != nil {
		t.Fatalf("EnqueueBatch: %v", err)
	}
	got := a.wait(n, 10*time.Second)
	for seq := range n {
		if r, ok := got[seq]; !ok || r.Outcome != sink.Delivered {
			t.Errorf("seq %d: got %v (reported %v), want delivered", seq, r, ok)
		}
	}
	if d := srv.Distinct(); d != n {
		t.Errorf("server saw %d distinct messages, want %d", d, n)
	}
}

// A batch with one invalid message is refused whole: none of it is sent
// and no outcome is reported.
func TestEnqueueBatchAllOrNothing(t *testing.T) {
	srv := newServer(t)
	h := start(t, srv, srv.URL(), nil)
	a := newSeqAcker(t)
	msgs := ackedBatch(a, "bad", 3)
	msgs[2].Acker = nil // neither Done nor Acker
	if err := h.sink.EnqueueBatch(context.Background(), msgs); err == nil {
		t.Fatal("EnqueueBatch took a message with neither Done nor Acker")
	}
	both := ackedBatch(a, "both", 2)
	both[0].Done = func(sink.Result) {}
	if err := h.sink.EnqueueBatch(context.Background(), both); err == nil {
		t.Fatal("EnqueueBatch took a message with both Done and Acker")
	}
	// A later message is sent in order after anything taken before it, so
	// once it is delivered the refused batches would have been too.
	sentinel := newSeqAcker(t)
	if err := h.sink.EnqueueBatch(context.Background(), ackedBatch(sentinel, "after", 1)); err != nil {
		t.Fatal(err)
	}
	sentinel.wait(1, 10*time.Second)
	if c := srv.Count(); c != 1 {
		t.Errorf("server received %d messages, want only the one enqueued after the refused batches", c)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.got) != 0 {
		t.Errorf("refused batches got outcomes %v, want none", a.got)
	}
}

// A batch waits for room for the whole of it; given up (ctx), none of it is
// taken. A batch larger than the queue passes once the queue is empty.
func TestEnqueueBatchRoomForWhole(t *testing.T) {
	srv := newServer(t)
	h := startIdle(t, srv, func(o *sink.Options) { o.BatchSize, o.Concurrency = 10, 1 }) // queue of 10
	first, second, big := newSeqAcker(t), newSeqAcker(t), newSeqAcker(t)
	if err := h.sink.EnqueueBatch(context.Background(), ackedBatch(first, "first", 8)); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	// The sink is not running, so the queue cannot make room for 5 more.
	if err := h.sink.EnqueueBatch(ctx, ackedBatch(second, "second", 5)); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("EnqueueBatch into a full queue = %v, want context.DeadlineExceeded", err)
	}
	h.run()
	first.wait(8, 10*time.Second)
	if err := h.sink.EnqueueBatch(context.Background(), ackedBatch(big, "big", 25)); err != nil {
		t.Fatalf("EnqueueBatch of a batch larger than the queue: %v", err)
	}
	for seq, r := range big.wait(25, 10*time.Second) {
		if r.Outcome != sink.Delivered {
			t.Errorf("big seq %d: %v, want delivered", seq, r)
		}
	}
	if c := srv.Count(); c != 8+25 {
		t.Errorf("server received %d messages, want %d (the refused batch of 5 never taken)", c, 8+25)
	}
	second.mu.Lock()
	defer second.mu.Unlock()
	if len(second.got) != 0 {
		t.Errorf("the refused batch got outcomes %v, want none", second.got)
	}
	h.stop()
	if err := h.sink.EnqueueBatch(context.Background(), ackedBatch(second, "late", 1)); !errors.Is(err, sink.ErrClosed) {
		t.Errorf("EnqueueBatch after Run returned = %v, want ErrClosed", err)
	}
}

// idleHarness is a sink whose Run starts when the test says.
type idleHarness struct {
	sink *sink.Segment
	run  func()
	stop func()
}

func startIdle(t *testing.T, srv interface{ URL() string }, tune func(*sink.Options)) *idleHarness {
	t.Helper()
	o := sink.Options{Endpoint: srv.URL(), WriteKey: testKey, FlushInterval: 10 * time.Millisecond, Timeout: 2 * time.Second}
	if tune != nil {
		tune(&o)
	}
	s, err := sink.NewSegment(o)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	var runOnce, stopOnce sync.Once
	h := &idleHarness{sink: s}
	h.run = func() { runOnce.Do(func() { go func() { done <- s.Run(ctx) }() }) }
	h.stop = func() {
		stopOnce.Do(func() {
			h.run()
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Run = %v", err)
			}
		})
	}
	t.Cleanup(h.stop)
	return h
}

// batchAcker is a seqAcker that also takes outcomes in runs (AckAll), and
// keeps each run.
type batchAcker struct {
	*seqAcker
	runs [][]int
}

func (a *batchAcker) AckAll(seqs []int, r sink.Result) {
	a.mu.Lock()
	a.runs = append(a.runs, append([]int(nil), seqs...))
	a.mu.Unlock()
	for _, s := range seqs {
		a.Ack(s, r)
	}
}

// A delivered batch reports each run of messages that name one BatchAcker
// in one AckAll; other Ackers and Done get one call per message; every
// message is finished once.
func TestDeliveredBatchAcksRuns(t *testing.T) {
	srv := newServer(t)
	const batch = 20 // one full batch: it goes at once, in one request
	h := start(t, srv, srv.URL(), func(o *sink.Options) { o.BatchSize, o.FlushInterval = batch, time.Hour })
	ba := &batchAcker{seqAcker: newSeqAcker(t)}
	plain := newSeqAcker(t)
	done := make(chan sink.Result, 2)
	var msgs []sink.Message
	add := func(a sink.Acker, seq int) {
		id := fmt.Sprintf("m-%d", len(msgs))
		m := sink.Message{ID: id, JSON: track(id, 10), Acker: a, Seq: seq}
		if a == nil {
			m.Done = func(r sink.Result) { done <- r }
		}
		msgs = append(msgs, m)
	}
	for i := range 3 {
		add(ba, i)
	}
	add(plain, 0)
	add(plain, 1)
	for i := 3; i < 6; i++ {
		add(ba, i)
	}
	add(nil, 0)
	for len(msgs) < batch {
		add(ba, len(msgs))
	}
	if err := h.sink.EnqueueBatch(context.Background(), msgs); err != nil {
		t.Fatal(err)
	}
	n := len(msgs) - 3
	got := ba.wait(n, 10*time.Second)
	plain.wait(2, 10*time.Second)
	select {
	case r := <-done:
		if r.Outcome != sink.Delivered {
			t.Errorf("Done got %v, want delivered", r)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Done never called")
	}
	for seq, r := range got {
		if r.Outcome != sink.Delivered {
			t.Errorf("seq %d: %v, want delivered", seq, r)
		}
	}
	ba.mu.Lock()
	defer ba.mu.Unlock()
	want := [][]int{{0, 1, 2}, {3, 4, 5}}
	var tail []int
	for i := 9; i < len(msgs); i++ { // after the second run (5-7) and the Done (8)
		tail = append(tail, msgs[i].Seq)
	}
	want = append(want, tail)
	if fmt.Sprint(ba.runs) != fmt.Sprint(want) {
		t.Errorf("AckAll runs = %v, want %v", ba.runs, want)
	}
}
