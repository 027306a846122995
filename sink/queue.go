package sink

import "sync"

// queue carries messages from EnqueueBatch to the dispatcher: one lock per
// batch handed over and one per batch taken off, instead of a channel
// operation per message. It holds at most limit messages, except that a
// batch larger than limit is taken into an empty queue, so that it can
// pass on its own.
type queue struct {
	limit int

	mu     sync.Mutex
	msgs   []Message // waiting, oldest first, from head
	head   int
	closed bool
	// room is closed and replaced whenever messages are taken off, so
	// that a blocked put can try again.
	room chan struct{}
	// ready holds a token while messages wait, for the dispatcher's select.
	ready chan struct{}
}

func newQueue(limit int) queue {
	return queue{limit: limit, room: make(chan struct{}), ready: make(chan struct{}, 1)}
}

// put appends all of msgs, or none: it returns nil, nil when they were
// taken; a channel that is closed when there may be room, when they were
// not; and ErrClosed once the queue is closed.
func (q *queue) put(msgs []Message) (<-chan struct{}, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		return nil, ErrClosed
	}
	n := len(q.msgs) - q.head
	if n > 0 && n+len(msgs) > q.limit {
		return q.room, nil
	}
	if q.head > 0 && len(q.msgs)+len(msgs) > cap(q.msgs) {
		// Slide the waiting messages down before growing the array.
		k := copy(q.msgs, q.msgs[q.head:])
		clear(q.msgs[k:])
		q.msgs, q.head = q.msgs[:k], 0
	}
	q.msgs = append(q.msgs, msgs...)
	select {
	case q.ready <- struct{}{}:
	default:
	}
	return nil, nil
}

// take moves up to max waiting messages, oldest first, to the end of buf
// and returns it; it leaves a token in ready if messages are still
// waiting.
func (q *queue) take(buf []Message, max int) []Message {
	q.mu.Lock()
	defer q.mu.Unlock()
	live := q.msgs[q.head:]
	k := min(max, len(live))
	if k <= 0 {
		return buf
	}
	buf = append(buf, live[:k]...)
	clear(live[:k])
	q.head += k
	if q.head == len(q.msgs) {
		q.msgs, q.head = q.msgs[:0], 0
	} else {
		select {
		case q.ready <- struct{}{}:
		default:
		}
	}
	close(q.room)
	q.room = make(chan struct{})
	return buf
}

// len returns the number of messages waiting.
func (q *queue) len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.msgs) - q.head
}

// close refuses further puts and returns the messages still waiting.
func (q *queue) close() []Message {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.closed = true
	left := q.msgs[q.head:]
	q.msgs, q.head = nil, 0
	return left
}
