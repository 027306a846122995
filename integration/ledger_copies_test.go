package integration

import (
	"testing"
	"time"

	"github.com/produktly/produktly-segment/sink/segmenttest"
)

// TestCopyCounterTellsCopiesApart: the ledger's classification of the
// copies Segment received, without a broker. A copy after a cut-off answer
// is a resend; any other further copy a replay, counted as behind a kill
// only when its copy before came from a replica SIGKILLed after sending
// it.
func TestCopyCounterTellsCopiesApart(t *testing.T) {
	t0 := time.Date(2026, 12, 3, 14, 0, 0, 0, time.UTC)
	at := func(s int) time.Time { return t0.Add(time.Duration(s) * time.Second) }
	killed := map[string]time.Time{"all-r3": at(10)}
	c := newCopyCounter(t0, killed)
	for _, m := range []segmenttest.Received{
		{MessageID: "a", Via: "all-r1", At: at(1)},
		{MessageID: "a", Via: "all-r2", At: at(2)}, // replay after a move: r1 was never killed
		{MessageID: "b", Via: "all-r1", At: at(3), Cut: true},
		{MessageID: "b", Via: "all-r1", At: at(3)}, // resend after the cut-off answer
		{MessageID: "c", Via: "all-r3", At: at(4)},
		{MessageID: "c", Via: "all-r2", At: at(16)}, // behind the kill of r3 at 10 s
		{MessageID: "d", Via: "all-r2", At: at(5)},
		{MessageID: "d", Via: "all-r3", At: at(6)},  // r3 sent it before its kill: a move
		{MessageID: "d", Via: "all-r2", At: at(17)}, // behind the kill: its copy before was r3's
		{MessageID: "e", Via: "all-r3", At: at(11)},
		{MessageID: "e", Via: "all-r2", At: at(12)}, // r3 sent it after the kill time: not behind it
		{MessageID: "f", At: at(7), Cut: true},
		{MessageID: "f", At: at(8)}, // resend
		{MessageID: "f", At: at(9)}, // then a replay, with no sender named
	} {
		c.add(m)
	}
	if c.dups != 8 || c.cutDups != 2 || c.killReplays != 2 {
		t.Errorf("duplicates %d, resends after a cut-off %d, replays behind a kill %d; want 8, 2, 2", c.dups, c.cutDups, c.killReplays)
	}
	for _, id := range []string{"a", "b", "c", "d", "e", "f"} {
		if !c.delivered(id) {
			t.Errorf("%s not delivered", id)
		}
	}
	if c.delivered("g") {
		t.Error("g delivered, but no copy of it arrived")
	}
	// Replays by arrival: a in 0–5 s, d (6 s) and f (9 s) in 5–10 s, e in
	// 10–15 s, c and d (16, 17 s) in 15–20 s.
	want := map[int]int{0: 1, 1: 2, 2: 1, 3: 2}
	for b, n := range want {
		if c.replaysAt[b] != n {
			t.Errorf("replays in %d–%d s: %d, want %d (all: %v)", 5*b, 5*b+5, c.replaysAt[b], n, c.replaysAt)
		}
	}
	if len(c.replaysAt) != len(want) {
		t.Errorf("replays by arrival %v, want %v", c.replaysAt, want)
	}
}
