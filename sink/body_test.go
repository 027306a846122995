package sink

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/produktly/produktly-segment/timestamp"
)

// bodyOf is the body of msgs sent at at, built the plain way.
func bodyOf(msgs []Message, at time.Time) []byte {
	b := []byte(bodyHead)
	for i, m := range msgs {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, m.JSON...)
	}
	b = append(b, bodyTail...)
	b = timestamp.Append(b, at)
	return append(b, bodyEnd...)
}

// bodyMessages returns n messages whose JSON lengths vary from 1 byte to a
// few KB.
func bodyMessages(n int) []Message {
	msgs := make([]Message, n)
	for i := range msgs {
		pad := strings.Repeat("p", (i*997)%3000)
		msgs[i] = Message{ID: fmt.Sprint(i), JSON: fmt.Appendf(nil, `{"messageId":"%d","p":"%s"}`, i, pad)}
		if i%7 == 3 {
			msgs[i].JSON = []byte(`1`)
		}
	}
	return msgs
}

// readIn reads r to the end, at most size bytes a Read.
func readIn(t *testing.T, r io.Reader, size int) []byte {
	t.Helper()
	var out []byte
	p := make([]byte, size)
	for reads := 0; ; reads++ {
		n, err := r.Read(p)
		out = append(out, p[:n]...)
		if err == io.EOF {
			return out
		}
		if err != nil || reads > 1<<22 {
			t.Fatalf("read: %v after %d reads", err, reads)
		}
	}
}

// A body read from the messages is byte for byte the body seal writes
// (for small batches, compared with seal itself) and as long as the batch
// accounts, whatever the number of messages and however it is read.
func TestMsgBodyIsTheSealedBody(t *testing.T) {
	at := time.Date(2026, 12, 7, 21, 30, 0, 123456789, time.UTC)
	s := &Segment{o: Options{BatchSize: 500}}
	for _, n := range []int{0, 1, 2, 3, 40, 300} {
		msgs := bodyMessages(n)
		want := bodyOf(msgs, at)
		b := s.encode(nil, msgs)
		if b.size != len(want) {
			t.Fatalf("%d messages: batch accounts %d bytes, the body is %d", n, b.size, len(want))
		}
		if b.size <= largeBody {
			stamp(b.buf, at)
			if !bytes.Equal(b.buf, want) {
				t.Fatalf("%d messages: seal wrote\n%s\nwant\n%s", n, b.buf, want)
			}
		} else if b.buf != nil {
			t.Errorf("%d messages, %d bytes: sealed into a buffer, want none above largeBody", n, b.size)
		}
		for _, size := range []int{1, 3, 64, 4096, 32 << 10, 1 << 20} {
			if got := readIn(t, newMsgBody(msgs, len(want), at), size); !bytes.Equal(got, want) {
				t.Fatalf("%d messages read %d bytes at a time: %d bytes, want %d\n%.200s", n, size, len(got), len(want), got)
			}
		}
		if got, err := newMsgBody(msgs, len(want), at).whole(); err != nil || !bytes.Equal(got, want) {
			t.Errorf("%d messages: whole is %d bytes (%v), want %d", n, len(got), err, len(want))
		}
		if n > 0 && !json.Valid(want) {
			t.Errorf("%d messages: the body is not JSON", n)
		}
	}
}

// Detached at any point of its reading (in the head, in a message, in
// the tail, at the end), the reader goes on with the same bytes although
// the messages' JSON is overwritten and the batch's list cleared;
// detached at the end it holds no copy; detaching twice changes nothing,
// and a detached reader has no whole body to give.
func TestMsgBodyDetach(t *testing.T) {
	at := time.Date(2026, 12, 7, 21, 30, 0, 0, time.UTC)
	size := len(bodyOf(bodyMessages(20), at))
	for _, cut := range []int{0, 1, 9, 10, 11, 5000, 20000, size - 30, size - 1, size} {
		msgs := bodyMessages(20)
		want := bodyOf(msgs, at)
		r := newMsgBody(msgs, len(want), at)
		head := make([]byte, cut)
		if _, err := io.ReadFull(r, head); err != nil {
			t.Fatal(err)
		}
		r.detach()
		if cut == size && r.rest != nil {
			t.Errorf("detached at the end: kept a copy of %d bytes", len(r.rest))
		}
		if cut < size && cap(r.rest) != size-cut {
			t.Errorf("detached after %d bytes: a copy of %d bytes' room, want %d", cut, cap(r.rest), size-cut)
		}
		r.detach()
		for _, m := range msgs {
			for i := range m.JSON {
				m.JSON[i] = 'x'
			}
		}
		clear(msgs)
		got := append(head, readIn(t, r, 777)...)
		if !bytes.Equal(got, want) {
			t.Fatalf("detached after %d bytes: read %d bytes, want %d\n%.300s", cut, len(got), len(want), got[max(cut-20, 0):])
		}
		if w, err := r.whole(); w != nil || !errors.Is(err, errDetached) {
			t.Errorf("detached after %d bytes: whole = %d bytes, %v; want nil, errDetached", cut, len(w), err)
		}
	}
}
