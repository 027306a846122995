package sink

import (
	"context"
	"time"
)

// Lingering (Options.Linger). In accounts mode most of a thousand
// destinations get a few messages per FlushInterval, so a batch that goes
// FlushInterval after its first message carries a handful of them, and the
// requests, not the messages, cost the CPU (docs/performance.md). So a
// partial batch may wait up to Linger while messages keep coming. What it
// must not do is hold the caller's in-flight budget hostage: under a
// backlog the consumer stops handing messages over when its caps are full
// of messages the sink holds, and then only sending them makes room. So
// the dispatcher is under pressure when
//
//   - its partial batches hold more than LingerBytes of body, which
//     leaves the rest of the caller's budget for the messages on their
//     way, so that under a backlog the caller need not stall at all;
//   - no message has been taken for stallGap: the caller is blocked (its
//     caps are smaller than LingerBytes suggests) or has nothing more; or
//   - the sink holds maxHeld messages and takes no more itself.
//
// Under pressure a partial batch is due FlushInterval after its first
// message, as without lingering, and the batches that are past it go
// oldest first. So a batch never goes earlier than without lingering
// (FlushInterval), never later than Linger, and a stalled caller waits at
// most stallGap (FlushInterval) for the sink to make room, whatever the
// number of destinations.
//
// The dispatcher keeps its partial batches in the order of their first
// message (young): with one Linger for all, that is also the order of
// their deadlines, so the oldest is at the front, and nothing needs
// sorting. Entries are not removed when their batch goes (full, due, or
// parked); an entry is current while its destination's batch is the one
// it was made for (same first message time), and others are dropped when
// they reach the front. A batch that flushOldest took out of line while
// its destination could not send goes back in line at the end if it is
// not due once it can (keepYoung): it is then older than some behind it,
// and at most FlushInterval late for that.

// stallGap is how long the dispatcher's intake must pause to count as a
// stall: FlushInterval. The gaps between the messages of a busy caller
// are microseconds, but on a busy machine its goroutines may wait tens of
// milliseconds for a CPU, and a stall seen where there is none sends
// small batches. A caller that really is blocked waits FlushInterval per
// stall, which against the records its caps hold is little: LingerBytes,
// not this, is what keeps it flowing under a backlog.
func stallGap(flush time.Duration) time.Duration { return flush }

// lingerState is the dispatcher's: its partial batches by age, and when it
// last took a message.
type lingerState struct {
	young  youngBatches
	bytes  int           // body bytes of the partial batches (cur)
	lastIn time.Time     // when accept last ran
	stall  time.Duration // stallGap(FlushInterval)
}

// youngBatch is a partial batch in the dispatcher's age order.
type youngBatch struct {
	d     *dest
	first time.Time // the d.curFirst of the batch it was made for
}

// youngBatches is a FIFO of partial batches, oldest first.
type youngBatches struct {
	q    []youngBatch
	head int
}

func (y *youngBatches) push(d *dest, first time.Time) {
	if y.head > 64 && y.head > len(y.q)/2 {
		n := copy(y.q, y.q[y.head:])
		clear(y.q[n:])
		y.q, y.head = y.q[:n], 0
	}
	y.q = append(y.q, youngBatch{d: d, first: first})
	d.youngFirst = first
}

// front returns the oldest entry whose batch is still partial, dropping the
// stale ones before it.
func (y *youngBatches) front() (youngBatch, bool) {
	for y.head < len(y.q) {
		e := y.q[y.head]
		if e.d.cur != nil && e.d.curFirst.Equal(e.first) {
			return e, true
		}
		y.pop()
	}
	return youngBatch{}, false
}

func (y *youngBatches) pop() {
	if e := y.q[y.head]; e.d.youngFirst.Equal(e.first) {
		e.d.youngFirst = time.Time{}
	}
	y.q[y.head] = youngBatch{}
	y.head++
	if y.head == len(y.q) {
		y.q, y.head = y.q[:0], 0
	}
}

func (y *youngBatches) reset() {
	for _, e := range y.q[y.head:] {
		e.d.youngFirst = time.Time{}
	}
	clear(y.q)
	y.q, y.head = y.q[:0], 0
}

// setCur makes b d's partial batch.
func (s *Segment) setCur(d *dest, b *batch) {
	d.cur = b
	s.linger.bytes += b.size
}

// addCur adds m to d's partial batch.
func (s *Segment) addCur(d *dest, m Message) {
	before := d.cur.size
	s.reserve(d.cur, 1+len(m.JSON)+sealLen)
	d.cur.add(m)
	s.linger.bytes += d.cur.size - before
}

// takeCur detaches d's partial batch and returns it.
func (s *Segment) takeCur(d *dest) *batch {
	b := d.cur
	d.cur = nil
	s.linger.bytes -= b.size
	return b
}

// keepYoung gives d's partial batch an entry in the age order if it has
// none: a batch that flushOldest took out of it and that could not go then
// (pacing, DestinationConcurrency), and is not due now that its
// destination may send, goes back in line, so that the next pressure
// finds it. A batch that is due and waits for its destination has a wakeup
// of its own (the timer heap, or notify), so it needs none.
func (s *Segment) keepYoung(d *dest) {
	if s.lingers() && d.cur != nil && !d.youngFirst.Equal(d.curFirst) {
		s.linger.young.push(d, d.curFirst)
	}
}

// lingers reports whether partial batches may wait past FlushInterval.
func (s *Segment) lingers() bool { return s.o.Linger > s.o.FlushInterval }

// pressed reports whether the dispatcher is under pressure at now, so
// that partial batches FlushInterval old must go.
func (s *Segment) pressed(now time.Time) bool {
	return s.full() || now.Sub(s.linger.lastIn) >= s.linger.stall
}

// full reports pressure that lasts until batches go: the partial batches
// hold more than LingerBytes, or the sink holds all it takes.
func (s *Segment) full() bool {
	return s.linger.bytes > s.o.LingerBytes || s.held.Load() >= s.maxHeld
}

// curDue reports whether d's partial batch must go at now: it is full, or
// Linger old, or FlushInterval old under pressure.
func (s *Segment) curDue(d *dest, now time.Time) bool {
	if len(d.cur.msgs) >= s.o.BatchSize || !now.Before(d.curDue) {
		return true
	}
	return s.lingers() && now.Sub(d.curFirst) >= s.o.FlushInterval && s.pressed(now)
}

// pressureAt is when the oldest partial batch becomes due under pressure if
// no message arrives before: FlushInterval after its first message, but
// not before the intake has been still for stallGap. Zero when there is
// none, or when its Linger deadline (in the timer heap) comes first.
func (s *Segment) pressureAt() time.Time {
	if !s.lingers() {
		return time.Time{}
	}
	e, ok := s.linger.young.front()
	if !ok {
		return time.Time{}
	}
	at := e.first.Add(s.o.FlushInterval)
	if !s.full() {
		if st := s.linger.lastIn.Add(s.linger.stall); st.After(at) {
			at = st
		}
	}
	if !at.Before(e.d.curDue) {
		return time.Time{}
	}
	return at
}

// flushOldest sends, oldest first, the partial batches that are due under
// pressure, while the dispatcher is under pressure at now. A batch whose
// destination may not send yet (pacing, DestinationConcurrency, a
// Retry-After) stays with it: poll has scheduled its next look, and it
// goes then if the pressure lasts, else by its Linger deadline.
func (s *Segment) flushOldest(ctx context.Context, now time.Time) {
	if !s.lingers() {
		return
	}
	for s.pressed(now) {
		e, ok := s.linger.young.front()
		if !ok || now.Sub(e.first) < s.o.FlushInterval {
			return
		}
		s.linger.young.pop()
		s.poll(ctx, e.d, now)
	}
}
