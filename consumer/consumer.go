// Package consumer owns the Kafka side of produktly-segment: membership of
// the consumer group, one fetch loop per assigned partition, mapping each
// record, handing the result to the Segment sink or the dead-letter topic,
// tracking acknowledgements per partition and committing offsets.
//
// Delivery rules:
//   - An offset is committed only when every record of the partition below it
//     was acknowledged by Segment or written to the dead-letter topic (with
//     acks from all in-sync replicas). Committed offsets only move forward.
//   - A transient Segment failure is retried by the sink for as long as it
//     takes; the partition's commit point waits and, once the in-flight caps
//     are reached, so does fetching.
//   - A record that can never be delivered (mapping error, rejected by
//     Segment on its own) goes to the dead-letter topic; if that write fails
//     it is retried and nothing is committed past the record.
//   - Fetching a partition waits while the span from its commit point to its
//     next fetch offset is MaxUncommitted: one record that never finishes
//     bounds what a restart replays and what the tracker holds.
//   - Partitions are assigned sticky: a rebalance keeps each partition with
//     its member where the balance allows. On a rebalance the generation's
//     partitions stop fetching, in-flight records get RevokeTimeout to
//     finish while commits go on, and what was acknowledged is committed.
//     A partition that comes back to this member keeps its in-flight
//     records and commits them with the new generation; one that moved is
//     abandoned: the next owner reads its uncommitted records again and the
//     deterministic messageId lets Segment drop the copy.
//   - Accounts mode (Options.Integrations set, contract v2): a record of an
//     unknown or inactive account is skipped, and counts as acknowledged
//     like a delivered one. A record the sink reports Parked is written to
//     the retry topic (acks=all) and counts as acknowledged only once the
//     broker has the copy; a park abandoned by a revoke stays uncommitted.
//     The group also consumes the retry topic: each of its partitions holds
//     its next record until the record's not-before time (only that
//     partition waits; a revoke or shutdown ends the wait at once, and the
//     record is read again), then sends it with its original coordinates'
//     messageId and Message.Retry set. Offsets commit per topic.
//   - On shutdown (Run's ctx cancelled) fetching stops, in-flight records get
//     ShutdownTimeout while commits go on, acknowledged offsets are committed
//     and the member leaves the group. A JoinGroup or SyncGroup in progress
//     does not hold shutdown up.
package consumer

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
	"github.com/segmentio/kafka-go"
	"golang.org/x/sync/semaphore"

	"github.com/produktly/produktly-segment/integrations"
	"github.com/produktly/produktly-segment/sink"
)

// Sink is what the consumer needs of the Segment side: take a batch of
// encoded calls all or none (on an error none was taken and no outcome is
// reported), and report each one's outcome once, through its Acker or Done.
// *sink.Segment satisfies it.
type Sink interface {
	EnqueueBatch(ctx context.Context, msgs []sink.Message) error
}

var _ Sink = (*sink.Segment)(nil)

// Integrations is what the consumer needs of the integrations table in
// accounts mode: the integration in force for an account, and whether its
// records are sent (false: unknown, deactivated, removed or invalid).
// *integrations.Table satisfies it; Lookup must not block.
type Integrations interface {
	Lookup(account string) (integrations.Integration, bool)
}

var _ Integrations = (*integrations.Table)(nil)

// Options configures a Consumer.
type Options struct {
	// Brokers are the bootstrap addresses. Required.
	Brokers []string
	// Topic is the source topic. Default "produktly.interactions".
	Topic string
	// GroupID is the consumer group. Default "produktly-segment".
	GroupID string
	// DeadLetterTopic receives records that can never be delivered.
	// Default Topic + ".dlq".
	DeadLetterTopic string
	// RetryTopic receives the records of parked accounts (contract v2).
	// Default Topic + ".retry".
	RetryTopic string
	// Dialer carries TLS and SASL settings (TLS, SASLMechanism, and
	// Timeout, ClientID, DialFunc) for the group membership and for the
	// partition readers' Fetch connections, which each reader dials to its
	// partition's leader and closes when the partition is released.
	// Default kafka.DefaultDialer.
	Dialer *kafka.Dialer
	// Transport is used by the partition readers for metadata (a
	// partition's leader) and ListOffsets, by the dead-letter and retry
	// writers and for admin requests; it must carry the same TLS and SASL
	// settings as Dialer. Default kafka.DefaultTransport.
	Transport kafka.RoundTripper

	// MaxInFlight caps the records fetched and not yet acknowledged, over
	// all partitions. Default 50000.
	MaxInFlight int
	// MaxInFlightPerPartition caps them per partition. Default 10000.
	MaxInFlightPerPartition int
	// MaxInFlightBytes caps the memory those records hold (the fetched
	// message, its mapped JSON and the copy in a request body), so that
	// large records cannot grow memory past what the record caps allow for
	// ordinary ones. Default 32 MiB.
	MaxInFlightBytes int
	// MaxUncommitted caps, per partition, the span of offsets from the
	// commit point (below it everything is acknowledged) to the next offset
	// to fetch. A record that does not finish holds the commit point, so
	// fetching on its partition stops once the span reaches the cap. At
	// least MaxInFlightPerPartition. Default 4 × MaxInFlightPerPartition.
	MaxUncommitted int
	// FetchMaxBytes is the most one fetch request returns per partition.
	// Default 1 MiB.
	FetchMaxBytes int
	// CommitInterval is how often acknowledged offsets are committed.
	// Default 1s.
	CommitInterval time.Duration
	// SessionTimeout, HeartbeatInterval and RebalanceTimeout are the group
	// membership timings. Defaults 30s, 3s, 30s.
	SessionTimeout    time.Duration
	HeartbeatInterval time.Duration
	RebalanceTimeout  time.Duration
	// RevokeTimeout is how long, when a rebalance ends a generation,
	// in-flight records may take to be acknowledged (and committed) before
	// the member rejoins. Records still in flight then stay with the member:
	// those of partitions assigned to it again finish and are committed in
	// the next generation, those of partitions that moved are abandoned.
	// It must be shorter than RebalanceTimeout. Default 10s.
	RevokeTimeout time.Duration
	// ShutdownTimeout is how long in-flight records get to be acknowledged
	// once Run's context is cancelled. Default 25s.
	ShutdownTimeout time.Duration

	// Integrations selects accounts mode (contract v2) when set: records
	// are mapped with mapping.MapAccount and routed by their account's
	// integration at map time (active: sent to its region's endpoint with
	// its write key; unknown or inactive: skipped, committed and counted);
	// messages the sink reports Parked are written to RetryTopic and their
	// source offsets commit once the broker acknowledged the copy; and the
	// group also consumes RetryTopic, each record held until its
	// not-before time. Default nil: single-source mode.
	Integrations Integrations
	// Endpoint and EUEndpoint are the Tracking API base URLs of the US and
	// EU regions in accounts mode. Defaults sink.DefaultEndpoint and
	// sink.DefaultEUEndpoint.
	Endpoint   string
	EUEndpoint string

	// Sink delivers mapped calls to Segment. Required.
	Sink Sink
	// Logger receives structured logs. Default: disabled.
	Logger zerolog.Logger
	// Registerer registers the consumer's metrics. Optional.
	Registerer prometheus.Registerer
}

func (o *Options) setDefaults() {
	if o.Topic == "" {
		o.Topic = DefaultTopic
	}
	if o.GroupID == "" {
		o.GroupID = DefaultGroupID
	}
	if o.DeadLetterTopic == "" {
		o.DeadLetterTopic = o.Topic + ".dlq"
	}
	if o.RetryTopic == "" {
		o.RetryTopic = o.Topic + ".retry"
	}
	if o.Endpoint == "" {
		o.Endpoint = sink.DefaultEndpoint
	}
	if o.EUEndpoint == "" {
		o.EUEndpoint = sink.DefaultEUEndpoint
	}
	if o.Dialer == nil {
		o.Dialer = kafka.DefaultDialer
	}
	if o.Transport == nil {
		o.Transport = kafka.DefaultTransport
	}
	setDefault(&o.MaxInFlight, DefaultMaxInFlight)
	setDefault(&o.MaxInFlightPerPartition, DefaultMaxInFlightPerPartition)
	setDefault(&o.MaxInFlightBytes, DefaultMaxInFlightBytes)
	setDefault(&o.MaxUncommitted, 4*o.MaxInFlightPerPartition)
	setDefault(&o.FetchMaxBytes, DefaultFetchMaxBytes)
	setDefault(&o.CommitInterval, DefaultCommitInterval)
	setDefault(&o.SessionTimeout, DefaultSessionTimeout)
	setDefault(&o.HeartbeatInterval, DefaultHeartbeatInterval)
	setDefault(&o.RebalanceTimeout, DefaultRebalanceTimeout)
	setDefault(&o.RevokeTimeout, DefaultRevokeTimeout)
	setDefault(&o.ShutdownTimeout, DefaultShutdownTimeout)
}

func setDefault[T int | time.Duration](v *T, def T) {
	if *v == 0 {
		*v = def
	}
}

// Validate reports the first invalid setting, after defaults are applied,
// as an *OptionError.
func (o Options) Validate() error {
	o.setDefaults()
	bad := func(field, other, rule string) error { return &OptionError{Field: field, Other: other, Rule: rule} }
	switch {
	case len(o.Brokers) == 0:
		return bad("Brokers", "", "required")
	case o.DeadLetterTopic == o.Topic:
		return bad("DeadLetterTopic", "Topic", "must differ from %s")
	case o.RetryTopic == o.Topic:
		return bad("RetryTopic", "Topic", "must differ from %s")
	case o.RetryTopic == o.DeadLetterTopic:
		return bad("RetryTopic", "DeadLetterTopic", "must differ from %s")
	case o.MaxInFlight < 1:
		return bad("MaxInFlight", "", "must be positive")
	case o.MaxInFlightPerPartition < 1:
		return bad("MaxInFlightPerPartition", "", "must be positive")
	case o.MaxInFlightBytes < 1:
		return bad("MaxInFlightBytes", "", "must be positive")
	case o.MaxInFlightPerPartition > o.MaxInFlight:
		return bad("MaxInFlightPerPartition", "MaxInFlight", "exceeds %s")
	case o.MaxUncommitted < o.MaxInFlightPerPartition:
		return bad("MaxUncommitted", "MaxInFlightPerPartition", "must not be below %s")
	case o.RevokeTimeout >= o.RebalanceTimeout:
		return bad("RevokeTimeout", "RebalanceTimeout", "must be shorter than %s")
	case o.HeartbeatInterval >= o.SessionTimeout:
		return bad("HeartbeatInterval", "SessionTimeout", "must be shorter than %s")
	}
	return nil
}

// Consumer is one member of the consumer group. Run it once.
type Consumer struct {
	opts    Options
	log     zerolog.Logger
	metrics *metrics
	slots   *budget             // MaxInFlight records, all partitions
	bytes   *semaphore.Weighted // MaxInFlightBytes
	dlq     *deadLetter
	retry   parker // accounts mode only
	seams   seams
	// balancer is offered to the group; it learns what this member owns.
	balancer *stickyBalancer
	// carried are the partitions kept from the last generation until the
	// next one says whether they stay (owned by Run's goroutine).
	carried map[topicPartition]*partition

	ready    atomic.Bool  // member of a generation and fetching
	draining atomic.Bool  // shutting down
	stalled  atomic.Int64 // partitions whose reader cannot be positioned
	loops    atomic.Int64 // last time (unix ns) the group loop made progress
}

// seams are the consumer's connections to Kafka; unit tests replace them
// with fakes.
type seams struct {
	waitTopics     func(ctx context.Context) error
	newGroup       func(ctx context.Context) (group, error)
	newReader      func(topic string, partition int) reader
	runDeadLetters func(ctx context.Context) error
	// runRetries runs the retry-topic writer (accounts mode only).
	runRetries func(ctx context.Context) error
}

// parker writes records of parked accounts to the retry topic: the
// retryWriter, or a fake in unit tests.
type parker interface {
	park(m kafka.Message, account string, cancel <-chan struct{}, done func(error))
}

// New checks the options and builds a consumer; nothing connects until Run.
func New(o Options) (*Consumer, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	if o.Sink == nil {
		return nil, errors.New("consumer: no sink")
	}
	o.setDefaults()
	m, err := newMetrics(o.Registerer)
	if err != nil {
		return nil, err
	}
	c := &Consumer{
		opts:    o,
		log:     o.Logger.With().Str("topic", o.Topic).Str("group", o.GroupID).Logger(),
		metrics: m,
		slots:   newBudget(o.MaxInFlight),
		bytes:   semaphore.NewWeighted(int64(o.MaxInFlightBytes)),
	}
	c.dlq = newDeadLetter(o, c.log, c.metrics)
	c.balancer = &stickyBalancer{}
	c.seams = seams{
		waitTopics:     c.waitTopics,
		newGroup:       c.newKafkaGroup,
		newReader:      func(topic string, id int) reader { return c.newBatchReader(topic, id) },
		runDeadLetters: c.dlq.run,
	}
	if o.Integrations != nil {
		rw := newRetryWriter(o, c.log, c.metrics)
		c.retry = rw
		c.seams.runRetries = rw.run
	}
	return c, nil
}

// Ready reports whether the consumer is a member of the group and fetching
// (false while it joins, waits for a missing topic, drains, or cannot
// position a partition's reader).
func (c *Consumer) Ready() bool {
	return c.ready.Load() && !c.draining.Load() && c.stalled.Load() == 0
}

// Alive reports whether the group loop made progress recently.
func (c *Consumer) Alive() bool {
	last := c.loops.Load()
	return last != 0 && time.Since(time.Unix(0, last)) < 2*c.opts.SessionTimeout+c.opts.ShutdownTimeout
}

func (c *Consumer) beat() { c.loops.Store(time.Now().UnixNano()) }

// Run consumes until ctx is cancelled, then drains and leaves the group. It
// returns nil after a clean shutdown.
func (c *Consumer) Run(ctx context.Context) error {
	c.beat()
	dlqCtx, stopDLQ := context.WithCancel(context.WithoutCancel(ctx))
	dlqDone := make(chan error, 1)
	go func() { dlqDone <- c.seams.runDeadLetters(dlqCtx) }()
	// The retry writer, like the dead-letter writer, outlives the
	// generations: it stops once the last one has drained.
	retryDone := make(chan error, 1)
	if c.seams.runRetries != nil {
		go func() { retryDone <- c.seams.runRetries(dlqCtx) }()
	} else {
		retryDone <- nil
	}
	defer func() {
		stopDLQ()
		<-dlqDone
		<-retryDone
	}()

	if err := c.seams.waitTopics(ctx); err != nil {
		return nil // cancelled while waiting: nothing consumed, nothing to drain
	}
	group, err := c.seams.newGroup(ctx)
	if err != nil {
		return err
	}
	for {
		c.beat()
		// Next blocks while the brokers are unreachable; waiting in short
		// steps keeps the liveness beat going, so an outage of Kafka makes
		// the replica not ready rather than restarted.
		nctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		gen, err := group.Next(nctx)
		cancel()
		if ctx.Err() != nil {
			break
		}
		if errors.Is(err, context.DeadlineExceeded) {
			continue
		}
		if err != nil {
			c.ready.Store(false)
			c.log.Warn().Err(err).Msg("joining the consumer group")
			select {
			case <-ctx.Done():
			case <-time.After(time.Second):
			}
			continue
		}
		c.metrics.rebalances.Inc()
		if shutdown := c.runGeneration(ctx, gen); shutdown {
			break
		}
	}
	c.ready.Store(false)
	c.draining.Store(true)
	// Shut down between two generations (a JoinGroup or SyncGroup was in
	// progress): there is no generation to commit with.
	c.releaseCarried()
	// Close waits for the generation's functions, then leaves the group.
	if err := group.Close(); err != nil {
		c.log.Warn().Err(err).Msg("leaving the consumer group")
	}
	c.log.Info().Msg("left the consumer group")
	return nil
}

// topics are the topics the group subscribes to: the source topic, and in
// accounts mode the retry topic.
func (c *Consumer) topics() []string {
	if c.opts.Integrations != nil {
		return []string{c.opts.Topic, c.opts.RetryTopic}
	}
	return []string{c.opts.Topic}
}

// accounts reports whether the consumer runs in accounts mode.
func (c *Consumer) accounts() bool { return c.opts.Integrations != nil }

// waitTopics blocks until the source and dead-letter topics (and in
// accounts mode the retry topic) exist, logging
// clearly while they do not. It returns an error only when ctx ends.
func (c *Consumer) waitTopics(ctx context.Context) error {
	client := &kafka.Client{Addr: kafka.TCP(c.opts.Brokers...), Transport: c.opts.Transport, Timeout: 10 * time.Second}
	for {
		c.beat()
		err := c.checkTopics(ctx, client)
		if err == nil {
			return nil
		}
		c.log.Error().Err(err).Msg("not ready: waiting for Kafka")
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(5 * time.Second):
		}
	}
}

func (c *Consumer) checkTopics(ctx context.Context, client *kafka.Client) error {
	rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	md, err := client.Metadata(rctx, &kafka.MetadataRequest{Topics: append(c.topics(), c.opts.DeadLetterTopic)})
	if errors.Is(err, kafka.SASLAuthenticationFailed) {
		return fmt.Errorf("brokers %v refused the SASL credentials: %w", c.opts.Brokers, err)
	}
	if err != nil {
		return fmt.Errorf("brokers %v unreachable: %w", c.opts.Brokers, err)
	}
	for _, t := range md.Topics {
		if t.Error != nil {
			return fmt.Errorf("topic %q: %w", t.Name, t.Error)
		}
	}
	return nil
}
