package consumer

import (
	"context"
	"sync"

	"github.com/rs/zerolog"
)

// copyWriter is what the dead-letter and the retry writer share: a writer
// to their target topic, one lane per source partition, and the start-up
// check that the target takes records as large as the source does.
type copyWriter[T any] struct {
	w      *topicWriter
	lanes  *lanes[topicPartition, T]
	limits limitCheck
}

// maxCopyBatch is the most records one lane writes in one request.
const maxCopyBatch = 100

// newCopyWriter writes to topic; key names the source partition of an
// item, its lane.
func newCopyWriter[T any](o Options, topic string, log zerolog.Logger, m *metrics, key func(T) topicPartition) copyWriter[T] {
	return copyWriter[T]{
		w:     newTopicWriter(writerConfig{Brokers: o.Brokers, Transport: o.Transport, Topic: topic}),
		lanes: newLanes(key, maxCopyBatch),
		limits: limitCheck{
			brokers: o.Brokers, transport: o.Transport, source: o.Topic, target: topic,
			log: log, metrics: m,
		},
	}
}

// run writes until ctx ends, each lane's batches with write; items still
// queued then go to abandon. Beside it the limit check runs once. The
// writer is closed when both are done.
func (c *copyWriter[T]) run(ctx context.Context, write func(context.Context, []T), abandon func(T)) error {
	defer c.w.Close()
	var wg sync.WaitGroup
	wg.Go(func() { c.limits.run(ctx) })
	c.lanes.run(ctx, write, abandon)
	wg.Wait()
	return nil
}
