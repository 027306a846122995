package integrations

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
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
