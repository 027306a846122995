package consumer

import (
	"context"
	"errors"
	"strconv"
	"time"

	"github.com/rs/zerolog"
	"github.com/segmentio/kafka-go"

	"github.com/produktly/produktly-segment/backoff"
)

// ErrParkAbandoned is what a park's completion gets when the record was not
// written because its partition was abandoned (rebalance) or the writer
// stopped: the record stays uncommitted and is read again by the
// partition's next owner.
var ErrParkAbandoned = errors.New("park abandoned: partition revoked or writer stopped")

// retrySchedule is the wait of a parked record before it is delivered
// again: the first park waits 1–5 s (5 s with 80 % jitter), each further
// park twice as long, capped at 10 minutes.
var retrySchedule = backoff.Policy{Base: 5 * time.Second, Max: 10 * time.Minute, Jitter: 0.8}

// retryDelay is how long a record parked for the attempt-th time (1 for
// the first park) waits before it is delivered again.
func retryDelay(attempt int) time.Duration { return retrySchedule.Delay(attempt - 1) }

// notBeforeLayout is RFC 3339 in UTC with a Z and milliseconds.
const notBeforeLayout = "2006-01-02T15:04:05.000Z"

// parkItem is one record on its way to the retry topic.
type parkItem struct {
	msg    kafka.Message // the retry-topic copy
	src    kafka.Message // the record as fetched
	cancel <-chan struct{}
	done   func(error)
}

// retryWriter parks records of accounts that keep failing on the retry
// topic (contract v2, "One account never holds back another"), on the same
// classified-error writer as the dead letters.
//
// Delivery rules:
//   - A park's completion is called exactly once. nil means all in-sync
//     replicas acknowledged the copy (acks=all): the source offset may
//     commit.
//   - A transient failure (leader change, timeout, connection, anything
//     not known to be permanent) and a refusal (authorization, topic
//     configuration) are retried with backoff for as long as it takes; a
//     park never drops or dead-letters a record.
//   - A record the retry topic refuses as too large even alone completes
//     with ErrRecordTooLarge (errors.Is), logged at error level and
//     counted: it cannot be parked whole, and parking it without its value
//     would lose it, so the caller keeps it and delivers it in place (it
//     holds its partition until its account recovers). The start-up check
//     reports a retry topic smaller than the source topic.
//   - A record whose partition is abandoned, or that is still queued when
//     run ends, completes with ErrParkAbandoned and stays uncommitted (a
//     write in progress at that moment may still land: the copy then
//     duplicates a record that is read again, under the same messageId).
//   - Each source partition has its own queue: records of one partition
//     are written in the order they were parked, and one partition's
//     failures never hold up another's.
type retryWriter struct {
	copyWriter[*parkItem]
	topic   string
	log     zerolog.Logger
	metrics *metrics
	now     func() time.Time
}

func newRetryWriter(o Options, log zerolog.Logger, m *metrics) *retryWriter {
	log = log.With().Str("retry_topic", o.RetryTopic).Logger()
	return &retryWriter{
		copyWriter: newCopyWriter(o, o.RetryTopic, log, m, func(it *parkItem) topicPartition {
			return topicPartition{it.src.Topic, it.src.Partition}
		}),
		topic:   o.RetryTopic,
		log:     log,
		metrics: m,
		now:     time.Now,
	}
}

// park queues m (a record as fetched from the source or the retry topic)
// for the retry topic on behalf of account. done is called exactly once,
// from another goroutine, as the type's delivery rules say. cancel is
// closed when m's partition is abandoned.
func (r *retryWriter) park(m kafka.Message, account string, cancel <-chan struct{}, done func(error)) {
	it := &parkItem{msg: retryMessage(m, account, r.now()), src: m, cancel: cancel, done: done}
	if !r.lanes.send(it) {
		done(ErrParkAbandoned)
	}
}

// run writes parked records until ctx ends; those left then complete with
// ErrParkAbandoned. It also checks, once, that the retry topic takes
// records as large as the source topic's.
func (r *retryWriter) run(ctx context.Context) error {
	return r.copyWriter.run(ctx, r.write, func(it *parkItem) { it.done(ErrParkAbandoned) })
}

func (r *retryWriter) write(ctx context.Context, batch []*parkItem) {
	deliver(ctx, r.w, batch, delivery[*parkItem]{
		message: func(it *parkItem) kafka.Message { return it.msg },
		cancel:  func(it *parkItem) <-chan struct{} { return it.cancel },
		written: func(it *parkItem) {
			r.metrics.parked.Inc()
			it.done(nil)
		},
		failed: func(it *parkItem, err error) verdict {
			c := classOf(err)
			r.metrics.parkErrors.WithLabelValues(c.String()).Inc()
			if c != classTooLarge {
				return retryLater
			}
			r.log.Error().Err(err).Str("topic", it.src.Topic).Int("partition", it.src.Partition).Int64("offset", it.src.Offset).
				Int("value_bytes", len(it.src.Value)).
				Msg("the retry topic refuses this record as too large, so it cannot be parked: it stays with its partition " +
					"and is delivered in place (raise the retry topic's max.message.bytes)")
			it.done(err)
			return settled
		},
		abandon: func(it *parkItem) { it.done(ErrParkAbandoned) },
		waiting: func(n, attempt int, wait time.Duration, last error, c writeClass) {
			ev := r.log.Warn()
			msg := "retry-topic write failed; retrying, the records stay uncommitted until it succeeds"
			if c == classRefused {
				ev = r.log.Error()
				msg = "the retry topic refuses this service's writes (authorization or topic configuration); retrying, " +
					"the records stay uncommitted until an operator fixes it"
			}
			ev.Err(last).Str("class", c.String()).Str("topic", batch[0].src.Topic).Int("partition", batch[0].src.Partition).
				Int("records", n).Int("attempt", attempt).Dur("backoff", wait).Msg(msg)
		},
	})
}

// retryMessage is the retry-topic copy of m: its key, value, timestamp and
// headers, the retry headers (account, attempt: one more than m's, or 1;
// not-before: now plus retryDelay of that attempt) and m's original
// coordinates (those m carries when it came from the retry topic).
func retryMessage(m kafka.Message, account string, now time.Time) kafka.Message {
	attempt := 1
	if v, ok := headerValue(m, HeaderRetryAttempt); ok {
		if n, err := strconv.Atoi(v); err == nil && n >= 1 {
			attempt = n + 1
		}
	}
	h := make([]kafka.Header, 0, len(m.Headers)+6)
	for _, x := range m.Headers {
		switch x.Key {
		case HeaderRetryAccount, HeaderRetryAttempt, HeaderRetryNotBefore:
		default:
			h = append(h, x)
		}
	}
	h = appendSource(h, m)
	h = append(h,
		kafka.Header{Key: HeaderRetryAccount, Value: []byte(account)},
		kafka.Header{Key: HeaderRetryAttempt, Value: []byte(strconv.Itoa(attempt))},
		kafka.Header{Key: HeaderRetryNotBefore, Value: []byte(now.Add(retryDelay(attempt)).UTC().Format(notBeforeLayout))},
	)
	return kafka.Message{Key: m.Key, Value: m.Value, Headers: h, Time: m.Time}
}

// retryInfo reads the retry headers of a record from the retry topic.
func retryInfo(m kafka.Message) (account string, attempt int, notBefore time.Time, ok bool) {
	account, ok1 := headerValue(m, HeaderRetryAccount)
	a, ok2 := headerValue(m, HeaderRetryAttempt)
	nb, ok3 := headerValue(m, HeaderRetryNotBefore)
	if !ok1 || !ok2 || !ok3 {
		return "", 0, time.Time{}, false
	}
	n, err1 := strconv.Atoi(a)
	t, err2 := time.Parse(time.RFC3339, nb)
	if err1 != nil || err2 != nil || n < 1 {
		return "", 0, time.Time{}, false
	}
	return account, n, t, true
}

// origin returns the coordinates a record's messageId derives from: the
// first copy's, as HeaderReplayedFrom (a replayed record) or the source
// headers (a record from the retry topic) name them, else its own.
func origin(m kafka.Message) (topic string, partition int, offset int64) {
	if t, p, o, ok := replayOrigin(m); ok {
		return t, p, o
	}
	t, ok1 := headerValue(m, HeaderSourceTopic)
	ps, ok2 := headerValue(m, HeaderSourcePartition)
	os, ok3 := headerValue(m, HeaderSourceOffset)
	if ok1 && ok2 && ok3 && t != "" {
		p, err1 := strconv.Atoi(ps)
		o, err2 := strconv.ParseInt(os, 10, 64)
		if err1 == nil && err2 == nil {
			return t, p, o
		}
	}
	return m.Topic, m.Partition, m.Offset
}
