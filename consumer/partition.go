package consumer

import (
	"context"
	"errors"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
	"github.com/segmentio/kafka-go"
	"golang.org/x/sync/semaphore"

	"github.com/produktly/produktly-segment/mapping"
	"github.com/produktly/produktly-segment/sink"
)

// partition is one assigned partition within one generation.
type partition struct {
	c     *Consumer
	id    int
	start int64
	tr    *tracker
	slots *semaphore.Weighted // MaxInFlightPerPartition
	log   zerolog.Logger
	hwm   atomic.Int64 // high watermark seen on the last fetch

	// work outlives fetching: it ends only when the partition's remaining
	// records are abandoned, so the sink stops retrying them.
	work    context.Context
	abandon context.CancelFunc
}

func (c *Consumer) newPartition(id int, start int64) *partition {
	work, abandon := context.WithCancel(context.Background())
	p := &partition{
		c:       c,
		id:      id,
		start:   start,
		tr:      newTracker(start),
		slots:   semaphore.NewWeighted(int64(c.opts.MaxInFlightPerPartition)),
		log:     c.log.With().Int("partition", id).Logger(),
		work:    work,
		abandon: abandon,
	}
	p.hwm.Store(-1)
	return p
}

// fetch reads the partition from its start offset until ctx ends, handing
// every record on. It waits for an in-flight slot before each fetch, which
// is the back-pressure that keeps memory flat while Segment is down.
func (p *partition) fetch(ctx context.Context) {
	o := p.c.opts
	r := kafka.NewReader(kafka.ReaderConfig{
		Brokers:   o.Brokers,
		Dialer:    o.Dialer,
		Topic:     o.Topic,
		Partition: p.id,
		MinBytes:  1,
		MaxBytes:  o.FetchMaxBytes,
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
		ErrorLogger:    kafka.LoggerFunc(func(f string, a ...any) { p.log.Warn().Msgf("kafka-go reader: "+f, a...) }),
	})
	defer r.Close()
	if err := r.SetOffset(p.start); err != nil {
		p.log.Error().Err(err).Int64("offset", p.start).Msg("set offset")
		return
	}
	p.log.Info().Str("start", humanOffset(p.start)).Msg("partition assigned")
	for {
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
		p.hwm.Store(m.HighWaterMark)
		// The byte cap is taken once the record's size is known; a record
		// that was fetched but never tracked is simply read again later.
		if err := p.c.bytes.Acquire(ctx, p.weight(m)); err != nil {
			p.release(0)
			return
		}
		p.handle(ctx, m)
	}
}

// weight is what a record counts against MaxInFlightBytes: its key and
// value, or the whole cap for a record larger than it, so it can still
// pass on its own.
func (p *partition) weight(m kafka.Message) int64 {
	return min(int64(len(m.Key)+len(m.Value)), int64(p.c.opts.MaxInFlightBytes))
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

// handle maps one record and hands it to the sink or the dead-letter topic.
// ctx ends when fetching stops; a hand-over blocked by a full sink queue
// then gives up, so a revoke or shutdown never waits on it.
func (p *partition) handle(ctx context.Context, m kafka.Message) {
	p.tr.add(m.Offset)
	p.c.metrics.consumed.Inc()
	rec := mapping.Record{Topic: m.Topic, Partition: m.Partition, Offset: m.Offset, Time: m.Time, Value: m.Value}
	if len(m.Headers) > 0 {
		// A replayed record keeps the messageId of its first copy.
		if t, part, off, ok := replayOrigin(m); ok {
			rec.Topic, rec.Partition, rec.Offset = t, part, off
		}
	}
	call, err := mapping.Map(rec)
	if err != nil {
		var merr *mapping.Error
		if !errors.As(err, &merr) {
			merr = &mapping.Error{Code: mapping.CodeInvalidJSON, Msg: err.Error()}
		}
		p.deadLetter(m, merr.Code, merr.Error())
		return
	}
	err = p.c.opts.Sink.Enqueue(ctx, sink.Message{
		ID:     call.MessageID,
		JSON:   call.JSON,
		Cancel: p.work.Done(),
		Done:   func(r sink.Result) { p.finish(m, r) },
	})
	if err != nil {
		// Fetching stopped (or the sink did) before the sink took the
		// record: it stays uncommitted and is read again by the next owner.
		p.tr.drop(m.Offset)
		p.release(p.weight(m))
	}
}

// finish takes the sink's outcome for one record.
func (p *partition) finish(m kafka.Message, r sink.Result) {
	switch r.Outcome {
	case sink.Delivered:
		p.c.metrics.delivered.Inc()
		p.done(m)
	case sink.Rejected:
		code := mapping.CodeRejected
		var merr *mapping.Error
		if errors.As(r.Err, &merr) {
			code = merr.Code
		}
		msg := "segment rejected the call"
		if r.Err != nil {
			msg = r.Err.Error()
		}
		p.deadLetter(m, code, msg)
	default:
		p.release(p.weight(m))
	}
}

// done acknowledges one record and frees its slot.
func (p *partition) done(m kafka.Message) {
	p.tr.ack(m.Offset)
	p.release(p.weight(m))
}

func (p *partition) deadLetter(m kafka.Message, code mapping.Code, reason string) {
	p.log.Warn().Int64("offset", m.Offset).Str("code", string(code)).Str("reason", reason).Msg("dead-lettering record")
	p.c.dlq.send(dlqItem{
		msg:    m,
		code:   code,
		reason: reason,
		cancel: p.work.Done(),
		done: func(written bool) {
			if written {
				p.done(m)
			} else {
				p.release(p.weight(m))
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
