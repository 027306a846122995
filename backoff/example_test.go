package backoff_test

import (
	"fmt"
	"time"

	"github.com/produktly/produktly-segment/backoff"
)

// A caller that must also honour a server's Retry-After (the Segment sink)
// takes the larger of the schedule's delay and the server's, capped by its
// own bound: equal jitter (0.5) keeps half of each wait fixed.
func ExamplePolicy_Delay() {
	p := backoff.Policy{Base: 100 * time.Millisecond, Max: 30 * time.Second, Jitter: 0.5}
	retryAfter, maxRetryAfter := 2*time.Second, 5*time.Minute
	for attempt := range 4 {
		lo, hi := p.Range(attempt)
		d := max(p.Delay(attempt), min(retryAfter, maxRetryAfter))
		fmt.Println(attempt, lo, hi, d >= retryAfter)
	}
	// Output:
	// 0 50ms 100ms true
	// 1 100ms 200ms true
	// 2 200ms 400ms true
	// 3 400ms 800ms true
}
