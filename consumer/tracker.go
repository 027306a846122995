package consumer

import (
	"context"
	"slices"
	"sync"
	"time"
)

// tracker follows the records of one partition from fetch to
// acknowledgement and answers which offset may be committed: the highest
// offset below which every fetched record was acknowledged (delivered to
// Segment or written to the dead-letter topic). Acknowledgements arrive in any
// order; the commit point only moves forward and never passes a record that
// is still in flight.
//
// The span between the commit point and the next offset to fetch is what a
// restart or a rebalance replays, and what the tracker holds in memory; the
// fetch loop keeps it below a cap with waitSpan, so one record that never
// finishes stops fetching on its partition instead of growing both without
// bound (the same rule as Redpanda Connect's ordered checkpointer).
//
// Once revoked, a tracker ignores acknowledgements: the partition belongs to
// another member and committing for it would race with the new owner. A
// tracker whose partition stays with this member across a rebalance is not
// revoked: it carries its in-flight records into the next generation.
type tracker struct {
	mu sync.Mutex
	// offsets of fetched records not yet popped, ascending; state[i] says
	// whether offsets[i] is pending, acknowledged or dropped, and since[i]
	// when it was fetched (unix ns). head indexes the first live entry.
	offsets  []int64
	state    []recordState
	since    []int64
	head     int
	inflight int // records neither acknowledged nor dropped
	// commit is the offset that may be committed now (the next offset to
	// read after a restart).
	commit  int64
	revoked bool
	// idle is closed while no record is pending and replaced when one
	// is added, so drain can wait for it.
	idle chan struct{}
	// moved is closed when the commit point moves, so waitSpan can wait
	// for it; nil while nobody waits (made by waitSpan, so that a commit
	// point moving record by record allocates nothing).
	moved chan struct{}
	now   func() time.Time
}

type recordState uint8

const (
	pending recordState = iota
	acked
	dropped // given up without acknowledgement: never passed by the commit point
)

// newTracker returns a tracker for a partition whose next record to read is
// at offset start; a negative start (no committed offset yet) means the
// first record added sets it.
func newTracker(start int64) *tracker {
	idle := make(chan struct{})
	close(idle)
	return &tracker{commit: start, idle: idle, now: time.Now}
}

// add records that the record at offset was fetched and is now in flight.
// Offsets must be added in ascending order, as Kafka returns them.
func (t *tracker) add(offset int64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.live() == 0 && offset > t.commit {
		// Nothing is in flight, so no record exists between the commit
		// point and this offset: the commit point may move up to it.
		t.setCommit(offset)
	}
	if t.inflight == 0 {
		t.idle = make(chan struct{})
	}
	t.offsets = append(t.offsets, offset)
	t.state = append(t.state, pending)
	t.since = append(t.since, t.now().UnixNano())
	t.inflight++
}

// addRange records that the records at offsets (ascending, after every
// offset added before) were fetched together and are now in flight: add
// for each of them, under one lock and one clock reading.
func (t *tracker) addRange(offsets []int64) {
	if len(offsets) == 0 {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.live() == 0 && offsets[0] > t.commit {
		t.setCommit(offsets[0])
	}
	if t.inflight == 0 {
		t.idle = make(chan struct{})
	}
	now := t.now().UnixNano()
	n, k := len(t.offsets), len(offsets)
	t.offsets = append(t.offsets, offsets...)
	t.state = slices.Grow(t.state, k)[:n+k]
	t.since = slices.Grow(t.since, k)[:n+k]
	for i := n; i < n+k; i++ {
		t.state[i], t.since[i] = pending, now
	}
	t.inflight += k
}

// admit returns how many of the records at offsets (ascending, the first
// at or after next, the offset the fetch loop reads next) may be taken now
// under the span cap: the rule spanFull applies before each single fetch,
// applied to each record in turn with the offset to read before it (next,
// then one past the previous record). It is at least 1 when spanFull(next,
// limit) is false.
func (t *tracker) admit(next int64, offsets []int64, limit int64) int {
	t.mu.Lock()
	commit := t.commit
	t.mu.Unlock()
	if commit < 0 {
		return len(offsets)
	}
	for i, o := range offsets {
		if next >= 0 && next-commit >= limit {
			return i
		}
		next = o + 1
	}
	return len(offsets)
}

func (t *tracker) setCommit(o int64) {
	if o != t.commit {
		t.commit = o
		if t.moved != nil {
			close(t.moved)
			t.moved = nil
		}
	}
}

// ack records that the record at offset is done. It reports whether the ack
// counted: false after revoke, or for an offset that is not in flight.
func (t *tracker) ack(offset int64) bool {
	one := [1]int64{offset}
	return t.ackAll(one[:]) == 1
}

// ackAll records that the records at offsets are done, under one lock, and
// returns how many of the acks counted (see ack).
func (t *tracker) ackAll(offsets []int64) int {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.revoked {
		return 0
	}
	n, atHead := 0, false
	for _, o := range offsets {
		i, ok := t.find(o)
		if !ok {
			continue
		}
		t.state[i] = acked
		t.settle()
		n++
		atHead = atHead || i == t.head
	}
	if !atHead {
		return n
	}
	// The oldest record is done: pop every acknowledged record at the head.
	commit := t.commit
	for t.head < len(t.offsets) && t.state[t.head] == acked {
		commit = t.offsets[t.head] + 1
		t.head++
	}
	if t.head < len(t.offsets) {
		// Records in between that Kafka never returned (compaction,
		// transaction markers) must not be skipped over: the next live
		// offset is the commit point.
		commit = t.offsets[t.head]
	}
	t.setCommit(commit)
	t.compact()
	return n
}

// compact reclaims the popped entries at the front.
func (t *tracker) compact() {
	if t.live() == 0 {
		t.offsets, t.state, t.since, t.head = t.offsets[:0], t.state[:0], t.since[:0], 0
	} else if t.head > 1024 && t.head*2 > len(t.offsets) {
		n := copy(t.offsets, t.offsets[t.head:])
		copy(t.state, t.state[t.head:])
		copy(t.since, t.since[t.head:])
		t.offsets, t.state, t.since, t.head = t.offsets[:n], t.state[:n], t.since[:n], 0
	}
}

func (t *tracker) live() int { return len(t.offsets) - t.head }

// find returns the index of the pending record at offset.
func (t *tracker) find(offset int64) (int, bool) {
	live := t.offsets[t.head:]
	if len(live) == 0 {
		return 0, false
	}
	// Offsets without gaps (no compaction or transaction markers between
	// the head and offset) are found where they would be; others by a
	// search.
	i, ok := int(offset-live[0]), false
	if i < 0 || i >= len(live) || live[i] != offset {
		i, ok = slices.BinarySearch(live, offset)
		if !ok {
			return 0, false
		}
	}
	if t.state[t.head+i] != pending {
		return 0, false
	}
	return t.head + i, true
}

// settle counts one record as no longer pending.
func (t *tracker) settle() {
	t.inflight--
	if t.inflight == 0 {
		close(t.idle)
	}
}

// drop gives up on the record at offset without acknowledging it: it no
// longer counts as in flight, so drain does not wait for it, but the commit
// point never passes it. Used when a record could not be handed over because
// its partition stopped, or when the sink gave up on it (Abandoned).
func (t *tracker) drop(offset int64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if i, ok := t.find(offset); ok {
		t.state[i] = dropped
		t.settle()
	}
}

// resume prepares a tracker whose partition stays with this member for the
// next generation. Records dropped because fetching stopped are the last
// ones fetched (the fetch loop ends at the first one); they are forgotten so
// that they are fetched again. It returns the offset to fetch next, and
// false if the tracker cannot continue (revoked, or a dropped record
// before a live one), in which case the partition must start afresh from
// its committed offset.
func (t *tracker) resume(next int64) (int64, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.revoked {
		return 0, false
	}
	for t.live() > 0 && t.state[len(t.state)-1] == dropped {
		next = t.offsets[len(t.offsets)-1]
		t.offsets, t.state, t.since = t.offsets[:len(t.offsets)-1], t.state[:len(t.state)-1], t.since[:len(t.since)-1]
	}
	for _, s := range t.state[t.head:] {
		if s == dropped {
			return 0, false
		}
	}
	if t.live() == 0 {
		// Nothing left: the next record fetched sets the commit point, as
		// add does; it must not move past records never fetched.
		if next >= 0 && next < t.commit {
			next = t.commit
		}
		t.offsets, t.state, t.since, t.head = t.offsets[:0], t.state[:0], t.since[:0], 0
	}
	return next, true
}

// committable returns the offset that may be committed now.
func (t *tracker) committable() int64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.commit
}

// inFlight returns the number of records fetched and not yet acknowledged.
func (t *tracker) inFlight() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.inflight
}

// tracked returns the number of entries the tracker holds (pending,
// dropped, or acknowledged behind an older unfinished record).
func (t *tracker) tracked() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.live()
}

// oldest returns how long ago the oldest unacknowledged record was fetched,
// or 0 when every fetched record is acknowledged.
func (t *tracker) oldest() time.Duration {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.live() == 0 {
		return 0
	}
	// The head entry is never acknowledged: acknowledged heads are popped.
	return t.now().Sub(time.Unix(0, t.since[t.head]))
}

// waitSpan blocks until fetching the record at offset next keeps the span
// from the commit point below limit, or ctx ends. A negative commit point
// (nothing fetched yet from an unknown start) never blocks.
func (t *tracker) waitSpan(ctx context.Context, next int64, limit int64) error {
	for {
		t.mu.Lock()
		if t.commit < 0 || next < 0 || next-t.commit < limit {
			t.mu.Unlock()
			return nil
		}
		if t.moved == nil {
			t.moved = make(chan struct{})
		}
		moved := t.moved
		t.mu.Unlock()
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-moved:
		}
	}
}

// drained returns a channel that is closed when no record is in flight.
func (t *tracker) drained() <-chan struct{} {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.idle
}

// revoke stops the tracker from counting acknowledgements and returns the
// last commit point, which stays fixed from then on.
func (t *tracker) revoke() int64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.revoked = true
	return t.commit
}

// spanFull reports whether fetching the record at next would make the span
// from the commit point reach limit.
func (t *tracker) spanFull(next, limit int64) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.commit >= 0 && next >= 0 && next-t.commit >= limit
}

// nextAfter returns one past the last offset fetched, or the commit point
// when the tracker holds nothing.
func (t *tracker) nextAfter() int64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.live() == 0 {
		return t.commit
	}
	return t.offsets[len(t.offsets)-1] + 1
}

// acked returns the commit point and the spans of acknowledged records
// above it (at most maxAckedSpans, the lowest first): what a commit's
// metadata records so that whoever reads the partition next skips them.
// A span runs over consecutive entries, so it may cover offsets Kafka never
// returned (transaction markers, compacted records): no record is there.
func (t *tracker) acked() Acked {
	t.mu.Lock()
	defer t.mu.Unlock()
	a := Acked{Commit: t.commit}
	if t.revoked || t.commit < 0 {
		return a
	}
	open := false
	for i := t.head; i < len(t.offsets) && len(a.Spans) < maxAckedSpans; i++ {
		if t.state[i] != acked {
			open = false
			continue
		}
		if open {
			a.Spans[len(a.Spans)-1].To = t.offsets[i] + 1
			continue
		}
		a.Spans = append(a.Spans, Span{From: t.offsets[i], To: t.offsets[i] + 1})
		open = true
	}
	return a
}
