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
	"github.com/produktly/produktly-segment/integrations"
	"github.com/produktly/produktly-segment/sink"
)

// service is the wired pipeline: consumer group → mapping → Segment sink,
// plus the admin server; in accounts mode also the integrations table the
// consumer routes by.
type service struct {
	cons  *consumer.Consumer
	seg   *sink.Segment
	table *integrations.Table // nil in single-source mode
	reg   *prometheus.Registry
	log   zerolog.Logger
	// Endpoints by region, for /accounts.
	usEndpoint, euEndpoint string
}

func newService(c *config, log zerolog.Logger) (*service, error) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	dialer, transport, err := kafkaConn(c)
	if err != nil {
		return nil, err
	}
	so := sink.Options{
		Endpoint:      c.Endpoint,
		WriteKey:      c.WriteKey,
		BatchSize:     c.BatchSize,
		FlushInterval: c.FlushInterval,
		Concurrency:   c.Concurrency,
		Timeout:       c.SegmentTimeout,
		Logger:        log.With().Str("component", "sink").Logger(),
		Registerer:    reg,
	}
	var table *integrations.Table
	if c.accounts() {
		ilog := log.With().Str("component", "integrations").Logger()
		if c.IntegrationsTopic != "" {
			table, err = integrations.NewTopic(integrations.TopicOptions{
				Brokers: c.Brokers, Topic: c.IntegrationsTopic, Dialer: dialer, Transport: transport,
				Logger: ilog, Registerer: reg,
			})
		} else {
			table, err = integrations.NewFile(integrations.FileOptions{Path: c.IntegrationsFile, Logger: ilog, Registerer: reg})
		}
		if err != nil {
			var ferr *integrations.FileError
			if errors.As(err, &ferr) {
				return nil, &configError{Name: "INTEGRATIONS_FILE", Err: err}
			}
			return nil, fmt.Errorf("integrations: %w", err)
		}
		so.Accounts = true
		so.MaxRPS = c.AccountMaxRPS
		if c.AccountLinger > 0 { // under SEGMENT_FLUSH_INTERVAL: no lingering, not an error
			so.Linger = max(c.AccountLinger, c.FlushInterval)
		}
		so.ParkAfter = c.ParkAfter
		so.ParkAbove = parkAbove(c)
		so.LingerBytes = lingerBytes(c)
	}
	seg, err := sink.NewSegment(so)
	if err != nil {
		return nil, fmt.Errorf("segment sink: %w", err)
	}
	o := consumerOptions(c)
	o.Dialer, o.Transport = dialer, transport
	o.Sink = seg
	o.Logger = log.With().Str("component", "consumer").Logger()
	o.Registerer = reg
	if table != nil { // never a typed nil in the interface
		o.Integrations = table
		o.Endpoint, o.EUEndpoint = c.Endpoint, c.EUEndpoint
	}
	cons, err := consumer.New(o)
	if err != nil {
		return nil, err
	}
	return &service{cons: cons, seg: seg, table: table, reg: reg, log: log, usEndpoint: c.Endpoint, euEndpoint: c.EUEndpoint}, nil
}

// parkAbove is the sink's ParkAbove in accounts mode: a failing account
// is parked at once when the sink holds more than half a partition's
// in-flight cap of its records, so that one failing high-volume account
// cannot fill a partition's caps (and hold up the healthy accounts on it)
// before ACCOUNT_PARK_AFTER has passed.
func parkAbove(c *config) int {
	return max(1, consumerOptions(c).WithDefaults().MaxInFlightPerPartition/2)
}

// lingerBytes is the sink's LingerBytes in accounts mode: the share of
// the consumer's byte cap that partial batches may hold (sink.LingerShare),
// so that raising MAX_IN_FLIGHT_BYTES also lets the accounts' batches grow.
func lingerBytes(c *config) int {
	// At least 1: the sink reads 0 as unset, its 8 MiB default.
	return max(1, consumerOptions(c).WithDefaults().MaxInFlightBytes/sink.LingerShare)
}

// run serves until ctx is cancelled. The consumer drains first (in-flight
// records get the shutdown timeout, acknowledged offsets are committed, the
// member leaves the group); only then do the sink, the integrations table
// and the admin server stop. In accounts mode the consumer starts once the
// integrations are loaded.
func (s *service) run(ctx context.Context, adminAddr string, pprof bool) error {
	sinkCtx, stopSink := context.WithCancel(context.WithoutCancel(ctx))
	defer stopSink()
	g, gctx := errgroup.WithContext(sinkCtx)
	g.Go(func() error { return s.seg.Run(gctx) })
	if s.table != nil {
		g.Go(func() error { return s.table.Run(gctx) })
	}
	if adminAddr != "" {
		admin := newAdmin(s.reg, s.alive, s.ready, s.accountsHandler(), pprof)
		g.Go(func() error { return serveAdmin(gctx, admin, adminAddr) })
	}
	consCtx, stopCons := context.WithCancel(ctx)
	defer stopCons()
	// A sink, table or admin failure stops the consumer too.
	stop := context.AfterFunc(gctx, stopCons)
	defer stop()
	if s.table != nil && !s.table.Ready() {
		s.log.Info().Msg("loading the integrations before consuming")
		select {
		case <-s.table.Loaded():
			s.log.Info().Str("integrations", fmt.Sprint(s.table)).Msg("integrations loaded")
		case <-consCtx.Done():
		}
	}
	err := s.cons.Run(consCtx)
	stopSink()
	if gerr := g.Wait(); err == nil && !errors.Is(gerr, context.Canceled) {
		err = gerr
	}
	return err
}

// ready: the integrations loaded (accounts mode), a member of the group
// and consuming, and Segment taking requests. In single-source mode an
// outage or a rejected write key turns it false; in accounts mode only
// Segment refusing every call does (failing accounts are parked, and one
// of them must not take the replica out of service).
func (s *service) ready() bool {
	if s.table == nil {
		return s.cons.Ready() && s.seg.Healthy()
	}
	return s.table.Ready() && s.cons.Ready() && !s.seg.Systemic()
}

// alive: the consumer's group loop made progress recently; while the
// integrations load (before the consumer starts) the table's own loop is
// what runs, and it retries by itself.
func (s *service) alive() bool {
	if s.table != nil && !s.table.Ready() {
		return true
	}
	return s.cons.Alive()
}
