package integrations

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// Metric names, in one place.
const (
	metricsNamespace = "produktly_segment"
	// MetricLoaded is the gauge of integrations loaded, by state.
	MetricLoaded = metricsNamespace + "_integrations_loaded"
	// MetricErrors counts invalid integration values and sources that could
	// not be read, by reason.
	MetricErrors = metricsNamespace + "_integration_errors_total"
	// MetricReady is 1 once the table is loaded.
	MetricReady = metricsNamespace + "_integrations_ready"
)

// The reasons of MetricErrors.
const (
	reasonInvalid = "invalid_integration" // a value that breaks the contract: the account is inactive
	reasonFile    = "unreadable_file"     // INTEGRATIONS_FILE cannot be read or parsed: the previous table stays
	reasonRecord  = "invalid_record"      // a topic record without a usable key: ignored
)

type metrics struct {
	byState *prometheus.GaugeVec
	errors  *prometheus.CounterVec
	ready   prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		byState: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: MetricLoaded,
			Help: "Integrations in the table, by state (active, inactive, invalid).",
		}, []string{"state"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: MetricErrors,
			Help: "Integration values that break the contract (the account is inactive) and integration sources that could not be read, by reason.",
		}, []string{"reason"}),
		ready: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: MetricReady,
			Help: "1 once the integrations are loaded (the topic read to its end offsets, or the file parsed).",
		}),
	}
	for _, s := range []State{StateActive, StateInactive, StateInvalid} {
		m.byState.WithLabelValues(string(s))
	}
	for _, r := range []string{reasonInvalid, reasonFile, reasonRecord} {
		m.errors.WithLabelValues(r)
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.byState, m.errors, m.ready} {
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("integrations metrics: %w", err)
			}
		}
	}
	return m, nil
}

func (m *metrics) loaded(s *Snapshot) {
	for _, st := range []State{StateActive, StateInactive, StateInvalid} {
		m.byState.WithLabelValues(string(st)).Set(float64(s.Count(st)))
	}
}
