package integrations

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"time"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
	"github.com/segmentio/kafka-go"
	"golang.org/x/sync/errgroup"
)

// Defaults of TopicOptions.
const (
	DefaultRetryInterval    = 5 * time.Second
	DefaultMetadataInterval = 30 * time.Second
	// publishDelay bounds how long applied records wait before they are
	// published in a new snapshot: records that arrive together share one
	// copy of the table, and a change is in force well within the
	// contract's second.
	publishDelay = 100 * time.Millisecond
	// fetchWait is the readers' long-poll wait: a fetch returns as soon as
	// a record arrives, and at the latest after fetchWait.
	fetchWait = 500 * time.Millisecond
)

// TopicOptions configure a table read from INTEGRATIONS_TOPIC, and the
// Publisher of the same topic.
type TopicOptions struct {
	// Brokers to bootstrap from. Required.
	Brokers []string
	// Topic is the compacted integrations topic. Required.
	Topic string
	// Dialer carries TLS and SASL settings for the partition readers.
	// Default kafka.DefaultDialer.
	Dialer *kafka.Dialer
	// Transport carries the same settings for metadata, offsets and
	// writes. Default kafka.DefaultTransport.
	Transport kafka.RoundTripper
	// RetryInterval is how long a table waits before looking again for a
	// topic that does not exist or a broker that cannot be reached.
	// Default DefaultRetryInterval.
	RetryInterval time.Duration
	// MetadataInterval is how often a running table checks the topic's
	// partitions: when partitions were added (or the topic was deleted) it
	// reads the topic again from the start, keeping the current snapshot
	// until it has caught up. Default DefaultMetadataInterval.
	MetadataInterval time.Duration
	// Logger for the topic's state and invalid integrations. Default: none.
	Logger zerolog.Logger
	// Registerer for the table's metrics. Default nil: not registered.
	// Unused by the Publisher.
	Registerer prometheus.Registerer
}

// Validate reports missing brokers or topic and a negative interval.
func (o *TopicOptions) Validate() error {
	switch {
	case len(o.Brokers) == 0:
		return errors.New("integrations: TopicOptions.Brokers is required")
	case o.Topic == "":
		return errors.New("integrations: TopicOptions.Topic is required")
	case o.RetryInterval < 0 || o.MetadataInterval < 0:
		return errors.New("integrations: TopicOptions.RetryInterval and MetadataInterval must not be negative")
	}
	return nil
}

func (o *TopicOptions) defaults() {
	if o.Dialer == nil {
		o.Dialer = kafka.DefaultDialer
	}
	if o.Transport == nil {
		o.Transport = kafka.DefaultTransport
	}
	if o.RetryInterval == 0 {
		o.RetryInterval = DefaultRetryInterval
	}
	if o.MetadataInterval == 0 {
		o.MetadataInterval = DefaultMetadataInterval
	}
}

// errPartitionsChanged ends follow when the topic's partitions changed.
var errPartitionsChanged = errors.New("the topic's partitions changed")

func (o *TopicOptions) client() *kafka.Client {
	return &kafka.Client{Addr: kafka.TCP(o.Brokers...), Transport: o.Transport, Timeout: 10 * time.Second}
}

// TopicError reports an integrations topic that cannot be read, such as
// one that does not exist (Err is then kafka.UnknownTopicOrPartition).
type TopicError struct {
	Topic string
	Err   error
}

func (e *TopicError) Error() string { return "integrations topic " + e.Topic + ": " + e.Err.Error() }
func (e *TopicError) Unwrap() error { return e.Err }

// NewTopic returns a table that Run fills from the topic. It is not Ready
// until Run has read every partition up to the end offsets it found when it
// started (a topic that does not exist yet is looked for again every
// RetryInterval, with a log line, and the table stays not ready); then Run
// keeps reading, and a produced change is in force within a second.
// Records: key = account id (UTF-8), value = the integration object, a null
// value (tombstone) removes the account, the last record per key wins. A
// record without a key, or with a key that is not UTF-8, is ignored and
// counted (reason "invalid_record").
func NewTopic(o TopicOptions) (*Table, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	o.defaults()
	t, err := newTable(o.Logger, o.Registerer)
	if err != nil {
		return nil, err
	}
	s := &topicSource{t: t, o: o, rep: reporter{log: o.Logger, m: t.m}}
	t.run = s.run
	return t, nil
}

type topicSource struct {
	t   *Table
	o   TopicOptions
	rep reporter

	work  map[string]Integration // owned by run's applying goroutine
	dirty bool
}

func (s *topicSource) run(ctx context.Context) error {
	log := s.o.Logger.With().Str("topic", s.o.Topic).Logger()
	client := s.o.client()
	lastErr := ""
	for {
		bounds, err := partitionBounds(ctx, client, s.o.Topic)
		if err == nil {
			lastErr = ""
			s.work = map[string]Integration{}
			err = follow(ctx, &s.o, client, bounds, s)
		}
		if ctx.Err() != nil {
			return nil
		}
		if errors.Is(err, errPartitionsChanged) {
			log.Info().Msg("integrations topic partitions changed: reading it again from the start, the current integrations stay in force meanwhile")
			continue
		}
		// Log a failure once, not once per retry.
		log.Debug().Err(err).Msg("integrations topic: looking again")
		if msg := err.Error(); msg != lastErr {
			lastErr = msg
			ev := log.Error()
			if !s.t.Ready() {
				ev = ev.Bool("ready", false)
			}
			if errors.Is(err, kafka.UnknownTopicOrPartition) {
				ev.Dur("retry", s.o.RetryInterval).Msg("integrations topic does not exist: not ready until it does; looking again")
			} else {
				ev.Err(err).Dur("retry", s.o.RetryInterval).Msg("integrations topic unreadable: keeping the current integrations; trying again")
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(s.o.RetryInterval):
		}
	}
}

// record applies one record to the working table.
func (s *topicSource) record(m kafka.Message) {
	if len(m.Key) == 0 || !utf8.Valid(m.Key) {
		s.t.m.errors.WithLabelValues(reasonRecord).Inc()
		s.o.Logger.Warn().Str("topic", m.Topic).Int("partition", m.Partition).Int64("offset", m.Offset).
			Msg("integrations record without a UTF-8 account id as its key: ignored")
		return
	}
	account := string(m.Key)
	s.dirty = true
	if m.Value == nil {
		delete(s.work, account)
		return
	}
	it, err := Parse(account, m.Value)
	if err != nil {
		s.rep.invalid(err)
	}
	s.work[account] = it
}

// caughtUp publishes the table read so far: every partition has reached
// the end offsets of the start.
func (s *topicSource) caughtUp() {
	s.dirty = true // also an empty table, after a restart
	s.publish()
	s.t.markReady()
	snap := s.t.Snapshot()
	s.o.Logger.Info().Str("topic", s.o.Topic).Int("accounts", snap.Len()).Int("active", snap.Count(StateActive)).
		Int("inactive", snap.Count(StateInactive)).Int("invalid", snap.Count(StateInvalid)).
		Msg("integrations loaded from topic")
}

// publish swaps in a copy of the working table if it changed.
func (s *topicSource) publish() {
	s.rep.flush()
	if !s.dirty && s.t.Ready() {
		return
	}
	s.dirty = false
	s.t.publish(maps.Clone(s.work))
}

// handler receives a topic's records in one goroutine.
type handler interface {
	record(kafka.Message)
	caughtUp() // once: every partition has reached its end offset of the start
	publish()  // after caughtUp: records were applied since the last call
}

// partitionBounds returns the [first, end) offsets of every partition.
func partitionBounds(ctx context.Context, client *kafka.Client, topic string) (map[int][2]int64, error) {
	md, err := client.Metadata(ctx, &kafka.MetadataRequest{Topics: []string{topic}})
	if err != nil {
		return nil, &TopicError{Topic: topic, Err: err}
	}
	if len(md.Topics) != 1 {
		return nil, &TopicError{Topic: topic, Err: kafka.UnknownTopicOrPartition}
	}
	if err := md.Topics[0].Error; err != nil {
		return nil, &TopicError{Topic: topic, Err: err}
	}
	if len(md.Topics[0].Partitions) == 0 {
		return nil, &TopicError{Topic: topic, Err: kafka.UnknownTopicOrPartition}
	}
	req := &kafka.ListOffsetsRequest{Topics: map[string][]kafka.OffsetRequest{}}
	for _, p := range md.Topics[0].Partitions {
		req.Topics[topic] = append(req.Topics[topic], kafka.FirstOffsetOf(p.ID), kafka.LastOffsetOf(p.ID))
	}
	res, err := client.ListOffsets(ctx, req)
	if err != nil {
		return nil, &TopicError{Topic: topic, Err: err}
	}
	out := map[int][2]int64{}
	for _, po := range res.Topics[topic] {
		if po.Error != nil {
			return nil, &TopicError{Topic: topic, Err: fmt.Errorf("offsets of partition %d: %w", po.Partition, po.Error)}
		}
		out[po.Partition] = [2]int64{po.FirstOffset, po.LastOffset}
	}
	return out, nil
}

// follow reads every partition of the topic from its first offset, with
// one reader per partition and no consumer group (nothing is committed),
// and hands the records to h in one goroutine: h.caughtUp once every
// partition has reached its end offset in bounds, then h.publish at most
// publishDelay after records were applied. It returns when ctx is done or
// a reader fails.
func follow(ctx context.Context, o *TopicOptions, client *kafka.Client, bounds map[int][2]int64, h handler) error {
	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		// New partitions would go unread, a deleted topic unnoticed.
		tick := time.NewTicker(o.MetadataInterval)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-tick.C:
			}
			md, err := client.Metadata(ctx, &kafka.MetadataRequest{Topics: []string{o.Topic}})
			switch {
			case err != nil || len(md.Topics) != 1:
				continue // the readers retry too; a passing failure is no reason to start over
			case errors.Is(md.Topics[0].Error, kafka.UnknownTopicOrPartition):
				return &TopicError{Topic: o.Topic, Err: kafka.UnknownTopicOrPartition}
			case md.Topics[0].Error == nil && len(md.Topics[0].Partitions) != len(bounds):
				return errPartitionsChanged
			}
		}
	})
	msgs := make(chan kafka.Message, 1024)
	for p := range bounds {
		g.Go(func() error {
			r := kafka.NewReader(kafka.ReaderConfig{
				Brokers: o.Brokers, Dialer: o.Dialer, Topic: o.Topic, Partition: p,
				MinBytes: 1, MaxBytes: 1 << 20, MaxWait: fetchWait, ReadLagInterval: -1,
				ErrorLogger: kafka.LoggerFunc(func(msg string, args ...any) {
					o.Logger.Debug().Str("topic", o.Topic).Int("partition", p).Msgf(msg, args...)
				}),
			})
			defer r.Close()
			if err := r.SetOffset(kafka.FirstOffset); err != nil {
				return err
			}
			for {
				m, err := r.FetchMessage(ctx)
				if err != nil {
					return fmt.Errorf("read %s/%d: %w", o.Topic, p, err)
				}
				select {
				case msgs <- m:
				case <-ctx.Done():
					return ctx.Err()
				}
			}
		})
	}
	g.Go(func() error {
		behind := map[int]int64{} // partition → end offset not yet reached
		for p, b := range bounds {
			if b[0] < b[1] {
				behind[p] = b[1]
			}
		}
		caught := len(behind) == 0
		if caught {
			h.caughtUp()
		}
		var flush *time.Timer
		var flushC <-chan time.Time
		defer func() {
			if flush != nil {
				flush.Stop()
			}
		}()
		for {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-flushC:
				flushC = nil
				h.publish()
			case m := <-msgs:
				h.record(m)
				if !caught {
					if end, ok := behind[m.Partition]; ok && m.Offset+1 >= end {
						delete(behind, m.Partition)
					}
					if len(behind) == 0 {
						caught = true
						h.caughtUp()
					}
					continue
				}
				if flushC == nil {
					if flush == nil {
						flush = time.NewTimer(publishDelay)
					} else {
						flush.Reset(publishDelay)
					}
					flushC = flush.C
				}
			}
		}
	})
	return g.Wait()
}
