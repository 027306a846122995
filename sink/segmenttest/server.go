// Package segmenttest provides a stand-in for Segment's HTTP Tracking API
// batch endpoint, for tests, the demo and benchmarks.
//
// A Server checks requests the way Segment does (POST /v1/batch, basic auth
// with the write key as user name, optional gzip, 500 KB per request, 32 KB
// per message, 2500 messages per batch, type/event/messageId and
// userId/anonymousId present), records every accepted message with its
// arrival time, and answers {"success":true}. A batch that breaks a rule is
// refused as a whole with 400, as Segment does, which is what the sink's
// batch splitting must cope with.
//
// A Server serves one write key or many (WithWriteKeys, AddWriteKey), and
// records the write key of every message it accepts, so that a test can
// check that each account's calls reached the right source. Several
// Servers (say a US and an EU one) run side by side on their own ports.
// Clients given URLFor(sender) have their messages recorded with that
// sender (Received.Via), so a test running several replicas against one
// Server can tell which one sent each copy.
//
// Faults can be injected while it serves: scripted statuses (FailNext), an
// outage (SetOutage), Retry-After headers, latency, dropped connections,
// requests that hang past the client's timeout, responses cut off after the
// batch was accepted (the client cannot know it was), a seeded random mix
// of all of these (SetFaultRate), and a persistent fault for one write key
// while the others are served (FailKey). Injected faults take effect before
// authentication, like failures of a load balancer in front of the API.
package segmenttest

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"sort"
	"sync"
	"time"

	"github.com/google/uuid"
)

// Received is one accepted message.
type Received struct {
	// WriteKey is the basic auth user of the request that carried it.
	WriteKey    string
	MessageID   string
	Event       string
	UserID      string
	AnonymousID string
	// Raw is the message as sent; nil WithoutBodies.
	Raw json.RawMessage
	// At is when the request that carried it arrived.
	At time.Time
	// Cut: the request that carried it was accepted but its answer cut
	// off (the Cut fault), so the client cannot know it arrived and sends
	// it again: the next copy is a duplicate by design.
	Cut bool
	// Via is the sender of the request that carried it, when the client
	// posted to URLFor(sender); "" otherwise, and WithoutBodies.
	Via string
}

// Option configures a Server.
type Option func(*Server)

// WithoutBodies keeps only messageId, event and arrival time of each
// message, for benchmarks that send millions.
func WithoutBodies() Option { return func(s *Server) { s.noBodies = true } }

// WithCapacity makes room WithoutBodies for n messages up front, so that a
// benchmark that knows how many it sends spends nothing on growing the
// record of them while the service it measures runs.
func WithCapacity(n int) Option {
	return func(s *Server) {
		s.compact = make([]compactMsg, 0, n)
		s.ids = make(map[uuid.UUID]struct{}, n)
	}
}

// WithWriteKeys accepts these write keys too.
func WithWriteKeys(keys ...string) Option {
	return func(s *Server) {
		for _, k := range keys {
			s.keys[k] = struct{}{}
		}
	}
}

// WithAddr listens on addr (for example ":8080" for the demo) instead of a
// random loopback port.
func WithAddr(addr string) Option { return func(s *Server) { s.addr = addr } }

// Server is a Segment-compatible batch endpoint. Its methods are safe for
// concurrent use, also while it serves.
type Server struct {
	noBodies bool
	addr     string

	ln      net.Listener
	srv     *http.Server
	serving sync.WaitGroup // the Serve goroutine
	closing chan struct{}  // closed by Close; ends hanging requests

	mu       sync.Mutex
	closed   bool
	inflight sync.WaitGroup // handlers; Close waits for them
	requests int
	keys     map[string]struct{} // accepted write keys
	byKey    map[string]int      // requests by basic auth user
	msgs     []Received
	distinct map[string]struct{}
	// Without bodies, messages whose messageId is a UUID are kept in a
	// compact form free of pointers: a benchmark's millions of them then
	// cost the garbage collector nothing to scan.
	compact    []compactMsg
	ids        map[uuid.UUID]struct{}
	events     []string
	eventIndex map[string]uint16
	keyNames   []string
	keyIndex   map[string]uint32
	f          faults

	readings sync.Pool // of *reading
}

type compactMsg struct {
	id    uuid.UUID
	at    int64 // unix nanoseconds
	event uint16
	key   uint32 // index into keyNames
	cut   bool
}

// NewServer starts a Server on 127.0.0.1 at a random port (or WithAddr's
// address), like httptest.NewServer, and panics if it cannot listen: it is
// meant for tests. Use Listen to get the error instead.
func NewServer(writeKey string, opts ...Option) *Server {
	s, err := Listen(writeKey, opts...)
	if err != nil {
		panic(fmt.Sprintf("segmenttest: %v", err))
	}
	return s
}

// Listen is NewServer returning the error, for commands.
func Listen(writeKey string, opts ...Option) (*Server, error) {
	s := newServer(writeKey, opts...)
	addr := s.addr
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	s.ln = ln
	s.srv = &http.Server{Handler: s, ReadHeaderTimeout: 10 * time.Second}
	s.serving.Go(func() { _ = s.srv.Serve(ln) })
	return s, nil
}

func newServer(writeKey string, opts ...Option) *Server {
	s := &Server{
		keys:       map[string]struct{}{writeKey: {}},
		byKey:      make(map[string]int),
		closing:    make(chan struct{}),
		distinct:   make(map[string]struct{}),
		eventIndex: make(map[string]uint16),
		keyIndex:   make(map[string]uint32),
	}
	for _, o := range opts {
		o(s)
	}
	if s.ids == nil {
		s.ids = make(map[uuid.UUID]struct{})
	}
	return s
}

// URL is the base URL to use as sink.Options.Endpoint, for example
// "http://127.0.0.1:40123".
func (s *Server) URL() string {
	if s.ln == nil {
		return ""
	}
	return "http://" + s.ln.Addr().String()
}

// The paths the Server answers: Segment's batch endpoint, under
// viaPrefix+sender for URLFor's clients.
const (
	batchPath = "/v1/batch"
	viaPrefix = "/via/"
)

// URLFor is an endpoint of the Server (as URL) whose messages are received
// with Via set to sender, so that a test running several clients against
// one Server can tell which one sent each copy. sender must be a non-empty
// path segment: no slash.
func (s *Server) URLFor(sender string) string {
	return s.URL() + viaPrefix + url.PathEscape(sender)
}

// Handler is the batch endpoint, to mount on any listener or mux. The Hang,
// Drop and Cut faults end the response by panicking with
// http.ErrAbortHandler, which net/http servers treat as "close the
// connection", so serve it with net/http rather than calling it directly.
func (s *Server) Handler() http.Handler { return s }

// Close stops listening, ends hanging requests and waits for every handler.
func (s *Server) Close() {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.closed = true
	s.mu.Unlock()
	close(s.closing)
	if s.srv != nil {
		_ = s.srv.Close()
		s.serving.Wait()
	}
	s.inflight.Wait()
}

// Messages returns a copy of the accepted messages, in arrival order.
func (s *Server) Messages() []Received {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Received, 0, len(s.msgs)+len(s.compact))
	out = append(out, s.msgs...)
	for _, c := range s.compact {
		out = append(out, Received{WriteKey: s.keyNames[c.key], MessageID: c.id.String(), Event: s.events[c.event], At: time.Unix(0, c.at), Cut: c.cut})
	}
	if len(s.msgs) > 0 && len(s.compact) > 0 {
		sort.SliceStable(out, func(i, j int) bool { return out[i].At.Before(out[j].At) })
	}
	return out
}

// Count is how many messages were accepted, duplicates included.
func (s *Server) Count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.msgs) + len(s.compact)
}

// Distinct is how many different messageIds were accepted: what Segment
// keeps after de-duplication.
func (s *Server) Distinct() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.distinct) + len(s.ids)
}

// AddWriteKey accepts key from now on.
func (s *Server) AddWriteKey(key string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.keys[key] = struct{}{}
}

// RequestsFor is how many requests arrived with key as their basic auth
// user, faulted and refused ones included.
func (s *Server) RequestsFor(key string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.byKey[key]
}

// MessagesFor returns the accepted messages sent with key, in arrival order.
func (s *Server) MessagesFor(key string) []Received {
	var out []Received
	for _, m := range s.Messages() {
		if m.WriteKey == key {
			out = append(out, m)
		}
	}
	return out
}

// Requests is how many requests arrived, faulted and refused ones included.
func (s *Server) Requests() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.requests
}

// record stores the messages of an accepted batch, which arrived at at
// with the write key key; cut: its answer is cut off.
func (s *Server) record(b batch, at time.Time, key string, cut bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, m := range b.msgs {
		if s.noBodies {
			if id, ok := canonicalUUID([]byte(m.MessageID)); ok {
				s.keep(id, []byte(m.Event), m.At, s.keyID(m.WriteKey), m.Cut)
				continue
			}
		}
		s.distinct[m.MessageID] = struct{}{}
		s.msgs = append(s.msgs, m)
	}
	if len(b.compact) > 0 {
		k := s.keyID(key)
		for _, a := range b.compact {
			s.keep(a.id, a.event, at, k, cut)
		}
	}
}

// keep records a message in the compact form.
func (s *Server) keep(id uuid.UUID, event []byte, at time.Time, key uint32, cut bool) {
	s.ids[id] = struct{}{}
	s.compact = append(s.compact, compactMsg{id: id, at: at.UnixNano(), event: s.eventID(event), key: key, cut: cut})
}

// keyID interns a write key for the compact form.
func (s *Server) keyID(key string) uint32 {
	if i, ok := s.keyIndex[key]; ok {
		return i
	}
	s.keyNames = append(s.keyNames, key)
	s.keyIndex[key] = uint32(len(s.keyNames) - 1)
	return uint32(len(s.keyNames) - 1)
}

// eventID interns an event name for the compact form.
func (s *Server) eventID(name []byte) uint16 {
	if i, ok := s.eventIndex[string(name)]; ok {
		return i
	}
	if len(s.events) == 1<<16-1 {
		return 0 // more distinct names than any benchmark has; keep the first
	}
	s.events = append(s.events, string(name))
	s.eventIndex[string(name)] = uint16(len(s.events) - 1)
	return uint16(len(s.events) - 1)
}
