package consumer

import (
	"bytes"
	"context"
	"encoding/binary"
	"io"
	"net"
	"testing"
	"time"

	"github.com/segmentio/kafka-go/protocol"
)

// pipeBroker answers the Fetch requests a brokerConn writes to its end of
// a pipe with the bodies given, in turn, framed as a broker frames them
// (size, the request's correlation id, body).
func pipeBroker(t *testing.T, bodies ...[]byte) *brokerConn {
	t.Helper()
	client, server := net.Pipe()
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer server.Close()
		for _, body := range bodies {
			var size [4]byte
			if _, err := io.ReadFull(server, size[:]); err != nil {
				if err != io.EOF { // not the test ending early
					t.Errorf("broker: reading a request: %v", err)
				}
				return
			}
			req := make([]byte, binary.BigEndian.Uint32(size[:]))
			if _, err := io.ReadFull(server, req); err != nil {
				t.Errorf("broker: reading a request: %v", err)
				return
			}
			// api key, api version, then the correlation id.
			frame := binary.BigEndian.AppendUint32(nil, uint32(4+len(body)))
			frame = append(frame, req[4:8]...)
			if _, err := server.Write(append(frame, body...)); err != nil {
				t.Errorf("broker: answering: %v", err)
				return
			}
		}
	}()
	c := &brokerConn{addr: "pipe", pc: protocol.NewConn(client, "test"), clientID: "test"}
	t.Cleanup(func() {
		c.close()
		<-done
	})
	return c
}

// TestBrokerConnReadsIntoBuffer: the connection reads an answer into the
// buffer passed when its capacity holds the answer, whatever its length,
// and into a new one, leaving the buffer passed as it was, when not.
func TestBrokerConnReadsIntoBuffer(t *testing.T) {
	a, b, c := bytes.Repeat([]byte("a"), 1000), bytes.Repeat([]byte("b"), 500), bytes.Repeat([]byte("c"), 3000)
	conn := pipeBroker(t, a, b, c)
	req := (&batchReader{topic: "t", maxBytes: 1 << 20}).request()
	ctx := context.Background()
	first, err := conn.fetch(ctx, req, 10*time.Second, nil)
	if err != nil || !bytes.Equal(first, a) {
		t.Fatalf("first answer = %.20q, %v; want %d bytes of a", first, err, len(a))
	}
	second, err := conn.fetch(ctx, req, 10*time.Second, first)
	if err != nil || !bytes.Equal(second, b) {
		t.Fatalf("second answer = %.20q, %v; want %d bytes of b", second, err, len(b))
	}
	if &second[0] != &first[0] {
		t.Error("an answer smaller than the buffer passed was read into a new one")
	}
	if !bytes.Equal(first[:len(b)], b) || !bytes.Equal(first[len(b):], a[len(b):]) {
		t.Error("the answer was not read into the buffer passed, from its start")
	}
	third, err := conn.fetch(ctx, req, 10*time.Second, second)
	if err != nil || !bytes.Equal(third, c) {
		t.Fatalf("third answer = %.20q, %v; want %d bytes of c", third, err, len(c))
	}
	if &third[0] == &first[0] || !bytes.Equal(second, b) {
		t.Error("an answer larger than the buffer passed was read into it")
	}
}
