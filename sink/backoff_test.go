package sink

import (
	"testing"
	"time"
)

// TestBackoffSpread: the waits of one attempt fill their whole range
// [d/2, d] evenly ("equal jitter"), so batches that failed together spread
// out, and do not cluster at either end.
func TestBackoffSpread(t *testing.T) {
	s := &Segment{o: Options{MinBackoff: 100 * time.Millisecond, MaxBackoff: 30 * time.Second}}
	const n = 4000
	for _, tc := range []struct {
		attempt int
		d       time.Duration // the un-jittered wait
	}{{0, 100 * time.Millisecond}, {3, 800 * time.Millisecond}, {12, 30 * time.Second}} {
		lo, hi, sum := time.Duration(1<<62), time.Duration(0), time.Duration(0)
		for range n {
			w := s.backoff(tc.attempt, 0)
			lo, hi, sum = min(lo, w), max(hi, w), sum+w
		}
		mean := sum / n
		// Uniform on [d/2, d]: mean 3d/4; with 4000 samples the standard
		// error is under 0.3 % of d, so these bounds hold but for a broken
		// schedule.
		if want := tc.d * 3 / 4; mean < want-tc.d/50 || mean > want+tc.d/50 {
			t.Errorf("attempt %d: mean wait %s, want about %s", tc.attempt, mean, want)
		}
		if lo > tc.d/2+tc.d/50 || hi < tc.d-tc.d/50 {
			t.Errorf("attempt %d: waits span [%s, %s], want nearly all of [%s, %s]", tc.attempt, lo, hi, tc.d/2, tc.d)
		}
	}
}
