package integration

import (
	"context"
	"sync"
	"time"

	"github.com/segmentio/kafka-go"
)

// commitWatch checks the delivery rule while a scenario runs, not only at
// its end: whenever the group's committed offset of a partition moves, every
// record below it must already be at Segment (good) or in the dead-letter
// topic (bad), or, in accounts mode, in the retry topic (parked). The final ledger alone would miss a commit that ran ahead of
// an acknowledgement that came later anyway.
//
// It learns where each record landed from the producer's completion
// callback (ledger.placed), reads the committed offsets first and what
// Segment and the dead-letter topic hold second, so anything committed
// before the check must show up in the second read.
type commitWatch struct {
	l *ledger

	delivered map[string]bool // messageIds Segment accepted
	seen      int             // messages of l.seg already in delivered
	verified  map[int]int64   // per partition: offsets below are checked

	mu     sync.Mutex
	dead   map[string]bool // ledger ids in the dead-letter topic
	dlqPos map[int]int64   // next dead-letter offset read, per partition
	// Accounts mode: ledger ids in the retry topic (parked; their source
	// offsets commit once the retry write is acknowledged).
	parked   map[string]bool
	retryPos map[int]int64

	checks     int // commit moves verified
	violations int
	unknown    int // committed offsets whose record the producer never saw acknowledged

	cancel context.CancelFunc
	done   sync.WaitGroup
}

// placed records where Kafka put acknowledged records (the writer's
// Completion callback).
func (l *ledger) placed(msgs []kafka.Message) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, m := range msgs {
		id, ok := faultHeader(m, faultIDHeader)
		if !ok {
			continue
		}
		if l.coords[m.Partition] == nil {
			l.coords[m.Partition] = map[int64]string{}
		}
		l.coords[m.Partition][m.Offset] = id
	}
}

// watch starts checking commits every two seconds until account.
func (l *ledger) watch() {
	ctx, cancel := context.WithCancel(context.Background())
	w := &commitWatch{
		l: l, delivered: map[string]bool{}, verified: map[int]int64{},
		dead: map[string]bool{}, dlqPos: map[int]int64{}, cancel: cancel,
		parked: map[string]bool{}, retryPos: map[int]int64{},
	}
	l.cw = w
	l.t.Cleanup(func() {
		cancel()
		w.done.Wait()
	})
	for p := range l.dlqParts {
		w.done.Add(1)
		go func() {
			defer w.done.Done()
			w.follow(ctx, l.dlq, p, w.dead, w.dlqPos)
		}()
	}
	if l.retry != "" {
		for p := range l.retryParts {
			w.done.Add(1)
			go func() {
				defer w.done.Done()
				w.follow(ctx, l.retry, p, w.parked, w.retryPos)
			}()
		}
	}
	w.done.Add(1)
	go func() {
		defer w.done.Done()
		t := time.NewTicker(2 * time.Second)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				w.check(ctx)
			}
		}
	}()
}

// stop ends the watch after one last check.
func (w *commitWatch) stop() {
	w.cancel()
	w.done.Wait()
	w.check(context.Background())
}

// follow reads one partition of topic (the dead-letter or the retry
// topic) and notes the ledger ids in ids and the next offset in pos.
func (w *commitWatch) follow(ctx context.Context, topic string, p int, ids map[string]bool, pos map[int]int64) {
	kc := w.l.kc
	r := kafka.NewReader(kafka.ReaderConfig{
		Brokers: kc.brokers, Dialer: kc.dialer, Topic: topic, Partition: p,
		MaxBytes: 8 << 20, MaxWait: 200 * time.Millisecond, StartOffset: kafka.FirstOffset,
	})
	defer r.Close()
	for {
		m, err := r.FetchMessage(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			time.Sleep(500 * time.Millisecond)
			continue
		}
		id, _ := faultHeader(m, faultIDHeader)
		w.mu.Lock()
		ids[id] = true
		pos[p] = m.Offset + 1
		w.mu.Unlock()
	}
}

// check verifies every offset the group committed since the last check.
func (w *commitWatch) check(ctx context.Context) {
	l := w.l
	committed, err := l.kc.listCommitted(l.group, l.topic, l.partitions)
	if err != nil {
		return
	}
	// What the dead-letter topic holds now, read to its end.
	dlqEnd, err := l.kc.listEnd(l.dlq, l.dlqParts)
	if err != nil {
		return
	}
	// And the retry topic, in accounts mode.
	retryEnd := map[int]int64{}
	if l.retry != "" {
		if retryEnd, err = l.kc.listEnd(l.retry, l.retryParts); err != nil {
			return
		}
	}
	caughtUp := func() bool {
		w.mu.Lock()
		defer w.mu.Unlock()
		for p, end := range dlqEnd {
			if w.dlqPos[p] < end {
				return false
			}
		}
		for p, end := range retryEnd {
			if w.retryPos[p] < end {
				return false
			}
		}
		return true
	}
	if ctx.Err() != nil { // the final check: the readers are gone
		for _, tp := range []struct {
			topic string
			parts int
			ids   map[string]bool
		}{{l.dlq, l.dlqParts, w.dead}, {l.retry, l.retryParts, w.parked}} {
			if tp.topic == "" {
				continue
			}
			copies, err := l.kc.readAll(tp.topic, tp.parts)
			if err != nil {
				return
			}
			w.mu.Lock()
			for _, m := range copies {
				id, _ := faultHeader(m, faultIDHeader)
				tp.ids[id] = true
			}
			w.mu.Unlock()
		}
	} else {
		for deadline := time.Now().Add(10 * time.Second); !caughtUp(); time.Sleep(100 * time.Millisecond) {
			if time.Now().After(deadline) || ctx.Err() != nil {
				return
			}
		}
	}
	msgs := l.seg.Messages()
	for _, m := range msgs[w.seen:] {
		w.delivered[m.MessageID] = true
	}
	w.seen = len(msgs)

	w.mu.Lock()
	defer w.mu.Unlock()
	l.mu.Lock()
	defer l.mu.Unlock()
	for p, c := range committed {
		from := w.verified[p]
		if c <= from {
			continue
		}
		for o := from; o < c; o++ {
			id, ok := l.coords[p][o]
			e, acked := l.want[id]
			if !ok || !acked {
				w.unknown++
				continue
			}
			if (e.good && !w.delivered[e.msgID] && !w.parked[id]) || (!e.good && !w.dead[id]) {
				w.violations++
				if w.violations <= 10 {
					l.t.Errorf("%s: partition %d committed at %d while the record at offset %d (%s, %s) was neither delivered, parked nor dead-lettered",
						l.name, p, c, o, id, e.kind)
				}
			}
		}
		w.verified[p] = c
		w.checks++
	}
}
