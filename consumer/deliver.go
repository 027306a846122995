package consumer

import (
	"context"
	"reflect"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/produktly/produktly-segment/backoff"
)

// writeRetry is the wait between attempts of a record whose write to the
// dead-letter or retry topic failed.
var writeRetry = backoff.Policy{Base: 100 * time.Millisecond, Max: 30 * time.Second, Jitter: 0.5}

// verdict is what the owner of a failed record decides.
type verdict int

const (
	retryLater verdict = iota // after writeRetry's backoff
	retryNow                  // at once (a smaller copy is ready)
	settled                   // finished by the owner
)

// delivery is how one kind of record is written by deliver.
type delivery[T any] struct {
	message func(T) kafka.Message
	cancel  func(T) <-chan struct{} // closed when the record's partition is abandoned
	// written is called for a record the broker acknowledged.
	written func(T)
	// failed decides about a record whose write failed (err, a *writeError).
	failed func(T, error) verdict
	// abandon finishes a record not written: its partition was abandoned
	// or ctx ended.
	abandon func(T)
	// waiting reports that n records wait wait before attempt (1-based)
	// after last failed with class c.
	waiting func(n, attempt int, wait time.Duration, last error, c writeClass)
}

// deliver writes batch (records of one source partition) with w, retrying
// until every record is written, settled by its owner or abandoned, or
// ctx ends. The backoff between attempts ends early when ctx ends or a
// record's partition is abandoned.
func deliver[T any](ctx context.Context, w *topicWriter, batch []T, d delivery[T]) {
	for attempt := 0; ; {
		live := batch[:0]
		for _, it := range batch {
			if isClosed(d.cancel(it)) {
				d.abandon(it)
			} else {
				live = append(live, it)
			}
		}
		batch = live
		if len(batch) == 0 {
			return
		}
		msgs := make([]kafka.Message, len(batch))
		for i, it := range batch {
			msgs[i] = d.message(it)
		}
		errs := w.write(ctx, msgs)
		failed := batch[:0]
		var last error
		now := true
		for i, it := range batch {
			switch {
			case errs[i] == nil:
				d.written(it)
			case ctx.Err() != nil:
				failed = append(failed, it)
			default:
				switch d.failed(it, errs[i]) {
				case settled:
				case retryNow:
					failed = append(failed, it)
				default:
					failed = append(failed, it)
					now, last = false, errs[i]
				}
			}
		}
		batch = failed
		if len(batch) == 0 {
			return
		}
		if ctx.Err() != nil {
			for _, it := range batch {
				d.abandon(it)
			}
			return
		}
		if now {
			continue
		}
		wait := writeRetry.Delay(attempt)
		attempt++
		d.waiting(len(batch), attempt, wait, last, classOf(last))
		chans := make([]<-chan struct{}, len(batch))
		for i, it := range batch {
			chans[i] = d.cancel(it)
		}
		if !waitOrCancel(ctx, wait, chans) {
			for _, it := range batch {
				d.abandon(it)
			}
			return
		}
	}
}

func isClosed(c <-chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}

// waitOrCancel waits d. It returns false when ctx ends first, and returns
// early (true) when one of cancels is closed, so the caller can finish
// those records at once: their owner may be waiting for them to hand the
// partition over.
func waitOrCancel(ctx context.Context, d time.Duration, cancels []<-chan struct{}) bool {
	timer := time.NewTimer(d)
	defer timer.Stop()
	cases := []reflect.SelectCase{
		{Dir: reflect.SelectRecv, Chan: reflect.ValueOf(ctx.Done())},
		{Dir: reflect.SelectRecv, Chan: reflect.ValueOf(timer.C)},
	}
	seen := map[<-chan struct{}]bool{}
	for _, c := range cancels {
		if c != nil && !seen[c] {
			seen[c] = true
			cases = append(cases, reflect.SelectCase{Dir: reflect.SelectRecv, Chan: reflect.ValueOf(c)})
		}
	}
	i, _, _ := reflect.Select(cases)
	return i != 0
}
