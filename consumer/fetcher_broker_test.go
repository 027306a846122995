package consumer

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// newTestBatchReader is the production reader of topic's partition on the
// broker KAFKA_BROKERS names.
func newTestBatchReader(t testing.TB, topic string, partition int) *batchReader {
	t.Helper()
	tc := newTestConsumer(t, 1, func(o *Options) { o.Brokers = strings.Split(os.Getenv("KAFKA_BROKERS"), ",") })
	return tc.newBatchReader(topic, partition)
}

func produce(t *testing.T, topic string, msgs ...kafka.Message) {
	t.Helper()
	w := &kafka.Writer{Addr: kafka.TCP(strings.Split(os.Getenv("KAFKA_BROKERS"), ",")...), Topic: topic, RequiredAcks: kafka.RequireAll, BatchSize: len(msgs), BatchTimeout: time.Millisecond}
	defer w.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := w.WriteMessages(ctx, msgs...); err != nil {
		t.Fatal(err)
	}
}

// readUntil fetches until the reader has passed offset end, and returns
// every record read, with bytes of their own (ownBytes, as the partition
// loop copies them): a batch's bytes are valid only until the next fetch.
func readUntil(t *testing.T, r *batchReader, end int64) []kafka.Message {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var got []kafka.Message
	for r.offset < end {
		batch, err := r.FetchBatch(ctx)
		if err != nil {
			t.Fatalf("FetchBatch at %d (want to pass %d, %d read): %v", r.offset, end, len(got), err)
		}
		got = append(got, ownBytes(batch)...)
	}
	return got
}

// TestBatchReaderReadsWholeResponses: one fetch returns many records, in
// order, with their keys, values, headers and times, from the offset set
// (FirstOffset, a middle offset); records produced later are read next.
func TestBatchReaderReadsWholeResponses(t *testing.T) {
	topic := brokerTopics(t, kafka.TopicConfig{NumPartitions: 1})[0]
	at := time.UnixMilli(1700000000123)
	var msgs []kafka.Message
	for i := range 300 {
		msgs = append(msgs, kafka.Message{
			Key: []byte(fmt.Sprintf("k%d", i)), Value: []byte(fmt.Sprintf(`{"n":%d}`, i)), Time: at,
			Headers: []kafka.Header{{Key: "h", Value: []byte(fmt.Sprint(i))}},
		})
	}
	msgs[7].Key = nil // a null key stays null
	produce(t, topic, msgs...)

	r := newTestBatchReader(t, topic, 0)
	if err := r.SetOffset(kafka.FirstOffset); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	first, err := r.FetchBatch(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(first) < 2 {
		t.Errorf("the first fetch returned %d records, want the whole batch of 300", len(first))
	}
	got := ownBytes(first) // the next fetch reads into first's bytes
	got = append(got, readUntil(t, r, 300)...)
	if len(got) != 300 {
		t.Fatalf("read %d records, want 300", len(got))
	}
	for i, m := range got {
		want := msgs[i]
		switch {
		case m.Offset != int64(i):
			t.Fatalf("record %d at offset %d", i, m.Offset)
		case string(m.Value) != string(want.Value) || string(m.Key) != string(want.Key) || (want.Key == nil) != (m.Key == nil):
			t.Errorf("offset %d: key %q value %q, want %q %q", i, m.Key, m.Value, want.Key, want.Value)
		case len(m.Headers) != 1 || string(m.Headers[0].Value) != fmt.Sprint(i):
			t.Errorf("offset %d: headers %v", i, m.Headers)
		case !m.Time.Equal(at):
			t.Errorf("offset %d: time %v, want %v", i, m.Time, at)
		case m.HighWaterMark != 300:
			t.Errorf("offset %d: high watermark %d, want 300", i, m.HighWaterMark)
		case m.Topic != topic || m.Partition != 0:
			t.Errorf("offset %d: topic %q partition %d", i, m.Topic, m.Partition)
		}
	}

	// From the middle of a batch: the records before the offset are not
	// returned.
	if err := r.SetOffset(123); err != nil {
		t.Fatal(err)
	}
	mid := readUntil(t, r, 300)
	if len(mid) != 300-123 || mid[0].Offset != 123 {
		t.Errorf("from 123: %d records starting at %d, want %d from 123", len(mid), mid[0].Offset, 300-123)
	}

	// At the end: the reader waits for the next record.
	produce(t, topic, kafka.Message{Value: []byte(`{"n":300}`)})
	if next := readUntil(t, r, 301); len(next) != 1 || next[0].Offset != 300 {
		t.Errorf("after the end: %v, want the record at 300", next)
	}
}

// TestBatchReaderPastTheEndWaits: an offset past the partition's end
// (OffsetOutOfRange) waits for records, as kafka-go's Reader does, and
// FetchBatch ends with ctx.
func TestBatchReaderPastTheEndWaits(t *testing.T) {
	topic := brokerTopics(t, kafka.TopicConfig{NumPartitions: 1})[0]
	produce(t, topic, kafka.Message{Value: []byte(`{}`)})
	r := newTestBatchReader(t, topic, 0)
	if err := r.SetOffset(5); err != nil {
		t.Fatal(err)
	}
	fetchCanceled(t, r, "past the end")
	var more []kafka.Message
	for range 6 {
		more = append(more, kafka.Message{Value: []byte(`{}`)})
	}
	produce(t, topic, more...)
	got := readUntil(t, r, 7)
	if len(got) != 2 || got[0].Offset != 5 || got[1].Offset != 6 {
		t.Errorf("got %v, want the records at 5 and 6 once the partition reached them", got)
	}
}

// TestBatchReaderReadCommitted: records of aborted transactions and the
// transaction markers are never returned (kafka-go's Reader returns both:
// kafka-go issue #1332), those of committed transactions are, and the
// reader moves past all of them.
func TestBatchReaderReadCommitted(t *testing.T) {
	topic := brokerTopics(t, kafka.TopicConfig{NumPartitions: 1})[0]
	brokers := strings.Split(os.Getenv("KAFKA_BROKERS"), ",")
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.TransactionalID("txn-"+topic), kgo.DefaultProduceTopic(topic))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	txn := func(commit bool, values ...string) {
		t.Helper()
		if err := cl.BeginTransaction(); err != nil {
			t.Fatal(err)
		}
		for _, v := range values {
			if err := cl.ProduceSync(ctx, &kgo.Record{Value: []byte(v)}).FirstErr(); err != nil {
				t.Fatal(err)
			}
		}
		if err := cl.EndTransaction(ctx, kgo.TransactionEndTry(commit)); err != nil {
			t.Fatal(err)
		}
	}
	txn(true, "a1", "a2")
	txn(false, "b1", "b2")
	txn(true, "c1")
	produce(t, topic, kafka.Message{Value: []byte("d1")}) // not transactional

	r := newTestBatchReader(t, topic, 0)
	if err := r.SetOffset(kafka.FirstOffset); err != nil {
		t.Fatal(err)
	}
	// a1 a2 marker b1 b2 marker c1 marker d1: the end is 9.
	got := readUntil(t, r, 9)
	var values []string
	for _, m := range got {
		values = append(values, string(m.Value))
	}
	if want := "a1 a2 c1 d1"; strings.Join(values, " ") != want {
		t.Errorf("read %q, want %q", strings.Join(values, " "), want)
	}
	if r.offset != 9 {
		t.Errorf("next offset %d, want 9 (past the markers and the aborted records)", r.offset)
	}
}

// TestBatchReaderReadCommittedInterleaved: two transactional producers
// write into one partition at once; one aborts, the other commits. Only
// the committed producer's records are returned, whichever order their
// batches and markers landed in.
func TestBatchReaderReadCommittedInterleaved(t *testing.T) {
	topic := brokerTopics(t, kafka.TopicConfig{NumPartitions: 1})[0]
	brokers := strings.Split(os.Getenv("KAFKA_BROKERS"), ",")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	client := func(id string) *kgo.Client {
		cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.TransactionalID(id+"-"+topic), kgo.DefaultProduceTopic(topic))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(cl.Close)
		if err := cl.BeginTransaction(); err != nil {
			t.Fatal(err)
		}
		return cl
	}
	abort, commit := client("abort"), client("commit")
	send := func(cl *kgo.Client, v string) {
		t.Helper()
		if err := cl.ProduceSync(ctx, &kgo.Record{Value: []byte(v)}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	send(abort, "x1")
	send(commit, "c1")
	send(abort, "x2")
	send(commit, "c2")
	if err := abort.EndTransaction(ctx, kgo.TryAbort); err != nil {
		t.Fatal(err)
	}
	send(commit, "c3")
	if err := commit.EndTransaction(ctx, kgo.TryCommit); err != nil {
		t.Fatal(err)
	}
	produce(t, topic, kafka.Message{Value: []byte("d1")})

	r := newTestBatchReader(t, topic, 0)
	// x1 c1 x2 c2 abort-marker c3 commit-marker d1: the end is 8.
	got := readUntil(t, r, 8)
	var values []string
	for _, m := range got {
		values = append(values, string(m.Value))
	}
	if want := "c1 c2 c3 d1"; strings.Join(values, " ") != want {
		t.Errorf("read %q, want %q", strings.Join(values, " "), want)
	}
}

// TestBatchReaderBeforeLogStart: an offset below the partition's log start
// (records deleted by retention) moves the reader to the first offset, as
// kafka-go's Reader does.
func TestBatchReaderBeforeLogStart(t *testing.T) {
	topic := brokerTopics(t, kafka.TopicConfig{NumPartitions: 1})[0]
	var msgs []kafka.Message
	for i := range 10 {
		msgs = append(msgs, kafka.Message{Value: []byte(fmt.Sprint(i))})
	}
	produce(t, topic, msgs...)
	cl, err := kgo.NewClient(kgo.SeedBrokers(strings.Split(os.Getenv("KAFKA_BROKERS"), ",")...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req := kmsg.NewPtrDeleteRecordsRequest()
	req.TimeoutMillis = 10000
	rt := kmsg.NewDeleteRecordsRequestTopic()
	rt.Topic = topic
	rp := kmsg.NewDeleteRecordsRequestTopicPartition()
	rp.Partition, rp.Offset = 0, 6
	rt.Partitions = append(rt.Partitions, rp)
	req.Topics = append(req.Topics, rt)
	res, err := req.RequestWith(ctx, cl)
	if err != nil {
		t.Fatal(err)
	}
	if code := res.Topics[0].Partitions[0].ErrorCode; code != 0 {
		t.Fatalf("DeleteRecords: %v", kafka.Error(code))
	}
	r := newTestBatchReader(t, topic, 0)
	if err := r.SetOffset(2); err != nil {
		t.Fatal(err)
	}
	got := readUntil(t, r, 10)
	if len(got) != 4 || got[0].Offset != 6 {
		t.Errorf("from 2 with the log starting at 6: %d records from %d, want 4 from 6", len(got), got[0].Offset)
	}
}

// TestBatchReaderReusesAnswerBuffer: over a real connection, the reader
// reads its second answer into the first one's buffer; the first answer's
// records, copied as the partition loop copies them (ownBytes), keep
// their bytes, while the records as returned no longer read as they did.
func TestBatchReaderReusesAnswerBuffer(t *testing.T) {
	topic := brokerTopics(t, kafka.TopicConfig{NumPartitions: 1})[0]
	const n = 100
	value := func(o int) string {
		return fmt.Sprintf("%c-%04d-%s", 'a'+o/n, o, strings.Repeat(string(rune('a'+o/n)), 90))
	}
	batch := func(from int) []kafka.Message {
		var msgs []kafka.Message
		for o := from; o < from+n; o++ {
			msgs = append(msgs, kafka.Message{Key: []byte(fmt.Sprintf("k%04d", o)), Value: []byte(value(o)),
				Headers: []kafka.Header{{Key: "h", Value: []byte(fmt.Sprintf("%04d", o))}}})
		}
		return msgs
	}
	// Two batches of one size, each produced as one record batch.
	produce(t, topic, batch(0)...)
	produce(t, topic, batch(n)...)
	r := newTestBatchReader(t, topic, 0)
	defer r.Close()
	// Room for the first batch and part of the second: the first answer
	// is the first batch (the second cut short, not returned), the
	// second answer the second batch, no larger.
	r.maxBytes = 16 << 10
	if err := r.SetOffset(0); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	first, err := r.FetchBatch(ctx)
	if err != nil || len(first) != n {
		t.Fatalf("first fetch: %d records, %v; want the first batch of %d", len(first), err, n)
	}
	array := &r.body[0]
	raw := append([]kafka.Message(nil), first...) // the structs only
	owned := ownBytes(first)
	second, err := r.FetchBatch(ctx)
	if err != nil || len(second) != n || second[0].Offset != n {
		t.Fatalf("second fetch: %d records, %v; want the second batch of %d", len(second), err, n)
	}
	if &r.body[0] != array {
		t.Fatal("the second answer was read into a new buffer, not the first one's")
	}
	check := func(what string, msgs []kafka.Message, from int) {
		t.Helper()
		for i, m := range msgs {
			o := from + i
			if m.Offset != int64(o) || string(m.Key) != fmt.Sprintf("k%04d", o) || string(m.Value) != value(o) ||
				len(m.Headers) != 1 || string(m.Headers[0].Value) != fmt.Sprintf("%04d", o) {
				t.Fatalf("%s, record %d: offset %d key %q value %.20q headers %v", what, i, m.Offset, m.Key, m.Value, m.Headers)
			}
		}
	}
	check("the first answer, copied", owned, 0)
	check("the second answer", second, n)
	overwritten := 0
	for i, m := range raw {
		if string(m.Value) != value(i) {
			overwritten++
		}
	}
	if overwritten == 0 {
		t.Error("the first answer's records, not copied, read as before after the second answer was read into their buffer")
	}
}
