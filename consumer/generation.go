package consumer

import (
	"context"
	"sync"
	"time"

	"github.com/segmentio/kafka-go"
)

// runGeneration consumes the partitions one group generation assigned to
// this member until the generation ends (a rebalance) or ctx is cancelled
// (shutdown), then drains, commits and abandons what is left. It reports
// whether it stopped for shutdown.
//
// All work runs inside one function started on the generation. kafka-go
// ends a generation as soon as any of its functions returns, so on shutdown
// that function holds the generation open (heartbeats keep running) until
// the group is closed; closing the group then leaves it without a spurious
// rejoin.
func (c *Consumer) runGeneration(ctx context.Context, gen *kafka.Generation) (shutdown bool) {
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

func (c *Consumer) consumeGeneration(ctx, gctx context.Context, gen *kafka.Generation) bool {
	assigned := gen.Assignments[c.opts.Topic]
	log := c.log.With().Int32("generation", gen.ID).Logger()
	ps := make([]int, 0, len(assigned))
	parts := make([]*partition, 0, len(assigned))
	for _, a := range assigned {
		parts = append(parts, c.newPartition(a.ID, a.Offset))
		ps = append(ps, a.ID)
	}
	log.Info().Ints("partitions", ps).Str("member", gen.MemberID).Msg("generation started")
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
	committed := make(map[int]int64, len(parts))
	commitDone := make(chan struct{})
	go func() {
		defer close(commitDone)
		t := time.NewTicker(c.opts.CommitInterval)
		defer t.Stop()
		for {
			select {
			case <-fetchCtx.Done():
				return
			case <-t.C:
				c.beat()
				c.commit(gen, parts, committed, false)
				for _, p := range parts {
					c.metrics.observeLag(c.opts.Topic, p)
				}
			}
		}
	}()
	<-fetchCtx.Done()
	wg.Wait()
	<-commitDone

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
	c.drain(parts, timeout)
	c.commit(gen, parts, committed, true)
	left := 0
	for _, p := range parts {
		left += p.tr.inFlight()
		p.abandon()
		c.metrics.forget(c.opts.Topic, p.id)
	}
	log.Info().Int("abandoned", left).Msg("generation ended")
	return shutdown
}

// drain waits until no record of parts is in flight, or timeout.
func (c *Consumer) drain(parts []*partition, timeout time.Duration) {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for _, p := range parts {
		select {
		case <-p.tr.drained():
		case <-deadline.C:
			return
		}
	}
}

// commit commits every partition whose commit point moved past what was
// last committed. final revokes the trackers first, so no later
// acknowledgement changes what this generation commits.
func (c *Consumer) commit(gen *kafka.Generation, parts []*partition, committed map[int]int64, final bool) {
	offsets := map[int]int64{}
	for _, p := range parts {
		var o int64
		if final {
			o = p.tr.revoke()
		} else {
			o = p.tr.committable()
		}
		if prev, ok := committed[p.id]; o >= 0 && (!ok || o > prev) {
			offsets[p.id] = o
		}
	}
	if len(offsets) == 0 {
		return
	}
	start := time.Now()
	err := gen.CommitOffsets(map[string]map[int]int64{c.opts.Topic: offsets})
	c.metrics.commitLatency.Observe(time.Since(start).Seconds())
	if err != nil {
		c.metrics.commitErrors.Inc()
		// After a rebalance the old generation's commits are refused; the
		// new owner starts from the last commit that went through.
		c.log.Warn().Err(err).Bool("final", final).Msg("commit refused")
		return
	}
	for id, o := range offsets {
		committed[id] = o
		c.metrics.observeCommit(c.opts.Topic, id, o)
	}
	if final {
		c.log.Info().Interface("offsets", offsets).Msg("committed")
	} else {
		c.log.Debug().Interface("offsets", offsets).Msg("committed")
	}
}
