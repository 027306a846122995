package sink

import (
	"io"
	"sync"
	"time"

	"github.com/produktly/produktly-segment/timestamp"
)

// largeBody is the size above which a batch's body is read straight from
// its messages (msgBody) instead of from a copy of them (seal). net/http
// writes a body that fits its write buffer together with the headers,
// when the body is a type it knows to be in memory (bytes.Reader); any
// larger body it copies through a 32 KiB buffer of its own, whatever its
// type, so for those a copy made beforehand is a second copy of every
// byte.
const largeBody = writeBufferSize

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
	// piece is the piece being read: 0 the head, 2i+1 message i, the
	// even ones between them commas, last() the tail.
	piece    int
	off      int // bytes of that piece already read
	detached bool
	rest     []byte // once detached: what is left to read
	tail     [len(bodyTail) + timestamp.Width + len(bodyEnd)]byte
}

// newMsgBody returns a reader of the body of msgs, sent at sentAt.
func newMsgBody(msgs []Message, sentAt time.Time) *msgBody {
	r := &msgBody{msgs: msgs}
	t := append(r.tail[:0], bodyTail...)
	t = timestamp.Append(t, sentAt)
	_ = append(t, bodyEnd...)
	return r
}

// Read reads the body in order, piece by piece.
func (r *msgBody) Read(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.detached {
		n := copy(p, r.rest)
		r.rest = r.rest[n:]
		if n == 0 && len(p) > 0 {
			return 0, io.EOF
		}
		return n, nil
	}
	n := 0
	for n < len(p) && r.piece <= r.last() {
		k := r.copyPiece(p[n:])
		n += k
		r.off += k
		if r.off == r.pieceLen() {
			r.piece++
			r.off = 0
		}
	}
	if n == 0 && len(p) > 0 {
		return 0, io.EOF
	}
	return n, nil
}

// last is the tail's piece: after the messages and the commas between
// them (the empty batch's body, never sent, has the head and the tail).
func (r *msgBody) last() int { return max(2*len(r.msgs), 1) }

// copyPiece copies what is left of the current piece into p.
func (r *msgBody) copyPiece(p []byte) int {
	switch k := r.piece; {
	case k == 0:
		return copy(p, bodyHead[r.off:])
	case k == r.last():
		return copy(p, r.tail[r.off:])
	case k%2 == 1:
		return copy(p, r.msgs[k/2].JSON[r.off:])
	}
	return copy(p, ","[r.off:])
}

// pieceLen is the length of the current piece.
func (r *msgBody) pieceLen() int {
	switch k := r.piece; {
	case k == 0:
		return len(bodyHead)
	case k == r.last():
		return len(r.tail)
	case k%2 == 1:
		return len(r.msgs[k/2].JSON)
	}
	return 1
}

// detach copies what is left to read and drops the messages: after it,
// whatever becomes of them, the reader goes on with the same bytes.
func (r *msgBody) detach() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.detached {
		return
	}
	var rest []byte
	for ; r.piece <= r.last(); r.piece, r.off = r.piece+1, 0 {
		// copyPiece copies into the free room of rest, grown to hold the piece.
		need := r.pieceLen() - r.off
		rest = append(rest, make([]byte, need)...)
		r.copyPiece(rest[len(rest)-need:])
	}
	r.msgs, r.rest, r.detached = nil, rest, true
}

// whole returns the whole body in a buffer of its own: for the
// transport's GetBody, which it calls before the answer comes, while the
// messages are there. Detached, the reader no longer has them: whole then
// returns nil, a body the transport refuses as shorter than
// ContentLength.
func (r *msgBody) whole() []byte {
	r.mu.Lock()
	c := &msgBody{msgs: r.msgs, tail: r.tail}
	detached := r.detached
	r.mu.Unlock()
	if detached {
		return nil
	}
	c.detach()
	return c.rest
}
