package sink

import (
	"cmp"
	"context"
	"slices"
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
// the dispatcher sends partial batches early when
//
//   - its partial batches hold more than the byte limit (LingerBytes, or
//     less once learnt from a stall), which leaves the rest of the
//     caller's budget for the messages on their way, so that under a
//     backlog the caller need not stall at all: then the biggest batches
//     go (flushBiggest), which carry the most messages per request;
//   - no message has been taken for stallGap: the caller is blocked (its
//     caps are smaller than the limit suggests; learnLimit lowers it) or
//     has nothing more; or
//   - the sink holds maxHeld messages and takes no more itself.
//
// In the last two cases (pressed) a partial batch is due FlushInterval
// after its first message, as without lingering, and the batches that are
// past it go oldest first. So a batch never goes earlier than without
// lingering (FlushInterval), never later than Linger, and a stalled caller
// waits at most stallGap (FlushInterval) for the sink to make room,
// whatever the number of destinations.
//
// The dispatcher keeps its partial batches in the order of their first
// message (young): with one Linger for all, that is also the order of
// their deadlines, so the oldest is at the front, and nothing needs
// sorting. Entries are not removed when their batch goes (full, due, or
// parked); an entry is current while its destination's batch is the one
// it was made for (same first message time), and others are dropped when
// they reach the front or flushBiggest's scan. A batch that flushOldest took out of line while
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

// lingerState is the dispatcher's: its partial batches by age, when it
// last took a message, and how many bytes of partial batches the caller
// lets it hold (limit, learned from the caller's stalls).
type lingerState struct {
	young  youngBatches
	bytes  int           // body bytes of the partial batches (cur)
	lastIn time.Time     // when accept last ran
	stall  time.Duration // stallGap(FlushInterval)

	// limit is LingerBytes, lowered at a stall to what the partial
	// batches held then, and raised back by LingerBytes/16 a second.
	limit     int
	learnedAt time.Time // when a stall last lowered limit
	raisedAt  time.Time // when limit was last raised
	// nextRound is when a round of flushBiggest that could not bring
	// the partial batches under its target may try again; zero after a
	// round that could.
	nextRound time.Time
	cand      []candidate // flushBiggest's scratch
}

// candidate is a partial batch that may go under pressure, with its
// score: body bytes times age.
type candidate struct {
	d     *dest
	score int64
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

// pressed reports whether the dispatcher is under pressure at now that
// sends every partial batch FlushInterval old: the intake has stalled, or
// the sink holds all it takes. Partial batches over the byte limit are
// pressure of another kind: flushBiggest sends the biggest of them.
func (s *Segment) pressed(now time.Time) bool {
	return s.held.Load() >= s.maxHeld || now.Sub(s.linger.lastIn) >= s.linger.stall
}

// curDue reports whether d's partial batch must go at now: it is full, or
// Linger old, or FlushInterval old under pressure.
func (s *Segment) curDue(d *dest, now time.Time) bool {
	if len(d.cur.msgs) >= s.o.BatchSize || !now.Before(d.curDue) {
		return true
	}
	return s.lingers() && now.Sub(d.curFirst) >= s.o.FlushInterval && s.pressed(now)
}

// pressureAt is when the dispatcher must next look at its partial batches
// if no message arrives before: when the oldest becomes due under
// pressure (FlushInterval after its first message, but not before the
// intake has been still for stallGap), or when flushBiggest may try again.
// Zero when there is nothing to do before the Linger deadlines (in the
// timer heap).
func (s *Segment) pressureAt() time.Time {
	if !s.lingers() {
		return time.Time{}
	}
	var at time.Time
	if s.linger.bytes > s.linger.limit {
		at = s.linger.nextRound
	}
	e, ok := s.linger.young.front()
	if !ok {
		return at
	}
	due := e.first.Add(s.o.FlushInterval)
	if s.held.Load() < s.maxHeld {
		if st := s.linger.lastIn.Add(s.linger.stall); st.After(due) {
			due = st
		}
	}
	if due.Before(e.d.curDue) && (at.IsZero() || due.Before(at)) {
		at = due
	}
	return at
}

// relieve is the dispatcher's look at its partial batches when its timer
// fires: under pressure (pressed) the batches FlushInterval old go; over
// the byte limit the biggest go.
func (s *Segment) relieve(ctx context.Context, now time.Time) {
	if !s.lingers() {
		return
	}
	s.raiseLimit(now)
	if s.pressed(now) {
		s.learnLimit(now)
		s.flushOldest(ctx, now)
	}
	if s.linger.bytes > s.linger.limit {
		s.flushBiggest(ctx, now)
	}
}

// learnLimit lowers the byte limit of the partial batches at a stall of
// the intake that came after messages flowed, when the partial batches
// hold at least half the limit: the caller is most likely waiting for
// room (its in-flight caps are full of what the sink holds), and it will
// again at about as many bytes. Below the new limit flushBiggest sends
// the biggest batches before the caller has to wait, rather than the
// stall sending every batch FlushInterval old after it has waited a
// stallGap. A caller that merely paused costs a lower limit for a while:
// raiseLimit gives it back at LingerBytes/16 a second, and it never drops
// under LingerBytes/16.
func (s *Segment) learnLimit(now time.Time) {
	l := &s.linger
	if now.Sub(l.lastIn) < l.stall || !l.lastIn.After(l.learnedAt) || l.bytes < l.limit/2 {
		return
	}
	l.limit = max(l.bytes-l.bytes/8, s.o.LingerBytes/16)
	l.learnedAt, l.raisedAt = now, now
}

// raiseLimit raises the byte limit back towards LingerBytes, by
// LingerBytes/16 per second since the last raise or stall.
func (s *Segment) raiseLimit(now time.Time) {
	l := &s.linger
	if l.limit >= s.o.LingerBytes {
		return
	}
	if n := now.Sub(l.raisedAt) / time.Second; n > 0 {
		l.limit = min(s.o.LingerBytes, l.limit+int(n)*(s.o.LingerBytes/16))
		l.raisedAt = l.raisedAt.Add(n * time.Second)
	}
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

// roundGap is how long flushBiggest waits before another round when one
// could not bring the partial batches under its target because their
// destinations could not send (pacing, DestinationConcurrency).
func (s *Segment) roundGap() time.Duration { return s.o.FlushInterval / 4 }

// flushBiggest sends partial batches FlushInterval old, biggest first,
// until they hold at most 7/8 of the byte limit. Biggest is body bytes
// times age: a batch is what it holds of the caller's budget for as long
// as it has held it. Sending by that score, rather than oldest first,
// keeps the quiet destinations' few messages lingering and sends the
// destinations that fill their batches fast, so the requests carry more
// messages each; with the caller's budget B spread over destinations of
// rates r_i, the fewest requests per second (the sum of r_i/n_i for
// batches of n_i messages held n_i/r_i) come when n_i·(n_i/r_i), this
// score at the moment of sending, is the same for every batch. It also
// frees the caller's budget fastest per request. Linger still bounds
// every batch's wait.
//
// One round scans the dispatcher's partial batches once (dropping stale
// entries of the age order as it goes) and sorts the candidates: rounds
// come every limit/8 bytes taken, not per message.
func (s *Segment) flushBiggest(ctx context.Context, now time.Time) {
	l := &s.linger
	if now.Before(l.nextRound) {
		return
	}
	target := l.limit - l.limit/8
	y := &l.young
	c := l.cand[:0]
	var next time.Time // when the youngest not yet FlushInterval old becomes so
	w := y.head
	for _, e := range y.q[y.head:] {
		if e.d.cur == nil || !e.d.curFirst.Equal(e.first) {
			if e.d.youngFirst.Equal(e.first) {
				e.d.youngFirst = time.Time{}
			}
			continue
		}
		y.q[w] = e
		w++
		age := now.Sub(e.first)
		if age < s.o.FlushInterval {
			if at := e.first.Add(s.o.FlushInterval); next.IsZero() || at.Before(next) {
				next = at
			}
			continue
		}
		c = append(c, candidate{d: e.d, score: int64(e.d.cur.size) * int64(age)})
	}
	clear(y.q[w:])
	y.q = y.q[:w]
	if y.head == len(y.q) {
		y.q, y.head = y.q[:0], 0
	}
	slices.SortFunc(c, func(a, b candidate) int { return cmp.Compare(b.score, a.score) })
	for _, x := range c {
		if l.bytes <= target {
			break
		}
		s.flushCur(ctx, x.d, now)
	}
	clear(c)
	l.cand = c[:0]
	l.nextRound = time.Time{}
	if l.bytes > target {
		l.nextRound = now.Add(s.roundGap())
		if !next.IsZero() && next.Before(l.nextRound) {
			l.nextRound = next
		}
	}
}

// flushCur sends d's partial batch now if d may send and has no earlier
// batch waiting; otherwise it stays.
func (s *Segment) flushCur(ctx context.Context, d *dest, now time.Time) {
	if d.cur == nil || len(d.pending) > 0 {
		return
	}
	b := s.takeCur(d)
	if !s.send(ctx, d, b, now) {
		s.setCur(d, b)
	}
}
