package integration

import (
	"bytes"
	"context"
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/produktly/produktly-segment/consumer"
	"github.com/produktly/produktly-segment/mapping"
	"github.com/produktly/produktly-segment/sink/segmenttest"
)

// TestDLQReplay (issue 7): a record Segment rejected is dead-lettered; after
// the cause is fixed, `dlq replay --code rejected` puts it back on the
// source topic exactly once, with its key, value and headers, and skips a
// dead letter of another code. The running service then delivers it under
// the messageId the original would have had.
func TestDLQReplay(t *testing.T) {
	t.Parallel()
	pl := newPipeline(t, 2)
	const rejectedUser = "user-rejected-until-fixed"
	pl.seg.RejectMessages(func(m segmenttest.Received) bool { return m.UserID == rejectedUser })

	// No id field: the messageId derives from the record's coordinates,
	// which change when it is replayed, so only the replayed-from header
	// can keep it stable. No timestamp field either: the call's timestamp
	// is the Kafka record's, which the replay must keep.
	rejected := kafka.Message{
		Key:   []byte(rejectedUser),
		Value: []byte(`{"type":"tour_finish","userId":"` + rejectedUser + `","tourId":"tour_onboarding_v3","durationMs":183000}`),
		Time:  time.Date(2026, 11, 29, 10, 5, 0, 250e6, time.UTC),
		Headers: []kafka.Header{
			{Key: "x-case", Value: []byte("rejected")},
			{Key: "traceparent", Value: []byte("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")},
		},
	}
	invalid := kafka.Message{
		Key:     []byte("user-7"),
		Value:   []byte(`{"type":"tour_finish","userId":"user-7"}`),
		Headers: []kafka.Header{{Key: "x-case", Value: []byte("missing_property")}},
	}
	produce(t, pl.topic, []kafka.Message{rejected, invalid})
	pl.start("member", nil)
	waitFor(t, 60*time.Second, "2 dead letters", func() bool { return pl.dlqCount() >= 2 },
		func() string { return fmt.Sprintf("%d dead letters", pl.dlqCount()) })
	waitCommitted(t, pl.group, pl.topic, pl.partitions, 30*time.Second)
	if pl.seg.Count() != 0 {
		t.Fatalf("Segment accepted %d messages, want 0", pl.seg.Count())
	}

	// The original coordinates and messageId of the rejected record.
	src := readTopic(t, pl.topic, pl.partitions)
	var orig kafka.Message
	for _, m := range src {
		if c, _ := header(m, "x-case"); c == "rejected" {
			orig = m
		}
	}
	want, err := mapping.Map(mapping.Record{Topic: orig.Topic, Partition: orig.Partition, Offset: orig.Offset, Time: orig.Time, Value: orig.Value})
	if err != nil {
		t.Fatal(err)
	}
	endBefore := endOffsets(t, pl.topic, pl.partitions)

	env := map[string]string{
		"KAFKA_BROKERS":   strings.Join(brokers(t), ","),
		"KAFKA_TOPIC":     pl.topic,
		"KAFKA_DLQ_TOPIC": pl.dlq,
		"LOG_FORMAT":      "json",
	}
	out, errOut, code := runCmd(t, env, 60*time.Second, "dlq", "replay", "--code", "rejected", "--dry-run")
	if code != 0 {
		t.Fatalf("dlq replay --dry-run: exit %d\nstdout: %s\nstderr: %s", code, out, errOut)
	}
	t.Logf("dry run: %s", strings.TrimSpace(out))
	if !strings.Contains(out, "would replay 1") || !strings.Contains(out, "scanned 2") {
		t.Errorf("dry run output %q does not say it scanned 2 and would replay 1", out)
	}
	if got := endOffsets(t, pl.topic, pl.partitions); !equalOffsets(got, endBefore) {
		t.Fatalf("the dry run wrote to the source topic: end offsets %v, before %v", got, endBefore)
	}

	// The cause is fixed: Segment takes the call now.
	pl.seg.RejectMessages(nil)
	out, errOut, code = runCmd(t, env, 60*time.Second, "dlq", "replay", "--code", "rejected")
	if code != 0 {
		t.Fatalf("dlq replay: exit %d\nstdout: %s\nstderr: %s", code, out, errOut)
	}
	t.Logf("replay: %s", strings.TrimSpace(out))
	if !strings.Contains(out, "replayed 1") {
		t.Errorf("replay output %q does not say it replayed 1", out)
	}

	// Exactly one replayed record, the rejected one, unchanged.
	var replayed []kafka.Message
	for _, m := range readTopic(t, pl.topic, pl.partitions) {
		if _, ok := header(m, consumer.HeaderReplayedFrom); ok {
			replayed = append(replayed, m)
		}
	}
	if len(replayed) != 1 {
		t.Fatalf("%d records on the source topic carry %s, want 1", len(replayed), consumer.HeaderReplayedFrom)
	}
	r := replayed[0]
	if !bytes.Equal(r.Key, rejected.Key) || !bytes.Equal(r.Value, rejected.Value) {
		t.Errorf("replayed record key %q value %s, want key %q value %s", r.Key, r.Value, rejected.Key, rejected.Value)
	}
	if n := len(rejected.Headers); len(r.Headers) != n+1 || !reflect.DeepEqual(r.Headers[:n], rejected.Headers) {
		t.Errorf("replayed headers %v, want the original %v plus %s", r.Headers, rejected.Headers, consumer.HeaderReplayedFrom)
	}
	from, _ := header(r, consumer.HeaderReplayedFrom)
	if w := pl.topic + "/" + strconv.Itoa(orig.Partition) + "/" + strconv.FormatInt(orig.Offset, 10); from != w {
		t.Errorf("%s = %q, want %q", consumer.HeaderReplayedFrom, from, w)
	}
	if !r.Time.Equal(orig.Time) {
		t.Errorf("replayed record timestamp %s, want the original's %s", r.Time, orig.Time)
	}
	if got, want := sum(endOffsets(t, pl.topic, pl.partitions)), sum(endBefore)+1; got != want {
		t.Errorf("source topic holds %d records, want %d: only the rejected one may come back", got, want)
	}

	// The service delivers it under the original's messageId, not the one
	// its new coordinates would give.
	pl.waitDistinct(1, 60*time.Second)
	waitCommitted(t, pl.group, pl.topic, pl.partitions, 30*time.Second)
	moved, err := mapping.Map(mapping.Record{Topic: r.Topic, Partition: r.Partition, Offset: r.Offset, Time: r.Time, Value: r.Value})
	if err != nil {
		t.Fatal(err)
	}
	if moved.MessageID == want.MessageID {
		t.Fatalf("test setup: the replayed record's own coordinates give the original messageId")
	}
	msgs := pl.seg.Messages()
	if len(msgs) != 1 || msgs[0].MessageID != want.MessageID {
		var ids []string
		for _, m := range msgs {
			ids = append(ids, m.MessageID)
		}
		t.Errorf("Segment received messageIds %v, want exactly the original's %s (not %s)", ids, want.MessageID, moved.MessageID)
	} else if !bytes.Equal(msgs[0].Raw, want.JSON) {
		t.Errorf("replayed call differs from what the original would have sent:\ngot  %s\nwant %s", msgs[0].Raw, want.JSON)
	}
	if n := pl.dlqCount(); n != 2 {
		t.Errorf("dead-letter topic holds %d records, want still 2", n)
	}
}

// TestDLQReplayKeepsKeyOrder (issue 11, item 6): the source topic is
// written the way Java producers write it (murmur2 of the key). Some
// records of each key are rejected by Segment and dead-lettered; after the
// cause is fixed, `dlq replay` must put every one of them back in the
// partition that holds the other records of its key, in their original
// order, so per-key order survives the replay.
func TestDLQReplayKeepsKeyOrder(t *testing.T) {
	t.Parallel()
	const partitions, keys = 3, 12
	pl := newPipeline(t, partitions)
	pl.seg.RejectMessages(func(m segmenttest.Received) bool { return m.Event == "Tour Finish" })

	var msgs []kafka.Message
	for k := range keys {
		user := fmt.Sprintf("user-order-%d", k)
		for seq := range 4 {
			typ := "tour_start"
			if seq == 1 || seq == 2 {
				typ = "tour_finish" // rejected until the cause is fixed
			}
			msgs = append(msgs, kafka.Message{
				Key:     []byte(user),
				Value:   []byte(fmt.Sprintf(`{"type":%q,"userId":%q,"tourId":"t-%d"}`, typ, user, seq)),
				Headers: []kafka.Header{{Key: "x-seq", Value: []byte(strconv.Itoa(seq))}},
			})
		}
	}
	w := &kafka.Writer{
		Addr: kafka.TCP(brokers(t)...), Topic: pl.topic, Balancer: kafka.Murmur2Balancer{},
		RequiredAcks: kafka.RequireAll, BatchTimeout: 5 * time.Millisecond,
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := w.WriteMessages(ctx, msgs...); err != nil {
		t.Fatal(err)
	}
	_ = w.Close()
	bad := int64(2 * keys)
	pl.start("member", nil)
	waitFor(t, 60*time.Second, "dead letters", func() bool { return pl.dlqCount() >= bad },
		func() string { return fmt.Sprintf("%d of %d dead letters", pl.dlqCount(), bad) })
	waitCommitted(t, pl.group, pl.topic, pl.partitions, 30*time.Second)

	// Where each key's records are before the replay.
	home := map[string]int{}
	for _, m := range readTopic(t, pl.topic, partitions) {
		if p, ok := home[string(m.Key)]; ok && p != m.Partition {
			t.Fatalf("test setup: key %s in partitions %d and %d", m.Key, p, m.Partition)
		}
		home[string(m.Key)] = m.Partition
	}
	if len(home) != keys {
		t.Fatalf("test setup: %d keys on the source topic, want %d", len(home), keys)
	}

	pl.seg.RejectMessages(nil)
	env := map[string]string{
		"KAFKA_BROKERS":   strings.Join(brokers(t), ","),
		"KAFKA_TOPIC":     pl.topic,
		"KAFKA_DLQ_TOPIC": pl.dlq,
		"LOG_FORMAT":      "json",
	}
	out, errOut, code := runCmd(t, env, 60*time.Second, "dlq", "replay")
	if code != 0 {
		t.Fatalf("dlq replay: exit %d\nstdout: %s\nstderr: %s", code, out, errOut)
	}
	if want := fmt.Sprintf("replayed %d", bad); !strings.Contains(out, want) {
		t.Errorf("replay output %q does not say %q", out, want)
	}

	// Every replayed record is in its key's partition, and the replayed
	// records of a key follow their original order.
	replayed := map[string][]string{}
	n := 0
	for _, m := range readTopic(t, pl.topic, partitions) {
		if _, ok := header(m, consumer.HeaderReplayedFrom); !ok {
			continue
		}
		n++
		if want := home[string(m.Key)]; m.Partition != want {
			t.Errorf("replayed record of key %s landed in partition %d, the key's records are in %d", m.Key, m.Partition, want)
		}
		seq, _ := header(m, "x-seq")
		replayed[string(m.Key)] = append(replayed[string(m.Key)], seq)
	}
	if int64(n) != bad {
		t.Fatalf("%d replayed records on the source topic, want %d", n, bad)
	}
	for key, seqs := range replayed {
		if !reflect.DeepEqual(seqs, []string{"1", "2"}) {
			t.Errorf("replayed records of key %s in order %v, want [1 2]", key, seqs)
		}
	}
	pl.waitDistinct(4*keys, 60*time.Second)
}
