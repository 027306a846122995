package main

import (
	"context"
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/rs/zerolog"
	"golang.org/x/sync/errgroup"

	"github.com/produktly/produktly-segment/consumer"
	"github.com/produktly/produktly-segment/sink"
)

// service is the wired pipeline: consumer group → mapping → Segment sink,
// plus the admin server.
type service struct {
	cons *consumer.Consumer
	seg  *sink.Segment
	reg  *prometheus.Registry
	log  zerolog.Logger
}

func newService(c *config, log zerolog.Logger) (*service, error) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	dialer, transport, err := kafkaConn(c)
	if err != nil {
		return nil, err
	}
	seg, err := sink.NewSegment(sink.Options{
		Endpoint:      c.Endpoint,
		WriteKey:      c.WriteKey,
		BatchSize:     c.BatchSize,
		FlushInterval: c.FlushInterval,
		Concurrency:   c.Concurrency,
		Timeout:       c.SegmentTimeout,
		Logger:        log.With().Str("component", "sink").Logger(),
		Registerer:    reg,
	})
	if err != nil {
		return nil, fmt.Errorf("segment sink: %w", err)
	}
	o := consumerOptions(c)
	o.Dialer, o.Transport = dialer, transport
	o.Sink = seg
	o.Logger = log.With().Str("component", "consumer").Logger()
	o.Registerer = reg
	cons, err := consumer.New(o)
	if err != nil {
		return nil, err
	}
	return &service{cons: cons, seg: seg, reg: reg, log: log}, nil
}

// run serves until ctx is cancelled. The consumer drains first (in-flight
// records get the shutdown timeout, acknowledged offsets are committed, the
// member leaves the group); only then do the sink and the admin server stop.
func (s *service) run(ctx context.Context, adminAddr string, pprof bool) error {
	sinkCtx, stopSink := context.WithCancel(context.WithoutCancel(ctx))
	defer stopSink()
	g, gctx := errgroup.WithContext(sinkCtx)
	g.Go(func() error { return s.seg.Run(gctx) })
	if adminAddr != "" {
		// Ready: a member of the group, consuming, and Segment taking
		// requests (an outage or a rejected write key turns it false).
		ready := func() bool { return s.cons.Ready() && s.seg.Healthy() }
		admin := newAdmin(s.reg, s.cons.Alive, ready, pprof)
		g.Go(func() error { return serveAdmin(gctx, admin, adminAddr) })
	}
	consCtx, stopCons := context.WithCancel(ctx)
	defer stopCons()
	// A sink or admin failure stops the consumer too.
	stop := context.AfterFunc(gctx, stopCons)
	defer stop()
	err := s.cons.Run(consCtx)
	stopSink()
	if gerr := g.Wait(); err == nil && !errors.Is(gerr, context.Canceled) {
		err = gerr
	}
	return err
}
