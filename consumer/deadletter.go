package consumer

import (
	"context"
	"errors"
	"math/rand/v2"
	"strconv"
	"time"

	"github.com/rs/zerolog"
	"github.com/segmentio/kafka-go"

	"github.com/produktly/produktly-segment/mapping"
)

// Dead-letter headers, as the data contract names them.
const (
	HeaderErrorCode       = "produktly-error-code"
	HeaderError           = "produktly-error"
	HeaderSourceTopic     = "produktly-source-topic"
	HeaderSourcePartition = "produktly-source-partition"
	HeaderSourceOffset    = "produktly-source-offset"
)

// dlqItem is one record on its way to the dead-letter topic.
type dlqItem struct {
	msg    kafka.Message
	code   mapping.Code
	reason string
	cancel <-chan struct{} // closed when the partition is abandoned
	done   func(written bool)
}

// deadLetter writes records that can never be delivered to the dead-letter
// topic, with acknowledgement from all in-sync replicas, retrying for as
// long as it takes: a record is acknowledged (and so may be committed past)
// only once its dead-letter copy is durable.
type deadLetter struct {
	w       *kafka.Writer
	items   chan dlqItem
	log     zerolog.Logger
	metrics *metrics
}

func newDeadLetter(o Options, log zerolog.Logger, m *metrics) *deadLetter {
	return &deadLetter{
		w: &kafka.Writer{
			Addr:         kafka.TCP(o.Brokers...),
			Topic:        o.DeadLetterTopic,
			Balancer:     &kafka.Hash{},
			RequiredAcks: kafka.RequireAll,
			MaxAttempts:  3,
			BatchSize:    100,
			BatchBytes:   4 << 20,
			BatchTimeout: 5 * time.Millisecond,
			Transport:    o.Transport,
		},
		// Every item holds an in-flight slot, so a buffer of MaxInFlight
		// never blocks a sender.
		items:   make(chan dlqItem, o.MaxInFlight),
		log:     log.With().Str("dlq_topic", o.DeadLetterTopic).Logger(),
		metrics: m,
	}
}

func (d *deadLetter) send(it dlqItem) { d.items <- it }

// run writes items until ctx ends; items left then are reported not
// written.
func (d *deadLetter) run(ctx context.Context) error {
	defer d.w.Close()
	batch := make([]dlqItem, 0, 100)
	for {
		batch = batch[:0]
		select {
		case <-ctx.Done():
			d.abandonQueued()
			return nil
		case it := <-d.items:
			batch = append(batch, it)
		}
	more:
		for len(batch) < cap(batch) {
			select {
			case it := <-d.items:
				batch = append(batch, it)
			default:
				break more
			}
		}
		d.write(ctx, batch)
	}
}

func (d *deadLetter) abandonQueued() {
	for {
		select {
		case it := <-d.items:
			it.done(false)
		default:
			return
		}
	}
}

// write writes batch, retrying the records that failed with capped
// exponential backoff until each is written, abandoned or ctx ends.
//
// The broker limits the size of one record batch (message.max.bytes), not
// of a request: two large records bound for one partition can make a batch
// it refuses with MESSAGE_TOO_LARGE although each fits alone, and the writer
// would group them the same way on every retry. Once that happens the
// records are written one at a time.
func (d *deadLetter) write(ctx context.Context, batch []dlqItem) {
	backoff := 100 * time.Millisecond
	alone := false
	for attempt := 1; ; attempt++ {
		live := batch[:0]
		for _, it := range batch {
			select {
			case <-it.cancel:
				it.done(false)
			default:
				live = append(live, it)
			}
		}
		batch = live
		if len(batch) == 0 {
			return
		}
		errs := d.attempt(ctx, batch, alone)
		failed := batch[:0]
		var err error
		tooLarge := false
		for i, it := range batch {
			if errs[i] == nil {
				d.metrics.deadLettered.WithLabelValues(string(it.code)).Inc()
				it.done(true)
				continue
			}
			failed = append(failed, it)
			err = errs[i]
			tooLarge = tooLarge || errors.Is(errs[i], kafka.MessageSizeTooLarge)
		}
		if len(failed) == 0 {
			return
		}
		batch = failed
		d.metrics.deadLetterErrors.Inc()
		if tooLarge && !alone && len(batch) > 1 {
			alone = true
			d.log.Warn().Err(err).Int("records", len(batch)).
				Msg("dead-letter batch over the broker's size limit; writing its records one at a time")
			continue
		}
		d.log.Error().Err(err).Int("records", len(batch)).Int("attempt", attempt).Dur("backoff", backoff).
			Msg("dead-letter write failed; nothing is committed past these records until it succeeds")
		select {
		case <-ctx.Done():
			for _, it := range batch {
				it.done(false)
			}
			return
		case <-time.After(backoff/2 + rand.N(backoff/2+1)):
		}
		backoff = min(backoff*2, 30*time.Second)
	}
}

// attempt writes batch once, in one call or, alone, one call per record,
// and returns the error of each record (nil: written).
func (d *deadLetter) attempt(ctx context.Context, batch []dlqItem, alone bool) []error {
	errs := make([]error, len(batch))
	if alone {
		for i, it := range batch {
			errs[i] = d.w.WriteMessages(ctx, dlqMessage(it))
		}
		return errs
	}
	msgs := make([]kafka.Message, len(batch))
	for i, it := range batch {
		msgs[i] = dlqMessage(it)
	}
	err := d.w.WriteMessages(ctx, msgs...)
	var werrs kafka.WriteErrors
	if errors.As(err, &werrs) && len(werrs) == len(batch) {
		copy(errs, werrs)
		return errs
	}
	for i := range errs {
		errs[i] = err
	}
	return errs
}

// dlqMessage is the dead-letter copy of a record: its key, value and
// headers as they were, plus the contract's error and source headers.
func dlqMessage(it dlqItem) kafka.Message {
	m := it.msg
	h := make([]kafka.Header, 0, len(m.Headers)+5)
	h = append(h, m.Headers...)
	h = append(h,
		kafka.Header{Key: HeaderErrorCode, Value: []byte(it.code)},
		kafka.Header{Key: HeaderError, Value: []byte(it.reason)},
		kafka.Header{Key: HeaderSourceTopic, Value: []byte(m.Topic)},
		kafka.Header{Key: HeaderSourcePartition, Value: []byte(strconv.Itoa(m.Partition))},
		kafka.Header{Key: HeaderSourceOffset, Value: []byte(strconv.FormatInt(m.Offset, 10))},
	)
	return kafka.Message{Key: m.Key, Value: m.Value, Headers: h, Time: m.Time}
}
