package sink

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/produktly/produktly-segment/sink/segmenttest"
)

func TestLingerDefaults(t *testing.T) {
	for _, tc := range []struct {
		name string
		o    Options
		want time.Duration
	}{
		{"single source: no lingering", Options{WriteKey: "k"}, DefaultFlushInterval},
		{"single source, own interval", Options{WriteKey: "k", FlushInterval: time.Second}, time.Second},
		{"accounts", Options{Accounts: true}, DefaultAccountLinger},
		{"accounts, interval over the default linger", Options{Accounts: true, FlushInterval: 3 * time.Second}, 3 * time.Second},
		{"set", Options{Accounts: true, Linger: 5 * time.Second}, 5 * time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := tc.o.withDefaults()
			if o.Linger != tc.want {
				t.Errorf("Linger = %s, want %s", o.Linger, tc.want)
			}
			if o.LingerBytes != DefaultLingerBytes {
				t.Errorf("LingerBytes = %d, want %d", o.LingerBytes, DefaultLingerBytes)
			}
		})
	}
	for _, tc := range []struct {
		o    Options
		want string
	}{
		{Options{Accounts: true, Linger: 50 * time.Millisecond}, "Linger 50ms is under FlushInterval 100ms"},
		{Options{Accounts: true, Linger: time.Second, FlushInterval: 2 * time.Second}, "Linger 1s is under FlushInterval 2s"},
		{Options{Accounts: true, Linger: -1}, "Linger"},
		{Options{Accounts: true, LingerBytes: -1}, "LingerBytes"},
	} {
		if err := tc.o.Validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Validate(%v) = %v, want an error containing %q", tc.o, err, tc.want)
		}
	}
	if err := (Options{Accounts: true, Linger: DefaultFlushInterval}).Validate(); err != nil {
		t.Errorf("Validate with Linger = FlushInterval: %v, want nil", err)
	}
}

// lingerRig is a sink whose dispatcher the test drives by hand, with the
// times it chooses: accept and poll take the time as an argument, so the
// decisions are the dispatcher's own and no clock or sleep is involved.
// Batches that go are delivered for real, to a test server.
type lingerRig struct {
	t    *testing.T
	s    *Segment
	srv  *segmenttest.Server
	ctx  context.Context
	done sync.WaitGroup
	mu   sync.Mutex
	got  map[string]Outcome
}

func newLingerRig(t *testing.T, tune func(*Options)) *lingerRig {
	t.Helper()
	keys := []string{"wk_a", "wk_b", "wk_c"}
	srv := segmenttest.NewServer(keys[0], segmenttest.WithWriteKeys(keys...))
	t.Cleanup(srv.Close)
	o := Options{Accounts: true, Endpoint: srv.URL(), FlushInterval: 100 * time.Millisecond, Linger: 10 * time.Second}
	if tune != nil {
		tune(&o)
	}
	s, err := NewSegment(o)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	stop := make(chan struct{})
	var posters sync.WaitGroup
	posters.Go(func() { s.posters(2, stop) })
	r := &lingerRig{t: t, s: s, srv: srv, ctx: ctx, got: map[string]Outcome{}}
	t.Cleanup(func() {
		// The test is the dispatcher: it abandons what it still holds.
		cancel()
		s.abandonHeld()
		s.wg.Wait()
		close(stop)
		posters.Wait()
		r.done.Wait()
	})
	return r
}

func (r *lingerRig) dest(name string) Destination {
	return Destination{Account: name, WriteKey: "wk_" + name, Endpoint: r.srv.URL()}
}

// accept hands the dispatcher one message for account at time at.
func (r *lingerRig) accept(account, id string, at time.Time) *dest {
	r.t.Helper()
	r.done.Add(1)
	js := fmt.Appendf(nil, `{"type":"track","event":"E","messageId":%q,"userId":"u"}`, id)
	r.s.accept(r.ctx, Message{ID: id, JSON: js, Destination: r.dest(account), Done: func(res Result) {
		r.mu.Lock()
		r.got[id] = res.Outcome
		r.mu.Unlock()
		r.done.Done()
	}}, at)
	return r.s.dests[r.dest(account)]
}

// delivered waits until the messages named have been delivered.
func (r *lingerRig) delivered(ids ...string) {
	r.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		r.mu.Lock()
		n := 0
		for _, id := range ids {
			if o, ok := r.got[id]; ok && o == Delivered {
				n++
			}
		}
		r.mu.Unlock()
		if n == len(ids) {
			return
		}
		if time.Now().After(deadline) {
			r.t.Fatalf("%v not all delivered within 10s", ids)
		}
		time.Sleep(time.Millisecond)
	}
}

// curBytes is what the dispatcher should count as lingering.
func (r *lingerRig) curBytes() int {
	n := 0
	for _, d := range r.s.dests {
		if d.cur != nil {
			n += d.cur.size
		}
	}
	return n
}

func TestLingerWhileMessagesFlowUntilTheIntakeStalls(t *testing.T) {
	r := newLingerRig(t, nil)
	s := r.s
	t0 := time.Now()
	a := r.accept("a", "a-1", t0)
	b := r.accept("b", "b-1", t0.Add(95*time.Millisecond))

	// FlushInterval old, but messages keep coming (the last 5ms ago): a
	// lingers.
	s.poll(r.ctx, a, t0.Add(100*time.Millisecond))
	s.flushOldest(r.ctx, t0.Add(100*time.Millisecond))
	if a.cur == nil {
		t.Fatal("a's batch went at FlushInterval while messages kept coming; want it to linger")
	}
	// It is due under pressure once the intake has been still for the
	// stall gap after the last message.
	stalled := t0.Add(95*time.Millisecond + s.linger.stall)
	if got := s.pressureAt(); !got.Equal(stalled) {
		t.Errorf("pressureAt = t0+%s, want t0+%s", got.Sub(t0), stalled.Sub(t0))
	}
	s.flushOldest(r.ctx, stalled.Add(-time.Millisecond))
	if a.cur == nil {
		t.Fatal("a's batch went before the intake had been still for the stall gap")
	}
	// Stalled: the batches FlushInterval old go.
	s.flushOldest(r.ctx, stalled)
	if a.cur != nil || b.cur != nil {
		t.Fatal("a batch still lingers after the intake stalled")
	}
	r.delivered("a-1", "b-1")

	// Linger bounds the wait even while messages keep coming.
	c := r.accept("c", "c-1", stalled.Add(time.Second))
	late := c.curFirst.Add(s.o.Linger)
	r.accept("a", "a-2", late.Add(-time.Millisecond))
	s.poll(r.ctx, c, late)
	if c.cur != nil {
		t.Fatal("c's batch still lingers Linger after its first message")
	}
	r.delivered("c-1")
	if a.cur == nil {
		t.Fatal("a's new batch went at once")
	}
	if got, want := s.linger.bytes, r.curBytes(); got != want {
		t.Errorf("lingering bytes counted %d, want %d (the partial batches')", got, want)
	}
	s.flushOldest(r.ctx, late.Add(time.Hour))
	r.delivered("a-2")
	if s.linger.bytes != 0 {
		t.Errorf("lingering bytes counted %d with no partial batch left, want 0", s.linger.bytes)
	}
	if n := r.srv.Requests(); n != 4 {
		t.Errorf("%d requests, want 4", n)
	}
}

func TestLingerBytesSendsOldestFirst(t *testing.T) {
	r := newLingerRig(t, func(o *Options) { o.LingerBytes = 300 })
	s := r.s
	t0 := time.Now()
	a := r.accept("a", "a-1", t0)
	b := r.accept("b", "b-1", t0.Add(60*time.Millisecond))
	if a.cur == nil || b.cur == nil {
		t.Fatal("a batch went before it was FlushInterval old")
	}
	// Over LingerBytes with messages still coming: the oldest batch that
	// is FlushInterval old goes, the younger one stays.
	c := r.accept("c", "c-1", t0.Add(150*time.Millisecond))
	if a.cur != nil {
		t.Error("a's batch lingers with the partial batches over LingerBytes")
	}
	if b.cur == nil || c.cur == nil {
		t.Error("a batch younger than FlushInterval went")
	}
	r.delivered("a-1")
	if got, want := s.linger.bytes, r.curBytes(); got != want {
		t.Errorf("lingering bytes counted %d, want %d", got, want)
	}
	s.flushOldest(r.ctx, t0.Add(time.Hour))
	r.delivered("b-1", "c-1")
}

// TestLingerNeverHoldsTheCallerHostage: with a Linger far longer than the
// test, a caller whose in-flight budget is smaller than what it sends,
// spread over many destinations that each get a few messages, must still
// get every message delivered: the sink sees its intake stall and sends
// the oldest batches. And when the sink's own limit binds (Enqueue blocks)
// nothing deadlocks either.
func TestLingerNeverHoldsTheCallerHostage(t *testing.T) {
	for _, tc := range []struct {
		name     string
		inFlight int // the caller's cap; 0: none, the sink's own limit binds
		tune     func(*Options)
	}{
		{"the caller's in-flight cap binds", 40, nil},
		{"the sink's limit binds", 0, func(o *Options) { o.BatchSize, o.Concurrency = 5, 2 }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			const dests, n = 100, 1000
			keys := make([]string, dests)
			for i := range keys {
				keys[i] = fmt.Sprintf("wk_%03d", i)
			}
			srv := segmenttest.NewServer(keys[0], segmenttest.WithWriteKeys(keys...), segmenttest.WithoutBodies())
			defer srv.Close()
			o := Options{Accounts: true, Endpoint: srv.URL(), FlushInterval: 10 * time.Millisecond, Linger: time.Hour}
			if tc.tune != nil {
				tc.tune(&o)
			}
			s, err := NewSegment(o)
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			var run sync.WaitGroup
			run.Go(func() { _ = s.Run(ctx) })
			defer func() { cancel(); run.Wait() }()

			var slots chan struct{}
			if tc.inFlight > 0 {
				slots = make(chan struct{}, tc.inFlight)
			}
			var done sync.WaitGroup
			var mu sync.Mutex
			bad := 0
			for i := range n {
				if slots != nil {
					select {
					case slots <- struct{}{}:
					case <-time.After(30 * time.Second):
						t.Fatalf("the caller waited 30s for room after %d of %d messages: lingering batches hold its budget", i, n)
					}
				}
				done.Add(1)
				d := Destination{Account: fmt.Sprint(i % dests), WriteKey: keys[i%dests], Endpoint: srv.URL()}
				js := fmt.Appendf(nil, `{"type":"track","event":"E","messageId":"m-%d","userId":"u"}`, i)
				enq, stop := context.WithTimeout(ctx, 30*time.Second)
				err := s.Enqueue(enq, Message{ID: "m", JSON: js, Destination: d, Done: func(r Result) {
					if r.Outcome != Delivered {
						mu.Lock()
						bad++
						mu.Unlock()
					}
					if slots != nil {
						<-slots
					}
					done.Done()
				}})
				stop()
				if err != nil {
					t.Fatalf("Enqueue of message %d: %v", i, err)
				}
			}
			finished := make(chan struct{})
			go func() { done.Wait(); close(finished) }()
			select {
			case <-finished:
			case <-time.After(30 * time.Second):
				t.Fatalf("not every message finished within 30s (Linger is an hour)")
			}
			if bad != 0 {
				t.Errorf("%d messages not delivered", bad)
			}
			if got := srv.Distinct(); got != n {
				t.Errorf("server got %d distinct messages, want %d", got, n)
			}
		})
	}
}

func TestBatchListsSizedByHint(t *testing.T) {
	s := &Segment{o: Options{BatchSize: 500}}
	for _, tc := range []struct{ hint, want int }{
		{0, minBatchBuf},
		{minBatchBuf, minBatchBuf},
		{minBatchBuf + 1, 2 * minBatchBuf},
		{100_000, 128 << 10},
		{MaxBatchBytes, 512 << 10},
	} {
		if got := classFor(tc.hint); minBatchBuf<<got != tc.want {
			t.Errorf("classFor(%d) holds %d bytes, want %d", tc.hint, minBatchBuf<<got, tc.want)
		}
		b := s.newBatch(nil, tc.hint)
		if want := min(500, tc.want/256); cap(b.msgs) != want {
			t.Errorf("newBatch(hint %d): message list of %d, want %d", tc.hint, cap(b.msgs), want)
		}
		if b.buf != nil {
			t.Errorf("newBatch(hint %d) has a body of %d bytes before it is sealed", tc.hint, cap(b.buf))
		}
		s.release(b)
	}
	// A batch with a full list goes back to the class that newBatch takes
	// from for every hint whose lists BatchSize caps: those classes share
	// one pool.
	full := s.listClassOf(500)
	for _, hint := range []int{128 << 10, 300_000, MaxBatchBytes} {
		if got := s.listClass(classFor(hint)); got != full {
			t.Errorf("newBatch(hint %d) takes from class %d, a released full batch goes to %d", hint, got, full)
		}
	}
	if got := s.listClassOf(minBatchBuf/256 - 1); got != -1 {
		t.Errorf("a list under the smallest class is pooled in class %d", got)
	}
	// A body that grew is pooled by what it holds now, one that grew past
	// what a body can need is dropped, and a message list that grew goes
	// to the class it now fills.
	b := s.newBatch(nil, 0)
	b.buf = make([]byte, 0, 300_000)
	for range 100 {
		b.add(Message{JSON: []byte("{}")})
	}
	s.release(b)
	huge := s.newBatch(nil, 0)
	huge.buf = make([]byte, 0, 2*MaxBatchBytes+1)
	s.release(huge)
	for c := range batchClasses {
		for {
			p, ok := s.pool.bodies[c].Get().(*[]byte)
			if !ok {
				break
			}
			if n := cap(*p); n < minBatchBuf<<c || n > 2*MaxBatchBytes {
				t.Errorf("class %d (%d bytes) pooled a body of %d bytes", c, minBatchBuf<<c, n)
			}
		}
		for {
			x, ok := s.pool.batches[c].Get().(*batch)
			if !ok {
				break
			}
			if n := cap(x.msgs); n < s.listCap(c) || x.buf != nil || len(x.msgs) != 0 || s.listClass(c) != c {
				t.Errorf("class %d (lists of %d) pooled a batch with a list of %d (len %d), body %v", c, s.listCap(c), n, len(x.msgs), x.buf != nil)
			}
		}
	}
}

func TestSealWritesTheMessagesInOrder(t *testing.T) {
	// Filled up to largeBody, a batch is sealed into a buffer; filled up
	// to MaxBatchBytes, it has none, and each attempt reads its body from
	// the messages.
	for _, limit := range []int{largeBody, MaxBatchBytes} {
		s := &Segment{o: Options{BatchSize: 2500}}
		b := s.newBatch(nil, 0)
		var want []string
		for i := range 3000 {
			js := fmt.Appendf(nil, `{"type":"track","messageId":"m-%04d","pad":"%s"}`, i, strings.Repeat("x", i%200))
			if !b.fits(Message{JSON: js}, limit) {
				break
			}
			b.add(Message{ID: fmt.Sprint(i), JSON: js})
			want = append(want, fmt.Sprintf("m-%04d", i))
		}
		if b.buf != nil {
			t.Fatal("a partial batch holds a body")
		}
		s.seal(b)
		if large := b.size > largeBody; large != (limit > largeBody) || large != (b.buf == nil) {
			t.Fatalf("batch of %d bytes filled up to %d: sealed into a buffer %v", b.size, limit, b.buf != nil)
		}
		large := b.buf == nil
		body := func() []byte {
			if large != (b.buf == nil) {
				t.Fatalf("batch of %d bytes: sealed into a buffer %v, before %v", b.size, b.buf != nil, !large)
			}
			if large {
				return readIn(t, newMsgBody(b.msgs, b.size, time.Now()), 32<<10)
			}
			stamp(b.buf, time.Now())
			return b.buf
		}
		got := body()
		ids, ok := messageIDsOf(got)
		if !ok || strings.Join(ids, ",") != strings.Join(want, ",") {
			t.Fatalf("body of %d bytes is not the %d messages in order (ok %v, got %d ids)", b.size, len(want), ok, len(ids))
		}
		if len(got) != b.size {
			t.Errorf("body is %d bytes, batch accounted %d", len(got), b.size)
		}
		// After messages are removed, the body is written anew into the
		// one it has, and the size recounted.
		buf := b.buf
		b.msgs = b.msgs[1 : len(b.msgs)-1]
		want = want[1 : len(want)-1]
		s.rebuild(b)
		got = body()
		ids, ok = messageIDsOf(got)
		if !ok || strings.Join(ids, ",") != strings.Join(want, ",") {
			t.Fatalf("rebuilt body is not the %d messages left in order (ok %v, got %d ids)", len(want), ok, len(ids))
		}
		if len(got) != b.size || buf != nil && &b.buf[0] != &buf[0] {
			t.Errorf("rebuilt body is %d bytes (accounted %d), same buffer %v", len(got), b.size, buf == nil || &b.buf[0] == &buf[0])
		}
	}
}

// messageIDsOf returns the messageIds of a batch body, in order.
func messageIDsOf(body []byte) ([]string, bool) {
	var v struct {
		Batch []struct {
			MessageID string `json:"messageId"`
		} `json:"batch"`
	}
	if err := json.Unmarshal(body, &v); err != nil {
		return nil, false
	}
	ids := make([]string, len(v.Batch))
	for i, m := range v.Batch {
		ids[i] = m.MessageID
	}
	return ids, true
}

// TestLingerBytesSendsBiggestFirst: over the byte limit, the batch that
// holds the most bytes for the longest goes first, not the oldest, and
// only until the partial batches are back under the limit, so a quiet
// destination's old message keeps lingering for company.
func TestLingerBytesSendsBiggestFirst(t *testing.T) {
	r := newLingerRig(t, func(o *Options) { o.LingerBytes = 1000 })
	s := r.s
	t0 := time.Now()
	quiet := r.accept("b", "b-1", t0)
	var busy *dest
	ids := make([]string, 20)
	for i := range ids {
		ids[i] = fmt.Sprintf("a-%d", i)
		busy = r.accept("a", ids[i], t0.Add(50*time.Millisecond))
	}
	if busy.cur == nil || quiet.cur == nil {
		t.Fatal("a batch went before it was FlushInterval old")
	}
	// Over the limit, both FlushInterval old: the busy one goes, and then
	// the partial batches are under the limit.
	r.accept("c", "c-1", t0.Add(160*time.Millisecond))
	if busy.cur != nil {
		t.Error("the busy destination's batch lingers over the byte limit")
	}
	if quiet.cur == nil {
		t.Error("the quiet destination's single message went although sending the busy batch was enough")
	}
	r.delivered(ids...)
	if got, want := s.linger.bytes, r.curBytes(); got != want {
		t.Errorf("lingering bytes counted %d, want %d", got, want)
	}
	s.flushOldest(r.ctx, t0.Add(time.Hour))
	r.delivered("b-1", "c-1")
}

// TestLingerLearnsTheCallersBudget: a caller whose caps are full of what
// the sink holds stalls once; afterwards the sink sends its biggest
// batches when its partial batches approach what they held at that stall,
// before the caller has to wait again, even though that is far under
// LingerBytes. A stall with no message taken since the last one (the
// caller merely has nothing) does not lower the limit again, and the
// limit comes back towards LingerBytes with time.
func TestLingerLearnsTheCallersBudget(t *testing.T) {
	r := newLingerRig(t, func(o *Options) { o.LingerBytes = 6000 })
	s := r.s
	t0 := time.Now()
	given := map[*dest]int{} // messages accepted per destination since the stall
	fill := func(prefix string, at time.Time, n int) []string {
		ids := make([]string, n)
		for i := range ids {
			ids[i] = fmt.Sprintf("%s-%03d", prefix, i)
			given[r.accept([]string{"a", "b", "c"}[i%3], ids[i], at)]++
		}
		return ids
	}
	first := fill("x", t0, 60)
	held := s.linger.bytes
	if held < s.o.LingerBytes/2 || held > s.o.LingerBytes {
		t.Fatalf("the rig holds %d bytes, want %d..%d to learn from", held, s.o.LingerBytes/2, s.o.LingerBytes)
	}
	// The caller stalls: everything FlushInterval old goes, as before.
	stalled := t0.Add(s.linger.stall + s.o.FlushInterval)
	s.relieve(r.ctx, stalled)
	r.delivered(first...)
	if s.linger.bytes != 0 {
		t.Fatalf("%d bytes still linger after the stall", s.linger.bytes)
	}
	// The caller comes back and fills the sink up to what it held at the
	// stall: the biggest batch goes before the caller stalls again.
	t1 := stalled.Add(time.Millisecond)
	s.relieve(r.ctx, t1)
	clear(given)
	again := append(fill("y", t1, 40), fill("z", t1.Add(60*time.Millisecond), 10)...)
	again = append(again, fill("w", t1.Add(120*time.Millisecond), 10)...)
	if got := s.linger.bytes; got >= held {
		t.Errorf("the partial batches hold %d bytes, as much as at the stall (%d): the caller would wait again", got, held)
	}
	sent := 0
	for d, n := range given {
		if d.cur == nil || len(d.cur.msgs) < n {
			sent++
		}
	}
	if sent == 0 {
		t.Error("no batch went although the partial batches reached what the caller stalled at")
	}
	limit := s.linger.limit
	// A second stall with nothing taken since: the limit stays.
	s.flushOldest(r.ctx, t1.Add(time.Hour)) // empties the batches, no learning
	s.relieve(r.ctx, t1.Add(time.Hour))
	if s.linger.limit < limit {
		t.Errorf("a stall with no message taken since the last lowered the limit from %d to %d", limit, s.linger.limit)
	}
	r.delivered(again...)
	// With time it comes back to LingerBytes.
	s.relieve(r.ctx, t1.Add(2*time.Hour))
	if s.linger.limit != s.o.LingerBytes {
		t.Errorf("limit %d an hour after the stall, want LingerBytes %d", s.linger.limit, s.o.LingerBytes)
	}
}
