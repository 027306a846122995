package consumer

import (
	"sort"
	"sync"
)

// tracker follows the records of one partition from fetch to
// acknowledgement and answers which offset may be committed: the highest
// offset below which every fetched record was acknowledged (delivered to
// Segment or written to the dead-letter topic). Acknowledgements arrive in any
// order; the commit point only moves forward and never passes a record that
// is still in flight.
//
// Once revoked, a tracker ignores acknowledgements: the partition belongs to
// another member (or to a later generation of this one) and committing for it
// would race with the new owner.
type tracker struct {
	mu sync.Mutex
	// offsets of fetched records not yet popped, ascending; state[i] says
	// whether offsets[i] is pending, acknowledged or dropped. head indexes
	// the first live entry.
	offsets  []int64
	state    []recordState
	head     int
	inflight int // records neither acknowledged nor dropped
	// commit is the offset that may be committed now (the next offset to
	// read after a restart).
	commit  int64
	revoked bool
	// idle is closed while no record is pending and replaced when one
	// is added, so drain can wait for it.
	idle chan struct{}
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
	return &tracker{commit: start, idle: idle}
}

// add records that the record at offset was fetched and is now in flight.
// Offsets must be added in ascending order, as Kafka returns them.
func (t *tracker) add(offset int64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.live() == 0 && offset > t.commit {
		// Nothing is in flight, so no record exists between the commit
		// point and this offset: the commit point may move up to it.
		t.commit = offset
	}
	if t.inflight == 0 {
		t.idle = make(chan struct{})
	}
	t.offsets = append(t.offsets, offset)
	t.state = append(t.state, pending)
	t.inflight++
}

// ack records that the record at offset is done. It reports whether the ack
// counted: false after revoke, or for an offset that is not in flight.
func (t *tracker) ack(offset int64) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.revoked {
		return false
	}
	i, ok := t.find(offset)
	if !ok {
		return false
	}
	t.state[i] = acked
	t.settle()
	if i != t.head {
		return true
	}
	// The oldest record is done: pop every acknowledged record at the head.
	for t.head < len(t.offsets) && t.state[t.head] == acked {
		t.commit = t.offsets[t.head] + 1
		t.head++
	}
	if t.head < len(t.offsets) {
		// Records in between that Kafka never returned (compaction,
		// transaction markers) must not be skipped over: the next live
		// offset is the commit point.
		t.commit = t.offsets[t.head]
	}
	if t.live() == 0 {
		t.offsets, t.state, t.head = t.offsets[:0], t.state[:0], 0
	} else if t.head > 1024 && t.head*2 > len(t.offsets) {
		n := copy(t.offsets, t.offsets[t.head:])
		copy(t.state, t.state[t.head:])
		t.offsets, t.state, t.head = t.offsets[:n], t.state[:n], 0
	}
	return true
}

func (t *tracker) live() int { return len(t.offsets) - t.head }

// find returns the index of the pending record at offset.
func (t *tracker) find(offset int64) (int, bool) {
	live := t.offsets[t.head:]
	i := sort.Search(len(live), func(i int) bool { return live[i] >= offset })
	if i == len(live) || live[i] != offset || t.state[t.head+i] != pending {
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
// point never passes it. Used when a record could not even be handed over
// because its partition stopped.
func (t *tracker) drop(offset int64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if i, ok := t.find(offset); ok {
		t.state[i] = dropped
		t.settle()
	}
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
