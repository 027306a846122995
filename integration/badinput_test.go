package integration

import (
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/produktly/produktly-segment/consumer"
	"github.com/produktly/produktly-segment/mapping"
)

// TestBadInputThroughPipeline runs the real binary on good records
// interleaved with every kind of bad input: not JSON, not UTF-8, invalid
// UTF-8 inside a string, nesting 5000 levels deep, huge strings, duplicate
// keys with different values, a record Segment rejects, and ~900 KB values
// near the broker's 1 MB limit, four of them back to back on one key so
// they reach the dead-letter writer together. Every bad record must land in
// the dead-letter topic with its contract code, every good one at Segment,
// the group must commit to the end, the process must not panic and its
// memory must stay bounded.
func TestBadInputThroughPipeline(t *testing.T) {
	t.Parallel()
	l := newLedger(t, "badinput", 3)
	f := newFleet(t, l, map[string]string{"LOG_LEVEL": "debug"})
	tr := newTraffic(l, 0, 0, 0)
	run := unique("bad")
	var recs []genRecord
	seq := 0
	for round := range 3 {
		for i := range badKinds {
			seq++
			recs = append(recs, goodRecord(run, seq))
			seq++
			recs = append(recs, badRecord(run, seq, i+round))
		}
	}
	// Produced before the service starts, so they are fetched one right
	// after the other and their dead-letter copies are written together.
	for i := range 4 {
		seq++
		recs = append(recs, bigRecord(run, seq, 900_000+i, "big-one-key"))
	}
	// A key given twice with the same value is one field, not a conflict:
	// delivered, once.
	seq++
	id := fmt.Sprintf("%s-%d", run, seq)
	recs = append(recs, genRecord{id: id, key: []byte("user-dup"), kind: "duplicate keys, same value",
		value: []byte(`{"type":"tour_start","id":"` + id + `","userId":"u-1","tourId":"t1","tourId":"t1","timestamp":"2026-11-29T10:00:00Z"}`)})
	seq++
	recs = append(recs, goodRecord(run, seq))
	tr.produceNow(recs...)
	l.endFault()

	f.start()
	recovery := l.waitRecovered(2 * time.Minute)
	f.shutdown()
	rep := l.account(f, recovery)
	if rep.PeakMB > 256 {
		t.Errorf("peak memory %.1f MB on %.1f MB of input, want it bounded (≤ 256 MB)", rep.PeakMB, float64(l.bytes)/1e6)
	}
	_ = tr.w.Close()
}

// TestDeadLetterAtBrokerLimit produces a bad record whose value fits the
// broker's 1 MB limit (message.max.bytes 1048588) but whose dead-letter
// copy, with the contract headers added, does not, and a good record after
// it. The dead-letter topic refuses the whole copy, so the copy is written
// without its value, with headers that say so and give the value's size
// and the source coordinates; the partition then commits to its end.
func TestDeadLetterAtBrokerLimit(t *testing.T) {
	t.Parallel()
	l := newLedger(t, "atlimit", 1)
	f := newFleet(t, l, nil)
	tr := newTraffic(l, 0, 0, 0)
	tr.w.BatchBytes = 2 << 20 // the record alone is over the traffic's batch cap
	run := unique("limit")
	big := bigRecord(run, 1, 1_048_400, "k")
	tr.produceNow(big)
	tr.w.BatchBytes = 1040000
	tr.produceNow(goodRecord(run, 2))
	_ = tr.w.Close()
	l.endFault()
	f.start()
	recovery := l.waitRecovered(time.Minute)
	f.shutdown()
	l.account(f, recovery)

	dead, err := l.kc.readAll(l.dlq, l.dlqParts)
	if err != nil {
		t.Fatal(err)
	}
	if len(dead) != 1 {
		t.Fatalf("dead-letter topic holds %d records, want 1", len(dead))
	}
	m := dead[0]
	if len(m.Value) != 0 || string(m.Key) != "k" {
		t.Errorf("dead letter key %q, %d value bytes; want key k and the value left out", m.Key, len(m.Value))
	}
	for name, want := range map[string]string{
		consumer.HeaderOmitted:           "value",
		consumer.HeaderOriginalValueSize: strconv.Itoa(len(big.value)),
		consumer.HeaderErrorCode:         string(mapping.CodeTooLarge),
		consumer.HeaderSourceTopic:       l.topic,
		consumer.HeaderSourcePartition:   "0",
		consumer.HeaderSourceOffset:      "0",
	} {
		if got := headerOr(m, name); got != want {
			t.Errorf("dead letter header %s = %q, want %q", name, got, want)
		}
	}

	// `dlq replay` cannot replay a dead letter without its value: it says
	// so and writes nothing.
	env := map[string]string{
		"KAFKA_BROKERS": strings.Join(brokers(t), ","), "KAFKA_TOPIC": l.topic, "KAFKA_DLQ_TOPIC": l.dlq, "LOG_FORMAT": "json",
	}
	out, errOut, code := runCmd(t, env, 60*time.Second, "dlq", "replay")
	if code != 0 || !strings.Contains(out, "replayed 0") || !strings.Contains(out, "skipped 1 dead letters written without their value") {
		t.Errorf("dlq replay: exit %d, stdout %q, stderr %q; want exit 0, nothing replayed, 1 skipped", code, out, errOut)
	}
	if end := endOffsets(t, l.topic, 1); end[0] != 2 {
		t.Errorf("source topic end offset %d after the replay, want still 2", end[0])
	}
}

// TestDeadLetterTopicSmallerThanSource: a dead-letter topic whose
// max.message.bytes (200,000) is below the source topic's (the broker
// default, 1,048,588) is reported at start (an error log line naming both
// topics and the size to set, and the shortfall metric), and a bad record
// that fits the source but not the dead-letter topic is dead-lettered
// without its value while its partition commits on.
func TestDeadLetterTopicSmallerThanSource(t *testing.T) {
	t.Parallel()
	pl := newPipeline(t, 1)
	pl.dlq = createTopicWith(t, 1, kafka.ConfigEntry{ConfigName: "max.message.bytes", ConfigValue: "200000"})
	pl.dlqParts = 1
	run := unique("small-dlq")
	big := bigRecord(run, 1, 300_000, "k") // too_large for Segment, too large for this dead-letter topic
	good := goodRecord(run, 2)
	produce(t, pl.topic, []kafka.Message{
		{Key: big.key, Value: big.value},
		{Key: good.key, Value: good.value},
	})
	p := pl.start("member", nil)
	p.waitAlive(30 * time.Second)
	series := `produktly_segment_topic_size_shortfall_bytes{topic="` + pl.dlq + `"}`
	want := float64(1048588 + 2048 - 200000)
	waitFor(t, 30*time.Second, "the shortfall metric", func() bool { return p.metric(series) == want },
		func() string { return fmt.Sprintf("%s = %v, want %v", series, p.metric(series), want) })
	if n := p.countLog(`"level":"error"`, pl.dlq, "max.message.bytes to at least 1050636"); n != 1 {
		t.Errorf("%d error lines name the dead-letter topic and the size to set, want 1", n)
	}
	waitFor(t, 60*time.Second, "the dead letter", func() bool { return pl.dlqCount() >= 1 },
		func() string { return fmt.Sprintf("%d dead letters", pl.dlqCount()) })
	waitCommitted(t, pl.group, pl.topic, pl.partitions, 30*time.Second)
	dead := readTopic(t, pl.dlq, 1)
	if len(dead) != 1 {
		t.Fatalf("dead-letter topic holds %d records, want 1", len(dead))
	}
	if m := dead[0]; len(m.Value) != 0 || headerOr(m, consumer.HeaderOmitted) != "value" ||
		headerOr(m, consumer.HeaderOriginalValueSize) != strconv.Itoa(len(big.value)) {
		t.Errorf("dead letter: %d value bytes, %s=%q, %s=%q; want the value left out and its size given", len(m.Value),
			consumer.HeaderOmitted, headerOr(m, consumer.HeaderOmitted),
			consumer.HeaderOriginalValueSize, headerOr(m, consumer.HeaderOriginalValueSize))
	}
	if v := p.metric("produktly_segment_dead_letters_value_omitted_total"); v != 1 {
		t.Errorf("dead_letters_value_omitted_total = %v, want 1", v)
	}
	pl.waitDistinct(1, 30*time.Second)
}
