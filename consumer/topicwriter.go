package consumer

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/segmentio/kafka-go"
)

// ErrRecordTooLarge marks a record that the target topic refuses on its
// own (MESSAGE_TOO_LARGE for a produce request holding that record alone):
// no retry of the same bytes can succeed. The dead-letter writer then
// writes the record without its value; the retry writer hands it back.
var ErrRecordTooLarge = errors.New("record larger than the topic accepts")

// writeClass is what a failed produce means for the record.
type writeClass int

const (
	// classTransient may succeed later as it is: leader changes, timeouts,
	// connection errors, and anything not known to be permanent.
	classTransient writeClass = iota
	// classTooLarge: the broker or the writer refuses the record's size.
	classTooLarge
	// classRefused: the topic refuses this service's writes
	// (authorization, a topic or request the broker will not accept).
	// Only an operator can fix it; the record is kept and retried with
	// backoff (and logged at error level).
	classRefused
)

func (c writeClass) String() string {
	switch c {
	case classTooLarge:
		return "too_large"
	case classRefused:
		return "refused"
	}
	return "transient"
}

// classify reads a producer error the way kafka-go defines it: a
// kafka.Error is transient when its Temporary() or Timeout() says so
// (the protocol's "retriable" codes), and so are network errors; size
// errors (the broker's MESSAGE_TOO_LARGE / RECORD_LIST_TOO_LARGE, the
// writer's MessageTooLargeError) and the authorization and request errors
// below are permanent. An error of unknown kind counts as transient, so
// that nothing is given up on by mistake.
func classify(err error) writeClass {
	var ke kafka.Error
	var mtl kafka.MessageTooLargeError
	switch {
	case errors.Is(err, ErrRecordTooLarge), errors.As(err, &mtl):
		return classTooLarge
	case errors.As(err, &ke):
		switch {
		case ke == kafka.MessageSizeTooLarge || ke == kafka.RecordListTooLarge:
			return classTooLarge
		case ke.Temporary() || ke.Timeout():
			return classTransient
		case slices.Contains(refusedCodes, ke):
			return classRefused
		}
		return classTransient
	}
	// Network errors (net.Error, io.ErrUnexpectedEOF, ECONNREFUSED,
	// ECONNRESET, EPIPE, a request's deadline) and anything else.
	return classTransient
}

// refusedCodes are the broker answers that no retry of the same request
// can change until an operator acts.
var refusedCodes = []kafka.Error{
	kafka.TopicAuthorizationFailed, kafka.ClusterAuthorizationFailed, kafka.SASLAuthenticationFailed,
	kafka.InvalidTopic, kafka.InvalidRequiredAcks, kafka.UnsupportedVersion, kafka.PolicyViolation,
	kafka.InvalidRecord, kafka.UnsupportedForMessageFormat, kafka.UnsupportedCompressionType,
}

// writeError is one record's failed write with its class.
type writeError struct {
	class writeClass
	err   error
}

func (e *writeError) Error() string { return e.class.String() + ": " + e.err.Error() }
func (e *writeError) Unwrap() error { return e.err }

func classOf(err error) writeClass {
	var we *writeError
	if errors.As(err, &we) {
		return we.class
	}
	return classify(err)
}

// writerConfig is what differs between the service's producers (the
// dead-letter writer, the retry-topic writer, `dlq replay`); everything
// else is the one configuration in newTopicWriter.
type writerConfig struct {
	Brokers   []string
	Transport kafka.RoundTripper
	// Topic is the target topic; empty means each message names its own.
	Topic string
	// Pin writes each message to the partition it names when the topic
	// has that partition; otherwise, and without Pin, the partition is
	// murmur2 of the key, as Java producers choose it.
	Pin bool
}

const (
	// writerBatchBytes caps one produce request of small records; it stays
	// at the broker's default message.max.bytes (1 MiB).
	writerBatchBytes = 1 << 20
	// writerLargeRecord: a record above this is written in a produce
	// request of its own, so that it can neither make a batch of other
	// records too large nor be judged by the size of others.
	writerLargeRecord = writerBatchBytes / 2
)

// topicWriter writes records with acknowledgement from all in-sync
// replicas and reports a classified error per record. It does not retry
// beyond kafka-go's brief internal attempts: the caller owns the retry
// policy, so that it can stop on cancellation and keep one partition's
// failures from holding up another's.
type topicWriter struct {
	batched *kafka.Writer // small records, up to 100 per request
	single  *kafka.Writer // one record per request (BatchSize 1)
}

func newTopicWriter(c writerConfig) *topicWriter {
	mk := func(batchSize int, batchBytes int64) *kafka.Writer {
		return &kafka.Writer{
			Addr:         kafka.TCP(c.Brokers...),
			Topic:        c.Topic,
			Balancer:     &partitionBalancer{pin: c.Pin},
			RequiredAcks: kafka.RequireAll,
			// kafka-go sleeps between its own attempts without looking
			// at ctx; keep them few and short, the caller retries.
			MaxAttempts:     2,
			WriteBackoffMin: 50 * time.Millisecond,
			WriteBackoffMax: 250 * time.Millisecond,
			BatchSize:       batchSize,
			BatchBytes:      batchBytes,
			BatchTimeout:    5 * time.Millisecond,
			Transport:       c.Transport,
		}
	}
	return &topicWriter{
		batched: mk(100, writerBatchBytes),
		// The broker, not the client, judges a record written alone.
		single: mk(1, 1<<30),
	}
}

func (w *topicWriter) Close() error {
	return errors.Join(w.batched.Close(), w.single.Close())
}

// recordSize approximates a record's encoded size (kafka-go's own count is
// unexported): its bytes plus a per-header and per-record allowance.
func recordSize(m kafka.Message) int {
	n := len(m.Key) + len(m.Value) + 32
	for _, h := range m.Headers {
		n += len(h.Key) + len(h.Value) + 8
	}
	return n
}

// write writes msgs once and returns each one's error (nil: written and
// acknowledged), a *writeError whose class says what the failure means.
// classTooLarge (errors.Is ErrRecordTooLarge) is reported only for a
// record refused in a request of its own.
func (w *topicWriter) write(ctx context.Context, msgs []kafka.Message) []error {
	errs := make([]error, len(msgs))
	// Records are written in their order: a run of small records in one
	// call, each large one on its own between runs.
	var run []int
	for i, m := range msgs {
		if recordSize(m) <= writerLargeRecord {
			run = append(run, i)
			continue
		}
		w.writeRun(ctx, msgs, run, errs)
		run = run[:0]
		errs[i] = w.writeAlone(ctx, m)
	}
	w.writeRun(ctx, msgs, run, errs)
	return errs
}

// writeRun writes msgs[run...] in one call and sets their errors.
func (w *topicWriter) writeRun(ctx context.Context, msgs []kafka.Message, run []int, errs []error) {
	if len(run) == 0 {
		return
	}
	batch := make([]kafka.Message, len(run))
	for j, i := range run {
		batch[j] = msgs[i]
	}
	err := w.batched.WriteMessages(ctx, batch...)
	var werrs kafka.WriteErrors
	perRecord := errors.As(err, &werrs) && len(werrs) == len(batch)
	for j, i := range run {
		e := err
		if perRecord {
			e = werrs[j]
		}
		switch {
		case e == nil:
		case classify(e) == classTooLarge:
			// Its batch was too large, not necessarily the record.
			errs[i] = w.writeAlone(ctx, msgs[i])
		default:
			errs[i] = &writeError{class: classify(e), err: e}
		}
	}
}

func (w *topicWriter) writeAlone(ctx context.Context, m kafka.Message) error {
	err := w.single.WriteMessages(ctx, m)
	if err == nil {
		return nil
	}
	var werrs kafka.WriteErrors
	if errors.As(err, &werrs) && len(werrs) == 1 {
		err = werrs[0]
	}
	c := classify(err)
	if c == classTooLarge {
		err = fmt.Errorf("%w (%d bytes): %w", ErrRecordTooLarge, recordSize(m), err)
	}
	return &writeError{class: c, err: err}
}

// partitionBalancer chooses a record's partition: the one it names when
// pinned and the topic has it, else murmur2 of the key, which is how Java
// producers (and librdkafka's murmur2_random) partition keyed records, so
// a re-produced record joins the other records of its key.
type partitionBalancer struct {
	pin     bool
	murmur2 kafka.Murmur2Balancer
}

func (b *partitionBalancer) Balance(m kafka.Message, partitions ...int) int {
	if b.pin && m.Partition >= 0 && slices.Contains(partitions, m.Partition) {
		return m.Partition
	}
	return b.murmur2.Balance(m, partitions...)
}
