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

// TestTrackerModel drives the tracker with random fetch, ack, drop and
// revoke interleavings, fetching only while the span cap allows, and
// compares it after every step with a direct model: the commit point is the
// smallest fetched offset neither acknowledged nor (if dropped) ever
// passable, or one past the last fetched; after revoke it stays fixed and
// acknowledgements do not count; the span from the commit point to the
// next fetch never exceeds the cap, nor does what the tracker holds.
func TestTrackerModel(t *testing.T) {
	for seed := uint64(1); seed <= 50; seed++ {
		rng := rand.New(rand.NewPCG(seed, seed*7))
		start := int64(rng.IntN(1000))
		limit := int64(5 + rng.IntN(60))
		tr := newTracker(start)
		next := start // one past the last fetched, as the fetch loop's p.next
		done := map[int64]recordState{}
		var fetched []int64
		lastCommit := start
		revokedAt := int64(-1)
		revokeStep := 200 + rng.IntN(1000)
		for step := 0; step < 3000; step++ {
			if step == revokeStep {
				revokedAt = tr.revoke()
				if revokedAt != lastCommit {
					t.Fatalf("seed %d step %d: revoke() = %d, want %d", seed, step, revokedAt, lastCommit)
				}
			}
			var pending []int64
			for _, o := range fetched {
				if _, ok := done[o]; !ok {
					pending = append(pending, o)
				}
			}
			full := tr.spanFull(next, limit)
			if full && len(pending) == 0 || revokedAt >= 0 && rng.IntN(20) == 0 {
				// Stuck behind dropped records, or revoked: the next
				// generation. The same tracker resumes when it can (only
				// trailing records were dropped); otherwise the partition
				// starts afresh from its commit point.
				resumed := false
				if revokedAt < 0 {
					var n int64
					if n, resumed = tr.resume(next); resumed {
						for len(fetched) > 0 && done[fetched[len(fetched)-1]] == dropped {
							delete(done, fetched[len(fetched)-1])
							fetched = fetched[:len(fetched)-1]
						}
						next = n
					}
				} else if _, ok := tr.resume(next); ok {
					t.Fatalf("seed %d step %d: a revoked tracker resumed", seed, step)
				}
				if !resumed {
					start = tr.committable()
					tr, next, fetched, done = newTracker(start), start, nil, map[int64]recordState{}
					revokedAt, revokeStep = -1, step+200+rng.IntN(1000)
				}
				continue
			}
			switch r := rng.IntN(50); {
			case r < 20 && !full:
				o := next + int64(rng.IntN(2)*rng.IntN(3)) // sometimes a gap
				tr.add(o)
				fetched = append(fetched, o)
				next = o + 1
			case r < 30 && !full:
				// A fetched batch, taken as far as the span cap admits.
				offs := make([]int64, 1+rng.IntN(int(limit)))
				o := next
				for i := range offs {
					o += int64(rng.IntN(2) * rng.IntN(3))
					offs[i] = o
					o++
				}
				commit, want, prev := tr.committable(), 0, next
				for _, o := range offs {
					if commit >= 0 && prev-commit >= limit {
						break
					}
					want++
					prev = o + 1
				}
				k := tr.admit(next, offs, limit)
				if k != want || k < 1 {
					t.Fatalf("seed %d step %d: admit(%d, %v, %d) = %d, want %d (commit %d)", seed, step, next, offs, limit, k, want, commit)
				}
				tr.addRange(offs[:k])
				fetched = append(fetched, offs[:k]...)
				next = offs[k-1] + 1
			case len(pending) == 0:
				continue
			case r < 40:
				// Records delivered together (a sink batch): some pending
				// offsets at once, in any order, one of them perhaps twice
				// (the second ack must not count) and a settled one among
				// them.
				var offs []int64
				for range 1 + rng.IntN(8) {
					offs = append(offs, pending[rng.IntN(len(pending))])
				}
				if len(fetched) > 0 {
					offs = append(offs, fetched[rng.IntN(len(fetched))])
				}
				want := map[int64]bool{}
				for _, o := range offs {
					if _, settled := done[o]; !settled && revokedAt < 0 {
						want[o] = true
					}
				}
				if n := tr.ackAll(offs); n != len(want) {
					t.Fatalf("seed %d step %d: ackAll(%v) counted %d, want %d (revoked %v)", seed, step, offs, n, len(want), revokedAt >= 0)
				}
				for o := range want {
					done[o] = acked
				}
			case r < 49:
				o := pending[rng.IntN(len(pending))]
				counted := tr.ack(o)
				if counted != (revokedAt < 0) {
					t.Fatalf("seed %d step %d: ack(%d) counted = %v, revoked %v", seed, step, o, counted, revokedAt >= 0)
				}
				if counted {
					done[o] = acked
				}
			default:
				o := pending[rng.IntN(len(pending))]
				tr.drop(o)
				done[o] = dropped
			}
			want := next
			if len(fetched) == 0 {
				want = start
			}
			inflight := 0
			for _, o := range fetched {
				s, ok := done[o]
				if !ok || s == dropped {
					want = min(want, o)
				}
				if !ok {
					inflight++
				}
			}
			if revokedAt >= 0 {
				want = revokedAt
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
			if revokedAt < 0 {
				if span := next - got; span > limit+2 { // a gap may follow the last fetch
					t.Fatalf("seed %d step %d: span %d past the cap %d", seed, step, span, limit)
				}
				if n := tr.tracked(); int64(n) > limit {
					t.Fatalf("seed %d step %d: tracker holds %d entries, cap %d", seed, step, n, limit)
				}
			}
			if wantFull := got >= 0 && next-got >= limit; tr.spanFull(next, limit) != wantFull {
				t.Fatalf("seed %d step %d: spanFull = %v, want %v", seed, step, !wantFull, wantFull)
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

// BenchmarkTracker is a partition's tracker under a backlog: chunks of
// maxChunk records are added while DefaultMaxInFlightPerPartition records
// are in flight, and the oldest chunk is acknowledged, each record on its
// own and not quite in order, as the sink's batches finish. One op is one
// record added and acknowledged.
func BenchmarkTracker(b *testing.B) {
	tr := newTracker(0)
	offs := make([]int64, maxChunk)
	order := rand.New(rand.NewPCG(1, 2)).Perm(maxChunk)
	for i := range order { // mostly in order: swaps within 8 records
		order[i] = i/8*8 + order[i]%8
	}
	next, acked := int64(0), int64(0)
	add := func() {
		for i := range offs {
			offs[i] = next
			next++
		}
		tr.addRange(offs)
	}
	for next < DefaultMaxInFlightPerPartition {
		add()
	}
	b.ReportAllocs()
	b.ResetTimer()
	for n := 0; n < b.N; n += maxChunk {
		add()
		seen := [maxChunk]bool{}
		for _, i := range order {
			if !seen[i] {
				seen[i] = true
				tr.ack(acked + int64(i))
			}
		}
		for i := range seen {
			if !seen[i] {
				tr.ack(acked + int64(i))
			}
		}
		acked += maxChunk
	}
	b.StopTimer()
	if got := tr.committable(); got != acked {
		b.Fatalf("commit point %d, want %d", got, acked)
	}
}
