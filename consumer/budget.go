package consumer

import (
	"context"
	"sync"
)

// budget counts in-flight slots. Unlike a weighted semaphore, a taker
// takes what is free up to what it wants: a chunk of records never waits
// for the whole of its size while some slots are free, so fetching goes
// on, record by record if need be, as long as the cap allows one more,
// which is the rule of the old fetch per record.
type budget struct {
	mu    sync.Mutex
	free  int64
	freed chan struct{} // closed on the next release; nil while none waits
}

func newBudget(n int) *budget { return &budget{free: int64(n)} }

// take waits until a slot is free, then takes up to n (n ≥ 1) and returns
// how many it took. It returns ctx.Err() if ctx ends first.
func (b *budget) take(ctx context.Context, n int) (int, error) {
	for {
		b.mu.Lock()
		if b.free > 0 {
			k := min(int64(n), b.free)
			b.free -= k
			b.mu.Unlock()
			return int(k), nil
		}
		if b.freed == nil {
			b.freed = make(chan struct{})
		}
		freed := b.freed
		b.mu.Unlock()
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-freed:
		}
	}
}

// release gives n slots back.
func (b *budget) release(n int) {
	b.mu.Lock()
	b.free += int64(n)
	freed := b.freed
	b.freed = nil
	b.mu.Unlock()
	if freed != nil {
		close(freed)
	}
}
