package consumer

import (
	"context"
	"fmt"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/protocol"
	fetchAPI "github.com/segmentio/kafka-go/protocol/fetch"
)

// benchRecords and benchValueSize shape the topic BenchmarkBatchReader
// reads: a backlog of records of about the size of Produktly's, with a
// key and no headers, written in large uncompressed batches as the
// service's producers and the benchmark driver write them.
const (
	benchRecords   = 200_000
	benchValueSize = 300
)

// benchValue is the value of record i of the benchmarks: a Produktly
// record of benchValueSize bytes.
func benchValue(i int) []byte {
	v := fmt.Sprintf(`{"type":"tour_step","userId":"user-%07d","tourId":%d,"timestamp":%d,"metadata":{"stepIndex":%d,"type":"next"},"context":{"page":"/app/dashboard","locale":"en-US"}`,
		i, i%977, 1700000000000+int64(i), i%9)
	return []byte(v + `,"pad":"` + strings.Repeat("x", max(0, benchValueSize-len(v)-9)) + `"}`)
}

func benchKey(i int) []byte { return []byte(fmt.Sprintf("user-%07d", i%5000)) }

// benchTopic returns a topic on the broker KAFKA_BROKERS names holding
// benchRecords records in its one partition. It is kept on the broker and
// written only when missing or short, so that repeated runs (and runs of
// other commits, compared side by side) read the same bytes.
func benchTopic(b *testing.B) string {
	b.Helper()
	brokers := os.Getenv("KAFKA_BROKERS")
	if brokers == "" {
		b.Skip("no Kafka broker: set KAFKA_BROKERS=host:port")
	}
	topic := fmt.Sprintf("bench-batchreader-%d-%d", benchRecords, benchValueSize)
	addr := kafka.TCP(strings.Split(brokers, ",")...)
	client := &kafka.Client{Addr: addr, Timeout: 30 * time.Second}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	res, err := client.ListOffsets(ctx, &kafka.ListOffsetsRequest{Topics: map[string][]kafka.OffsetRequest{topic: {kafka.LastOffsetOf(0)}}})
	if err == nil {
		if p := res.Topics[topic]; len(p) == 1 && p[0].Error == nil && p[0].LastOffset >= benchRecords {
			return topic
		}
	}
	cres, err := client.CreateTopics(ctx, &kafka.CreateTopicsRequest{Topics: []kafka.TopicConfig{{Topic: topic, NumPartitions: 1, ReplicationFactor: 1}}})
	if err != nil {
		b.Fatal(err)
	}
	if err := cres.Errors[topic]; err != nil && !strings.Contains(err.Error(), "already exists") {
		b.Fatal(err)
	}
	w := &kafka.Writer{Addr: addr, Topic: topic, RequiredAcks: kafka.RequireOne, BatchSize: 5000, BatchBytes: 900_000, BatchTimeout: 10 * time.Millisecond}
	defer w.Close()
	batch := make([]kafka.Message, 0, 10_000)
	for i := range benchRecords {
		batch = append(batch, kafka.Message{Key: benchKey(i), Value: benchValue(i)})
		if len(batch) == cap(batch) {
			if err := w.WriteMessages(ctx, batch...); err != nil {
				b.Fatal(err)
			}
			batch = batch[:0]
		}
	}
	if err := w.WriteMessages(ctx, batch...); err != nil && len(batch) > 0 {
		b.Fatal(err)
	}
	return topic
}

// BenchmarkBatchReader reads a backlog of benchRecords records through the
// production batch reader, from the first offset and over again: one op
// is one record returned. The last DefaultMaxInFlight records returned stay
// referenced, as the service's in-flight records do, so that the garbage
// collector works on a live heap of the service's size. (The service keeps
// copies, ownBytes; the messages kept here are never read again, so their
// bytes may be the reader's buffer, overwritten by the next fetch.) cpu-ns/record is the process's CPU (user and
// system, all threads: the garbage collector's too) per record, which the
// wall-clock ns/op shares with the broker on the same machine.
func BenchmarkBatchReader(b *testing.B) {
	topic := benchTopic(b)
	r := newTestBatchReader(b, topic, 0)
	ctx := context.Background()
	if err := r.SetOffset(kafka.FirstOffset); err != nil {
		b.Fatal(err)
	}
	// One pass first: connections, metadata and the broker's page cache
	// are warm before timing starts.
	for r.offset < benchRecords {
		if _, err := r.FetchBatch(ctx); err != nil {
			b.Fatal(err)
		}
	}
	r.SetOffset(0)
	var sum int
	inFlight := make([]kafka.Message, DefaultMaxInFlight)
	k := 0
	cpu0 := processCPU(b)
	b.ReportAllocs()
	b.ResetTimer()
	for read := 0; read < b.N; {
		batch, err := r.FetchBatch(ctx)
		if err != nil {
			b.Fatal(err)
		}
		read += len(batch)
		for i := range batch {
			sum += len(batch[i].Value) + len(batch[i].Key)
			inFlight[k] = batch[i]
			k = (k + 1) % len(inFlight)
		}
		if r.offset >= benchRecords {
			r.SetOffset(0)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(processCPU(b)-cpu0)/float64(b.N), "cpu-ns/record")
	if sum == 0 {
		b.Fatal("no bytes read")
	}
}

// processCPU is the user and system CPU time of the process so far, in ns.
func processCPU(b *testing.B) int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return ru.Utime.Nano() + ru.Stime.Nano()
}

// rawFetch answers every Fetch request with the same encoded response
// body, as the reader's connection reads a broker's answer.
type rawFetch struct{ body []byte }

func (f *rawFetch) send(_ context.Context, _ *fetchAPI.Request, buf []byte) ([]byte, error) {
	// A copy per answer, into the reader's buffer, as the connection
	// reads each.
	body := answerBuffer(buf, len(f.body))
	copy(body, f.body)
	return body, nil
}

// newRawFetch encodes a Fetch response of one record batch of n
// benchmark records at offsets 0 to n-1.
func newRawFetch(b *testing.B, n int) *rawFetch {
	b.Helper()
	recs := make([]protocol.Record, n)
	at := time.UnixMilli(1700000000000)
	for i := range recs {
		recs[i] = protocol.Record{Offset: int64(i), Time: at, Key: protocol.NewBytes(benchKey(i)), Value: protocol.NewBytes(benchValue(i))}
	}
	body, err := encodeFetch(&fetchAPI.Response{Topics: []fetchAPI.ResponseTopic{{Topic: "t", Partitions: []fetchAPI.ResponsePartition{{
		HighWatermark: int64(n), LastStableOffset: int64(n),
		RecordSet: protocol.RecordSet{Version: 2, Records: protocol.NewRecordReader(recs...)},
	}}}}}, 0)
	if err != nil {
		b.Fatal(err)
	}
	return &rawFetch{body: body}
}

// BenchmarkBatchReaderDecode is BenchmarkBatchReader without the broker:
// each fetch decodes the same response of 2,500 records (what a broker
// answers at the default FetchMaxBytes), copied into the reader's buffer
// as the connection reads it. One op is one record (cpu-ns/record as in
// BenchmarkBatchReader); the last DefaultMaxInFlight
// records stay referenced.
func BenchmarkBatchReaderDecode(b *testing.B) {
	const n = 2500
	r := fakeBatchReader(nil)
	r.send = newRawFetch(b, n).send
	ctx := context.Background()
	inFlight := make([]kafka.Message, DefaultMaxInFlight)
	k := 0
	cpu0 := processCPU(b)
	b.ReportAllocs()
	b.ResetTimer()
	for read := 0; read < b.N; {
		r.SetOffset(0)
		batch, err := r.FetchBatch(ctx)
		if err != nil {
			b.Fatal(err)
		}
		if len(batch) != n {
			b.Fatalf("read %d records, want %d", len(batch), n)
		}
		read += n
		for i := range batch {
			inFlight[k] = batch[i]
			k = (k + 1) % len(inFlight)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(processCPU(b)-cpu0)/float64(b.N), "cpu-ns/record")
}
