package sink

import (
	"context"
	"math/rand/v2"
	"net/http"
	"reflect"
	"strconv"
	"strings"
	"time"

	"github.com/produktly/produktly-segment/backoff"
)

// maxRetryAfter bounds how long a Retry-After header can make a batch wait,
// so that a broken proxy answering "Retry-After: 86400" cannot stall a
// partition for a day.
const maxRetryAfter = 5 * time.Minute

// backoff returns how long to wait after the given failed attempt (0 for the
// first): the backoff package's schedule from MinBackoff doubling up to
// MaxBackoff, with "equal jitter" (half fixed, half random) so that
// replicas that failed together do not retry together, and never less
// than retryAfter (itself capped at maxRetryAfter).
func (s *Segment) backoff(attempt int, retryAfter time.Duration) time.Duration {
	p := backoff.Policy{Base: s.o.MinBackoff, Max: s.o.MaxBackoff, Jitter: 0.5}
	return max(p.Delay(attempt), min(retryAfter, maxRetryAfter))
}

// parseRetryAfter reads a Retry-After header: delay-seconds or an HTTP date
// (RFC 9110, section 10.2.3). It returns 0 when absent or unreadable.
func parseRetryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	if secs, err := strconv.ParseInt(v, 10, 64); err == nil {
		if secs <= 0 {
			return 0
		}
		return time.Duration(min(secs, int64(maxRetryAfter/time.Second))) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return t.Sub(now)
	}
	return 0
}

// sleep waits d before the next attempt of b. It returns early when ctx
// ends, and when every message of b has been cancelled. A message cancelled
// during the wait is finished (Abandoned) at once, not after the wait: its
// owner may be waiting for it to finish handing its partition over. When
// wake is closed (Segment answered another batch) the rest of the wait
// shrinks to a short random one, so recovered batches do not all retry in
// the same instant, and sleep reports true: Segment is back. Parking of the
// batch's destination ends the wait too.
func (s *Segment) sleep(ctx context.Context, b *batch, d time.Duration, last error, wake <-chan struct{}) (woken bool) {
	timer := time.NewTimer(d)
	defer timer.Stop()
	parked := b.d.parkedCh() // parking ends the wait: the messages complete Parked
	for {
		chans, _ := cancelChans(nil, b.msgs)
		// One case per distinct Cancel channel. There are few of them
		// (messages of a partition share one), and this runs only
		// between failed attempts.
		cases := make([]reflect.SelectCase, 0, 4+len(chans))
		cases = append(cases,
			reflect.SelectCase{Dir: reflect.SelectRecv, Chan: reflect.ValueOf(ctx.Done())},
			reflect.SelectCase{Dir: reflect.SelectRecv, Chan: reflect.ValueOf(timer.C)},
			reflect.SelectCase{Dir: reflect.SelectRecv, Chan: reflect.ValueOf(wake)}, // nil: never ready
			reflect.SelectCase{Dir: reflect.SelectRecv, Chan: reflect.ValueOf(parked)})
		for _, c := range chans {
			cases = append(cases, reflect.SelectCase{Dir: reflect.SelectRecv, Chan: reflect.ValueOf(c)})
		}
		i, _, _ := reflect.Select(cases)
		switch i {
		case 0, 1, 3:
			return
		case 2:
			wake = nil
			if !timer.Stop() {
				return
			}
			woken = true
			timer.Reset(rand.N(min(2*s.o.MinBackoff, time.Second) + 1))
			continue
		}
		s.dropCanceled(b, last)
		if len(b.msgs) == 0 {
			return
		}
	}
}
