package sink

import (
	"bytes"
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/produktly/produktly-segment/timestamp"
)

// The request body is built by appending pre-encoded messages between a
// fixed head and tail:
//
//	{"batch":[m1,m2,...],"context":{"library":{...}},"sentAt":"2006-01-02T15:04:05.000Z"}
//
// sentAt comes last and has a fixed width, so that every attempt can stamp
// the current time in place without rebuilding the body.
const (
	bodyHead = `{"batch":[`
	bodyTail = `],"context":{"library":{"name":"produktly-segment","version":"` + libraryVersion + `"}},"sentAt":"`
	bodyEnd  = `"}`
	// sentAtPlaceholder is what seal writes for stamp to overwrite.
	sentAtPlaceholder = "2006-01-02T15:04:05.000Z"
	// envelope is what a body holds besides its messages and their commas.
	envelope = len(bodyHead) + len(bodyTail) + len(sentAtPlaceholder) + len(bodyEnd)

	// libraryVersion names this sender in context.library, as analytics-go
	// names itself there; Segment shows it in the debugger.
	libraryVersion = "1.0.0"
)

// batch is a list of messages and, once sealed, the body that carries them.
// A partial batch (one still taking messages, lingering or waiting for its
// destination) has no body: only its size is kept, and seal writes the
// body when the batch goes. So the messages' JSON is held once while they
// wait, not twice; in accounts mode a thousand partial batches' bodies
// were a quarter of the heap and much of the garbage collector's work
// (docs/performance.md). Batches and bodies are pooled, so that in steady
// state filling and sending one allocates nothing.
type batch struct {
	d    *dest // where it goes
	msgs []Message
	buf  []byte      // the sealed body; nil until seal, and for a body larger than largeBody
	size int         // the body's length, sealed or not
	out  chan answer // capacity 1: the answer of the attempt posted (post)
	// chans is the scratch list of its messages' Cancel channels
	// (watchCanceled), kept from attempt to attempt.
	chans []<-chan struct{}
	// report takes the outcomes that write something (Delivered,
	// Rejected, Parked) of a half of a split batch, to keep them in the
	// batch's order (see split); nil: Segment.finish at once.
	report func(m Message, r Result)
}

// Pooled batches come in size classes, from minBatchBuf (4 KiB) doubling
// to 512 KiB, which holds the largest body (MaxBatchBytes): bodies by
// their capacity, batches by that of their message list (a class's body
// holds about a message per 256 bytes). In accounts mode most
// destinations send a few messages per request, and a message list sized
// for the largest batch for each of a thousand of them would be much of
// the heap.
const (
	minBatchBuf  = 4 << 10
	batchClasses = 8 // minBatchBuf << 7 = 512 KiB ≥ MaxBatchBytes
)

// batchPool keeps released batches by the capacity of their message list,
// and bodies by theirs.
type batchPool struct {
	batches [batchClasses]sync.Pool // *batch
	bodies  [batchClasses]sync.Pool // *[]byte
}

// classFor is the smallest class whose buffers hold n bytes.
func classFor(n int) int {
	c := 0
	for c < batchClasses-1 && minBatchBuf<<c < n {
		c++
	}
	return c
}

// classOf is the largest class whose buffers n bytes hold, or -1 under
// the smallest.
func classOf(n int) int {
	c := batchClasses - 1
	for c >= 0 && minBatchBuf<<c > n {
		c--
	}
	return c
}

// listCap is the capacity of the message list of class c's batches.
func (s *Segment) listCap(c int) int {
	return min(max(s.o.BatchSize, 1), (minBatchBuf<<c)/256)
}

// listClass is the pool class of batches whose message lists are those of
// class c: the smallest class with lists as long (BatchSize caps them, so
// the largest classes share one).
func (s *Segment) listClass(c int) int {
	for c > 0 && s.listCap(c-1) == s.listCap(c) {
		c--
	}
	return c
}

// newBatch takes an empty batch from the pool whose message list suits a
// body of about hint bytes (the destination's last body size: a guess;
// the list grows past it if need be).
func (s *Segment) newBatch(d *dest, hint int) *batch {
	c := s.listClass(classFor(hint))
	b, ok := s.pool.batches[c].Get().(*batch)
	if !ok {
		b = &batch{msgs: make([]Message, 0, s.listCap(c))}
	}
	b.d = d
	b.size = envelope
	return b
}

// release returns b, and its body if it has one, to the pool. It drops
// the references to the messages (their Done closures and JSON belong to
// the caller), and keeps neither bodies that grew past what a batch can
// need nor message lists under the smallest class.
func (s *Segment) release(b *batch) {
	s.releaseBody(b)
	clear(b.msgs)
	b.msgs = b.msgs[:0]
	clear(b.chans)
	b.chans = b.chans[:0]
	b.d = nil
	b.report = nil
	if c := s.listClassOf(cap(b.msgs)); c >= 0 {
		s.pool.batches[c].Put(b)
	}
}

// listClassOf is the pool class of a batch whose message list holds n
// messages: the largest whose lists it can stand for, or -1 under the
// smallest.
func (s *Segment) listClassOf(n int) int {
	for c := batchClasses - 1; c >= 0; c-- {
		if n >= s.listCap(c) {
			return s.listClass(c)
		}
	}
	return -1
}

// releaseBody returns b's body to the pool.
func (s *Segment) releaseBody(b *batch) {
	if b.buf == nil {
		return
	}
	body := b.buf[:0]
	b.buf = nil
	if n := cap(body); n <= 2*MaxBatchBytes {
		if c := classOf(n); c >= 0 {
			s.pool.bodies[c].Put(&body)
		}
	}
}

// fits reports whether m can join b without breaking the byte limit. An
// empty batch takes any message: every message is ≤ MaxMessageBytes, so it
// is within Segment's limit alone even when BatchBytes is set lower.
func (b *batch) fits(m Message, limit int) bool {
	return len(b.msgs) == 0 || b.size+1+len(m.JSON) <= limit
}

// add appends m to a batch not sealed yet.
func (b *batch) add(m Message) {
	if len(b.msgs) > 0 {
		b.size++ // the comma
	}
	b.msgs = append(b.msgs, m)
	b.size += len(m.JSON)
}

// seal writes b's body: the head, its messages, and the tail with a
// sentAt placeholder that stamp overwrites. It writes it anew each time,
// into the body it has when that is large enough, else into one from the
// pool: after messages were removed (rebuild), it is shorter. A body
// larger than largeBody is not written: each attempt reads it from the
// messages (msgBody), and b.buf stays nil.
func (s *Segment) seal(b *batch) {
	if b.size > largeBody {
		s.releaseBody(b)
		return
	}
	if cap(b.buf) < b.size {
		s.releaseBody(b)
		if p, ok := s.pool.bodies[classFor(b.size)].Get().(*[]byte); ok && cap(*p) >= b.size {
			b.buf = *p
		} else {
			b.buf = make([]byte, 0, max(b.size, minBatchBuf<<classFor(b.size)))
		}
	}
	buf := appendBatch(b.buf[:0], b.msgs)
	buf = append(buf, bodyTail...)
	buf = append(buf, sentAtPlaceholder...)
	b.buf = append(buf, bodyEnd...)
}

// rebuild recounts b after messages were removed from it, and reseals it
// if it has a body (one without gets its body before its next attempt).
func (s *Segment) rebuild(b *batch) {
	b.size = envelope
	for i, m := range b.msgs {
		if i > 0 {
			b.size++
		}
		b.size += len(m.JSON)
	}
	if b.buf != nil {
		s.seal(b)
	}
}

// stamp writes t as sentAt into a sealed body, in place. Segment corrects
// timestamps by (sentAt - originalTimestamp), so sentAt must be the time of
// this attempt, not of the first one.
func stamp(body []byte, t time.Time) {
	at := len(body) - len(bodyEnd) - timestamp.Width
	timestamp.Append(body[at:at], t) // timestamp.Width bytes, over the placeholder
}

// encode builds a sealed batch for msgs: for the halves of a split.
func (s *Segment) encode(d *dest, msgs []Message) *batch {
	n := envelope
	for _, m := range msgs {
		n += len(m.JSON) + 1
	}
	b := s.newBatch(d, n)
	for _, m := range msgs {
		b.add(m)
	}
	s.seal(b)
	return b
}

// check returns why a message of this JSON can never be delivered, or nil. Full JSON validation is
// left to Segment: mapping produces valid JSON, and a bad message is isolated
// by splitting anyway.
func check(json []byte) *RejectedError {
	if len(json) > MaxMessageBytes {
		return &RejectedError{Body: fmt.Sprintf("message is %d bytes, over Segment's limit of %d", len(json), MaxMessageBytes)}
	}
	// Only a message with surrounding whitespace needs trimming (the
	// mapping's never has any).
	if !braced(json) && !braced(bytes.TrimSpace(json)) {
		return &RejectedError{Body: "message is not a JSON object"}
	}
	return nil
}

// braced reports whether b begins with { and ends with }.
func braced(b []byte) bool { return len(b) >= 2 && b[0] == '{' && b[len(b)-1] == '}' }

// batchLoop is the dispatcher. It takes messages off the queue into their
// destination's current batch, and hands a batch to a delivery goroutine
// when it is full or due (FlushInterval old under pressure, Linger old in
// any case: linger.go), if its destination may send: fewer
// than DestinationConcurrency of its batches are out, and its pacing
// (MaxRPS) and any Retry-After allow a request now. A destination at its
// pacing cap keeps filling its batch up to Segment's limits instead of
// queueing requests. While the sink holds maxHeld messages the dispatcher
// stops taking messages, so the queue fills and Enqueue blocks:
// back-pressure.
func (s *Segment) batchLoop(ctx context.Context) {
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	var timerAt time.Time // zero while the timer is not armed
	sweep := time.NewTicker(s.idleAfter / 2)
	defer sweep.Stop()
	// The request goroutines outlive nothing: a delivery that posts after
	// they stopped finds ctx done (this loop returns only then).
	stop := make(chan struct{})
	var posters sync.WaitGroup
	posters.Go(func() { s.posters(s.o.Concurrency, stop) })
	defer func() { close(stop); posters.Wait() }()
	var attn []*dest
	var in []Message // taken off the queue, being accepted
	for {
		if len(s.wake) > 0 && (timerAt.IsZero() || s.wake[0].at.Before(timerAt)) {
			timerAt = s.wake[0].at
			timer.Reset(time.Until(timerAt))
		}
		if at := s.pressureAt(); !at.IsZero() && (timerAt.IsZero() || at.Before(timerAt)) {
			timerAt = at
			timer.Reset(time.Until(timerAt))
		}
		var ready <-chan struct{}
		if s.held.Load() < s.maxHeld {
			ready = s.queue.ready
		}
		select {
		case <-ctx.Done():
			s.abandonHeld()
			return
		case <-ready:
			// Take no more than maxHeld allows, as one message at a time
			// would, and a batch's worth at most, so that timers and
			// finished batches are looked at in between; what stays
			// waiting keeps its token in ready.
			in = s.queue.take(in[:0], min(int(s.maxHeld-s.held.Load()), s.o.BatchSize))
			now := time.Now()
			for _, m := range in {
				s.accept(ctx, m, now)
			}
			clear(in)
		case <-timer.C:
			timerAt = time.Time{}
			now := time.Now()
			for len(s.wake) > 0 && !s.wake[0].at.After(now) {
				w := s.wake.pop()
				if w.at.Equal(w.d.schedAt) {
					w.d.schedAt = time.Time{}
					s.poll(ctx, w.d, now)
				}
			}
			s.relieve(ctx, now)
		case <-s.kick:
			attn = s.takeAttention(attn)
			now := time.Now()
			for _, d := range attn {
				s.poll(ctx, d, now)
			}
			clear(attn)
		case now := <-sweep.C:
			s.sweep(now)
		}
	}
}

// accept takes one message from the queue.
func (s *Segment) accept(ctx context.Context, m Message, now time.Time) {
	if rej := m.rejected; rej != nil {
		s.log.Error().Str("message_id", m.ID).Int("bytes", len(m.JSON)).Str("reason", rej.Body).Msg("message rejected without sending")
		s.finish(nil, m, Result{Outcome: Rejected, Err: rej})
		return
	}
	if closed(m.Cancel) {
		s.finish(nil, m, Result{Outcome: Abandoned, Err: ErrCanceled})
		return
	}
	s.linger.lastIn = now
	d := s.lookup(m.Destination)
	d.lastUsed = now
	if d.parked.Load() && !m.Retry {
		s.finish(nil, m, Result{Outcome: Parked, Err: s.parkedErr(d)})
		return
	}
	s.held.Add(1)
	d.waiting.Add(1)
	limit := s.o.BatchSize
	if !d.ready(now) {
		limit = MaxBatchSize // at its pacing cap: fill up instead of queueing requests
	}
	if d.cur != nil && (len(d.cur.msgs) >= limit || !d.cur.fits(m, s.o.BatchBytes)) {
		b := s.takeCur(d)
		if len(d.pending) > 0 || !s.send(ctx, d, b, now) {
			d.pending = append(d.pending, b)
		}
	}
	if d.cur == nil {
		s.setCur(d, s.newBatch(d, d.bodyHint))
		d.curFirst, d.curDue = now, now.Add(s.o.Linger)
		s.keepYoung(d)
	}
	s.addCur(d, m)
	if reason := s.parkReason(d, now); reason != "" {
		s.park(d, now, reason)
	}
	s.poll(ctx, d, now)
	if s.linger.bytes > s.linger.limit {
		s.flushBiggest(ctx, now)
	}
}

// poll hands d's batches that are due to delivery goroutines while d may
// send, parks what d holds if it was parked, and schedules the next look.
func (s *Segment) poll(ctx context.Context, d *dest, now time.Time) {
	if !d.parked.Load() {
		d.drained = false
	} else if !d.drained {
		d.drained = true
		s.parkHeld(d)
	}
	for len(d.pending) > 0 && s.send(ctx, d, d.pending[0], now) {
		d.pending[0] = nil
		d.pending = d.pending[1:]
	}
	if len(d.pending) == 0 {
		d.pending = nil // let the array go
	}
	due := len(d.pending) > 0
	if d.cur != nil && s.curDue(d, now) {
		b := s.takeCur(d) // before send: then b is the delivery goroutine's
		if due || !s.send(ctx, d, b, now) {
			s.setCur(d, b) // not sent: it stays, and is due
			due = true
		}
	}
	// Blocked by DestinationConcurrency: the finishing batch notifies.
	// Blocked by pacing: look again when it allows.
	var at time.Time
	switch {
	case due && !d.ready(now):
		at = time.Unix(0, d.readyNs.Load())
	case !due && d.cur != nil:
		at = d.curDue
		s.keepYoung(d)
	}
	if !at.IsZero() && (d.schedAt.IsZero() || at.Before(d.schedAt)) {
		d.schedAt = at
		s.wake.push(wakeup{at: at, d: d})
	}
}

// send hands b to a delivery goroutine if d may send now.
func (s *Segment) send(ctx context.Context, d *dest, b *batch, now time.Time) bool {
	if int(d.live.Load()) >= s.perDest || !d.reserve(now, s.interval) {
		return false
	}
	s.seal(b)
	d.bodyHint = b.size
	d.live.Add(1)
	s.wg.Go(func() {
		s.deliver(ctx, b)
		d.live.Add(-1)
		s.notify(d)
	})
	return true
}

// parkHeld completes the messages the dispatcher holds for a parked d
// Parked, except those coming back from the retry topic: those get their
// attempt.
func (s *Segment) parkHeld(d *dest) {
	err := s.parkedErr(d)
	keep := func(b *batch) *batch {
		var kept *batch
		for _, m := range b.msgs {
			if m.Retry {
				if kept == nil {
					kept = s.newBatch(d, 0)
				}
				kept.add(m)
				continue
			}
			s.finish(d, m, Result{Outcome: Parked, Err: err})
		}
		s.release(b)
		return kept
	}
	pending := d.pending[:0]
	for _, b := range d.pending {
		if k := keep(b); k != nil {
			pending = append(pending, k)
		}
	}
	clear(d.pending[len(pending):])
	d.pending = pending
	if d.cur != nil {
		if k := keep(s.takeCur(d)); k != nil {
			s.setCur(d, k)
		}
	}
}

// abandonHeld finishes what the dispatcher holds when Run's context ends.
func (s *Segment) abandonHeld() {
	s.linger.young.reset()
	s.linger.bytes = 0
	for _, d := range s.dests {
		for _, b := range d.pending {
			s.abandon(d, b.msgs, ErrClosed)
			s.release(b)
		}
		d.pending = nil
		if d.cur != nil {
			s.abandon(d, d.cur.msgs, ErrClosed)
			s.release(d.cur)
			d.cur = nil
		}
	}
}

// closed reports whether c is closed, without blocking; a nil c never is.
func closed(c <-chan struct{}) bool {
	if c == nil {
		return false
	}
	select {
	case <-c:
		return true
	default:
		return false
	}
}
