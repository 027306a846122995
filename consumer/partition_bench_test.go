package consumer

import (
	"context"
	"testing"

	"github.com/segmentio/kafka-go"

	"github.com/produktly/produktly-segment/sink"
)

// BenchmarkChunkAck is a partition's bookkeeping per record outside the
// mapping and the sink: a chunk of maxChunk records takes its slots and
// bytes, enters the tracker, and each record is acknowledged on its own
// as delivered, giving back its slot and bytes, while
// DefaultMaxInFlightPerPartition records are in flight before it. One op
// is one record.
func BenchmarkChunkAck(b *testing.B) {
	tc := newTestConsumer(b, 1, nil)
	p := tc.newPartition("src", 0, 0)
	msgs := make([]kafka.Message, maxChunk)
	value := benchValue(0)
	next := int64(0)
	take := func() *chunk {
		for i := range msgs {
			msgs[i] = kafka.Message{Topic: "src", Offset: next, Value: value}
			next++
		}
		return takeChunk(b, p, msgs)
	}
	var queue []*chunk
	for next+2*maxChunk <= DefaultMaxInFlightPerPartition {
		queue = append(queue, take())
	}
	delivered := sink.Result{Outcome: sink.Delivered}
	b.ReportAllocs()
	b.ResetTimer()
	for n := 0; n < b.N; n += maxChunk {
		queue = append(queue, take())
		c := queue[0]
		queue = queue[1:]
		for i := range maxChunk {
			c.Ack(i, delivered)
		}
	}
	b.StopTimer()
	if p.tr.committable() != next-int64(len(queue)*maxChunk) {
		b.Fatalf("commit point %d, want %d", p.tr.committable(), next-int64(len(queue)*maxChunk))
	}
}

// takeChunk makes msgs one chunk of p as the fetch loop does: their slots
// and bytes taken, their offsets in the tracker, and each record's weight
// split into its payload and the chunk's bookkeeping.
func takeChunk(tb testing.TB, p *partition, msgs []kafka.Message) *chunk {
	tb.Helper()
	ctx := context.Background()
	p.offs = p.offs[:0]
	for _, m := range msgs {
		p.offs = append(p.offs, m.Offset)
	}
	n, err := p.acquire(ctx, len(msgs))
	if err != nil || n != len(msgs) {
		tb.Fatalf("acquire = %d, %v", n, err)
	}
	c := p.newChunk(msgs)
	p.tr.addRange(p.offs)
	var total int64
	for i := range c.msgs {
		c.w[i] = p.weight(c.msgs[i], c.msgs[i].Value)
		total += c.w[i]
	}
	if err := p.c.bytes.Acquire(ctx, total); err != nil {
		tb.Fatal(err)
	}
	for i := range c.w {
		o := min(c.w[i], messageOverhead)
		c.w[i] -= o
		c.overhead += o
	}
	return c
}
