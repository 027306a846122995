package consumer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/produktly/produktly-segment/sink"
)

// The fakes drive the consumer's generation and partition logic without a
// broker: a topic held in memory, a group whose generations the test starts
// and ends, and a sink whose outcomes the test decides.

// fakeTopic is a topic in memory: records per partition, offset = index.
type fakeTopic struct {
	name string
	mu   sync.Mutex
	logs map[int][]kafka.Message
	grew chan struct{} // closed and replaced when a record is appended
}

func newFakeTopic(name string, partitions int) *fakeTopic {
	t := &fakeTopic{name: name, logs: map[int][]kafka.Message{}, grew: make(chan struct{})}
	for p := range partitions {
		t.logs[p] = nil
	}
	return t
}

// produce appends n good records to partition p.
func (t *fakeTopic) produce(p, n int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for range n {
		o := int64(len(t.logs[p]))
		v, _ := json.Marshal(map[string]any{
			"type": "tour_available", "id": fmt.Sprintf("int-%d-%d", p, o), "userId": "u1",
			"timestamp": "2026-11-29T11:00:00Z", "tourId": "tour-1",
		})
		t.logs[p] = append(t.logs[p], kafka.Message{Topic: t.name, Partition: p, Offset: o, Value: v, Time: time.Unix(1700000000, 0)})
	}
	close(t.grew)
	t.grew = make(chan struct{})
}

func (t *fakeTopic) end(p int) int64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	return int64(len(t.logs[p]))
}

// fakeReader reads one partition of a fakeTopic.
type fakeReader struct {
	topic *fakeTopic
	part  int
	mu    sync.Mutex
	pos   int64
	// setOffsetErr, when set, answers SetOffset until it returns nil.
	setOffsetErr func() error
	// batch is the most records one FetchBatch returns (0:
	// defaultFakeBatch).
	batch int
	buf   []kafka.Message
	// bytes and headers hold the keys, values and headers of the records
	// last returned. The next FetchBatch writes over them before it
	// reuses them, as batchReader reads its next answer into the same
	// buffer: a consumer that kept them past that call reads garbage, or
	// races under -race.
	bytes   []byte
	headers []kafka.Header
}

// defaultFakeBatch makes the fake reader return several records a fetch,
// as Kafka does, so that every test goes through chunks of records.
const defaultFakeBatch = 5

func (r *fakeReader) SetOffset(o int64) error {
	if r.setOffsetErr != nil {
		if err := r.setOffsetErr(); err != nil {
			return err
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if o < 0 {
		o = 0 // FirstOffset
	}
	r.pos = o
	return nil
}

func (r *fakeReader) FetchBatch(ctx context.Context) ([]kafka.Message, error) {
	max := r.batch
	if max == 0 {
		max = defaultFakeBatch
	}
	for {
		r.topic.mu.Lock()
		log, grew := r.topic.logs[r.part], r.topic.grew
		r.topic.mu.Unlock()
		r.mu.Lock()
		pos := r.pos
		if pos < int64(len(log)) {
			n := min(int64(max), int64(len(log))-pos)
			r.pos += n
			r.mu.Unlock()
			// The buffers are reused, as the real reader's are: the
			// consumer must not keep the slice or the records' bytes
			// past the next call.
			r.buf = append(r.buf[:0], log[pos:pos+n]...)
			for i := range r.buf {
				r.buf[i].HighWaterMark = int64(len(log))
			}
			r.reuse()
			return r.buf, nil
		}
		r.mu.Unlock()
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-grew:
		}
	}
}

// reuse writes over the bytes and headers the last FetchBatch returned,
// then moves those of r.buf's records there (the topic's log keeps its
// own).
func (r *fakeReader) reuse() {
	for i := range r.bytes {
		r.bytes[i] = '#'
	}
	for i := range r.headers {
		r.headers[i] = kafka.Header{Key: "#", Value: []byte("#")}
	}
	size, nh := payloadSize(r.buf)
	if cap(r.bytes) < size {
		r.bytes = make([]byte, 0, 2*size)
	}
	if cap(r.headers) < nh {
		r.headers = make([]kafka.Header, 0, 2*nh)
	}
	r.bytes, r.headers = moveInto(r.buf, r.bytes[:0], r.headers[:0])
}

func (r *fakeReader) Close() error { return nil }

// fakeCoordinator is the group coordinator: committed offsets and the
// generations handed to the member under test.
type fakeCoordinator struct {
	topic string
	mu    sync.Mutex
	// committed offsets per partition and, per generation, the commits it
	// made, in order.
	committed map[int]int64
	commits   map[int32][]map[int]int64
	gens      chan *fakeGeneration
	changed   chan struct{} // closed and replaced on every commit
	closed    chan struct{}
	closeOnce sync.Once
	refuse    map[int32]bool // generations whose commits are refused
	// other holds the committed offsets of topics other than topic (the
	// retry topic in accounts mode), per partition.
	other map[string]map[int]int64
	// meta holds the metadata committed with each offset, per topic and
	// partition.
	meta map[string]map[int]string
}

func newFakeCoordinator(topic string) *fakeCoordinator {
	return &fakeCoordinator{
		topic: topic, committed: map[int]int64{}, commits: map[int32][]map[int]int64{},
		gens: make(chan *fakeGeneration), changed: make(chan struct{}), closed: make(chan struct{}),
		refuse: map[int32]bool{}, other: map[string]map[int]int64{}, meta: map[string]map[int]string{},
	}
}

func (fc *fakeCoordinator) Next(ctx context.Context) (generation, error) {
	select {
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-fc.closed:
		return nil, kafka.ErrGroupClosed
	case g := <-fc.gens:
		return g, nil
	}
}

func (fc *fakeCoordinator) Close() error {
	fc.closeOnce.Do(func() { close(fc.closed) })
	return nil
}

// start hands the member generation id with partitions, at the offsets
// committed so far, and returns it once the member took it.
func (fc *fakeCoordinator) start(t *testing.T, id int32, partitions ...int) *fakeGeneration {
	t.Helper()
	return fc.startTopics(t, id, map[string][]int{fc.topic: partitions})
}

// startTopics is start with partitions of several topics.
func (fc *fakeCoordinator) startTopics(t *testing.T, id int32, partitions map[string][]int) *fakeGeneration {
	t.Helper()
	fc.mu.Lock()
	var as []kafka.PartitionAssignment
	extra := map[string][]kafka.PartitionAssignment{}
	for topic, ps := range partitions {
		for _, p := range ps {
			committed := fc.committed
			if topic != fc.topic {
				committed = fc.other[topic]
			}
			o, ok := committed[p]
			if !ok {
				o = kafka.FirstOffset
			}
			if topic == fc.topic {
				as = append(as, kafka.PartitionAssignment{ID: p, Offset: o})
			} else {
				extra[topic] = append(extra[topic], kafka.PartitionAssignment{ID: p, Offset: o})
			}
		}
	}
	fc.mu.Unlock()
	g := &fakeGeneration{fc: fc, id: id, assigned: as, extra: extra, done: make(chan struct{}), ended: make(chan struct{})}
	select {
	case fc.gens <- g:
	case <-time.After(10 * time.Second):
		t.Fatalf("the member did not take generation %d", id)
	}
	return g
}

// waitCommitted waits until partition p's committed offset is at least o.
func (fc *fakeCoordinator) waitCommitted(t *testing.T, p int, o int64, timeout time.Duration) {
	t.Helper()
	fc.waitCommittedIn(t, fc.topic, p, o, timeout)
}

// waitCommittedIn is waitCommitted for a partition of topic.
func (fc *fakeCoordinator) waitCommittedIn(t *testing.T, topic string, p int, o int64, timeout time.Duration) {
	t.Helper()
	deadline := time.After(timeout)
	for {
		fc.mu.Lock()
		committed := fc.committed
		if topic != fc.topic {
			committed = fc.other[topic]
		}
		got, ok := committed[p]
		changed := fc.changed
		fc.mu.Unlock()
		if ok && got >= o {
			return
		}
		select {
		case <-changed:
		case <-deadline:
			t.Fatalf("%s/%d: committed %d (set %v), want at least %d within %s", topic, p, got, ok, o, timeout)
		}
	}
}

func (fc *fakeCoordinator) commitsOf(gen int32) []map[int]int64 {
	fc.mu.Lock()
	defer fc.mu.Unlock()
	return fc.commits[gen]
}

var errIllegalGeneration = errors.New("fake: illegal generation")

// fakeGeneration is one generation of the fake group.
type fakeGeneration struct {
	fc       *fakeCoordinator
	id       int32
	assigned []kafka.PartitionAssignment
	extra    map[string][]kafka.PartitionAssignment // of other topics
	once     sync.Once
	done     chan struct{} // the generation is over
	wg       sync.WaitGroup
	ended    chan struct{} // every function started on it returned
	endOnce  sync.Once
}

func (g *fakeGeneration) ID() int32        { return g.id }
func (g *fakeGeneration) MemberID() string { return "member-under-test" }
func (g *fakeGeneration) Assignments(topic string) []kafka.PartitionAssignment {
	if topic != g.fc.topic {
		return g.extra[topic]
	}
	return g.assigned
}

// Start runs fn like kafka-go: the generation ends when fn returns.
func (g *fakeGeneration) Start(fn func(ctx context.Context)) {
	g.wg.Add(1)
	go func() {
		defer g.wg.Done()
		fn(genContext{g.done})
		g.end()
	}()
	go func() {
		g.wg.Wait()
		g.endOnce.Do(func() { close(g.ended) })
	}()
}

// end ends the generation (a rebalance).
func (g *fakeGeneration) end() { g.once.Do(func() { close(g.done) }) }

func (g *fakeGeneration) CommitOffsets(_ context.Context, offsets map[string][]kafka.OffsetCommit) error {
	fc := g.fc
	fc.mu.Lock()
	defer fc.mu.Unlock()
	if fc.refuse[g.id] {
		return errIllegalGeneration
	}
	c := map[int]int64{}
	for _, oc := range offsets[fc.topic] {
		fc.committed[oc.Partition] = oc.Offset
		c[oc.Partition] = oc.Offset
	}
	for topic, os := range offsets {
		if fc.meta[topic] == nil {
			fc.meta[topic] = map[int]string{}
		}
		for _, oc := range os {
			fc.meta[topic][oc.Partition] = oc.Metadata
		}
		if topic == fc.topic {
			continue
		}
		if fc.other[topic] == nil {
			fc.other[topic] = map[int]int64{}
		}
		for _, oc := range os {
			fc.other[topic][oc.Partition] = oc.Offset
		}
	}
	fc.commits[g.id] = append(fc.commits[g.id], c)
	close(fc.changed)
	fc.changed = make(chan struct{})
	return nil
}

func (g *fakeGeneration) CommitMetadata(_ context.Context, topic string, partitions []int) (map[int]string, error) {
	fc := g.fc
	fc.mu.Lock()
	defer fc.mu.Unlock()
	out := map[int]string{}
	for _, p := range partitions {
		out[p] = fc.meta[topic][p]
	}
	return out, nil
}

// metadata returns the metadata last committed for partition p of the
// coordinator's topic.
func (fc *fakeCoordinator) metadata(p int) string {
	fc.mu.Lock()
	defer fc.mu.Unlock()
	return fc.meta[fc.topic][p]
}

// genContext is a context that ends with its generation.
type genContext struct{ done chan struct{} }

func (c genContext) Deadline() (time.Time, bool) { return time.Time{}, false }
func (c genContext) Done() <-chan struct{}       { return c.done }
func (c genContext) Err() error {
	select {
	case <-c.done:
		return kafka.ErrGenerationEnded
	default:
		return nil
	}
}
func (c genContext) Value(any) any { return nil }

// fakeSink records every message and answers as the test says: at once
// (auto) with Delivered, or, for held messages, when the test completes
// them.
type fakeSink struct {
	mu       sync.Mutex
	got      []sink.Message
	byID     map[string]int       // enqueues per message id
	at       map[string]time.Time // when each message id was last enqueued
	held     map[string]sink.Message
	hold     func(sink.Message) bool // hold this message instead of delivering it
	changed  chan struct{}
	wg       sync.WaitGroup
	canceled map[string]bool
}

func newFakeSink() *fakeSink {
	return &fakeSink{byID: map[string]int{}, at: map[string]time.Time{}, held: map[string]sink.Message{}, changed: make(chan struct{}), canceled: map[string]bool{}}
}

func (s *fakeSink) EnqueueBatch(ctx context.Context, msgs []sink.Message) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	var auto []sink.Message
	for _, m := range msgs {
		if !s.enqueue(m) {
			auto = append(auto, m)
		}
	}
	if len(auto) > 0 {
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			reportAll(auto, sink.Result{Outcome: sink.Delivered})
		}()
	}
	return nil
}

// report gives m its outcome, as the real sink does: through its Acker or
// its Done.
func report(m sink.Message, r sink.Result) {
	if m.Acker != nil {
		m.Acker.Ack(m.Seq, r)
		return
	}
	m.Done(r)
}

// reportAll gives msgs the outcome r as the real sink does for a batch:
// each run of messages naming one sink.BatchAcker in one AckAll.
func reportAll(msgs []sink.Message, r sink.Result) {
	for i := 0; i < len(msgs); {
		ba, ok := msgs[i].Acker.(sink.BatchAcker)
		if !ok {
			report(msgs[i], r)
			i++
			continue
		}
		var seqs []int
		for a := msgs[i].Acker; i < len(msgs) && msgs[i].Acker == a; i++ {
			seqs = append(seqs, msgs[i].Seq)
		}
		ba.AckAll(seqs, r)
	}
}

// enqueue records m and reports whether it is held; one that is not is
// the caller's to deliver.
func (s *fakeSink) enqueue(m sink.Message) bool {
	s.mu.Lock()
	s.got = append(s.got, m)
	s.byID[m.ID]++
	s.at[m.ID] = time.Now()
	hold := s.hold != nil && s.hold(m)
	if hold {
		s.held[m.ID] = m
		// A held message is abandoned when its owner cancels it, as the
		// real sink does.
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			<-m.Cancel
			s.mu.Lock()
			_, still := s.held[m.ID]
			if still {
				delete(s.held, m.ID)
				s.canceled[m.ID] = true
			}
			s.notify()
			s.mu.Unlock()
			if still {
				report(m, sink.Result{Outcome: sink.Abandoned, Err: sink.ErrCanceled})
			}
		}()
	}
	s.notify()
	s.mu.Unlock()
	return hold
}

func (s *fakeSink) notify() {
	close(s.changed)
	s.changed = make(chan struct{})
}

// complete finishes a held message with r; false if it is not held.
func (s *fakeSink) complete(id string, r sink.Result) bool {
	s.mu.Lock()
	m, ok := s.held[id]
	delete(s.held, id)
	s.mu.Unlock()
	if ok {
		report(m, r)
	}
	return ok
}

// waitFor waits until cond holds for the sink's state. It checks on every
// change of the sink and every 10 ms, for conditions that also read the
// consumer's state.
func (s *fakeSink) waitFor(t *testing.T, what string, timeout time.Duration, cond func(s *fakeSink) bool) {
	t.Helper()
	deadline := time.After(timeout)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		s.mu.Lock()
		ok := cond(s)
		changed := s.changed
		s.mu.Unlock()
		if ok {
			return
		}
		select {
		case <-changed:
		case <-tick.C:
		case <-deadline:
			t.Fatalf("sink: %s not reached within %s", what, timeout)
		}
	}
}

// testConsumer builds a consumer wired to the fakes; the dead-letter
// writer's queue is read by the test (dlq) instead of a Kafka writer.
type testConsumer struct {
	*Consumer
	topic *fakeTopic
	fc    *fakeCoordinator
	sink  *fakeSink
	// Accounts mode: the retry topic the group also reads, and the fake
	// writer that parks records to it.
	retryTopic *fakeTopic
	parker     *fakeParker
}

func newTestConsumer(t testing.TB, partitions int, tune func(*Options)) *testConsumer {
	t.Helper()
	topic := newFakeTopic("src", partitions)
	retry := newFakeTopic("src.retry", 1)
	s := newFakeSink()
	o := Options{
		Brokers: []string{"fake:9092"}, Topic: "src", Sink: s,
		CommitInterval: 20 * time.Millisecond, RevokeTimeout: 2 * time.Second, ShutdownTimeout: 5 * time.Second,
	}
	if tune != nil {
		tune(&o)
	}
	c, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	fc := newFakeCoordinator("src")
	c.seams = seams{
		waitTopics: func(context.Context) error { return nil },
		newGroup:   func(context.Context) (group, error) { return fc, nil },
		newReader: func(name string, id int) reader {
			if name == retry.name {
				return &fakeReader{topic: retry, part: id}
			}
			return &fakeReader{topic: topic, part: id}
		},
		runDeadLetters: func(ctx context.Context) error {
			<-ctx.Done()
			return nil
		},
	}
	t.Cleanup(s.wg.Wait)
	tc := &testConsumer{Consumer: c, topic: topic, retryTopic: retry, fc: fc, sink: s}
	if c.accounts() {
		// The retry topic's writer is a fake the test acknowledges.
		tc.parker = newFakeParker()
		c.retry = tc.parker
		c.seams.runRetries = nil
	}
	return tc
}

// run starts Run and returns a function that stops it and waits.
func (tc *testConsumer) run(t *testing.T) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- tc.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("Run = %v", err)
				}
			case <-time.After(30 * time.Second):
				t.Fatal("Run did not return within 30s of cancel")
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

// takeOne takes m as a chunk of its own, as fetch and handle do (slots,
// tracker, bytes), and returns its claim.
func takeOne(t *testing.T, p *partition, m kafka.Message) held {
	t.Helper()
	ctx := context.Background()
	if _, err := p.acquire(ctx, 1); err != nil {
		t.Fatal(err)
	}
	c := p.newChunk([]kafka.Message{m})
	p.tr.add(m.Offset)
	w := p.weight(m, nil)
	if err := p.c.bytes.Acquire(ctx, w); err != nil {
		t.Fatal(err)
	}
	c.overhead = min(w, messageOverhead)
	c.w[0] = w - c.overhead
	return held{c: c, w: c.w[0]}
}

// refusingSink passes the first EnqueueBatch to its fakeSink, then blocks
// the next ones until their ctx ends (and refuses them, as the real sink
// does with a full queue), until pass is called.
type refusingSink struct {
	*fakeSink
	mu      sync.Mutex
	calls   int
	open    bool
	blocked chan struct{} // closed when a call first blocks
	once    sync.Once
}

func newRefusingSink(s *fakeSink) *refusingSink {
	return &refusingSink{fakeSink: s, blocked: make(chan struct{})}
}

func (r *refusingSink) pass() {
	r.mu.Lock()
	r.open = true
	r.mu.Unlock()
}

func (r *refusingSink) EnqueueBatch(ctx context.Context, msgs []sink.Message) error {
	r.mu.Lock()
	r.calls++
	through := r.open || r.calls == 1
	r.mu.Unlock()
	if through {
		return r.fakeSink.EnqueueBatch(ctx, msgs)
	}
	r.once.Do(func() { close(r.blocked) })
	<-ctx.Done()
	return ctx.Err()
}
