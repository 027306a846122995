package main

import (
	"io"
	"testing"

	"github.com/produktly/produktly-segment/consumer"
	"github.com/produktly/produktly-segment/sink"
)

// defaultConfig is the service's configuration with no setting given but
// the two it requires.
func defaultConfig(t *testing.T) *config {
	t.Helper()
	env := map[string]string{"KAFKA_BROKERS": "127.0.0.1:9092", "SEGMENT_WRITE_KEY": "k"}
	c, err := parseConfig("test", nil, func(k string) string { return env[k] }, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// sameDefault is one setting's default in the service and in the library
// that owns it.
type sameDefault struct {
	name      string
	got, want any
}

func checkDefaults(t *testing.T, library string, defaults []sameDefault) {
	t.Helper()
	for _, f := range defaults {
		if f.got != f.want {
			t.Errorf("%s: the service's default is %v, the %s's %v", f.name, f.got, library, f.want)
		}
	}
}

// TestConsumerDefaults: with no setting given, the service hands the
// consumer exactly the consumer's own defaults; the --help text and the
// library cannot drift apart.
func TestConsumerDefaults(t *testing.T) {
	c := defaultConfig(t)
	got := consumerOptions(c).WithDefaults()
	want := consumer.Options{Brokers: c.Brokers}.WithDefaults()
	checkDefaults(t, "consumer", []sameDefault{
		{"Topic", got.Topic, want.Topic},
		{"GroupID", got.GroupID, want.GroupID},
		{"DeadLetterTopic", got.DeadLetterTopic, want.DeadLetterTopic},
		{"RetryTopic", got.RetryTopic, want.RetryTopic},
		{"MaxInFlight", got.MaxInFlight, want.MaxInFlight},
		{"MaxInFlightPerPartition", got.MaxInFlightPerPartition, want.MaxInFlightPerPartition},
		{"MaxInFlightBytes", got.MaxInFlightBytes, want.MaxInFlightBytes},
		{"MaxUncommitted", got.MaxUncommitted, want.MaxUncommitted},
		{"CommitInterval", got.CommitInterval, want.CommitInterval},
		{"SessionTimeout", got.SessionTimeout, want.SessionTimeout},
		{"HeartbeatInterval", got.HeartbeatInterval, want.HeartbeatInterval},
		{"RebalanceTimeout", got.RebalanceTimeout, want.RebalanceTimeout},
		{"RevokeTimeout", got.RevokeTimeout, want.RevokeTimeout},
		{"ShutdownTimeout", got.ShutdownTimeout, want.ShutdownTimeout},
	})
}

// TestSinkDefaults: with no setting given, the service's Segment settings
// are the sink's own defaults (sink.Default*).
func TestSinkDefaults(t *testing.T) {
	c := defaultConfig(t)
	checkDefaults(t, "sink", []sameDefault{
		{"Endpoint", c.Endpoint, sink.DefaultEndpoint},
		{"EUEndpoint", c.EUEndpoint, sink.DefaultEUEndpoint},
		{"AccountMaxRPS", c.AccountMaxRPS, float64(sink.DefaultAccountMaxRPS)},
		{"AccountLinger", c.AccountLinger, sink.DefaultAccountLinger},
		{"BatchSize", c.BatchSize, sink.DefaultBatchSize},
		{"FlushInterval", c.FlushInterval, sink.DefaultFlushInterval},
		{"Concurrency", c.Concurrency, sink.DefaultConcurrency},
		{"SegmentTimeout", c.SegmentTimeout, sink.DefaultTimeout},
	})
}

func TestFormatBytes(t *testing.T) {
	for _, n := range []int{1, 1000, 1 << 10, 3 << 10, 32 << 20, 1 << 30, 5<<30 + 1<<10} {
		var back int
		if err := parseBytes(&back, formatBytes(n)); err != nil || back != n {
			t.Errorf("parseBytes(formatBytes(%d) = %q) = %d, %v", n, formatBytes(n), back, err)
		}
	}
}
