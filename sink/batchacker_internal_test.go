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

// A run of messages naming one BatchAcker of a type that is not
// comparable is finished like any other: finishAll must not compare such
// Ackers with ==, which panics at run time.
func TestFinishAllUncomparableBatchAcker(t *testing.T) {
	s, err := NewSegment(Options{WriteKey: "k"})
	if err != nil {
		t.Fatal(err)
	}
	a := mapAcker{}
	msgs := []Message{{ID: "a", Acker: a, Seq: 0}, {ID: "b", Acker: a, Seq: 1}}
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
