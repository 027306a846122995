package consumer

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
	"github.com/segmentio/kafka-go"

	"github.com/produktly/produktly-segment/mapping"
)

// TestDeadLetterPartitionsDoNotWaitForEachOther, on a real broker, with a
// dead-letter topic that takes records of at most 600 bytes: a dead letter
// of partition 0 that does not fit even without its value, key and headers
// (its 512-byte reason alone nearly fills the limit) is retried, while the
// dead letters of partition 1 behind it are written; abandoning partition
// 0 then finishes its record at once, not after the backoff.
func TestDeadLetterPartitionsDoNotWaitForEachOther(t *testing.T) {
	topics := brokerTopics(t,
		kafka.TopicConfig{NumPartitions: 2},
		kafka.TopicConfig{NumPartitions: 1, ConfigEntries: []kafka.ConfigEntry{{ConfigName: "max.message.bytes", ConfigValue: "600"}}},
	)
	reg := prometheus.NewRegistry()
	m, err := newMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	o := Options{Brokers: strings.Split(os.Getenv("KAFKA_BROKERS"), ","), Topic: topics[0], DeadLetterTopic: topics[1]}.WithDefaults()
	d := newDeadLetter(o, zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.ErrorLevel), m)
	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan error, 1)
	go func() { ran <- d.run(ctx) }()
	defer func() {
		cancel()
		<-ran
	}()

	abandon := make(chan struct{})
	stuck := make(chan bool, 1)
	d.send(dlqItem{
		msg:  kafka.Message{Topic: topics[0], Partition: 0, Offset: 0, Key: []byte("k"), Value: []byte(strings.Repeat("v", 2000))},
		code: mapping.CodeInvalidJSON, reason: strings.Repeat("r", 2000),
		cancel: abandon, done: func(w bool) { stuck <- w },
	})
	written := make(chan bool, 3)
	for off := range 3 {
		d.send(dlqItem{
			msg:  kafka.Message{Topic: topics[0], Partition: 1, Offset: int64(off), Key: []byte("k"), Value: []byte("{")},
			code: mapping.CodeInvalidJSON, reason: "r", cancel: make(chan struct{}), done: func(w bool) { written <- w },
		})
	}
	for i := range 3 {
		select {
		case w := <-written:
			if !w {
				t.Fatalf("dead letter %d of partition 1 reported not written", i)
			}
		case <-time.After(time.Minute):
			t.Fatalf("dead letter %d of partition 1 waits behind partition 0's", i)
		}
	}
	select {
	case w := <-stuck:
		t.Fatalf("partition 0's dead letter finished (written %v) before it was abandoned", w)
	default:
	}
	// Let it fail a few times, so it sits in a backoff, then abandon it.
	deadline := time.Now().Add(time.Minute)
	failures := func() float64 {
		return metricValue(reg, "produktly_segment_dead_letter_write_errors_total", "class", classTooLarge.String())
	}
	for failures() < 4 {
		if time.Now().After(deadline) {
			t.Fatalf("partition 0's dead letter failed %v times, want retries", failures())
		}
		time.Sleep(20 * time.Millisecond)
	}
	close(abandon)
	select {
	case w := <-stuck:
		if w {
			t.Fatal("the abandoned dead letter was reported written")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the abandoned dead letter was not finished within 10 s of its partition being abandoned")
	}
	if got := metricValue(reg, "produktly_segment_records_dead_lettered_total", "code", string(mapping.CodeInvalidJSON)); got != 3 {
		t.Errorf("records_dead_lettered_total = %v, want 3", got)
	}
}
