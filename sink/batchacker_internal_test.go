package sink

import (
	"fmt"
	"testing"
)

// mapAcker records outcomes by seq. A map type is a natural Acker, and a
// valid BatchAcker, but its values are not comparable.
type mapAcker map[int]Outcome

func (a mapAcker) Ack(seq int, r Result) { a[seq] = r.Outcome }

func (a mapAcker) AckAll(seqs []int, r Result) {
	for _, s := range seqs {
		a[s] = r.Outcome
	}
}

// heldAcker is a comparable struct type holding a map in an interface
// field: == on two of its values panics all the same.
type heldAcker struct{ inner any }

func (a heldAcker) Ack(seq int, r Result) { a.inner.(mapAcker).Ack(seq, r) }

func (a heldAcker) AckAll(seqs []int, r Result) { a.inner.(mapAcker).AckAll(seqs, r) }

// A run of messages naming one BatchAcker whose values are not comparable
// is finished like any other: finishAll must not let == panic on them.
func TestFinishAllUncomparableBatchAcker(t *testing.T) {
	for _, tc := range []struct {
		name string
		wrap func(mapAcker) BatchAcker
	}{
		{"map", func(a mapAcker) BatchAcker { return a }},
		{"struct holding a map", func(a mapAcker) BatchAcker { return heldAcker{inner: a} }},
	} {
		t.Run(tc.name, func(t *testing.T) { testFinishAllUncomparable(t, tc.wrap) })
	}
}

func testFinishAllUncomparable(t *testing.T, wrap func(mapAcker) BatchAcker) {
	s, err := NewSegment(Options{WriteKey: "k"})
	if err != nil {
		t.Fatal(err)
	}
	a := mapAcker{}
	msgs := []Message{{ID: "a", Acker: wrap(a), Seq: 0}, {ID: "b", Acker: wrap(a), Seq: 1}}
	func() {
		defer func() {
			if p := recover(); p != nil {
				t.Fatalf("finishAll panicked: %v", p)
			}
		}()
		s.finishAll(nil, msgs, Result{Outcome: Delivered})
	}()
	if got := fmt.Sprint(map[int]Outcome(a)); got != fmt.Sprint(map[int]Outcome{0: Delivered, 1: Delivered}) {
		t.Errorf("outcomes %s, want both delivered", got)
	}
}
