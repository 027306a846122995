package sink

import (
	"errors"
	"io"
	"sync"
	"time"

	"github.com/produktly/produktly-segment/timestamp"
)

// largeBody is the size above which a batch's body is read straight from
// its messages (msgBody) instead of from a copy of them (seal). Over
// HTTP/1, net/http writes a body that fits its write buffer together with
// the headers when the body is a type it knows to be in memory
// (bytes.Reader); any larger body it copies through a 32 KiB buffer of
// its own, whatever its type (over HTTP/2, every body through its frame
// buffer), so for those a copy made beforehand is a second copy of every
// byte.
const largeBody = writeBufferSize

// appendBatch appends the body's head and the messages' JSON, with a comma
// between each two: what comes before the tail in every body.
func appendBatch(dst []byte, msgs []Message) []byte {
	dst = append(dst, bodyHead...)
	for i, m := range msgs {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = append(dst, m.JSON...)
	}
	return dst
}

// msgBody reads the body of a batch of messages without building it:
// the head, each message's JSON with a comma between, and the tail with
// sentAt. It produces exactly what seal writes. It reads the messages'
// JSON while the request is in flight; the JSON is immutable and belongs
// to messages not finished yet, so the bytes are there until the attempt
// ends. The transport may read a body after the request's answer has
// come (the RoundTripper contract): detach then gives the reader a copy
// of what is left, so it no longer depends on the messages.
type msgBody struct {
	mu   sync.Mutex
	msgs []Message
	size int // the body's length
	// piece is the piece being read: 0 the head, 2i+1 message i, the
	// even ones between them commas, last() the tail.
	piece    int
	off      int // bytes of that piece already read
	read     int // bytes of the body already read
	detached bool
	rest     []byte // once detached: what is left to read
	// fixed holds the head, then the comma.
	fixed [len(bodyHead) + 1]byte
	tail  [len(bodyTail) + timestamp.Width + len(bodyEnd)]byte
}

// newMsgBody returns a reader of the body of msgs, size bytes long (the
// batch's size), sent at sentAt.
func newMsgBody(msgs []Message, size int, sentAt time.Time) *msgBody {
	r := &msgBody{msgs: msgs, size: size}
	_ = append(append(r.fixed[:0], bodyHead...), ',')
	t := append(r.tail[:0], bodyTail...)
	t = timestamp.Append(t, sentAt)
	_ = append(t, bodyEnd...)
	return r
}

// Read reads the body in order, piece by piece.
func (r *msgBody) Read(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	if r.detached {
		n = copy(p, r.rest)
		r.rest = r.rest[n:]
	} else {
		for n < len(p) && r.piece <= r.last() {
			cur := r.cur()
			k := copy(p[n:], cur[r.off:])
			n += k
			if r.off += k; r.off == len(cur) {
				r.piece, r.off = r.piece+1, 0
			}
		}
	}
	r.read += n
	if n == 0 && len(p) > 0 {
		return 0, io.EOF
	}
	return n, nil
}

// last is the tail's piece: after the messages and the commas between
// them (the empty batch's body, never sent, has the head and the tail).
func (r *msgBody) last() int { return max(2*len(r.msgs), 1) }

// cur is the piece being read.
func (r *msgBody) cur() []byte {
	switch k := r.piece; {
	case k == 0:
		return r.fixed[:len(bodyHead)]
	case k == r.last():
		return r.tail[:]
	case k%2 == 1:
		return r.msgs[k/2].JSON
	}
	return r.fixed[len(bodyHead):]
}

// detach copies what is left to read and drops the messages: after it,
// whatever becomes of them, the reader goes on with the same bytes. Read
// to the end, the reader has nothing left to copy.
func (r *msgBody) detach() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.detached {
		return
	}
	var rest []byte
	if r.piece <= r.last() {
		rest = make([]byte, 0, r.size-r.read)
		for ; r.piece <= r.last(); r.piece, r.off = r.piece+1, 0 {
			rest = append(rest, r.cur()[r.off:]...)
		}
	}
	r.msgs, r.rest, r.detached = nil, rest, true
}

// errDetached is GetBody's error for a body whose reader was detached.
var errDetached = errors.New("sink: request body asked for again after its attempt")

// whole returns the whole body in a buffer of its own: for the
// transport's GetBody, which it calls before the answer comes, while the
// messages are there. A detached reader no longer has them.
func (r *msgBody) whole() ([]byte, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.detached {
		return nil, errDetached
	}
	return append(appendBatch(make([]byte, 0, r.size), r.msgs), r.tail[:]...), nil
}
