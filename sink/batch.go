package sink

import (
	"bytes"
	"context"
	"fmt"
	"time"
)

// The request body is built by appending pre-encoded messages between a
// fixed head and tail:
//
//	{"batch":[m1,m2,...],"context":{"library":{...}},"sentAt":"2006-01-02T15:04:05.000Z"}
//
// sentAt comes last and has a fixed width, so that every attempt can stamp
// the current time in place without rebuilding the body.
const (
	bodyHead    = `{"batch":[`
	bodyTail    = `],"context":{"library":{"name":"produktly-segment","version":"` + libraryVersion + `"}},"sentAt":"`
	bodyEnd     = `"}`
	sentAtWidth = len("2006-01-02T15:04:05.000Z")
	sentAtFmt   = "2006-01-02T15:04:05.000Z"
	// envelope is what a body holds besides its messages and their commas.
	envelope = len(bodyHead) + len(bodyTail) + sentAtWidth + len(bodyEnd)

	// libraryVersion names this sender in context.library, as analytics-go
	// names itself there; Segment shows it in the debugger.
	libraryVersion = "1.0.0"
)

// batch is a list of messages and, once sealed, the body that carries them.
// Batches are pooled whole, so that in steady state filling one allocates
// nothing: neither the body nor the message list.
type batch struct {
	msgs []Message
	buf  []byte // head and messages, and after seal the tail
	size int    // body length if sealed now
}

// newBatch takes an empty batch from the pool and writes the body's head.
func (s *Segment) newBatch() *batch {
	b, ok := s.pool.Get().(*batch)
	if !ok {
		b = &batch{buf: make([]byte, 0, 64<<10), msgs: make([]Message, 0, min(s.o.BatchSize, 64))}
	}
	b.reset()
	return b
}

// release returns b to the pool. It drops the references to the messages
// (their Done closures and JSON belong to the caller), and does not keep
// buffers that grew past what a batch can need.
func (s *Segment) release(b *batch) {
	clear(b.msgs)
	b.msgs = b.msgs[:0]
	if cap(b.buf) > 2*MaxBatchBytes {
		return
	}
	s.pool.Put(b)
}

// reset empties the body, keeping the messages.
func (b *batch) reset() {
	b.buf = append(b.buf[:0], bodyHead...)
	b.size = envelope
}

// fits reports whether m can join b without breaking the byte limit. An
// empty batch takes any message: every message is ≤ MaxMessageBytes, so it
// is within Segment's limit alone even when BatchBytes is set lower.
func (b *batch) fits(m Message, limit int) bool {
	return len(b.msgs) == 0 || b.size+1+len(m.JSON) <= limit
}

// add appends m to the list and its JSON to the body.
func (b *batch) add(m Message) {
	b.msgs = append(b.msgs, m)
	b.write(m)
}

func (b *batch) write(m Message) {
	if b.size > envelope {
		b.buf = append(b.buf, ',')
		b.size++
	}
	b.buf = append(b.buf, m.JSON...)
	b.size += len(m.JSON)
}

// seal appends the tail, with a sentAt placeholder that stamp overwrites.
func (b *batch) seal() {
	b.buf = append(b.buf, bodyTail...)
	b.buf = append(b.buf, sentAtFmt...)
	b.buf = append(b.buf, bodyEnd...)
}

// rebuild writes a new sealed body for b.msgs, after some were removed.
func (b *batch) rebuild() {
	b.reset()
	for _, m := range b.msgs {
		b.write(m)
	}
	b.seal()
}

// stamp writes t as sentAt into a sealed body. Segment corrects timestamps
// by (sentAt - originalTimestamp), so sentAt must be the time of this
// attempt, not of the first one.
func stamp(body []byte, t time.Time) {
	at := len(body) - len(bodyEnd) - sentAtWidth
	// Format into scratch space and copy: AppendFormat may write past the
	// bytes it returns (it appends nine fraction digits, then trims), which
	// in place would overwrite the closing `"}`.
	var scratch [40]byte
	copy(body[at:at+sentAtWidth], t.UTC().AppendFormat(scratch[:0], sentAtFmt))
}

// encode builds a sealed batch for msgs. The batcher builds bodies message by
// message; this is for the rare rebuilds after a split or a cancellation.
func (s *Segment) encode(msgs []Message) *batch {
	b := s.newBatch()
	for _, m := range msgs {
		b.add(m)
	}
	b.seal()
	return b
}

// check returns why m can never be delivered, or nil. Full JSON validation is
// left to Segment: mapping produces valid JSON, and a bad message is isolated
// by splitting anyway.
func check(m Message) *RejectedError {
	j := bytes.TrimSpace(m.JSON)
	switch {
	case len(m.JSON) > MaxMessageBytes:
		return &RejectedError{Body: fmt.Sprintf("message is %d bytes, over Segment's limit of %d", len(m.JSON), MaxMessageBytes)}
	case len(j) < 2 || j[0] != '{' || j[len(j)-1] != '}':
		return &RejectedError{Body: "message is not a JSON object"}
	}
	return nil
}

// batchLoop takes messages off the queue and hands full or expired batches
// to the senders. While every sender is busy it blocks in handoff and stops
// taking messages, so the queue fills and Enqueue blocks: back-pressure.
func (s *Segment) batchLoop(ctx context.Context) {
	var cur *batch
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	var expired <-chan time.Time // nil while there is no partial batch

	flush := func() bool {
		b := cur
		cur, expired = nil, nil
		timer.Stop()
		return s.handoff(ctx, b)
	}
	for {
		select {
		case <-ctx.Done():
			if cur != nil {
				s.abandon(cur.msgs, ErrClosed)
				s.release(cur)
			}
			return
		case <-expired:
			if !flush() {
				return
			}
		case m := <-s.queue:
			if rej := check(m); rej != nil {
				s.log.Error().Str("message_id", m.ID).Int("bytes", len(m.JSON)).Str("reason", rej.Body).Msg("message rejected without sending")
				s.finish(m, Result{Outcome: Rejected, Err: rej})
				continue
			}
			if closed(m.Cancel) {
				s.finish(m, Result{Outcome: Abandoned, Err: ErrCanceled})
				continue
			}
			if cur != nil && !cur.fits(m, s.o.BatchBytes) && !flush() {
				s.abandon([]Message{m}, ErrClosed)
				return
			}
			if cur == nil {
				cur = s.newBatch()
				timer.Reset(s.o.FlushInterval)
				expired = timer.C
			}
			cur.add(m)
			if len(cur.msgs) >= s.o.BatchSize && !flush() {
				return
			}
		}
	}
}

// handoff seals b and gives it to a sender. It reports false, after
// abandoning b, if ctx ended first.
func (s *Segment) handoff(ctx context.Context, b *batch) bool {
	b.seal()
	select {
	case s.batches <- b:
		return true
	case <-ctx.Done():
		s.abandon(b.msgs, ErrClosed)
		s.release(b)
		return false
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
