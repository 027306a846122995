package sink

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// maxErrorBody is how much of an error answer is kept for logs and
// RejectedError.
const maxErrorBody = 512

// answer is what one attempt produced.
type answer struct {
	status     int    // HTTP status, 0 when there was no answer
	label      string // the metrics label: the status, "timeout", "error" or "canceled"
	err        error  // the transport error, or the status as an error
	body       string // the start of an error answer
	retryAfter time.Duration
}

// deliver sends b until each of its messages is finished: delivered,
// rejected, parked, or abandoned because it was cancelled or ctx ended. It
// owns b and returns it to the pool. The dispatcher reserved the first
// attempt's request slot; the retries take theirs from the destination's
// pacing. Between attempts it holds no request slot.
func (s *Segment) deliver(ctx context.Context, b *batch) {
	d := b.d
	defer func() {
		if b != nil {
			s.release(b)
		}
	}()
	var last error // the last failure, for the Err of abandoned messages
	// streak counts the failures that set the backoff: those since the
	// batch was woken by its destination's recovery after an outage. What
	// it met during the outage says nothing about Segment once it is back;
	// carried over, one ordinary failure afterwards would wait out the
	// outage's longest backoff and hold its partition's commit point past
	// any revoke or shutdown timeout.
	streak := 0
	failing := false
	defer func() {
		if failing {
			d.health.failing.Add(-1)
		}
	}()
	for attempt := 0; ; attempt++ {
		if n := len(b.msgs); s.dropCanceled(b, last) {
			s.log.Debug().Int("canceled", n-len(b.msgs)).Int("left", len(b.msgs)).Msg("dropped canceled messages from batch")
		}
		if len(b.msgs) == 0 {
			return
		}
		if ctx.Err() != nil {
			s.abandon(d, b.msgs, withLast(ErrClosed, last))
			return
		}
		if attempt > 0 {
			if d.parked.Load() {
				s.parkAll(b)
				return
			}
			if w := d.reserveRetry(time.Now(), s.interval); w > 0 {
				s.sleep(ctx, b, w, last, nil)
				s.dropCanceled(b, last)
				switch {
				case len(b.msgs) == 0:
					return
				case ctx.Err() != nil:
					s.abandon(d, b.msgs, withLast(ErrClosed, last))
					return
				case d.parked.Load():
					s.parkAll(b)
					return
				}
			}
		}
		select {
		case s.sem <- struct{}{}:
		case <-ctx.Done():
			continue
		}
		if b.buf == nil {
			s.seal(b) // its first attempt, or a retry after a backoff
		}
		epoch := d.health.epoch()
		a := s.post(ctx, b)
		<-s.sem
		switch {
		case a.status >= 200 && a.status < 300:
			d.health.record(time.Now(), true)
			s.sys.delivered()
			s.succeeded(d)
			s.outcomeAll(b, Result{Outcome: Delivered})
			return

		case a.status == http.StatusBadRequest && s.sys.active():
			// Every call is being refused: an outage, not bad calls.

		case a.status == http.StatusBadRequest && len(b.msgs) == 1:
			m := b.msgs[0]
			if s.sys.rejected(m.ID) {
				s.log.Error().Int("status", a.status).Int("in_a_row", s.o.SystemicRejects).Str("answer", a.body).
					Msg("segment refuses every call: treating 400 as an outage and retrying instead of rejecting")
				break
			}
			d.health.record(time.Now(), true)
			s.log.Error().Str("account", d.account).Str("message_id", m.ID).Int("status", a.status).Str("answer", a.body).Msg("segment rejected message")
			s.outcome(b, m, Result{Outcome: Rejected, Err: &RejectedError{Status: a.status, Body: a.body}})
			return

		case (a.status == http.StatusBadRequest || a.status == http.StatusRequestEntityTooLarge) && len(b.msgs) > 1:
			// One bad message fails the whole request, and a body too
			// large for something in between fails it too: split, so
			// that the others are delivered.
			d.health.record(time.Now(), true)
			h := len(b.msgs) / 2
			s.log.Warn().Str("account", d.account).Int("status", a.status).Int("messages", len(b.msgs)).Str("answer", a.body).Msg("segment rejected batch, splitting it to isolate bad messages")
			left, right := s.encode(d, b.msgs[:h]), s.encode(d, b.msgs[h:])
			s.split(ctx, b, left, right)
			s.release(b)
			b = nil
			return
		}
		// A 413 for one message is retried like an outage: check keeps
		// every message within Segment's limits, so what refuses it is
		// in between and may be fixed.

		// Anything else may succeed later. Retry for ever.
		if a.label == "canceled" {
			continue // aborted by us: ctx ended or every message was cancelled
		}
		now := time.Now()
		d.health.record(now, false)
		last = a.err
		if !failing {
			failing = true
			d.health.failing.Add(1)
		}
		if a.retryAfter > 0 {
			// Segment asked this source (only this one) for a pause.
			d.pause(now.Add(min(a.retryAfter, maxRetryAfter)))
		}
		why := a.label
		if a.body != "" {
			why += ": " + a.body
		} else if a.err != nil && a.status == 0 {
			why += ": " + a.err.Error()
		}
		parked := s.failed(d, now, why)
		// Segment came back from an outage while this request was out:
		// the wake-up this batch would have slept on has passed, and its
		// failures so far belong to the outage.
		wake, missed := d.health.since(epoch)
		if missed {
			streak = 0
		}
		wait := s.backoff(streak, a.retryAfter)
		streak++
		s.m.retries.Inc()
		// Every failed attempt is counted in the metrics; the log gets the
		// 1st, 2nd, 4th, 8th... of each batch at warn, so a long outage
		// costs a few lines per batch a day, not one per retry.
		ev := s.log.Debug()
		if n := attempt + 1; n&(n-1) == 0 {
			ev = s.log.Warn()
		}
		if d.account != "" {
			ev = ev.Str("account", d.account)
		}
		ev = ev.Int("attempt", attempt+1).Int("messages", len(b.msgs)).Dur("backoff", wait).Str("status", a.label)
		if a.body != "" {
			ev = ev.Str("answer", a.body)
		}
		if a.retryAfter > 0 {
			ev = ev.Dur("retry_after", a.retryAfter)
		}
		ev.Err(a.err).Bool("parked", parked).Msg("segment request failed, will retry")
		if parked {
			continue // completes Parked at the top of the loop
		}
		// After an outage the oldest batches sit in the longest backoffs
		// (up to MaxBackoff) and hold their partitions' commit points
		// back; the first success of their destination after the outage
		// wakes them (see outageGap). Not when Segment asked for a pause:
		// a 429, or a Retry-After.
		if a.retryAfter > 0 || a.status == http.StatusTooManyRequests {
			wake = nil
		}
		// The body goes back to the pool while the batch waits: in an
		// outage every batch waits, and their messages' JSON is then
		// held once, not twice. The next attempt writes it anew.
		s.releaseBody(b)
		if s.sleep(ctx, b, wait, last, wake) {
			streak = 0
		}
	}
}

// outcome reports the outcome of m, a message of b: through b.report
// when b is a half of a split batch, else at once.
func (s *Segment) outcome(b *batch, m Message, r Result) {
	if b.report != nil {
		b.report(m, r)
		return
	}
	s.finish(b.d, m, r)
}

// outcomeAll reports r for every message of b, as outcome does for one.
func (s *Segment) outcomeAll(b *batch, r Result) {
	if b.report != nil {
		for _, m := range b.msgs {
			b.report(m, r)
		}
		return
	}
	s.finishAll(b.d, b.msgs, r)
}

// split delivers the halves of the rejected batch b. They go out together:
// isolating a bad message then takes one round trip per halving, not one
// per sub-batch in a row, and holds its partition's commit point back that
// much less. Their outcomes are still reported in b's order: the right
// half's wait until the left half is done. Rejections become dead letters,
// and one partition's dead letters keep the order of its records.
func (s *Segment) split(ctx context.Context, b, left, right *batch) {
	parent := func(m Message, r Result) { s.outcome(b, m, r) }
	var mu sync.Mutex
	leftDone := false
	type held struct {
		m Message
		r Result
	}
	var waiting []held
	left.report = parent
	right.report = func(m Message, r Result) {
		mu.Lock()
		defer mu.Unlock()
		if !leftDone {
			waiting = append(waiting, held{m, r})
			return
		}
		parent(m, r)
	}
	done := make(chan struct{})
	s.wg.Go(func() {
		defer close(done)
		s.deliver(ctx, right)
	})
	s.deliver(ctx, left)
	mu.Lock()
	leftDone = true
	for _, h := range waiting {
		parent(h.m, h.r)
	}
	waiting = nil
	mu.Unlock()
	// b's own report (a half of a larger split) must not be called after
	// split returns for the part its parent waits on: wait for the right
	// half too.
	<-done
}

// parkAll completes every message of b Parked. Each had its attempt: it is
// called only after a failed one.
func (s *Segment) parkAll(b *batch) {
	err := s.parkedErr(b.d)
	for _, m := range b.msgs {
		s.outcome(b, m, Result{Outcome: Parked, Err: err})
	}
	clear(b.msgs)
	b.msgs = b.msgs[:0]
}

// dropCanceled finishes the messages of b whose Cancel is closed and removes
// them, rebuilding the body if any went. It reports whether any went.
func (s *Segment) dropCanceled(b *batch, last error) bool {
	kept := b.msgs[:0]
	for _, m := range b.msgs {
		if closed(m.Cancel) {
			s.finish(b.d, m, Result{Outcome: Abandoned, Err: withLast(ErrCanceled, last)})
			continue
		}
		kept = append(kept, m)
	}
	if len(kept) == len(b.msgs) {
		return false
	}
	clear(b.msgs[len(kept):]) // drop references to finished messages
	b.msgs = kept
	s.rebuild(b)
	return true
}

// withLast wraps reason with the last failure, if any.
func withLast(reason, last error) error {
	if last == nil {
		return reason
	}
	return fmt.Errorf("%w (last attempt: %v)", reason, last)
}

// post makes one attempt, on one of the dispatcher's request goroutines
// (see posters). It aborts the request when ctx ends, after
// Options.Timeout, or when every message of b has been cancelled.
func (s *Segment) post(ctx context.Context, b *batch) answer {
	if b.out == nil {
		b.out = make(chan answer, 1)
	}
	select {
	case s.posts <- postJob{ctx: ctx, b: b}:
		return <-b.out
	case <-ctx.Done():
		return answer{label: "canceled", err: ctx.Err()}
	}
}

// postJob is one attempt handed to a request goroutine.
type postJob struct {
	ctx context.Context
	b   *batch
}

// posters runs n request goroutines until stop is closed, and returns when
// they have. A request goes through a dozen net/http frames: on a
// goroutine of its own (one per batch) it would grow that goroutine's
// stack, copying it, for every request; these keep their grown stacks.
// The delivery goroutines hand them their attempts (post), so a batch
// waiting for a retry still holds no goroutine that requests need.
func (s *Segment) posters(n int, stop <-chan struct{}) {
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			for {
				select {
				case j := <-s.posts:
					j.b.out <- s.attempt(j.ctx, j.b)
				case <-stop:
					return
				}
			}
		})
	}
	wg.Wait()
}

// attempt makes one attempt of b: post's work.
func (s *Segment) attempt(ctx context.Context, b *batch) answer {
	rctx, cancel := context.WithTimeout(ctx, s.o.Timeout)
	defer cancel()
	watched := s.watchCanceled(rctx, cancel, b)
	defer watched()

	// A sealed body is an io.NopCloser over a bytes.Reader, a type
	// net/http knows to be in memory: over HTTP/1 it then writes the
	// headers and a body that fits its write buffer in one write. Any
	// other type makes it flush the headers on their own and copy the
	// body through a fresh 32 KiB buffer (net.genericReadFrom): two writes
	// and an allocation per request, which in accounts mode (many small
	// requests) was a good part of their cost. A body larger than the
	// write buffer is copied that way whatever its type, so it is read
	// from the messages themselves (msgBody): one copy of it instead of
	// two.
	//
	// The RoundTripper contract lets the transport read a body after Do
	// returns. net/http's transport is done with one when it reports the
	// request written (WroteRequest: the body was copied into its write
	// buffer or written, and closed). One Do may send several requests: a
	// retry on a fresh connection and a 307 or 308 redirect each get the
	// body again from GetBody, as a copy of their own. When fewer requests
	// were reported written than were sent, a body may still be read, and
	// the batch goes on without touching it (unwritten). The transport
	// writes a request before it reads the answer, so in steady state this
	// copies nothing. A RoundTripper that reports nothing gets a copy
	// every time: slower, never wrong.
	var sent, written atomic.Int32
	sent.Store(1)
	rctx = httptrace.WithClientTrace(rctx, &httptrace.ClientTrace{
		WroteRequest: func(httptrace.WroteRequestInfo) { written.Add(1) },
	})
	if b.d.req == nil {
		return answer{label: "error", err: b.d.reqErr}
	}
	req := b.d.req.WithContext(rctx) // a copy sharing the URL and headers
	if s.o.Client.Jar != nil {
		req.Header = req.Header.Clone() // Client.send adds the jar's cookies
	}
	req.ContentLength = int64(b.size)
	var whole func() ([]byte, error) // the body again, in a buffer of its own
	var unwritten func()
	if body := b.buf; body != nil {
		stamp(body, time.Now())
		req.Body = io.NopCloser(bytes.NewReader(body))
		whole = func() ([]byte, error) { return bytes.Clone(body), nil }
		// The next stamp, a rebuild or the pool would write to the
		// buffer: the batch goes on with a copy.
		unwritten = func() { b.buf = append(make([]byte, 0, cap(body)), body...) }
	} else {
		body := newMsgBody(b.msgs, b.size, time.Now())
		req.Body = io.NopCloser(body)
		whole = body.whole
		// The messages may be removed from the batch, finished and their
		// JSON reused: the reader goes on with a copy.
		unwritten = body.detach
	}
	req.GetBody = func() (io.ReadCloser, error) {
		sent.Add(1)
		p, err := whole()
		return io.NopCloser(bytes.NewReader(p)), err
	}
	defer func() {
		if written.Load() < sent.Load() {
			unwritten()
		}
	}()

	s.m.batchSize.Observe(float64(len(b.msgs)))
	s.m.batchBytes.Observe(float64(b.size))
	start := time.Now()
	resp, err := s.o.Client.Do(req)
	var a answer
	if err == nil {
		a = s.read(resp)
	} else {
		a = answer{label: "error", err: err}
		switch {
		case ctx.Err() != nil || errors.Is(rctx.Err(), context.Canceled):
			a.label = "canceled"
		case errors.Is(err, context.DeadlineExceeded) || isTimeout(err):
			a.label = "timeout"
		}
	}
	elapsed := time.Since(start)
	s.m.requests.WithLabelValues(a.label).Inc()
	if a.label != "canceled" {
		s.m.latency.Observe(elapsed.Seconds())
	}
	return a
}

// read turns a response into an answer and closes its body. A 2xx body is
// read to the end (up to a bound) so the connection can be reused; an error
// body is kept in part for logs.
func (s *Segment) read(resp *http.Response) answer {
	defer resp.Body.Close()
	a := answer{status: resp.StatusCode, label: statusLabel(resp.StatusCode)}
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		// The status is Segment's acknowledgement; an error while reading
		// the rest of the body does not undo it.
		discard(resp.Body, 64<<10)
		return a
	}
	buf := make([]byte, maxErrorBody)
	n, _ := io.ReadFull(resp.Body, buf)
	discard(resp.Body, 64<<10)
	a.body = string(bytes.ToValidUTF8(bytes.TrimSpace(buf[:n]), nil))
	a.err = fmt.Errorf("segment answered %s", resp.Status)
	a.retryAfter = parseRetryAfter(resp.Header.Get("Retry-After"), time.Now())
	return a
}

// statusLabel is the metrics label of status: Segment's usual answers
// without an allocation each.
func statusLabel(status int) string {
	switch status {
	case http.StatusOK:
		return "200"
	case http.StatusBadRequest:
		return "400"
	case http.StatusTooManyRequests:
		return "429"
	case http.StatusServiceUnavailable:
		return "503"
	}
	return strconv.Itoa(status)
}

// discard reads and drops up to limit bytes of r, so that a connection
// whose answer was read to its end can be reused. Segment's answer to a
// batch is a few bytes: a buffer on the stack holds it, where io.Copy
// would take a LimitReader and a pooled buffer for each.
func discard(r io.Reader, limit int) {
	var buf [512]byte
	for limit > 0 {
		n, err := r.Read(buf[:min(limit, len(buf))])
		limit -= n
		if err != nil {
			return
		}
	}
}

// watchCanceled cancels the request when every message has been cancelled:
// nobody wants its answer any more, so the sender should not wait up to
// Timeout for it. The returned func stops the watch and waits for it.
//
// The watch starts watchAfter into the request, on a timer: nearly every
// request is answered before, and a goroutine per request only to be
// stopped again was a measurable part of the per-request cost in
// accounts mode (many small requests).
func (s *Segment) watchCanceled(rctx context.Context, abort context.CancelFunc, b *batch) func() {
	// The channels go into b's own list: b's attempts come one after the
	// other, and the watch ends before attempt returns.
	chans, all := cancelChans(b.chans[:0], b.msgs)
	b.chans = chans
	if !all {
		return func() {}
	}
	var wg sync.WaitGroup
	wg.Add(1)
	t := time.AfterFunc(watchAfter, func() {
		defer wg.Done()
		// Every channel closed means every message cancelled; wait for
		// each in turn.
		for _, c := range chans {
			select {
			case <-c:
			case <-rctx.Done():
				return
			}
		}
		abort()
	})
	return func() {
		if t.Stop() {
			wg.Done() // it never ran
			return
		}
		abort()
		wg.Wait()
	}
}

// watchAfter is how long a request runs before watchCanceled watches its
// messages' Cancel channels.
const watchAfter = 50 * time.Millisecond

// cancelChans appends the distinct Cancel channels of msgs to dst, and
// reports whether every message has one. Messages of one partition share
// one, so there are few of them, and runs of one are common: a scan of the
// ones found so far, the last one first, costs less than a map for each
// request.
func cancelChans(dst []<-chan struct{}, msgs []Message) (chans []<-chan struct{}, all bool) {
	chans, all = dst, true
	for _, m := range msgs {
		if m.Cancel == nil {
			all = false
			continue
		}
		if n := len(chans); n > 0 && chans[n-1] == m.Cancel || slices.Contains(chans, m.Cancel) {
			continue
		}
		chans = append(chans, m.Cancel)
	}
	return chans, all && len(chans) > len(dst)
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
