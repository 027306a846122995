package consumer

import (
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/protocol"
	"github.com/segmentio/kafka-go/protocol/apiversions"
	fetchAPI "github.com/segmentio/kafka-go/protocol/fetch"
	"github.com/segmentio/kafka-go/protocol/saslauthenticate"
	"github.com/segmentio/kafka-go/protocol/saslhandshake"
	"github.com/segmentio/kafka-go/sasl"
)

// fetchVersion is the Fetch version the readers speak: the highest that
// kafka-go's fetch package encodes and the last one before the flexible
// encoding (v12); Kafka 4 serves v4 and later.
const fetchVersion = 11

// maxFetchFrame bounds the size of a Fetch response frame the reader
// accepts: a broker answers at most MaxBytes plus the framing of one
// partition, so anything far larger is a stream out of step.
const maxFetchFrame = 1 << 30

// brokerConn is a partition reader's own connection to a broker, set up
// as kafka-go's Transport sets up its connections (ApiVersions, then the
// SASL handshake and exchange) with the Dialer's TLS and SASL settings.
// It carries one Fetch at a time and hands back each answer's bytes
// undecoded, read into the buffer its caller passes when that holds them.
type brokerConn struct {
	addr        string
	pc          *protocol.Conn
	clientID    string
	correlation int32
	used        bool // a Fetch was answered on it
}

// dialBroker connects to addr ("host:port") with d's TLS and SASL settings.
func dialBroker(ctx context.Context, d *kafka.Dialer, addr string) (*brokerConn, error) {
	timeout := d.Timeout
	if timeout <= 0 {
		timeout = 10 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var nc net.Conn
	var err error
	if d.DialFunc != nil {
		nc, err = d.DialFunc(ctx, "tcp", addr)
	} else {
		nd := net.Dialer{LocalAddr: d.LocalAddr, KeepAlive: d.KeepAlive, FallbackDelay: d.FallbackDelay}
		nc, err = nd.DialContext(ctx, "tcp", addr)
	}
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", addr, err)
	}
	host, portText, err := net.SplitHostPort(addr)
	if err != nil {
		nc.Close()
		return nil, err
	}
	if d.TLS != nil {
		conf := d.TLS
		if conf.ServerName == "" {
			conf = conf.Clone()
			conf.ServerName = host
		}
		nc = tls.Client(nc, conf)
	}
	clientID := d.ClientID
	if clientID == "" {
		clientID = kafka.DefaultClientID
	}
	c := &brokerConn{addr: addr, pc: protocol.NewConn(nc, clientID), clientID: clientID}
	if err := c.handshake(ctx, d.SASLMechanism, host, portText); err != nil {
		c.close()
		return nil, fmt.Errorf("connect to %s: %w", addr, err)
	}
	return c, nil
}

func (c *brokerConn) handshake(ctx context.Context, mech sasl.Mechanism, host, portText string) (err error) {
	stop := c.interruptOn(ctx)
	defer func() {
		if !stop() && err == nil {
			err = ctx.Err() // interrupted after the last answer: out of step all the same
		}
	}()
	if dl, ok := ctx.Deadline(); ok {
		c.pc.SetDeadline(dl)
	}
	m, err := c.pc.RoundTrip(new(apiversions.Request))
	if err != nil {
		return err
	}
	res := m.(*apiversions.Response)
	if res.ErrorCode != 0 {
		return fmt.Errorf("api versions: %w", kafka.Error(res.ErrorCode))
	}
	versions := make(map[protocol.ApiKey]int16, len(res.ApiKeys))
	fetchOK := false
	for _, k := range res.ApiKeys {
		key := protocol.ApiKey(k.ApiKey)
		versions[key] = key.SelectVersion(k.MinVersion, k.MaxVersion)
		if key == protocol.Fetch {
			fetchOK = k.MinVersion <= fetchVersion && fetchVersion <= k.MaxVersion
		}
	}
	if !fetchOK {
		return fmt.Errorf("broker does not serve Fetch v%d", fetchVersion)
	}
	c.pc.SetVersions(versions)
	if mech != nil {
		port, _ := strconv.Atoi(portText)
		if err := authenticate(sasl.WithMetadata(ctx, &sasl.Metadata{Host: host, Port: port}), c.pc, mech); err != nil {
			return err
		}
	}
	return c.pc.SetDeadline(time.Time{})
}

// authenticate runs the SASL handshake and exchange as kafka-go's
// Transport does.
func authenticate(ctx context.Context, pc *protocol.Conn, mech sasl.Mechanism) error {
	m, err := pc.RoundTrip(&saslhandshake.Request{Mechanism: mech.Name()})
	if err != nil {
		return err
	}
	if code := m.(*saslhandshake.Response).ErrorCode; code != 0 {
		return fmt.Errorf("sasl handshake: %w", kafka.Error(code))
	}
	sess, state, err := mech.Start(ctx)
	if err != nil {
		return err
	}
	for done := false; !done; {
		m, err := pc.RoundTrip(&saslauthenticate.Request{AuthBytes: state})
		if errors.Is(err, io.EOF) {
			// A broker may end a failed exchange by closing the connection.
			return kafka.SASLAuthenticationFailed
		}
		if err != nil {
			return err
		}
		res := m.(*saslauthenticate.Response)
		if res.ErrorCode != 0 {
			return fmt.Errorf("sasl authenticate: %w", kafka.Error(res.ErrorCode))
		}
		if done, state, err = sess.Next(ctx, res.AuthBytes); err != nil {
			return err
		}
	}
	return nil
}

// interruptOn makes a read or write in progress on c fail at once when
// ctx ends; the returned stop ends that watch. A connection interrupted so
// is out of step and must be closed.
func (c *brokerConn) interruptOn(ctx context.Context) (stop func() bool) {
	return context.AfterFunc(ctx, func() { c.pc.SetDeadline(time.Unix(1, 0)) })
}

// fetch sends req and returns the answer's body (what follows the
// correlation id), read into buf's array when its capacity holds the
// answer, else into a new one (answerBuffer). After an error the
// connection is out of step: the caller closes it; buf's bytes are then
// whatever the read left.
func (c *brokerConn) fetch(ctx context.Context, req *fetchAPI.Request, timeout time.Duration, buf []byte) (body []byte, err error) {
	// The deadline first: set after the watch, it could overwrite the
	// past deadline of a cancel that came in between.
	c.pc.SetDeadline(time.Now().Add(timeout))
	stop := c.interruptOn(ctx)
	defer func() {
		if !stop() && err == nil {
			body, err = nil, ctx.Err() // interrupted after the answer: out of step all the same
		}
	}()
	c.correlation++
	if err := protocol.WriteRequest(c.pc, fetchVersion, c.correlation, c.clientID, req); err != nil {
		return nil, err
	}
	var head [8]byte
	if _, err := io.ReadFull(c.pc, head[:]); err != nil {
		return nil, err
	}
	size := int(int32(binary.BigEndian.Uint32(head[:4])))
	if size < 4 || size > maxFetchFrame {
		return nil, fmt.Errorf("fetch answer of %d bytes", size)
	}
	if id := int32(binary.BigEndian.Uint32(head[4:])); id != c.correlation {
		return nil, fmt.Errorf("fetch answer to request %d, want %d", id, c.correlation)
	}
	body = answerBuffer(buf, size-4)
	if _, err := io.ReadFull(c.pc, body); err != nil {
		return nil, err
	}
	c.used = true
	return body, nil
}

func (c *brokerConn) close() error { return c.pc.Close() }

// answerBuffer returns n bytes to read an answer into: buf's array when its
// capacity is at least n, else a new array of n bytes. Only a new array
// is zeroed, so an answer that fits costs neither an allocation nor
// clearing.
func answerBuffer(buf []byte, n int) []byte {
	if cap(buf) >= n {
		return buf[:n]
	}
	return make([]byte, n)
}
