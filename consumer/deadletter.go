package consumer

import (
	"context"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/rs/zerolog"
	"github.com/segmentio/kafka-go"

	"github.com/produktly/produktly-segment/mapping"
)

// maxReasonBytes caps the produktly-error header, so that the headers a
// dead letter adds stay within copyHeadroom.
const maxReasonBytes = 512

// How much of a record a dead letter leaves out.
const (
	omitNothing = iota
	omitValue   // the value; key and headers kept
	omitAll     // value, key and the record's own headers
)

// dlqItem is one record on its way to the dead-letter topic.
type dlqItem struct {
	msg    kafka.Message
	code   mapping.Code
	reason string
	cancel <-chan struct{} // closed when the partition is abandoned
	done   func(written bool)
	omit   int // omitNothing until the topic refuses the whole copy
}

// deadLetter writes records that can never be delivered to the dead-letter
// topic, with acknowledgement from all in-sync replicas: a record is
// acknowledged (and so may be committed past) only once its dead-letter
// copy is durable.
//
//   - Each source partition has its own queue and worker: a dead letter
//     that cannot be written holds up only its own partition.
//   - A copy the topic refuses as too large is written again without its
//     value (HeaderOmitted says so, with the original sizes; the source
//     coordinates say where the whole record is). Nothing is dropped.
//   - Other failures are retried with backoff (writeRetry) until the
//     write succeeds, the record's partition is abandoned or run's ctx
//     ends; the backoff ends early on either.
type deadLetter struct {
	copyWriter[*dlqItem]
	log     zerolog.Logger
	metrics *metrics
}

// topicPartition names a source partition.
type topicPartition struct {
	topic     string
	partition int
}

func newDeadLetter(o Options, log zerolog.Logger, m *metrics) *deadLetter {
	log = log.With().Str("dlq_topic", o.DeadLetterTopic).Logger()
	return &deadLetter{
		copyWriter: newCopyWriter(o, o.DeadLetterTopic, log, m, func(it *dlqItem) topicPartition {
			return topicPartition{it.msg.Topic, it.msg.Partition}
		}),
		log:     log,
		metrics: m,
	}
}

// send queues it; it.done is called once, from another goroutine.
func (d *deadLetter) send(it dlqItem) {
	if !d.lanes.send(&it) {
		it.done(false)
	}
}

// run writes dead letters until ctx ends; those left then are reported not
// written. It also checks, once, that the dead-letter topic takes records
// as large as the source topic's (limitCheck).
func (d *deadLetter) run(ctx context.Context) error {
	return d.copyWriter.run(ctx, d.write, func(it *dlqItem) { it.done(false) })
}

// write writes batch (records of one source partition), retrying those
// that failed until each is written or abandoned, or ctx ends.
func (d *deadLetter) write(ctx context.Context, batch []*dlqItem) {
	deliver(ctx, d.w, batch, delivery[*dlqItem]{
		message: func(it *dlqItem) kafka.Message { return dlqMessage(*it) },
		cancel:  func(it *dlqItem) <-chan struct{} { return it.cancel },
		written: func(it *dlqItem) {
			d.metrics.deadLettered.WithLabelValues(string(it.code)).Inc()
			if it.omit != omitNothing {
				d.metrics.deadLetterStubs.Inc()
			}
			it.done(true)
		},
		failed: func(it *dlqItem, err error) verdict {
			c := classOf(err)
			d.metrics.deadLetterErrors.WithLabelValues(c.String()).Inc()
			if c != classTooLarge || it.omit == omitAll {
				return retryLater
			}
			it.omit++
			d.log.Error().Err(err).Int("partition", it.msg.Partition).Int64("offset", it.msg.Offset).
				Int("value_bytes", len(it.msg.Value)).Str("omit", omitted(it.omit)).
				Msg("the dead-letter topic refuses this record's copy as too large; writing it without its " + omitted(it.omit) +
					" (raise the dead-letter topic's max.message.bytes)")
			return retryNow
		},
		abandon: func(it *dlqItem) { it.done(false) },
		waiting: func(n, attempt int, wait time.Duration, last error, c writeClass) {
			ev := d.log.Warn()
			msg := "dead-letter write failed; retrying, nothing is committed past these records of their partition until it succeeds"
			if c == classRefused {
				ev = d.log.Error()
				msg = "the dead-letter topic refuses this service's writes (authorization or topic configuration); retrying, " +
					"nothing is committed past these records of their partition until an operator fixes it"
			}
			ev.Err(last).Str("class", c.String()).Int("partition", batch[0].msg.Partition).
				Int("records", n).Int("attempt", attempt).Dur("backoff", wait).Msg(msg)
		},
	})
}

func omitted(level int) string {
	switch level {
	case omitValue:
		return "value"
	case omitAll:
		return "value,key,headers"
	}
	return ""
}

// dlqMessage is the dead-letter copy of a record: its key, value and
// headers as they were (less what it.omit leaves out), plus the contract's
// error and source headers. A record that already carries source headers
// (it came from the retry topic) keeps them.
func dlqMessage(it dlqItem) kafka.Message {
	m := it.msg
	reason := it.reason
	if len(reason) > maxReasonBytes {
		n := maxReasonBytes - 3
		for n > 0 && !utf8.RuneStart(reason[n]) {
			n-- // never cut a character in two
		}
		reason = reason[:n] + "..."
	}
	own := m.Headers
	key, value := m.Key, m.Value
	switch it.omit {
	case omitValue:
		value = nil
	case omitAll:
		key, value = nil, nil
		own = nil
		for _, x := range m.Headers {
			if x.Key == HeaderSourceTopic || x.Key == HeaderSourcePartition || x.Key == HeaderSourceOffset {
				own = append(own, x)
			}
		}
	}
	h := make([]kafka.Header, 0, len(own)+8)
	for _, x := range own {
		if x.Key != HeaderErrorCode && x.Key != HeaderError && x.Key != HeaderOmitted &&
			x.Key != HeaderOriginalValueSize && x.Key != HeaderOriginalKeySize {
			h = append(h, x)
		}
	}
	h = append(h,
		kafka.Header{Key: HeaderErrorCode, Value: []byte(it.code)},
		kafka.Header{Key: HeaderError, Value: []byte(reason)},
	)
	h = appendSource(h, m)
	if it.omit != omitNothing {
		h = append(h,
			kafka.Header{Key: HeaderOmitted, Value: []byte(omitted(it.omit))},
			kafka.Header{Key: HeaderOriginalValueSize, Value: []byte(strconv.Itoa(len(m.Value)))})
		if it.omit == omitAll {
			h = append(h, kafka.Header{Key: HeaderOriginalKeySize, Value: []byte(strconv.Itoa(len(m.Key)))})
		}
	}
	return kafka.Message{Key: key, Value: value, Headers: h, Time: m.Time}
}

// appendSource appends the source coordinates of m to h, unless m carries
// them already (a record from the retry topic), in which case those are
// kept as they are.
func appendSource(h []kafka.Header, m kafka.Message) []kafka.Header {
	for _, x := range h {
		if x.Key == HeaderSourceTopic {
			return h
		}
	}
	return append(h,
		kafka.Header{Key: HeaderSourceTopic, Value: []byte(m.Topic)},
		kafka.Header{Key: HeaderSourcePartition, Value: []byte(strconv.Itoa(m.Partition))},
		kafka.Header{Key: HeaderSourceOffset, Value: []byte(strconv.FormatInt(m.Offset, 10))},
	)
}
