// Package backoff is the one schedule of waits between attempts that the
// service uses: exponential growth from a base, a cap, and a jittered share
// so that replicas (or partitions) that failed together do not retry
// together.
//
// It holds no state: a Policy is a value, the attempt count belongs to the
// caller. Retry-After handling and early wake-ups are the caller's; a
// caller that must honour a server's delay takes max(Delay(n), that delay).
package backoff

import (
	"context"
	"math/rand/v2"
	"time"
)

// Policy is an exponential backoff schedule.
type Policy struct {
	// Base is the wait before jitter after the first failure (attempt 0).
	// Each further attempt doubles it. Required (> 0).
	Base time.Duration
	// Max caps the wait before jitter. Required (>= Base).
	Max time.Duration
	// Jitter is the share of the wait that is random, in [0, 1]: the wait
	// of an attempt whose un-jittered value is d lies in
	// [d*(1-Jitter), d]. 0.5 is "equal jitter" (half fixed, half random);
	// 0 makes the schedule deterministic.
	Jitter float64
}

// Ceiling is the un-jittered wait of attempt (0 for the first failure):
// Base*2^attempt, capped at Max.
func (p Policy) Ceiling(attempt int) time.Duration {
	if attempt < 0 {
		attempt = 0
	}
	if attempt >= 62 {
		return p.Max
	}
	d := p.Base << attempt
	if d <= 0 || d > p.Max || d>>attempt != p.Base { // overflow or past the cap
		return p.Max
	}
	return d
}

// Range is the interval Delay(attempt) falls in.
func (p Policy) Range(attempt int) (lo, hi time.Duration) {
	hi = p.Ceiling(attempt)
	j := min(max(p.Jitter, 0), 1)
	return hi - time.Duration(float64(hi)*j), hi
}

// Delay is how long to wait after the given failed attempt (0 for the
// first): a random duration in Range(attempt).
func (p Policy) Delay(attempt int) time.Duration {
	lo, hi := p.Range(attempt)
	if hi <= lo {
		return hi
	}
	return lo + rand.N(hi-lo+1)
}

// Sleep waits d or until ctx ends, whichever comes first, and returns
// ctx.Err() in the second case.
func Sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
