package consumer

import (
	"fmt"
	"strconv"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/produktly/produktly-segment/mapping"
)

// metrics are the consumer's Prometheus series, registered on the
// Registerer the caller passes (nothing global).
type metrics struct {
	consumed         prometheus.Counter
	delivered        prometheus.Counter
	deadLettered     *prometheus.CounterVec
	deadLetterErrors *prometheus.CounterVec
	deadLetterStubs  prometheus.Counter
	sizeShortfall    *prometheus.GaugeVec
	parked           prometheus.Counter
	skipped          *prometheus.CounterVec
	skippedInactive  prometheus.Counter // skipped{reason="inactive_account"}
	skippedAcked     prometheus.Counter // skipped{reason="acknowledged_before"}
	redelivered      prometheus.Counter
	parkErrors       *prometheus.CounterVec
	inFlight         prometheus.Gauge
	committed        *prometheus.GaugeVec
	lag              *prometheus.GaugeVec
	oldest           *prometheus.GaugeVec
	span             *prometheus.GaugeVec
	spanWaits        prometheus.Counter
	rebalances       prometheus.Counter
	commitErrors     prometheus.Counter
	commitLatency    prometheus.Histogram
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	const ns = "produktly_segment"
	m := &metrics{
		consumed: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: ns, Name: "records_consumed_total",
			Help: "Records fetched from the source topic (and, in accounts mode, the retry topic).",
		}),
		delivered: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: ns, Name: "records_delivered_total",
			Help: "Records acknowledged by Segment (in accounts mode also those from the retry topic, see records_redelivered_total).",
		}),
		deadLettered: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Name: "records_dead_lettered_total",
			Help: "Records written to the dead-letter topic, by contract error code.",
		}, []string{"code"}),
		deadLetterErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Name: "dead_letter_write_errors_total",
			Help: "Failed attempts to write to the dead-letter topic, by class (transient, too_large, refused); a too_large record is written again without its value, the others are retried.",
		}, []string{"class"}),
		deadLetterStubs: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: ns, Name: "dead_letters_value_omitted_total",
			Help: "Dead letters written without their value because the dead-letter topic refused the whole copy.",
		}),
		sizeShortfall: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: ns, Name: "topic_size_shortfall_bytes",
			Help: "How many bytes a topic that receives copies of source records (dead-letter, retry) lacks in max.message.bytes to take the source topic's largest record with its added headers; 0 when it has enough.",
		}, []string{"topic"}),
		parked: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: ns, Name: "records_parked_total",
			Help: "Records written to the retry topic and acknowledged.",
		}),
		skipped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Name: "records_skipped_total",
			Help: "Records not sent and committed like delivered ones, by reason: inactive_account (accounts mode: the account is unknown, deactivated, removed or its integration is invalid); acknowledged_before (read again after a restart or rebalance, but acknowledged before the partition's last commit, which says so in its metadata).",
		}, []string{"reason"}),
		redelivered: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: ns, Name: "records_redelivered_total",
			Help: "Records from the retry topic acknowledged by Segment (also counted in records_delivered_total).",
		}),
		parkErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Name: "retry_write_errors_total",
			Help: "Failed attempts to write to the retry topic, by class (transient, too_large, refused); only too_large records are handed back, the others are retried.",
		}, []string{"class"}),
		inFlight: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: ns, Name: "records_in_flight",
			Help: "Records fetched and not yet acknowledged.",
		}),
		committed: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: ns, Name: "committed_offset",
			Help: "Last offset committed, per partition.",
		}, []string{"topic", "partition"}),
		lag: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: ns, Name: "consumer_lag",
			Help: "Records behind: the high watermark seen on the last fetch minus the offset that may be committed, per partition.",
		}, []string{"topic", "partition"}),
		oldest: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: ns, Name: "oldest_unacked_seconds",
			Help: "Age of the oldest record fetched and not yet acknowledged (0 when none), per partition. It holds the partition's commit point.",
		}, []string{"topic", "partition"}),
		span: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: ns, Name: "uncommitted_span",
			Help: "Offsets from the commit point to the next offset to fetch, per partition; fetching waits while it is at its cap (MaxUncommitted).",
		}, []string{"topic", "partition"}),
		spanWaits: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: ns, Name: "uncommitted_span_waits_total",
			Help: "Times a partition's fetching waited because its uncommitted span reached its cap.",
		}),
		rebalances: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: ns, Name: "rebalances_total",
			Help: "Group generations this member joined.",
		}),
		commitErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: ns, Name: "commit_errors_total",
			Help: "Offset commits the group coordinator refused.",
		}),
		commitLatency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: ns, Name: "commit_duration_seconds",
			Help:    "Latency of offset commits.",
			Buckets: prometheus.ExponentialBuckets(0.001, 4, 8),
		}),
	}
	m.skippedInactive = m.skipped.WithLabelValues(SkipInactiveAccount)
	m.skippedAcked = m.skipped.WithLabelValues(SkipAcknowledgedBefore)
	for _, code := range mapping.Codes() {
		m.deadLettered.WithLabelValues(string(code))
	}
	for _, c := range []writeClass{classTransient, classTooLarge, classRefused} {
		m.deadLetterErrors.WithLabelValues(c.String())
		m.parkErrors.WithLabelValues(c.String())
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.consumed, m.delivered, m.deadLettered, m.deadLetterErrors,
			m.deadLetterStubs, m.sizeShortfall, m.parked, m.skipped, m.redelivered, m.parkErrors,
			m.inFlight, m.committed, m.lag, m.oldest, m.span, m.spanWaits, m.rebalances, m.commitErrors, m.commitLatency} {
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("consumer metrics: %w", err)
			}
		}
	}
	return m, nil
}

// SkipInactiveAccount is the reason label of records skipped because
// their account has no active integration (contract v2).
const SkipInactiveAccount = "inactive_account"

// SkipAcknowledgedBefore is the reason label of records read again after a
// restart or rebalance that the partition's last commit recorded as
// acknowledged (acked.go).
const SkipAcknowledgedBefore = "acknowledged_before"

// observeCommit records a committed offset.
func (m *metrics) observeCommit(topic string, id int, offset int64) {
	m.committed.WithLabelValues(topic, strconv.Itoa(id)).Set(float64(offset))
}

// observePartition records how far the partition's high watermark, as of
// its last fetch, is ahead of its commit point, the age of its oldest
// unacknowledged record and its uncommitted span. It is refreshed on every
// commit tick, committed or not, so a stuck partition shows growing lag and
// age.
func (m *metrics) observePartition(topic string, p *partition) {
	label := strconv.Itoa(p.id)
	commit := p.tr.committable()
	if hwm := p.hwm.Load(); hwm >= 0 {
		lag := hwm - max(commit, 0)
		m.lag.WithLabelValues(topic, label).Set(float64(max(lag, 0)))
	}
	m.oldest.WithLabelValues(topic, label).Set(p.tr.oldest().Seconds())
	if next := p.tr.nextAfter(); next >= 0 && commit >= 0 {
		m.span.WithLabelValues(topic, label).Set(float64(max(next-commit, 0)))
	}
}

// forget removes a partition's series when it leaves this member, so the
// new owner's values are the only ones exported.
func (m *metrics) forget(topic string, id int) {
	label := strconv.Itoa(id)
	m.committed.DeleteLabelValues(topic, label)
	m.lag.DeleteLabelValues(topic, label)
	m.oldest.DeleteLabelValues(topic, label)
	m.span.DeleteLabelValues(topic, label)
}
