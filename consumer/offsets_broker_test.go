package consumer

import (
	"context"
	"errors"
	"maps"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
)

// TestOffsetsFromOutside, on a real broker: a topic of three partitions
// with records in two; a group that has committed nothing, then part,
// then everything.
func TestOffsetsFromOutside(t *testing.T) {
	topic := brokerTopics(t, kafka.TopicConfig{NumPartitions: 3})[0]
	brokers := strings.Split(os.Getenv("KAFKA_BROKERS"), ",")
	client := &kafka.Client{Addr: kafka.TCP(brokers...), Timeout: 30 * time.Second}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	w := &kafka.Writer{Addr: kafka.TCP(brokers...), Topic: topic, Balancer: kafka.BalancerFunc(func(m kafka.Message, _ ...int) int { return m.Partition }), RequiredAcks: kafka.RequireAll}
	defer w.Close()
	var msgs []kafka.Message
	for i := range 5 {
		msgs = append(msgs, kafka.Message{Partition: i % 2, Value: []byte("v")})
	}
	if err := w.WriteMessages(ctx, msgs...); err != nil {
		t.Fatal(err)
	}

	ends := waitOffsets(t, func() (map[int]int64, error) { return EndOffsets(ctx, client, topic, 3) })
	if want := map[int]int64{0: 3, 1: 2, 2: 0}; !maps.Equal(ends, want) {
		t.Fatalf("EndOffsets = %v, want %v", ends, want)
	}

	group := "g-" + topic
	commit := func(offsets map[int]int64) {
		t.Helper()
		req := &kafka.OffsetCommitRequest{GroupID: group, GenerationID: -1, Topics: map[string][]kafka.OffsetCommit{}}
		for p, o := range offsets {
			req.Topics[topic] = append(req.Topics[topic], kafka.OffsetCommit{Partition: p, Offset: o})
		}
		res, err := client.OffsetCommit(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range res.Topics[topic] {
			if p.Error != nil {
				t.Fatalf("commit %d: %v", p.Partition, p.Error)
			}
		}
	}
	for _, step := range []struct {
		commit    map[int]int64
		committed map[int]int64
		caughtUp  bool
	}{
		{nil, map[int]int64{0: -1, 1: -1, 2: -1}, false},
		{map[int]int64{0: 3, 1: 1}, map[int]int64{0: 3, 1: 1, 2: -1}, false},
		{map[int]int64{1: 2}, map[int]int64{0: 3, 1: 2, 2: -1}, true}, // partition 2 is empty
	} {
		if step.commit != nil {
			commit(step.commit)
		}
		got := waitOffsets(t, func() (map[int]int64, error) { return CommittedOffsets(ctx, client, group, topic, 3) })
		if !maps.Equal(got, step.committed) {
			t.Fatalf("after committing %v: CommittedOffsets = %v, want %v", step.commit, got, step.committed)
		}
		up, err := CaughtUp(ctx, client, group, topic, 3)
		if err != nil || up != step.caughtUp {
			t.Fatalf("after committing %v: CaughtUp = %v, %v; want %v", step.commit, up, err, step.caughtUp)
		}
	}
}

// waitOffsets retries f while the broker answers errors it marks
// temporary (a fresh topic's leaders, a loading coordinator).
func waitOffsets(t *testing.T, f func() (map[int]int64, error)) map[int]int64 {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		out, err := f()
		if err == nil {
			return out
		}
		var ke kafka.Error
		if !errors.As(err, &ke) || !ke.Temporary() || time.Now().After(deadline) {
			t.Fatal(err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
