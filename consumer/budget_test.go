package consumer

import (
	"context"
	"errors"
	"testing"
	"time"
)

// TestBudgetTakesWhatIsFree: a taker gets what is free up to what it
// asks for, waits only while nothing is, and gives up with its ctx.
func TestBudgetTakesWhatIsFree(t *testing.T) {
	b := newBudget(5)
	ctx := context.Background()
	if k, err := b.take(ctx, 3); k != 3 || err != nil {
		t.Fatalf("take(3) of 5 = %d, %v; want 3", k, err)
	}
	if k, err := b.take(ctx, 10); k != 2 || err != nil {
		t.Fatalf("take(10) with 2 free = %d, %v; want 2", k, err)
	}
	got := make(chan int, 1)
	go func() {
		k, _ := b.take(ctx, 4)
		got <- k
	}()
	b.release(1)
	select {
	case k := <-got:
		if k != 1 {
			t.Errorf("take(4) after 1 was released = %d, want 1", k)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("take did not return once a slot was released")
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := b.take(cctx, 1); !errors.Is(err, context.Canceled) {
		t.Errorf("take with nothing free and a cancelled ctx = %v, want context.Canceled", err)
	}
}
