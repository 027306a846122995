package integrations

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
)

// brokers returns the broker named by KAFKA_BROKERS, or skips the test (and
// fails it in CI, where integration tests must run).
func brokers(t testing.TB) []string {
	t.Helper()
	b := os.Getenv("KAFKA_BROKERS")
	if b == "" {
		if os.Getenv("CI") == "true" {
			t.Fatal("CI=true and KAFKA_BROKERS is not set: the topic tests need a real broker")
		}
		t.Skip("no Kafka broker: set KAFKA_BROKERS=host:port (scripts/kafka.sh up single)")
	}
	return strings.Split(b, ",")
}

// createTopic creates a compacted topic of n partitions, deleted when the
// test ends.
func createTopic(t testing.TB, bs []string, n int) string {
	t.Helper()
	name := "integrations-test-" + strings.ReplaceAll(t.Name(), "/", "-") + "-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	client := &kafka.Client{Addr: kafka.TCP(bs...), Timeout: 30 * time.Second}
	ctx := context.Background()
	res, err := client.CreateTopics(ctx, &kafka.CreateTopicsRequest{Topics: []kafka.TopicConfig{{
		Topic: name, NumPartitions: n, ReplicationFactor: 1,
		ConfigEntries: []kafka.ConfigEntry{{ConfigName: "cleanup.policy", ConfigValue: "compact"}},
	}}})
	if err != nil {
		t.Fatal(err)
	}
	if err := res.Errors[name]; err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		client.DeleteTopics(context.Background(), &kafka.DeleteTopicsRequest{Topics: []string{name}})
	})
	// Wait until every partition has a leader.
	waitFor(t, 30*time.Second, "topic "+name+" ready", func() bool {
		md, err := client.Metadata(ctx, &kafka.MetadataRequest{Topics: []string{name}})
		if err != nil || len(md.Topics) != 1 || md.Topics[0].Error != nil || len(md.Topics[0].Partitions) != n {
			return false
		}
		for _, p := range md.Topics[0].Partitions {
			if p.Leader.Host == "" {
				return false
			}
		}
		_, err = partitionBounds(ctx, client, name)
		return err == nil
	})
	return name
}

// produce writes records (key, value; a nil value is a tombstone) and
// returns when the broker has them.
func produce(t testing.TB, bs []string, topic string, records ...kafka.Message) {
	t.Helper()
	w := &kafka.Writer{Addr: kafka.TCP(bs...), Topic: topic, Balancer: kafka.Murmur2Balancer{},
		RequiredAcks: kafka.RequireAll, BatchSize: 10_000, BatchBytes: 64 << 20, BatchTimeout: 10 * time.Millisecond}
	defer w.Close()
	if err := w.WriteMessages(context.Background(), records...); err != nil {
		t.Fatal(err)
	}
}

func rec(key, value string) kafka.Message {
	m := kafka.Message{Key: []byte(key)}
	if value != "" {
		m.Value = []byte(value)
	}
	return m
}

func integ(key, region string, active bool) string {
	return fmt.Sprintf(`{"writeKey":%q,"region":%q,"active":%v}`, key, region, active)
}

// watcher reads every partition of a topic from its start with plain
// kafka-go readers and notes when each record (key and value) was first
// seen. It is the reference for "in force within topicBound": a broker
// that stalls (one took 12 s over a controller event on a loaded machine)
// delays the reference as much as the table, so the stall is not counted
// against the table.
type watcher struct {
	mu      sync.Mutex
	seen    map[string]time.Time
	changed chan struct{}
}

func watchTopic(t testing.TB, bs []string, topic string, partitions int) *watcher {
	t.Helper()
	w := &watcher{seen: map[string]time.Time{}, changed: make(chan struct{})}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for p := range partitions {
		r := kafka.NewReader(kafka.ReaderConfig{Brokers: bs, Topic: topic, Partition: p, MinBytes: 1, MaxBytes: 1 << 20, MaxWait: 100 * time.Millisecond})
		wg.Go(func() {
			defer r.Close()
			for {
				m, err := r.ReadMessage(ctx)
				if err != nil {
					return
				}
				w.mu.Lock()
				if k := watchKey(m); w.seen[k].IsZero() {
					w.seen[k] = time.Now()
					close(w.changed)
					w.changed = make(chan struct{})
				}
				w.mu.Unlock()
			}
		})
	}
	t.Cleanup(func() { cancel(); wg.Wait() })
	return w
}

func watchKey(m kafka.Message) string { return string(m.Key) + "\x00" + string(m.Value) }

// at waits up to within for a plain reader to have seen m, and says when.
func (w *watcher) at(t testing.TB, m kafka.Message, within time.Duration) time.Time {
	t.Helper()
	deadline := time.After(within)
	for {
		w.mu.Lock()
		at, changed := w.seen[watchKey(m)], w.changed
		w.mu.Unlock()
		if !at.IsZero() {
			return at
		}
		select {
		case <-changed:
		case <-deadline:
			t.Fatalf("a plain reader did not see %q within %s", m.Key, within)
		}
	}
}
