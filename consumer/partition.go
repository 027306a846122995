package consumer

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
	"github.com/segmentio/kafka-go"
	"golang.org/x/sync/semaphore"

	"github.com/produktly/produktly-segment/integrations"
	"github.com/produktly/produktly-segment/mapping"
	"github.com/produktly/produktly-segment/sink"
)

// reader reads one partition: kafka-go's Reader in production, a fake in
// unit tests.
type reader interface {
	SetOffset(offset int64) error
	FetchMessage(ctx context.Context) (kafka.Message, error)
	Close() error
}

// partition is one assigned partition. It lives as long as this member owns
// the partition, which may span several generations (see runGeneration).
type partition struct {
	c     *Consumer
	topic string
	id    int
	// retry: a partition of the retry topic (accounts mode). Its records
	// are held until their not-before time, mapped with their original
	// coordinates and sent with sink.Message.Retry.
	retry bool
	tr    *tracker
	slots *semaphore.Weighted // MaxInFlightPerPartition
	log   zerolog.Logger
	hwm   atomic.Int64 // high watermark seen on the last fetch
	// next is the next offset to fetch. Only the fetch loop changes it;
	// between generations (no fetch loop) takeOver reads it.
	next int64
	// committed is the last offset committed for the partition by this
	// member, or the offset it was assigned at.
	committed atomic.Int64

	// work outlives fetching: it ends only when the partition's remaining
	// records are abandoned, so the sink stops retrying them.
	work    context.Context
	abandon context.CancelFunc
}

func (c *Consumer) newPartition(topic string, id int, start int64) *partition {
	work, abandon := context.WithCancel(context.Background())
	retry := c.accounts() && topic == c.opts.RetryTopic
	lc := c.log.With().Int("partition", id)
	if retry {
		lc = lc.Str("retry_topic", topic)
	}
	p := &partition{
		c:       c,
		topic:   topic,
		id:      id,
		retry:   retry,
		next:    start,
		tr:      newTracker(start),
		slots:   semaphore.NewWeighted(int64(c.opts.MaxInFlightPerPartition)),
		log:     lc.Logger(),
		work:    work,
		abandon: abandon,
	}
	p.committed.Store(start)
	p.hwm.Store(-1)
	return p
}

func (p *partition) key() topicPartition { return topicPartition{p.topic, p.id} }

// resume continues a partition carried from the last generation in one
// that assigned it at offset committed. That is only safe when committed is
// what this member last committed: otherwise another member owned the
// partition in between and its commit is what counts.
func (p *partition) resume(committed int64) bool {
	if committed != p.committed.Load() {
		return false
	}
	next, ok := p.tr.resume(p.next)
	if !ok {
		return false
	}
	p.next = next
	return true
}

// readerConfig is the configuration of a partition's reader.
func (c *Consumer) readerConfig(topic string, id int) kafka.ReaderConfig {
	o := c.opts
	return kafka.ReaderConfig{
		Brokers:   o.Brokers,
		Dialer:    o.Dialer,
		Topic:     topic,
		Partition: id,
		MinBytes:  1,
		MaxBytes:  o.FetchMaxBytes,
		// Records of aborted transactions are never delivered, and those
		// of open ones wait for their commit.
		IsolationLevel: kafka.ReadCommitted,
		// kafka-go asks the broker to wait this minus one second (its RTT
		// allowance, or a quarter of it when shorter) and gives up on the
		// answer after the whole of it. 1.5 s leaves the broker 0.5 s and
		// the answer a second of slack: shorter (the old 250 ms left 62 ms)
		// makes idle partitions time out spuriously on a loaded machine,
		// longer delays closing a reader on revoke and shutdown, which
		// waits for the fetch in progress.
		MaxWait:        1500 * time.Millisecond,
		QueueCapacity:  256,
		ReadBackoffMin: 100 * time.Millisecond,
		ReadBackoffMax: time.Second,
		ErrorLogger: kafka.LoggerFunc(func(f string, a ...any) {
			c.log.Warn().Str("reader_topic", topic).Int("partition", id).Msgf("kafka-go reader: "+f, a...)
		}),
	}
}

// fetch reads the partition from p.next until ctx ends, handing every
// record on. Before each fetch it waits for the span from the commit point
// to stay below MaxUncommitted and for an in-flight slot: the back-pressure
// that keeps memory flat while Segment is down or a record never finishes.
func (p *partition) fetch(ctx context.Context) {
	r := p.c.seams.newReader(p.topic, p.id)
	defer r.Close()
	if !p.setOffset(ctx, r) {
		return
	}
	p.log.Info().Str("start", humanOffset(p.next)).Msg("partition fetching")
	limit := int64(p.c.opts.MaxUncommitted)
	for {
		if p.tr.spanFull(p.next, limit) {
			p.log.Warn().Int64("next", p.next).Int64("commit_point", p.tr.committable()).Int64("limit", limit).
				Msg("uncommitted span at its limit: fetching waits for the oldest record to finish")
			p.c.metrics.spanWaits.Inc()
			if err := p.tr.waitSpan(ctx, p.next, limit); err != nil {
				return
			}
		}
		if err := p.acquire(ctx); err != nil {
			return
		}
		m, err := r.FetchMessage(ctx)
		if err != nil {
			p.release(0)
			if ctx.Err() != nil {
				return
			}
			p.log.Warn().Err(err).Msg("fetch")
			select {
			case <-ctx.Done():
				return
			case <-time.After(time.Second):
			}
			continue
		}
		if p.retry && !p.hold(ctx, m) {
			// Revoked or shutting down while the record waited: it is
			// not taken (p.next stays at it) and is read again.
			p.release(0)
			return
		}
		p.hwm.Store(m.HighWaterMark)
		p.next = m.Offset + 1
		p.handle(ctx, m)
	}
}

// hold waits until a retry-topic record's not-before time. Only this
// partition's fetching waits (each partition has its own loop, so source
// partitions go on); it returns false when ctx ends first, at once. A
// record without readable retry headers is not held.
func (p *partition) hold(ctx context.Context, m kafka.Message) bool {
	_, _, notBefore, ok := retryInfo(m)
	if !ok {
		return ctx.Err() == nil
	}
	wait := time.Until(notBefore)
	if wait <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// setOffset positions the reader at p.next, retrying while it fails; the
// consumer reports not ready meanwhile, rather than leaving the partition
// stopped unseen. It returns false when ctx ends first.
func (p *partition) setOffset(ctx context.Context, r reader) bool {
	stalled := false
	defer func() {
		if stalled {
			p.c.stalled.Add(-1)
		}
	}()
	for {
		err := r.SetOffset(p.next)
		if err == nil {
			return true
		}
		if !stalled {
			stalled = true
			p.c.stalled.Add(1)
		}
		p.log.Error().Err(err).Int64("offset", p.next).Msg("set offset: partition stalled, not ready; retrying")
		select {
		case <-ctx.Done():
			return false
		case <-time.After(time.Second):
		}
	}
}

// messageOverhead is what a captured kafka.Message costs beyond its key,
// value and headers: the struct, its topic, and the sink.Message and
// closures that carry it while it is in flight.
const messageOverhead = 512

// weight is what a record counts against MaxInFlightBytes: everything it
// holds while in flight (the captured message with its key, value and
// headers, the mapped JSON and the sink's copy of it in a request body),
// or the whole cap for a record larger than it, so it can still pass on
// its own.
func (p *partition) weight(m kafka.Message, json []byte) int64 {
	n := int64(len(m.Key) + len(m.Value) + messageOverhead + 2*len(json))
	for _, h := range m.Headers {
		n += int64(len(h.Key) + len(h.Value))
	}
	return min(n, int64(p.c.opts.MaxInFlightBytes))
}

func (p *partition) acquire(ctx context.Context) error {
	if err := p.slots.Acquire(ctx, 1); err != nil {
		return err
	}
	if err := p.c.slots.Acquire(ctx, 1); err != nil {
		p.slots.Release(1)
		return err
	}
	p.c.metrics.inFlight.Inc()
	return nil
}

// release gives back the in-flight slot of one record that is finished or
// abandoned, and bytes of the byte cap. Every acquired slot is released
// exactly once.
func (p *partition) release(bytes int64) {
	p.c.metrics.inFlight.Dec()
	if bytes > 0 {
		p.c.bytes.Release(bytes)
	}
	p.c.slots.Release(1)
	p.slots.Release(1)
}

// handle maps one record and routes it. ctx ends when fetching stops; a
// hand-over blocked by the byte cap or a full sink queue then gives up, so
// a revoke or shutdown never waits on it, and the record is read again.
func (p *partition) handle(ctx context.Context, m kafka.Message) {
	p.tr.add(m.Offset)
	p.c.metrics.consumed.Inc()
	rec := mapping.Record{Topic: m.Topic, Partition: m.Partition, Offset: m.Offset, Time: m.Time, Value: m.Value}
	if len(m.Headers) > 0 {
		switch {
		case p.retry:
			// A parked record keeps the messageId of its first copy.
			rec.Topic, rec.Partition, rec.Offset = origin(m)
		default:
			// So does a replayed one.
			if t, part, off, ok := replayOrigin(m); ok {
				rec.Topic, rec.Partition, rec.Offset = t, part, off
			}
		}
	}
	mapFn := mapping.Map
	if p.c.accounts() {
		mapFn = mapping.MapAccount
	}
	call, err := mapFn(rec)
	if err != nil {
		var merr *mapping.Error
		if !errors.As(err, &merr) {
			merr = &mapping.Error{Code: mapping.CodeInvalidJSON, Msg: err.Error()}
		}
		w, ok := p.take(ctx, m, nil)
		if !ok {
			return
		}
		p.deadLetter(m, w, merr.Code, merr.Error())
		return
	}
	p.route(ctx, m, call)
}

// take acquires a record's bytes of the byte cap; when ctx ends first the
// record is dropped (read again by whoever reads the partition next).
func (p *partition) take(ctx context.Context, m kafka.Message, json []byte) (int64, bool) {
	w := p.weight(m, json)
	if err := p.c.bytes.Acquire(ctx, w); err != nil {
		p.tr.drop(m.Offset)
		p.release(0)
		return 0, false
	}
	return w, true
}

// route decides what happens to a record that mapped to a call. It is the
// one place for that decision. Single-source mode: deliver. Accounts mode,
// by the account's integration in force now (at map time): active,
// deliver to its region's endpoint with its write key; unknown or
// inactive, skip (acknowledged like a delivered record, counted).
func (p *partition) route(ctx context.Context, m kafka.Message, call mapping.Call) {
	var dst sink.Destination
	if in := p.c.opts.Integrations; in != nil {
		it, ok := in.Lookup(call.AccountID)
		if !ok {
			p.c.metrics.skippedInactive.Inc()
			p.done(m, 0)
			return
		}
		dst = sink.Destination{Account: call.AccountID, WriteKey: it.WriteKey.Reveal(), Endpoint: p.c.endpoint(it.Region)}
	}
	w, ok := p.take(ctx, m, call.JSON)
	if !ok {
		return
	}
	p.send(ctx, m, w, sent{id: call.MessageID, json: call.JSON, dst: dst}, p.retry)
}

// sent is what a record was handed to the sink as, kept for a redelivery.
type sent struct {
	id   string
	json []byte
	dst  sink.Destination
}

// send hands one record of weight w to the sink. Its Done closure is the
// one allocation per record here: it holds s by value.
func (p *partition) send(ctx context.Context, m kafka.Message, w int64, s sent, retry bool) {
	err := p.c.opts.Sink.Enqueue(ctx, sink.Message{
		ID:          s.id,
		JSON:        s.json,
		Cancel:      p.work.Done(),
		Destination: s.dst,
		Retry:       retry,
		Done:        func(r sink.Result) { p.finish(m, w, s, r) },
	})
	if err != nil {
		// Fetching stopped (or the sink did) before the sink took the
		// record: it stays uncommitted and is read again.
		p.tr.drop(m.Offset)
		p.release(w)
	}
}

// endpoint is the Tracking API of region.
func (c *Consumer) endpoint(r integrations.Region) string {
	if r == integrations.RegionEU {
		return c.opts.EUEndpoint
	}
	return c.opts.Endpoint
}

// finish takes the sink's outcome for one record of weight w, sent as s.
func (p *partition) finish(m kafka.Message, w int64, s sent, r sink.Result) {
	switch r.Outcome {
	case sink.Delivered:
		p.c.metrics.delivered.Inc()
		if p.retry {
			p.c.metrics.redelivered.Inc()
		}
		p.done(m, w)
	case sink.Rejected:
		code := mapping.CodeRejected
		var rej *sink.RejectedError
		if errors.As(r.Err, &rej) && rej.Status == http.StatusRequestEntityTooLarge {
			code = mapping.CodeTooLarge
		}
		reason := "segment rejected the call"
		if r.Err != nil {
			reason = r.Err.Error()
		}
		p.deadLetter(m, w, code, reason)
	case sink.Parked:
		p.park(m, w, s)
	default:
		// Abandoned: the sink gave up on it (the partition was abandoned,
		// or the sink stopped). It no longer counts as in flight and the
		// commit point never passes it.
		p.tr.drop(m.Offset)
		p.release(w)
	}
}

// park writes a record of a parked account to the retry topic; its offset
// is acknowledged once the broker has the copy. A record the retry topic
// refuses as too large is delivered in place (sent again with Retry, so
// the sink attempts it while the account is parked); one whose partition
// was abandoned stays uncommitted.
func (p *partition) park(m kafka.Message, w int64, s sent) {
	if p.c.retry == nil {
		// Single-source mode never parks (the sink's ParkAfter is unset).
		// Should it, the record is treated as abandoned: it stays
		// uncommitted and is read again, never lost.
		p.log.Error().Int64("offset", m.Offset).Msg("sink parked a record outside accounts mode; it stays uncommitted")
		p.tr.drop(m.Offset)
		p.release(w)
		return
	}
	p.c.retry.park(m, s.dst.Account, p.work.Done(), func(err error) {
		switch {
		case err == nil:
			p.done(m, w)
		case errors.Is(err, ErrRecordTooLarge):
			// Called from the retry writer's goroutine, never from a
			// sink callback, so it may enqueue.
			p.send(p.work, m, w, s, true)
		default: // ErrParkAbandoned
			p.tr.drop(m.Offset)
			p.release(w)
		}
	})
}

// done acknowledges one record and frees its slot.
func (p *partition) done(m kafka.Message, w int64) {
	p.tr.ack(m.Offset)
	p.release(w)
}

func (p *partition) deadLetter(m kafka.Message, w int64, code mapping.Code, reason string) {
	p.log.Warn().Int64("offset", m.Offset).Str("code", string(code)).Str("reason", reason).Msg("dead-lettering record")
	p.c.dlq.send(dlqItem{
		msg:    m,
		code:   code,
		reason: reason,
		cancel: p.work.Done(),
		done: func(written bool) {
			if written {
				p.done(m, w)
			} else {
				p.tr.drop(m.Offset)
				p.release(w)
			}
		},
	})
}

func humanOffset(o int64) string {
	switch o {
	case kafka.FirstOffset:
		return "earliest"
	case kafka.LastOffset:
		return "latest"
	}
	return strconv.FormatInt(o, 10)
}
