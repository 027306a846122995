// Package integration holds the tests that run the service against a real
// Apache Kafka broker.
//
// Brokers come from KAFKA_BROKERS when it is set (scripts/test.sh sets it
// when it starts Kafka from jars with scripts/kafka.sh, on a machine without
// Docker). When it is unset and a Docker engine is healthy, TestMain starts
// Kafka with testcontainers-go from KAFKA_IMAGE (containers_test.go): a
// single node, or with KAFKA_CLUSTER_NODES=3 the 3-node cluster of the
// fault suite. When neither is available the tests skip with a message
// that says how to run them, except when CI=true: then a missing broker
// fails the run.
//
// Every test creates its own topics and consumer groups with unique names,
// so tests run in parallel and rerun against a dirty broker.
package integration

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/produktly/produktly-segment/consumer"
)

// env is what TestMain found: the brokers to use, or why there are none.
var env struct {
	brokers []string
	desc    string
	skip    string
	// docker is the engine, when one is healthy (Kafka containers, the pod
	// rehearsal); nil otherwise.
	docker *dockerEnv
	// kafka is the broker TestMain started in containers, nil when the
	// brokers come from KAFKA_BROKERS.
	kafka *kafkaCluster
}

func TestMain(m *testing.M) {
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	defer removeBinary()
	ctx := context.Background()
	d, derr := newDockerEnv(ctx)
	if derr == nil {
		env.docker = d
		defer d.removeAll(context.Background())
	}
	if b := os.Getenv("KAFKA_BROKERS"); b != "" {
		env.brokers = strings.Split(b, ",")
		env.desc = os.Getenv("KAFKA_BROKER_DESC")
		if env.desc == "" {
			env.desc = "broker named by KAFKA_BROKERS"
		}
		fmt.Fprintf(os.Stderr, "integration: Kafka: %s at %s\n", env.desc, b)
		return m.Run()
	}
	err := derr
	if err == nil {
		var kc *kafkaCluster
		kc, err = startKafkaFromEnv(ctx, d)
		if err == nil {
			defer kc.stop(context.Background())
			env.kafka = kc
			env.brokers = kc.brokers()
			env.desc = kc.describe()
			fmt.Fprintf(os.Stderr, "integration: Kafka: %s at %s\n", env.desc, strings.Join(env.brokers, ","))
			return m.Run()
		}
	}
	env.skip = "no Kafka broker: set KAFKA_BROKERS=host:port, or run `make test` " +
		"(Kafka in containers with Docker, else from jars with scripts/kafka.sh), or start a Docker engine (" + err.Error() + ")"
	if os.Getenv("CI") == "true" {
		fmt.Fprintln(os.Stderr, "integration: CI=true and "+env.skip)
		return 1
	}
	return m.Run()
}

// startKafkaFromEnv starts the broker containers KAFKA_IMAGE and
// KAFKA_CLUSTER_NODES ask for. A single node's SCRAM listener is published
// in the variables the security tests read.
func startKafkaFromEnv(ctx context.Context, d *dockerEnv) (*kafkaCluster, error) {
	image := os.Getenv("KAFKA_IMAGE")
	if image == "" {
		image = defaultKafkaImage
	}
	nodes := 1
	if s := os.Getenv("KAFKA_CLUSTER_NODES"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || (n != 1 && n != 3) {
			return nil, fmt.Errorf("KAFKA_CLUSTER_NODES=%q: want 1 or 3", s)
		}
		nodes = n
	}
	start := time.Now()
	kc, err := startKafka(ctx, d, image, nodes)
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(os.Stderr, "integration: %d Kafka container(s) of %s ready in %s\n", nodes, image, time.Since(start).Round(100*time.Millisecond))
	if kc.scram.addr != "" {
		for k, v := range map[string]string{
			"KAFKA_SCRAM_BROKERS": kc.scram.addr, "KAFKA_SCRAM_CA_FILE": kc.scram.caFile,
			"KAFKA_SCRAM_USER": kc.scram.user, "KAFKA_SCRAM_PASSWORD": kc.scram.password,
		} {
			os.Setenv(k, v)
		}
	}
	return kc, nil
}

// brokers returns the broker addresses or skips the test.
func brokers(t testing.TB) []string {
	t.Helper()
	if env.skip != "" {
		t.Skip(env.skip)
	}
	return env.brokers
}

// unique returns a name no other test or run uses.
func unique(prefix string) string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return fmt.Sprintf("%s-%d-%s", prefix, time.Now().UnixNano()%1e9, hex.EncodeToString(b))
}

// createTopic creates a fresh topic and deletes it when the test ends.
func createTopic(t testing.TB, partitions int) string {
	t.Helper()
	return createTopicWith(t, partitions)
}

// createTopicWith creates a topic with the given topic configs.
func createTopicWith(t testing.TB, partitions int, configs ...kafka.ConfigEntry) string {
	t.Helper()
	bs := brokers(t)
	topic := unique("t-" + strings.ReplaceAll(t.Name(), "/", "-"))
	if len(topic) > 200 {
		topic = topic[len(topic)-200:]
	}
	client := &kafka.Client{Addr: kafka.TCP(bs...), Timeout: 30 * time.Second}
	rf := 1
	if len(bs) >= 3 {
		rf = 3
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res, err := client.CreateTopics(ctx, &kafka.CreateTopicsRequest{Topics: []kafka.TopicConfig{{
		Topic: topic, NumPartitions: partitions, ReplicationFactor: rf, ConfigEntries: configs,
	}}})
	if err != nil {
		t.Fatalf("create topic %s: %v", topic, err)
	}
	if err := res.Errors[topic]; err != nil {
		t.Fatalf("create topic %s: %v", topic, err)
	}
	waitTopic(t, client, topic, partitions)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_, _ = client.DeleteTopics(ctx, &kafka.DeleteTopicsRequest{Topics: []string{topic}})
	})
	return topic
}

// waitTopic waits until metadata shows every partition with a leader.
func waitTopic(t testing.TB, client *kafka.Client, topic string, partitions int) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		md, err := client.Metadata(ctx, &kafka.MetadataRequest{Topics: []string{topic}})
		cancel()
		if err == nil && len(md.Topics) == 1 && md.Topics[0].Error == nil && len(md.Topics[0].Partitions) == partitions {
			ok := true
			for _, p := range md.Topics[0].Partitions {
				if p.Leader.Host == "" {
					ok = false
				}
			}
			if ok {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("topic %s not ready: %v", topic, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// endOffsets returns the high watermark of every partition of topic. A
// freshly created topic's partitions may answer NOT_LEADER for a moment
// after metadata names their leader, so the errors Kafka marks retriable
// are retried for a while.
func endOffsets(t testing.TB, topic string, partitions int) map[int]int64 {
	t.Helper()
	client := &kafka.Client{Addr: kafka.TCP(brokers(t)...), Timeout: 30 * time.Second}
	deadline := time.Now().Add(30 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		out, err := consumer.EndOffsets(ctx, client, topic, partitions)
		cancel()
		if err == nil {
			return out
		}
		var ke kafka.Error
		if !errors.As(err, &ke) || !ke.Temporary() || time.Now().After(deadline) {
			t.Fatalf("list offsets %s: %v", topic, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// committedOffsets reads a group's committed offsets with its own client,
// independent of any consumer; -1 means nothing committed.
func committedOffsets(t testing.TB, group, topic string, partitions int) map[int]int64 {
	t.Helper()
	return askCoordinator(t, group, func(ctx context.Context, c *kafka.Client) (map[int]int64, error) {
		return consumer.CommittedOffsets(ctx, c, group, topic, partitions)
	})
}

// committedAcked reads a group's commits with the acknowledged spans their
// metadata carries.
func committedAcked(t testing.TB, group, topic string, partitions int) map[int]consumer.Acked {
	t.Helper()
	return askCoordinator(t, group, func(ctx context.Context, c *kafka.Client) (map[int]consumer.Acked, error) {
		return consumer.CommittedAcked(ctx, c, group, topic, partitions)
	})
}

// askCoordinator asks the group coordinator through its own client. On a
// fresh broker the coordinator may still be loading the offsets topic, so
// the errors Kafka marks retriable are retried for a while.
func askCoordinator[T any](t testing.TB, group string, ask func(context.Context, *kafka.Client) (T, error)) T {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		out, err := ask(ctx, &kafka.Client{Addr: kafka.TCP(env.brokers...), Timeout: 30 * time.Second})
		cancel()
		if err == nil {
			return out
		}
		var kerr kafka.Error
		if !errors.As(err, &kerr) || !kerr.Temporary() || time.Now().After(deadline) {
			t.Fatalf("offset fetch for group %s: %v", group, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// waitCommitted polls until the group's committed offsets equal the end
// offsets of topic, or fails the test after timeout.
func waitCommitted(t testing.TB, group, topic string, partitions int, timeout time.Duration) {
	t.Helper()
	waitCommittedBy(t, group, topic, partitions, timeout, equalOffsets)
}

// waitCommittedBy polls until done(committed, end offsets of topic) holds
// for the group, or fails the test after timeout.
func waitCommittedBy(t testing.TB, group, topic string, partitions int, timeout time.Duration, done func(committed, end map[int]int64) bool) {
	t.Helper()
	want := endOffsets(t, topic, partitions)
	deadline := time.Now().Add(timeout)
	for {
		got := committedOffsets(t, group, topic, partitions)
		if done(got, want) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("committed offsets of group %s on %s = %v, want the end offsets %v", group, topic, got, want)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func equalOffsets(a, b map[int]int64) bool {
	if len(a) != len(b) {
		return false
	}
	for p, o := range b {
		if a[p] != o {
			return false
		}
	}
	return true
}

// produce writes msgs with acks from all in-sync replicas.
func produce(t testing.TB, topic string, msgs []kafka.Message) {
	t.Helper()
	w := &kafka.Writer{
		Addr:         kafka.TCP(brokers(t)...),
		Topic:        topic,
		Balancer:     &kafka.Hash{},
		RequiredAcks: kafka.RequireAll,
		BatchSize:    500,
		BatchTimeout: 5 * time.Millisecond,
		BatchBytes:   4 << 20,
	}
	defer w.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := w.WriteMessages(ctx, msgs...); err != nil {
		var werr kafka.WriteErrors
		if errors.As(err, &werr) {
			t.Fatalf("produce to %s: %d of %d failed, first: %v", topic, werr.Count(), len(msgs), firstErr(werr))
		}
		t.Fatalf("produce to %s: %v", topic, err)
	}
}

func firstErr(errs kafka.WriteErrors) error {
	for _, e := range errs {
		if e != nil {
			return e
		}
	}
	return nil
}

// freePort returns a loopback address nobody listens on right now.
func freeAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}
