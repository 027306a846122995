package consumer

import (
	"context"
	"sync"
)

// lanes hands items to one worker per key (a source partition), so that an item
// that cannot be written (and is retried) holds up only the items of its
// own partition, which could not commit past it anyway. Each lane's queue
// is a slice, so send never blocks; its length is bounded by the in-flight
// slots every item holds, and the number of lanes by the source topic's
// partitions.
type lanes[K comparable, T any] struct {
	key      func(T) K // the item's source partition
	maxBatch int

	mu     sync.Mutex
	intake []T
	closed bool
	wake   chan struct{}
}

func newLanes[K comparable, T any](key func(T) K, maxBatch int) *lanes[K, T] {
	return &lanes[K, T]{key: key, maxBatch: maxBatch, wake: make(chan struct{}, 1)}
}

// send queues it. It returns false once run has ended; the caller then
// finishes it as not written.
func (l *lanes[K, T]) send(it T) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return false
	}
	l.intake = append(l.intake, it)
	signal(l.wake)
	return true
}

func signal(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

// lane is one partition's queue and worker.
type lane[T any] struct {
	mu    sync.Mutex
	queue []T
	wake  chan struct{}
}

// take removes up to n items (all for n < 0) from the head of the queue.
func (q *lane[T]) take(n int) []T {
	q.mu.Lock()
	defer q.mu.Unlock()
	k := len(q.queue)
	if n >= 0 {
		k = min(n, k)
	}
	batch := append([]T(nil), q.queue[:k]...)
	q.queue = q.queue[k:]
	if len(q.queue) == 0 {
		q.queue = nil // let the backing array go
	}
	return batch
}

// run dispatches until ctx ends, calling work with batches of up to
// maxBatch items of one lane; work must finish every item it is given
// (ctx ends: as not written). Items still queued then are passed to
// abandon. run returns when every lane's worker has returned.
func (l *lanes[K, T]) run(ctx context.Context, work func(context.Context, []T), abandon func(T)) {
	var wg sync.WaitGroup
	all := map[K]*lane[T]{}
	defer func() {
		l.mu.Lock()
		l.closed = true
		left := l.intake
		l.intake = nil
		l.mu.Unlock()
		for _, it := range left {
			abandon(it)
		}
		wg.Wait()
		for _, q := range all {
			for _, it := range q.take(-1) {
				abandon(it)
			}
		}
	}()
	for {
		select {
		case <-ctx.Done():
			return
		case <-l.wake:
		}
		l.mu.Lock()
		in := l.intake
		l.intake = nil
		l.mu.Unlock()
		for _, it := range in {
			k := l.key(it)
			q := all[k]
			if q == nil {
				q = &lane[T]{wake: make(chan struct{}, 1)}
				all[k] = q
				wg.Add(1)
				go func() {
					defer wg.Done()
					q.work(ctx, l.maxBatch, work)
				}()
			}
			q.mu.Lock()
			q.queue = append(q.queue, it)
			q.mu.Unlock()
			signal(q.wake)
		}
	}
}

func (q *lane[T]) work(ctx context.Context, maxBatch int, work func(context.Context, []T)) {
	for {
		select {
		case <-ctx.Done():
			return // run abandons what is left
		case <-q.wake:
		}
		for ctx.Err() == nil {
			batch := q.take(maxBatch)
			if len(batch) == 0 {
				break
			}
			work(ctx, batch)
		}
	}
}
