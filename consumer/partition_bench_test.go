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
	ctx := context.Background()
	msgs := make([]kafka.Message, maxChunk)
	value := benchValue(0)
	next := int64(0)
	take := func() *chunk {
		p.offs = p.offs[:0]
		for i := range msgs {
			msgs[i] = kafka.Message{Topic: "src", Offset: next, Value: value}
			p.offs = append(p.offs, next)
			next++
		}
		n, err := p.acquire(ctx, len(msgs))
		if err != nil || n != len(msgs) {
			b.Fatalf("acquire = %d, %v", n, err)
		}
		c := p.newChunk(msgs)
		p.tr.addRange(p.offs)
		var total int64
		for i := range c.msgs {
			c.w[i] = p.weight(c.msgs[i], value)
			total += c.w[i]
		}
		if err := p.c.bytes.Acquire(ctx, total); err != nil {
			b.Fatal(err)
		}
		for i := range c.w {
			o := min(c.w[i], messageOverhead)
			c.w[i] -= o
			c.overhead += o
		}
		return c
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
