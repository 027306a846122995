package sink

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/sync/errgroup"
)

// Outcome is what became of one message.
type Outcome int

const (
	// Delivered: Segment acknowledged the message (2xx); commit it.
	Delivered Outcome = iota
	// Rejected: Segment refused the message itself, or it is over 32000
	// bytes; no retry can succeed. Result.Err is a *RejectedError.
	Rejected
	// Abandoned: the sink stopped trying (Cancel closed, or Run's context
	// ended) without an answer. Do not commit; redeliver later.
	Abandoned
	// Parked: not delivered, because its destination is parked (see
	// Options.ParkAfter and Options.ParkAbove): its deliveries kept
	// failing transiently. The caller writes the message to a retry
	// topic and sends it again later with Message.Retry set. Result.Err
	// wraps ErrParked. Never given for a message Segment refused (that is
	// Rejected) or for a cancellation (Abandoned).
	Parked
)

func (o Outcome) String() string {
	switch o {
	case Delivered:
		return "delivered"
	case Rejected:
		return "rejected"
	case Abandoned:
		return "abandoned"
	case Parked:
		return "parked"
	}
	return fmt.Sprintf("Outcome(%d)", int(o))
}

// Message is one encoded Segment call handed to the sink.
type Message struct {
	// ID is the call's messageId, used in logs only.
	ID string
	// JSON is one encoded message object, appended as is to the batch
	// array. The sink keeps a reference until Done is called; do not
	// modify it before then.
	JSON []byte
	// Cancel is optional: close it when the message is no longer wanted
	// (its partition was revoked). The sink then stops retrying it and
	// reports Abandoned; if it was already acknowledged, Delivered.
	// Many messages may share one channel.
	Cancel <-chan struct{}
	// Destination is where the message goes; the zero value is the single
	// source of Options. Each destination has its own batches, pacing,
	// backoff, health and parking.
	Destination Destination
	// Retry marks a message coming back from the retry topic: it is
	// attempted even while its destination is parked, and its delivery
	// unparks the destination.
	Retry bool
	// Done is called exactly once with the message's outcome, from a sink
	// goroutine (or from Run itself as it returns), in no particular order
	// across messages. It must return quickly and must not call Enqueue:
	// it runs on the goroutine that sends the next batch, and a full queue
	// would deadlock it. Exactly one of Done and Acker is set.
	Done func(Result)
	// Acker, when set instead of Done, receives the outcome as
	// Acker.Ack(Seq, result), under the same rules as Done: exactly once
	// per message, from a sink goroutine, quickly, never calling Enqueue.
	// Many messages may share one Acker (a caller handing over a batch
	// passes one Acker and each message's index in Seq), so no closure is
	// needed per message.
	Acker Acker
	// Seq is passed to Acker.Ack; the sink does not read it otherwise.
	Seq int

	// rejected is why the message can never be delivered (check), or nil:
	// EnqueueBatch finds it while the caller's JSON is fresh in its
	// cache, for the dispatcher to act on.
	rejected *RejectedError
}

// Acker receives the outcomes of the messages that name it in
// Message.Acker. Ack is called exactly once per such message, with its
// Message.Seq, concurrently and in any order across messages.
type Acker interface {
	Ack(seq int, r Result)
}

// BatchAcker is an Acker that also takes one outcome for many of its
// messages at once: a delivered batch reports each run of its messages
// that name the same BatchAcker in one AckAll, so the caller settles them
// under one lock instead of one each. AckAll counts as the Ack of every
// message in seqs, under Ack's rules; it must not keep seqs. Runs are
// found with ==: a BatchAcker whose values are not comparable (a map, a
// func, a struct holding one) gets one AckAll per message.
type BatchAcker interface {
	Acker
	AckAll(seqs []int, r Result)
}

// Result is the outcome of one message.
type Result struct {
	Outcome Outcome
	// Err is nil for Delivered, a *RejectedError for Rejected, for
	// Abandoned an error that wraps ErrCanceled or ErrClosed (and names
	// the last failure, if there was one), and for Parked one that wraps
	// ErrParked and names the last failure.
	Err error
}

// RejectedError is what Segment said when it refused a message for good.
// Inspect it with errors.As.
type RejectedError struct {
	// Status is the HTTP status Segment answered (400 or 413), or 0 when
	// the sink refused the message without sending it.
	Status int
	// Body is the start of Segment's answer (at most 512 bytes), or why
	// the sink refused the message.
	Body string
}

func (e *RejectedError) Error() string {
	if e.Status == 0 {
		return "sink: message not sent: " + e.Body
	}
	return fmt.Sprintf("segment rejected the message: status %d: %s", e.Status, e.Body)
}

var (
	// ErrClosed is returned by Enqueue once Run has returned (or is
	// returning), and wrapped by the Err of messages abandoned because
	// Run's context ended.
	ErrClosed = errors.New("sink: stopped")
	// ErrCanceled is wrapped by the Err of messages abandoned because
	// their Cancel channel was closed.
	ErrCanceled = errors.New("sink: message canceled by its owner")
	// ErrParked is wrapped by the Err of Parked messages.
	ErrParked = errors.New("sink: destination parked")
	// ErrNoDestination is returned by Enqueue for a message that names no
	// write key when Options has none either.
	ErrNoDestination = errors.New("sink: message names no write key and Options.WriteKey is empty")
)

// Segment batches messages and delivers them to Segment's HTTP Tracking API.
// Create it with NewSegment, start it with Run, feed it with Enqueue.
type Segment struct {
	o    Options // with defaults applied
	log  zerolog.Logger
	m    *metrics
	pool batchPool // batches by message list capacity, bodies by theirs

	queue    queue
	held     atomic.Int64  // messages taken off the queue and not finished
	maxHeld  int64         // the dispatcher takes no more while held reaches it
	perDest  int           // Options.DestinationConcurrency
	interval time.Duration // between requests of one destination; 0 without MaxRPS
	sem      chan struct{} // one token per request in flight (Concurrency)
	posts    chan postJob  // to the request goroutines (send.go)
	wg       sync.WaitGroup

	// Destinations: the dispatcher owns the map and writes it under
	// destMu; Status and Healthy read it under destMu.
	dests           map[Destination]*dest
	destMu          sync.RWMutex
	last            *dest // the dispatcher's last lookup
	wake            wakeups
	linger          lingerState   // the dispatcher's (linger.go)
	kick            chan struct{} // capacity 1: something in attn
	attnMu          sync.Mutex
	attn            []*dest
	nFailing        atomic.Int64
	nParked         atomic.Int64
	idleAfter       time.Duration
	parkedIdleAfter time.Duration

	started  atomic.Bool
	stopping chan struct{} // closed when Run begins to return

	sys systemic
}

// NewSegment checks o and builds a sink. It registers the sink's metrics on
// o.Registerer, so it fails if a sink was already registered there.
func NewSegment(o Options) (*Segment, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	o = o.withDefaults()
	s := &Segment{
		o:   o,
		log: o.Logger, // the caller names the component
		// The queue, plus Concurrency batches out and the one being
		// filled, make about 2×BatchSize×Concurrency messages held at most.
		queue:           newQueue(o.BatchSize * o.Concurrency),
		maxHeld:         int64(o.BatchSize*o.Concurrency + o.BatchSize),
		perDest:         o.DestinationConcurrency,
		sem:             make(chan struct{}, o.Concurrency),
		posts:           make(chan postJob),
		dests:           make(map[Destination]*dest),
		kick:            make(chan struct{}, 1),
		idleAfter:       idleAfter,
		parkedIdleAfter: parkedIdleAfter,
		stopping:        make(chan struct{}),
		sys:             systemic{limit: o.SystemicRejects},
		linger:          lingerState{stall: stallGap(o.FlushInterval), limit: o.LingerBytes},
	}
	if o.MaxRPS > 0 {
		s.interval = time.Duration(float64(time.Second) / o.MaxRPS)
	}
	m, err := newMetrics(o.Registerer, gauges{
		queue: func() float64 { return float64(s.queue.len()) },
		systemic: func() float64 {
			if s.sys.active() {
				return 1
			}
			return 0
		},
		failing: func() float64 { return float64(s.nFailing.Load()) },
		parked:  func() float64 { return float64(s.nParked.Load()) },
	})
	if err != nil {
		return nil, err
	}
	s.m = m
	return s, nil
}

// Run sends batches until ctx ends. It owns every sink goroutine: the
// batcher and Concurrency senders. When ctx ends, requests in flight are
// aborted, and every message enqueued and not yet finished gets
// Done(Abandoned) before Run returns. Run returns nil then; it returns an
// error only when called more than once.
//
// To drain instead of abandoning, stop calling Enqueue and wait for the
// outstanding Done calls before cancelling ctx.
func (s *Segment) Run(ctx context.Context) error {
	if !s.started.CompareAndSwap(false, true) {
		return errors.New("sink: Run called more than once")
	}
	defer s.shut()
	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		s.batchLoop(ctx)
		return nil
	})
	err := g.Wait()
	s.wg.Wait() // the delivery goroutines; only the batcher starts them
	return err
}

// shut closes the queue to Enqueue and abandons what is still in it. Run
// calls it after every sink goroutine has stopped.
func (s *Segment) shut() {
	close(s.stopping) // wakes Enqueue calls blocked on a full queue
	for _, m := range s.queue.close() {
		s.finish(nil, m, Result{Outcome: Abandoned, Err: ErrClosed})
	}
}

// Enqueue hands m to the sink, which then owns it until it reports m's
// outcome (m.Done or m.Acker). It is EnqueueBatch with one message.
func (s *Segment) Enqueue(ctx context.Context, m Message) error {
	one := [1]Message{m}
	return s.EnqueueBatch(ctx, one[:])
}

// EnqueueBatch hands msgs to the sink as a unit: all of them or none. On a
// nil error the sink owns every message of msgs and reports each one's
// outcome exactly once (Done or Acker); on an error it took none of them
// and reports no outcome for any. It blocks while the queue
// (BatchSize×Concurrency messages) has no room for the whole of msgs,
// which is how a slow or failing Segment slows the consumer down; a batch
// larger than the queue is taken once the queue is empty, so it passes on
// its own. With the batches in the senders' hands the sink holds about
// 2×BatchSize×Concurrency messages plus one caller's batch at most.
//
// It returns ctx.Err() if ctx ends first, ErrClosed once Run has
// returned, ErrNoDestination for a message that names no write key when
// Options has none, and an error for a message with neither or both of
// Done and Acker. It may be called before Run starts; the messages wait.
// msgs is copied: the caller may reuse the slice once it returns. (It
// checks each message's JSON on the caller's goroutine, and notes what it
// found in an unexported field of the message in msgs.)
func (s *Segment) EnqueueBatch(ctx context.Context, msgs []Message) error {
	for i := range msgs {
		m := &msgs[i]
		if (m.Done == nil) == (m.Acker == nil) {
			return fmt.Errorf("sink: message %d (%s): exactly one of Message.Done and Message.Acker must be set", i, m.ID)
		}
		if m.Destination.WriteKey == "" && s.o.WriteKey == "" {
			return ErrNoDestination
		}
		m.rejected = check(m.JSON)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if len(msgs) == 0 {
		return nil
	}
	for {
		room, err := s.queue.put(msgs)
		if err != nil || room == nil {
			return err
		}
		select {
		case <-room:
		case <-ctx.Done():
			return ctx.Err()
		case <-s.stopping:
			return ErrClosed
		}
	}
}

// Healthy reports whether Segment is taking our requests: true when some
// destination is healthy, or before the first request; false while every
// call is answered 400 (see Options.SystemicRejects). A destination is
// healthy when it is not parked and its last request succeeded (a 2xx, or a 400/413 that
// rejects a message: Segment answered), or when its last failure is over a
// minute old and none of its batches is waiting for a retry. So one
// failing destination among healthy ones leaves the sink healthy; in
// single-source mode the one destination decides. Use it for readiness and
// logging; delivery does not depend on it.
func (s *Segment) Healthy() bool {
	if s.sys.active() {
		return false
	}
	now := time.Now()
	s.destMu.RLock()
	defer s.destMu.RUnlock()
	if len(s.dests) == 0 {
		return true
	}
	for _, d := range s.dests {
		if !d.parked.Load() && d.health.healthy(now) {
			return true
		}
	}
	return false
}

// Systemic reports whether the sink treats 400 as an outage (see
// Options.SystemicRejects): every call is being refused, whatever its
// destination. In accounts mode readiness uses it instead of Healthy, so
// that failing accounts never make a replica unready.
func (s *Segment) Systemic() bool { return s.sys.active() }

// finish reports m's outcome to its owner and to the metrics. d is the
// destination that held m, or nil for a message finished as it was taken
// off the queue.
func (s *Segment) finish(d *dest, m Message, r Result) {
	one := [1]Message{m}
	s.finishAll(d, one[:], r)
}

// finishAll finishes every message of msgs, held for d, with r: what
// finish does for each, with the runs of messages that name one
// BatchAcker reported in one AckAll.
func (s *Segment) finishAll(d *dest, msgs []Message, r Result) {
	if d != nil {
		d.waiting.Add(-int64(len(msgs)))
		s.held.Add(-int64(len(msgs)))
	}
	s.m.outcomes(r.Outcome, len(msgs))
	var seqs []int
	for i := 0; i < len(msgs); {
		m := msgs[i]
		ba, ok := m.Acker.(BatchAcker)
		if !ok {
			if m.Acker != nil {
				m.Acker.Ack(m.Seq, r)
			} else {
				m.Done(r)
			}
			i++
			continue
		}
		if seqs == nil {
			seqs = make([]int, 0, len(msgs)-i)
		}
		seqs = seqs[:0]
		seqs = append(seqs, m.Seq)
		for i++; i < len(msgs) && sameAcker(msgs[i].Acker, m.Acker); i++ {
			seqs = append(seqs, msgs[i].Seq)
		}
		ba.AckAll(seqs, r)
	}
}

// sameAcker reports whether a and b are one Acker. == panics on values of
// a type that is not comparable (a map, a func, a struct holding one):
// those are never the same, so each of their messages is a run of one.
func sameAcker(a, b Acker) (same bool) {
	defer func() {
		if recover() != nil {
			same = false
		}
	}()
	return a == b
}

// abandon finishes every message of msgs, held for d, as Abandoned with err.
func (s *Segment) abandon(d *dest, msgs []Message, err error) {
	s.finishAll(d, msgs, Result{Outcome: Abandoned, Err: err})
}

// parkedErr is the Err of d's Parked messages.
func (s *Segment) parkedErr(d *dest) error {
	d.mu.Lock()
	last := d.lastErr
	d.mu.Unlock()
	if last == "" {
		return ErrParked
	}
	return fmt.Errorf("%w (last attempt: %s)", ErrParked, last)
}

// outageGap is how long no request may have succeeded before a success
// counts as Segment coming back, which wakes the batches sleeping in a
// backoff. Under a partial failure (some batches failing for good while
// others succeed) successes come far more often than this, so they wake
// nobody and the failing batches keep to their backoff schedule.
const outageGap = time.Second

// health remembers the last request and how many batches are failing.
type health struct {
	mu     sync.Mutex
	last   time.Time     // the last answer (or failure) recorded
	ok     bool          // whether it was a success
	lastOK time.Time     // the last success
	failed bool          // a failure was recorded since the last success
	wake   chan struct{} // closed when Segment comes back after an outage
	// recoveries counts the times Segment came back after an outage, so
	// that a batch whose request was out when it happened (and so was not
	// sleeping on wake) can tell.
	recoveries uint64
	failing    atomic.Int64 // batches whose last attempt failed and that are still being retried
}

// epoch returns the number of recoveries so far, to hand to since.
func (h *health) epoch() uint64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.recoveries
}

// since returns a channel that is closed when a request succeeds after an
// outage (no success for outageGap): Segment is back, and batches in a long
// backoff need not sleep it out. It also reports whether that already
// happened since epoch e: while the batch's request was out, a wake-up it
// could not have slept on.
func (h *health) since(e uint64) (wake <-chan struct{}, missed bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.wake == nil {
		h.wake = make(chan struct{})
	}
	return h.wake, h.recoveries != e
}

func (h *health) record(at time.Time, ok bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if at.After(h.last) {
		h.last, h.ok = at, ok
	}
	if !ok {
		h.failed = true
		return
	}
	outage := h.failed && (h.lastOK.IsZero() || at.Sub(h.lastOK) >= outageGap)
	if at.After(h.lastOK) {
		h.lastOK = at
	}
	h.failed = false
	if outage {
		h.recoveries++
		if h.wake != nil {
			close(h.wake)
			h.wake = nil
		}
	}
}

func (h *health) healthy(now time.Time) bool {
	h.mu.Lock()
	last, ok := h.last, h.ok
	h.mu.Unlock()
	if last.IsZero() || ok {
		return true
	}
	return now.Sub(last) > time.Minute && h.failing.Load() == 0
}
