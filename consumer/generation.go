package consumer

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/segmentio/kafka-go"
)

// group is the consumer-group membership the consumer drives: kafka-go's
// ConsumerGroup in production (kafkaGroup), a fake in unit tests.
type group interface {
	// Next waits for the next generation.
	Next(ctx context.Context) (generation, error)
	// Close leaves the group. It returns promptly even while a JoinGroup
	// or SyncGroup is pending.
	Close() error
}

// generation is one generation of the group, as kafka-go's Generation.
type generation interface {
	ID() int32
	MemberID() string
	// Assignments returns this member's partitions of topic with their
	// committed offsets (kafka.FirstOffset where none is committed).
	Assignments(topic string) []kafka.PartitionAssignment
	// Start runs fn on the generation; the generation ends when any such
	// function returns, and fn's ctx ends when the generation does.
	Start(fn func(ctx context.Context))
	// CommitOffsets commits offsets, each with its metadata, as this
	// generation's member: refused once the generation is over.
	CommitOffsets(ctx context.Context, offsets map[string][]kafka.OffsetCommit) error
	// CommitMetadata returns the metadata committed with the offsets of
	// partitions of topic ("" where none was).
	CommitMetadata(ctx context.Context, topic string, partitions []int) (map[int]string, error)
}

// runGeneration consumes the partitions one group generation assigned to
// this member until the generation ends (a rebalance) or ctx is cancelled
// (shutdown), then drains and commits. It reports whether it stopped for
// shutdown.
//
// Partitions are not given up when a generation ends: they are carried to
// the next one (c.carried), records in flight and all. A partition the next
// generation assigns to this member again, at the offset this member last
// committed, continues where it was and commits its records with the new
// generation; the others are abandoned then. Nothing is committed between
// two generations, so a partition that moved is never committed by its old
// owner after the move.
//
// All work runs inside one function started on the generation. kafka-go
// ends a generation as soon as any of its functions returns, so on shutdown
// that function holds the generation open (heartbeats keep running) until
// the group is closed; the group's connections refuse new dials once
// shutdown has begun, so kafka-go cannot rejoin even when a rebalance ends
// the generation during the drain.
func (c *Consumer) runGeneration(ctx context.Context, gen generation) (shutdown bool) {
	result := make(chan bool, 1)
	gen.Start(func(gctx context.Context) {
		s := c.consumeGeneration(ctx, gctx, gen)
		result <- s
		if s {
			<-gctx.Done()
		}
	})
	return <-result
}

func (c *Consumer) consumeGeneration(ctx, gctx context.Context, gen generation) bool {
	log := c.log.With().Int32("generation", gen.ID()).Logger()
	var assigned []assignment
	for _, topic := range c.topics() {
		for _, a := range gen.Assignments(topic) {
			assigned = append(assigned, assignment{topic: topic, PartitionAssignment: a})
		}
	}
	parts, kept := c.takeOver(assigned)
	c.loadAcked(gctx, gen, parts)
	owned := map[string][]int{}
	var ps, retries []int
	for _, p := range parts {
		owned[p.topic] = append(owned[p.topic], p.id)
		if p.retry {
			retries = append(retries, p.id)
		} else {
			ps = append(ps, p.id)
		}
	}
	c.balancer.ownTopics(gen.ID(), owned)
	ev := log.Info().Ints("partitions", ps)
	if c.accounts() {
		ev = ev.Ints("retry_partitions", retries)
	}
	ev.Ints("kept", kept).Str("member", gen.MemberID()).Msg("generation started")
	c.ready.Store(true)

	// Fetching stops when the generation ends or shutdown begins.
	fetchCtx, stopFetch := context.WithCancel(gctx)
	defer stopFetch()
	stop := context.AfterFunc(ctx, stopFetch)
	defer stop()

	var wg sync.WaitGroup
	for _, p := range parts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p.fetch(fetchCtx)
		}()
	}
	// Commits go on while fetching stops and in-flight records drain, so
	// what is acknowledged during the drain is committed as it happens.
	stopCommits := make(chan struct{})
	commitDone := make(chan struct{})
	go func() {
		defer close(commitDone)
		t := time.NewTicker(c.opts.CommitInterval)
		defer t.Stop()
		for {
			select {
			case <-stopCommits:
				return
			case <-t.C:
				c.beat()
				c.commit(gen, parts, false)
				for _, p := range parts {
					c.metrics.observePartition(p.topic, p)
				}
			}
		}
	}()
	<-fetchCtx.Done()
	wg.Wait()

	shutdown := ctx.Err() != nil
	timeout := c.opts.RevokeTimeout
	if shutdown {
		timeout = c.opts.ShutdownTimeout
		c.draining.Store(true)
	} else {
		c.ready.Store(false)
	}
	inflight := 0
	for _, p := range parts {
		inflight += p.tr.inFlight()
	}
	log.Info().Bool("shutdown", shutdown).Int("in_flight", inflight).Dur("timeout", timeout).Msg("generation ending: draining")
	if c.drain(ctx, parts, timeout, !shutdown) {
		// Shutdown began during a revoke's drain: the records left got
		// the shutdown's time too, and the partitions are given up now
		// rather than carried to a generation this member will not join.
		shutdown = true
		c.draining.Store(true)
	}
	close(stopCommits)
	<-commitDone
	c.commit(gen, parts, true)
	left := 0
	for _, p := range parts {
		left += p.tr.inFlight()
	}
	if shutdown {
		for _, p := range parts {
			c.release(p)
		}
		log.Info().Int("abandoned", left).Msg("generation ended")
		return true
	}
	// Carried to the next generation; abandoned there if it moves.
	c.carried = make(map[topicPartition]*partition, len(parts))
	for _, p := range parts {
		c.carried[p.key()] = p
	}
	log.Info().Int("in_flight", left).Msg("generation ended; partitions kept until the next assignment")
	return false
}

// loadAcked reads the acknowledged spans committed with the offsets of the
// partitions this member starts afresh (not carried from the last
// generation), so that their records are not sent again. A partition whose
// metadata cannot be read or does not belong to its committed offset
// replays from that offset in full, as it would without spans.
func (c *Consumer) loadAcked(ctx context.Context, gen generation, parts []*partition) {
	fresh := map[string][]*partition{}
	for _, p := range parts {
		if p.fresh && p.committed.Load() >= 0 {
			fresh[p.topic] = append(fresh[p.topic], p)
		}
	}
	for topic, ps := range fresh {
		ids := make([]int, len(ps))
		for i, p := range ps {
			ids[i] = p.id
		}
		rctx, cancel := context.WithTimeout(ctx, groupRequestTimeout)
		mds, err := gen.CommitMetadata(rctx, topic, ids)
		cancel()
		if err != nil {
			c.log.Warn().Err(err).Str("topic", topic).Msg("commit metadata not read: the partitions replay every record from their committed offsets")
			continue
		}
		for _, p := range ps {
			a, err := ParseAcked(mds[p.id])
			switch {
			case errors.Is(err, ErrNoAcked):
				continue
			case err != nil:
				p.log.Warn().Err(err).Msg("commit metadata unreadable: replaying every record from the committed offset")
				continue
			case a.Commit != p.committed.Load():
				continue // written with another offset: says nothing about this one
			}
			p.skip = skipper{spans: a.Spans}
			p.committedMeta = mds[p.id]
			var n int64
			for _, s := range a.Spans {
				n += s.To - s.From
			}
			p.log.Info().Int64("committed", a.Commit).Int("spans", len(a.Spans)).Int64("offsets", n).
				Msg("records acknowledged before the last commit are not sent again")
		}
	}
}

// assignment is one partition of one topic a generation assigned.
type assignment struct {
	topic string
	kafka.PartitionAssignment
}

// takeOver builds the partitions of a new generation: a carried partition
// assigned again at the offset this member last committed for it keeps its
// tracker and in-flight records; every other carried partition is
// abandoned. It returns the partitions and the ids of the source
// partitions kept.
func (c *Consumer) takeOver(assigned []assignment) ([]*partition, []int) {
	parts := make([]*partition, 0, len(assigned))
	var kept []int
	carried := c.carried
	c.carried = nil
	for _, a := range assigned {
		k := topicPartition{a.topic, a.ID}
		if p, ok := carried[k]; ok {
			delete(carried, k)
			if p.resume(a.Offset) {
				parts = append(parts, p)
				if !p.retry {
					kept = append(kept, p.id)
				}
				continue
			}
			c.release(p)
		}
		parts = append(parts, c.newPartition(a.topic, a.ID, a.Offset))
	}
	for _, p := range carried {
		c.release(p)
	}
	return parts, kept
}

// release gives a partition up: late acknowledgements no longer count,
// the sink and the dead-letter writer stop working on its records, and its
// series are removed so the new owner's values are the only ones exported.
func (c *Consumer) release(p *partition) {
	p.tr.revoke()
	p.abandon()
	c.metrics.forget(p.topic, p.id)
}

// releaseCarried gives up the partitions kept from the last generation
// (shutdown while no generation is running).
func (c *Consumer) releaseCarried() {
	for _, p := range c.carried {
		c.release(p)
	}
	c.carried = nil
}

// drain waits until no record of parts is in flight, or timeout. When
// revoking (a rebalance ended the generation) and shutdown begins (ctx ends)
// meanwhile, the records still in flight get ShutdownTimeout from that
// moment, as they would have had the shutdown come first, but no longer
// than the group waits for this member to rejoin (RebalanceTimeout from the
// drain's start, less a second for the final commit): after that its
// commits are refused. It reports whether shutdown began during a revoke.
func (c *Consumer) drain(ctx context.Context, parts []*partition, timeout time.Duration, revoking bool) (shutdown bool) {
	start := time.Now()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	var shut <-chan struct{}
	if revoking {
		shut = ctx.Done()
	}
	for _, p := range parts {
		for waiting := true; waiting; {
			select {
			case <-p.tr.drained():
				waiting = false
			case <-deadline.C:
				return shutdown
			case <-shut:
				shut, shutdown = nil, true
				until := time.Now().Add(c.opts.ShutdownTimeout)
				if limit := start.Add(max(c.opts.RebalanceTimeout-time.Second, timeout)); until.After(limit) {
					until = limit
				}
				if d := time.Until(until); d > time.Until(start.Add(timeout)) {
					c.log.Info().Dur("until", d).Msg("shutdown during a revoke: in-flight records get the shutdown timeout")
					deadline.Reset(d)
				}
			}
		}
	}
	return shutdown
}

// commit commits every partition whose commit point moved past what was
// last committed for it, or whose acknowledged spans above it changed,
// each under its own topic and with its spans as metadata (acked.go).
func (c *Consumer) commit(gen generation, parts []*partition, final bool) {
	offsets := map[string][]kafka.OffsetCommit{}
	type commitAt struct {
		p  *partition
		o  int64
		md string
	}
	var todo []commitAt
	for _, p := range parts {
		a := p.tr.acked()
		o := a.Commit
		if o < 0 || o < p.committed.Load() {
			continue
		}
		md := a.metadata(maxCommitMetadata)
		if o == p.committed.Load() && md == p.committedMeta {
			continue
		}
		offsets[p.topic] = append(offsets[p.topic], kafka.OffsetCommit{Partition: p.id, Offset: o, Metadata: md})
		todo = append(todo, commitAt{p, o, md})
	}
	if len(todo) == 0 {
		return
	}
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), groupRequestTimeout)
	err := gen.CommitOffsets(ctx, offsets)
	if errors.Is(err, kafka.OffsetMetadataTooLarge) {
		// The broker's offset.metadata.max.bytes is below
		// maxCommitMetadata: the offsets go without their spans.
		c.log.Warn().Err(err).Msg("commit metadata refused as too large: committing offsets without acknowledged spans")
		for _, os := range offsets {
			for i := range os {
				os[i].Metadata = ""
			}
		}
		for i := range todo {
			todo[i].md = ""
		}
		err = gen.CommitOffsets(ctx, offsets)
	}
	cancel()
	c.metrics.commitLatency.Observe(time.Since(start).Seconds())
	if err != nil {
		c.metrics.commitErrors.Inc()
		// After a rebalance the old generation's commits are refused; the
		// new owner starts from the last commit that went through.
		c.log.Warn().Err(err).Bool("final", final).Msg("commit refused")
		return
	}
	for _, t := range todo {
		t.p.committed.Store(t.o)
		t.p.committedMeta = t.md
		c.metrics.observeCommit(t.p.topic, t.p.id, t.o)
	}
	// The source topic's offsets are logged as before; the retry topic's
	// under their own field; the metadata only by its length.
	logged := func(topic string) map[int]int64 {
		if offsets[topic] == nil {
			return nil
		}
		m := map[int]int64{}
		for _, oc := range offsets[topic] {
			m[oc.Partition] = oc.Offset
		}
		return m
	}
	metaBytes := 0
	for _, t := range todo {
		metaBytes += len(t.md)
	}
	src, retry := logged(c.opts.Topic), logged(c.opts.RetryTopic)
	ev := c.log.Debug()
	if final {
		ev = c.log.Info()
	}
	if src != nil {
		ev = ev.Interface("offsets", src)
	}
	if retry != nil {
		ev = ev.Interface("retry_offsets", retry)
	}
	ev.Int("acked_metadata_bytes", metaBytes).Msg("committed")
}
