package consumer

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/compress"
)

// TestBatchReaderCodecs: records that kafka-go's Writer compressed with
// each codec are read back whole, in order, with their headers and null
// keys; the batches on the broker carry the codec asked for.
func TestBatchReaderCodecs(t *testing.T) {
	for _, codec := range []compress.Compression{0, compress.Gzip, compress.Snappy, compress.Lz4, compress.Zstd} {
		t.Run(fmt.Sprint(codec), func(t *testing.T) {
			topic := brokerTopics(t, kafka.TopicConfig{NumPartitions: 1})[0]
			var msgs []kafka.Message
			for i := range 500 {
				m := kafka.Message{Key: []byte(fmt.Sprint("k", i)), Value: []byte(strings.Repeat(fmt.Sprint(i%10), 50+i%100))}
				if i%3 == 0 {
					m.Key = nil
					m.Headers = []kafka.Header{{Key: "h", Value: []byte(fmt.Sprint(i))}}
				}
				msgs = append(msgs, m)
			}
			w := &kafka.Writer{Addr: kafka.TCP(strings.Split(os.Getenv("KAFKA_BROKERS"), ",")...), Topic: topic, RequiredAcks: kafka.RequireAll,
				BatchSize: 100, BatchTimeout: time.Millisecond, Compression: kafka.Compression(codec)}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			if err := w.WriteMessages(ctx, msgs...); err != nil {
				t.Fatal(err)
			}
			w.Close()

			r := newTestBatchReader(t, topic, 0)
			defer r.Close()
			r.SetOffset(0)
			// What the broker answers: batches of the codec written.
			body, err := r.send(ctx, r.request(), nil)
			if err != nil {
				t.Fatal(err)
			}
			part, _, _, err := parseFetch(body, topic, 0)
			if err != nil {
				t.Fatal(err)
			}
			b, _, ok, err := nextBatch(part.records)
			if err != nil || !ok {
				t.Fatalf("first batch: %v, %v", ok, err)
			}
			if got := compress.Compression(b.attributes & attrCompression); got != codec {
				t.Errorf("batch compressed with %v, want %v", got, codec)
			}

			got := readUntil(t, r, int64(len(msgs)))
			if len(got) != len(msgs) {
				t.Fatalf("read %d records, want %d", len(got), len(msgs))
			}
			for i, m := range got {
				want := msgs[i]
				if m.Offset != int64(i) || string(m.Key) != string(want.Key) || (m.Key == nil) != (want.Key == nil) || string(m.Value) != string(want.Value) {
					t.Fatalf("record %d: offset %d key %q value %.20q, want key %q value %.20q", i, m.Offset, m.Key, m.Value, want.Key, want.Value)
				}
				if len(m.Headers) != len(want.Headers) || (len(want.Headers) == 1 && string(m.Headers[0].Value) != string(want.Headers[0].Value)) {
					t.Fatalf("record %d: headers %v, want %v", i, m.Headers, want.Headers)
				}
			}
		})
	}
}

// TestBatchReaderCancelInFlight: a ctx cancelled while the broker holds a
// Fetch (no records yet) ends FetchBatch; the connection, out of step, is
// dropped, and the reader reads on over a new one.
func TestBatchReaderCancelInFlight(t *testing.T) {
	topic := brokerTopics(t, kafka.TopicConfig{NumPartitions: 1})[0]
	produce(t, topic, kafka.Message{Value: []byte(`{"n":0}`)})
	r := newTestBatchReader(t, topic, 0)
	defer r.Close()
	readUntil(t, r, 1) // connected
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := r.FetchBatch(ctx)
		done <- err
	}()
	time.Sleep(fetchWait / 5) // the broker holds the Fetch for fetchWait
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("FetchBatch cancelled = %v, want context.Canceled", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("FetchBatch did not return after its ctx ended")
	}
	if r.conn != nil {
		t.Error("the connection with an answer in flight was kept")
	}
	produce(t, topic, kafka.Message{Value: []byte(`{"n":1}`)})
	if got := readUntil(t, r, 2); len(got) != 1 || string(got[0].Value) != `{"n":1}` {
		t.Errorf("after the cancel: %v, want the record at 1", got)
	}
}

// TestBatchReaderReplacesBrokenConnection: a connection that served and
// then broke (as when the broker closes an idle one) is replaced within
// the same FetchBatch, without an error.
func TestBatchReaderReplacesBrokenConnection(t *testing.T) {
	topic := brokerTopics(t, kafka.TopicConfig{NumPartitions: 1})[0]
	produce(t, topic, kafka.Message{Value: []byte(`{"n":0}`)})
	r := newTestBatchReader(t, topic, 0)
	defer r.Close()
	readUntil(t, r, 1)
	r.conn.pc.Close()
	produce(t, topic, kafka.Message{Value: []byte(`{"n":1}`)})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	got, err := r.FetchBatch(ctx)
	if err != nil || len(got) != 1 || got[0].Offset != 1 {
		t.Fatalf("FetchBatch after the connection broke = %v, %v; want the record at 1", got, err)
	}
}
