package consumer

import (
	"math/rand/v2"
	"testing"
)

func TestTrackerOutOfOrder(t *testing.T) {
	tr := newTracker(10)
	for o := int64(10); o < 15; o++ {
		tr.add(o)
	}
	steps := []struct {
		ack  int64
		want int64
	}{
		{12, 10}, // a later ack does not move the commit point
		{14, 10},
		{10, 11}, // the head moves to the next unacknowledged record
		{11, 13}, // 12 was acked before: skip past it
		{13, 15}, // all done: next to read
	}
	for _, s := range steps {
		if !tr.ack(s.ack) {
			t.Fatalf("ack(%d) = false, want true", s.ack)
		}
		if got := tr.committable(); got != s.want {
			t.Fatalf("after ack(%d): committable = %d, want %d", s.ack, got, s.want)
		}
	}
	if tr.inFlight() != 0 {
		t.Fatalf("inFlight = %d, want 0", tr.inFlight())
	}
	select {
	case <-tr.drained():
	default:
		t.Fatal("drained not closed with nothing in flight")
	}
}

func TestTrackerGapsInOffsets(t *testing.T) {
	// Kafka may skip offsets (compaction, transaction markers).
	tr := newTracker(-1)
	for _, o := range []int64{5, 7, 8, 20} {
		tr.add(o)
	}
	if got := tr.committable(); got != 5 {
		t.Fatalf("committable before any ack = %d, want 5 (first fetched)", got)
	}
	tr.ack(5)
	if got := tr.committable(); got != 7 {
		t.Fatalf("committable = %d, want 7: the gap 6 holds no record but 7 is in flight", got)
	}
	tr.ack(8)
	tr.ack(7)
	if got := tr.committable(); got != 20 {
		t.Fatalf("committable = %d, want 20", got)
	}
	tr.ack(20)
	if got := tr.committable(); got != 21 {
		t.Fatalf("committable = %d, want 21", got)
	}
}

func TestTrackerRejectsUnknownAndDuplicateAcks(t *testing.T) {
	tr := newTracker(0)
	tr.add(0)
	tr.add(1)
	if tr.ack(7) {
		t.Error("ack of an offset never added counted")
	}
	if !tr.ack(1) {
		t.Error("first ack(1) did not count")
	}
	if tr.ack(1) {
		t.Error("second ack(1) counted")
	}
	if got := tr.committable(); got != 0 {
		t.Errorf("committable = %d, want 0", got)
	}
}

func TestTrackerRevoke(t *testing.T) {
	tr := newTracker(100)
	tr.add(100)
	tr.add(101)
	tr.ack(100)
	if got := tr.revoke(); got != 101 {
		t.Fatalf("revoke() = %d, want 101", got)
	}
	if tr.ack(101) {
		t.Error("ack after revoke counted")
	}
	if got := tr.committable(); got != 101 {
		t.Errorf("committable after late ack = %d, want 101 (frozen)", got)
	}
	select {
	case <-tr.drained():
		t.Error("drained closed although 101 was never acknowledged")
	default:
	}
}

// TestTrackerModel drives the tracker with random fetch/ack interleavings
// and compares it after every step with a direct model: the commit point is
// the smallest fetched, unacknowledged offset, or one past the last fetched.
func TestTrackerModel(t *testing.T) {
	for seed := uint64(1); seed <= 50; seed++ {
		rng := rand.New(rand.NewPCG(seed, seed*7))
		start := int64(rng.IntN(1000))
		tr := newTracker(start)
		next := start - 1
		acked := map[int64]bool{}
		var fetched []int64
		lastCommit := start
		for step := 0; step < 2000; step++ {
			if rng.IntN(3) > 0 || len(fetched) == len(acked) {
				next += 1 + int64(rng.IntN(2)*rng.IntN(3)) // sometimes a gap
				tr.add(next)
				fetched = append(fetched, next)
			} else {
				var pending []int64
				for _, o := range fetched {
					if !acked[o] {
						pending = append(pending, o)
					}
				}
				o := pending[rng.IntN(len(pending))]
				if !tr.ack(o) {
					t.Fatalf("seed %d: ack(%d) did not count", seed, o)
				}
				acked[o] = true
			}
			want := next + 1
			if len(fetched) == 0 {
				want = start
			}
			inflight := 0
			for _, o := range fetched {
				if !acked[o] {
					if o < want {
						want = o
					}
					inflight++
				}
			}
			got := tr.committable()
			if got != want {
				t.Fatalf("seed %d step %d: committable = %d, want %d", seed, step, got, want)
			}
			if got < lastCommit {
				t.Fatalf("seed %d step %d: commit point moved back from %d to %d", seed, step, lastCommit, got)
			}
			lastCommit = got
			if tr.inFlight() != inflight {
				t.Fatalf("seed %d step %d: inFlight = %d, want %d", seed, step, tr.inFlight(), inflight)
			}
		}
	}
}

func TestTrackerDrop(t *testing.T) {
	tr := newTracker(0)
	for o := int64(0); o < 4; o++ {
		tr.add(o)
	}
	tr.drop(2) // never handed over
	tr.ack(0)
	tr.ack(1)
	tr.ack(3)
	if got := tr.committable(); got != 2 {
		t.Fatalf("committable = %d, want 2: the dropped record must not be passed", got)
	}
	if tr.inFlight() != 0 {
		t.Fatalf("inFlight = %d, want 0", tr.inFlight())
	}
	select {
	case <-tr.drained():
	default:
		t.Fatal("drained not closed: drain would wait for a record nobody delivers")
	}
	if tr.ack(2) {
		t.Error("ack of a dropped record counted")
	}
}
