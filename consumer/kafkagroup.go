package consumer

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/segmentio/kafka-go"
)

// kafkaGroup is the group interface over kafka-go's ConsumerGroup.
//
// kafka-go's ConsumerGroup.Close waits for a JoinGroup or SyncGroup in
// progress, and the coordinator holds a JoinGroup until every known member
// has rejoined or its session has expired: after a SIGKILL, up to the
// session timeout. kafka-go also rejoins by itself when a generation ends
// and the group is not closed yet, which a rebalance during the shutdown
// drain can cause. So the group dials through conns: once shutdown has begun
// it refuses new connections, and Close cuts the ones that are open, which
// ends a pending request at once. The member then leaves through the
// admin client.
type kafkaGroup struct {
	cg       *kafka.ConsumerGroup
	conns    *groupConns
	client   *kafka.Client
	groupID  string
	mu       sync.Mutex
	memberID string // of the last generation
}

func (c *Consumer) newKafkaGroup(ctx context.Context) (group, error) {
	conns := &groupConns{shutdown: ctx}
	d := *c.opts.Dialer
	conns.dial = d.DialFunc
	if conns.dial == nil {
		conns.dial = (&net.Dialer{LocalAddr: d.LocalAddr, DualStack: d.DualStack, FallbackDelay: d.FallbackDelay, KeepAlive: d.KeepAlive}).DialContext
	}
	d.DialFunc = conns.dialContext
	cg, err := kafka.NewConsumerGroup(kafka.ConsumerGroupConfig{
		ID:                    c.opts.GroupID,
		Brokers:               c.opts.Brokers,
		Dialer:                &d,
		Topics:                c.topics(),
		GroupBalancers:        []kafka.GroupBalancer{c.balancer, kafka.RangeGroupBalancer{}},
		WatchPartitionChanges: true,
		SessionTimeout:        c.opts.SessionTimeout,
		HeartbeatInterval:     c.opts.HeartbeatInterval,
		RebalanceTimeout:      c.opts.RebalanceTimeout,
		StartOffset:           kafka.FirstOffset,
		ErrorLogger:           kafka.LoggerFunc(func(f string, a ...any) { c.log.Warn().Msgf("kafka-go: "+f, a...) }),
	})
	if err != nil {
		return nil, fmt.Errorf("consumer group: %w", err)
	}
	return &kafkaGroup{
		cg:      cg,
		conns:   conns,
		client:  &kafka.Client{Addr: kafka.TCP(c.opts.Brokers...), Transport: c.opts.Transport, Timeout: groupRequestTimeout},
		groupID: c.opts.GroupID,
	}, nil
}

// groupRequestTimeout bounds each request sent through the group's client:
// an offset commit, the fetch of commit metadata, the LeaveGroup on Close.
const groupRequestTimeout = 5 * time.Second

func (g *kafkaGroup) Next(ctx context.Context) (generation, error) {
	gen, err := g.cg.Next(ctx)
	if err != nil {
		return nil, err
	}
	g.mu.Lock()
	g.memberID = gen.MemberID
	g.mu.Unlock()
	return kafkaGeneration{g: gen, client: g.client, groupID: g.groupID}, nil
}

// Close cuts the group's connections, waits for kafka-go to stop, and
// leaves the group as the member of the last generation, so the others do
// not wait out this member's session.
func (g *kafkaGroup) Close() error {
	g.conns.closeAll()
	err := g.cg.Close()
	g.mu.Lock()
	member := g.memberID
	g.mu.Unlock()
	if member == "" {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), groupRequestTimeout)
	defer cancel()
	resp, lerr := g.client.LeaveGroup(ctx, &kafka.LeaveGroupRequest{
		GroupID: g.groupID,
		Members: []kafka.LeaveGroupRequestMember{{ID: member}},
	})
	if lerr == nil {
		lerr = resp.Error
		for _, m := range resp.Members {
			if lerr == nil && m.Error != nil && !errors.Is(m.Error, kafka.UnknownMemberId) {
				lerr = m.Error
			}
		}
	}
	if errors.Is(lerr, kafka.UnknownMemberId) {
		lerr = nil // already gone: its session expired or kafka-go left
	}
	return errors.Join(err, lerr)
}

// groupConns dials the consumer group's connections and keeps them, so
// that shutdown can refuse new ones and cut those open.
type groupConns struct {
	shutdown context.Context // new dials are refused once it ends
	dial     func(ctx context.Context, network, address string) (net.Conn, error)

	mu     sync.Mutex
	closed bool
	open   map[net.Conn]struct{}
}

// errShuttingDown refuses a group connection once shutdown has begun.
var errShuttingDown = errors.New("consumer: shutting down")

func (g *groupConns) dialContext(ctx context.Context, network, address string) (net.Conn, error) {
	if g.refused() {
		return nil, errShuttingDown
	}
	conn, err := g.dial(ctx, network, address)
	if err != nil {
		return nil, err
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed || g.shutdown.Err() != nil {
		conn.Close()
		return nil, errShuttingDown
	}
	if g.open == nil {
		g.open = map[net.Conn]struct{}{}
	}
	tc := &trackedConn{Conn: conn, g: g}
	g.open[tc] = struct{}{}
	return tc, nil
}

func (g *groupConns) refused() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.closed || g.shutdown.Err() != nil
}

// closeAll refuses new connections and closes the open ones.
func (g *groupConns) closeAll() {
	g.mu.Lock()
	g.closed = true
	open := g.open
	g.open = nil
	g.mu.Unlock()
	for c := range open {
		c.(*trackedConn).Conn.Close()
	}
}

type trackedConn struct {
	net.Conn
	g *groupConns
}

func (c *trackedConn) Close() error {
	c.g.mu.Lock()
	delete(c.g.open, c)
	c.g.mu.Unlock()
	return c.Conn.Close()
}

// kafkaGeneration is the generation interface over kafka-go's Generation.
// Offsets are committed through the admin client with the generation's id
// and member id, the same fencing as Generation.CommitOffsets, because only
// the client's OffsetCommit carries metadata (the acknowledged spans).
type kafkaGeneration struct {
	g       *kafka.Generation
	client  *kafka.Client
	groupID string
}

func (k kafkaGeneration) ID() int32        { return k.g.ID }
func (k kafkaGeneration) MemberID() string { return k.g.MemberID }
func (k kafkaGeneration) Assignments(topic string) []kafka.PartitionAssignment {
	return k.g.Assignments[topic]
}
func (k kafkaGeneration) Start(fn func(ctx context.Context)) { k.g.Start(fn) }

func (k kafkaGeneration) CommitOffsets(ctx context.Context, offsets map[string][]kafka.OffsetCommit) error {
	res, err := k.client.OffsetCommit(ctx, &kafka.OffsetCommitRequest{
		GroupID:      k.groupID,
		GenerationID: int(k.g.ID),
		MemberID:     k.g.MemberID,
		Topics:       offsets,
	})
	if err != nil {
		return err
	}
	var errs []error
	for topic, ps := range res.Topics {
		for _, p := range ps {
			if p.Error != nil {
				errs = append(errs, fmt.Errorf("%s/%d: %w", topic, p.Partition, p.Error))
			}
		}
	}
	return errors.Join(errs...)
}

func (k kafkaGeneration) CommitMetadata(ctx context.Context, topic string, partitions []int) (map[int]string, error) {
	res, err := k.client.OffsetFetch(ctx, &kafka.OffsetFetchRequest{GroupID: k.groupID, Topics: map[string][]int{topic: partitions}})
	if err != nil {
		return nil, err
	}
	if res.Error != nil {
		return nil, res.Error
	}
	out := make(map[int]string, len(partitions))
	for _, p := range res.Topics[topic] {
		if p.Error == nil {
			out[p.Partition] = p.Metadata
		}
	}
	return out, nil
}
