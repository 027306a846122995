package sink

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are per sink, registered on Options.Registerer (never on the
// global registry), so tests and several sinks in one process do not clash.
//
//	produktly_segment_sink_requests_total{status}        requests by answer: "200", "400", "429", "503", ..., "timeout", "error", "canceled"
//	produktly_segment_sink_request_duration_seconds      latency of answered and failed requests (not of ones we aborted)
//	produktly_segment_sink_retries_total                 attempts that will be retried
//	produktly_segment_sink_messages_total{outcome}       messages finished: "delivered", "rejected", "abandoned", "parked"
//	produktly_segment_sink_batch_messages                messages per request
//	produktly_segment_sink_batch_bytes                   body bytes per request
//	produktly_segment_sink_queue_messages                messages waiting in the queue (full means back-pressure)
//	produktly_segment_sink_systemic_rejection            1 while every call is answered 400 and 400 is treated as an outage (alert on it)
//	produktly_segment_sink_destinations_failing          destinations whose last attempt failed (no per-account label)
//	produktly_segment_sink_destinations_parked           destinations parked (no per-account label)
type metrics struct {
	requests   *prometheus.CounterVec
	latency    prometheus.Histogram
	retries    prometheus.Counter
	byOutcome  [4]prometheus.Counter // indexed by Outcome
	batchSize  prometheus.Histogram
	batchBytes prometheus.Histogram
}

const (
	namespace = "produktly_segment"
	subsystem = "sink"
)

// gauges are read when the metrics are gathered.
type gauges struct {
	queue    func() float64
	systemic func() float64
	failing  func() float64
	parked   func() float64
}

func newMetrics(reg prometheus.Registerer, g gauges) (*metrics, error) {
	opts := func(name, help string) prometheus.Opts {
		return prometheus.Opts{Namespace: namespace, Subsystem: subsystem, Name: name, Help: help}
	}
	hist := func(name, help string, buckets []float64) prometheus.Histogram {
		return prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: namespace, Subsystem: subsystem, Name: name, Help: help, Buckets: buckets,
		})
	}
	messages := prometheus.NewCounterVec(prometheus.CounterOpts(opts("messages_total",
		"Messages finished, by outcome.")), []string{"outcome"})
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts(opts("requests_total",
			"Requests to Segment's batch endpoint, by HTTP status or transport failure.")), []string{"status"}),
		latency: hist("request_duration_seconds", "Duration of requests to Segment.",
			[]float64{.01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30}),
		retries: prometheus.NewCounter(prometheus.CounterOpts(opts("retries_total",
			"Failed attempts that will be retried."))),
		batchSize: hist("batch_messages", "Messages per request.",
			[]float64{1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500}),
		batchBytes: hist("batch_bytes", "Request body bytes.",
			prometheus.ExponentialBuckets(1024, 4, 8)),
	}
	for _, o := range []Outcome{Delivered, Rejected, Abandoned, Parked} {
		m.byOutcome[o] = messages.WithLabelValues(o.String())
	}
	if reg == nil {
		return m, nil
	}
	queue := prometheus.NewGaugeFunc(prometheus.GaugeOpts(opts("queue_messages",
		"Messages waiting in the sink's queue.")), g.queue)
	systemic := prometheus.NewGaugeFunc(prometheus.GaugeOpts(opts("systemic_rejection",
		"1 while Segment answers 400 to every call and the sink treats it as an outage.")), g.systemic)
	failing := prometheus.NewGaugeFunc(prometheus.GaugeOpts(opts("destinations_failing",
		"Destinations whose last attempt failed.")), g.failing)
	parked := prometheus.NewGaugeFunc(prometheus.GaugeOpts(opts("destinations_parked",
		"Destinations parked after failing for too long.")), g.parked)
	for _, c := range []prometheus.Collector{m.requests, m.latency, m.retries, messages, m.batchSize, m.batchBytes, queue, systemic, failing, parked} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("sink: registering metrics: %w", err)
		}
	}
	return m, nil
}

// outcomes counts n messages finished with o.
func (m *metrics) outcomes(o Outcome, n int) { m.byOutcome[o].Add(float64(n)) }
