package segmenttest

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
)

// Segment's limits, as the HTTP Tracking API documents them.
const (
	maxBodyBytes    = 500000
	maxMessageBytes = 32000
	maxBatchLen     = 2500
)

// ServeHTTP serves POST /v1/batch, and POST /via/{sender}/v1/batch for
// the clients given URLFor(sender).
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		answer(w, http.StatusServiceUnavailable, "server closed")
		return
	}
	s.inflight.Add(1)
	s.mu.Unlock()
	defer s.inflight.Done()

	via, ok := senderOf(r.URL.Path)
	if !ok {
		s.count()
		answer(w, http.StatusNotFound, "not found")
		return
	}
	if r.Method != http.MethodPost {
		s.count()
		w.Header().Set("Allow", http.MethodPost)
		answer(w, http.StatusMethodNotAllowed, "method not allowed")
		return
	}
	at := time.Now()
	user, _, authed := r.BasicAuth()
	p := s.nextPlan(user)
	if p.latency > 0 {
		// net/http watches for the client going away only once the
		// handler has read the body; read it first, so that a client
		// that gives up during the pause ends it, and its batch is not
		// accepted behind its back.
		data, err := io.ReadAll(io.LimitReader(r.Body, 2*maxBodyBytes))
		if err != nil {
			panic(http.ErrAbortHandler)
		}
		r.Body = io.NopCloser(bytes.NewReader(data))
		if !s.pause(r, p.latency) {
			panic(http.ErrAbortHandler)
		}
	}
	switch p.fault {
	case 0, Cut:
	case Drop:
		cut(w, "")
		return
	case Hang:
		select {
		case <-r.Context().Done():
		case <-s.closing:
		}
		// Returning would send an empty 200; abort the response instead.
		panic(http.ErrAbortHandler)
	default:
		_, _ = io.Copy(io.Discard, io.LimitReader(r.Body, 2*maxBodyBytes))
		if (p.fault == http.StatusTooManyRequests || p.fault == http.StatusServiceUnavailable) && p.retryAfter > 0 {
			secs := (p.retryAfter + time.Second - 1) / time.Second
			w.Header().Set("Retry-After", strconv.FormatInt(int64(secs), 10))
		}
		answer(w, p.fault, "injected fault")
		return
	}

	if !authed || !s.accepts(user) {
		w.Header().Set("WWW-Authenticate", `Basic realm="Segment"`)
		answer(w, http.StatusUnauthorized, "invalid write key")
		return
	}
	rd := s.reading()
	defer s.readings.Put(rd)
	// A batch that may be rejected message by message is read whole.
	b, problem := s.parse(r, rd, at, user, p.reject != nil)
	if problem != "" {
		answer(w, http.StatusBadRequest, problem)
		return
	}
	if p.reject != nil {
		for _, m := range b.msgs {
			if p.reject(m) {
				answer(w, p.rejectWith, fmt.Sprintf("message %s is invalid", m.MessageID))
				return
			}
		}
	}
	for i := range b.msgs {
		b.msgs[i].Cut, b.msgs[i].Via = p.fault == Cut, via
	}
	s.record(b, at, user, p.fault == Cut)
	if p.fault == Cut {
		cut(w, "HTTP/1.1 200 OK\r\nContent-Type: appl")
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = io.WriteString(w, `{"success":true}`)
}

// senderOf returns the sender named by a path of URLFor's, "" for the
// plain /v1/batch, and false for any other path.
func senderOf(path string) (string, bool) {
	if path == batchPath {
		return "", true
	}
	rest, ok := strings.CutPrefix(path, viaPrefix)
	if !ok {
		return "", false
	}
	name, ok := strings.CutSuffix(rest, batchPath)
	if !ok || name == "" || strings.Contains(name, "/") {
		return "", false
	}
	return name, true
}

func (s *Server) accepts(key string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.keys[key]
	return ok
}

func (s *Server) count() {
	s.mu.Lock()
	s.requests++
	s.mu.Unlock()
}

// pause waits d; false means the request or the Server ended meanwhile.
func (s *Server) pause(r *http.Request, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-r.Context().Done():
	case <-s.closing:
	}
	return false
}

// answer writes Segment-style JSON.
func answer(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	b, _ := json.Marshal(struct {
		Success bool   `json:"success"`
		Message string `json:"message"`
	}{false, msg})
	_, _ = w.Write(b)
}

// cut takes the connection over, writes partial (which may be empty) and
// closes it, so the client sees a broken connection instead of an answer.
func cut(w http.ResponseWriter, partial string) {
	hj, ok := w.(http.Hijacker)
	if !ok { // HTTP/2: resetting the stream is the closest thing
		panic(http.ErrAbortHandler)
	}
	conn, buf, err := hj.Hijack()
	if err != nil {
		panic(http.ErrAbortHandler)
	}
	if partial != "" {
		_, _ = buf.WriteString(partial)
		_ = buf.Flush()
	}
	_ = conn.Close()
}

// parse reads and checks a batch body into rd. It returns the messages,
// or why the whole batch is refused.
func (s *Server) parse(r *http.Request, rd *reading, at time.Time, key string, whole bool) (batch, string) {
	var body io.Reader = r.Body
	switch enc := strings.ToLower(strings.TrimSpace(r.Header.Get("Content-Encoding"))); enc {
	case "", "identity":
	case "gzip":
		zr, err := gzip.NewReader(io.LimitReader(r.Body, maxBodyBytes+1))
		if err != nil {
			return batch{}, "invalid gzip body"
		}
		defer zr.Close()
		body = zr
	default:
		return batch{}, fmt.Sprintf("unsupported Content-Encoding %q", enc)
	}
	data, err := readUpTo(body, rd.body)
	switch {
	case err != nil:
		return batch{}, "reading body: " + err.Error()
	case len(data) > maxBodyBytes:
		return batch{}, fmt.Sprintf("body is over %d bytes", maxBodyBytes)
	}

	if s.noBodies {
		// Benchmarks: one typed pass, no copies of the messages.
		return s.parseFields(data, rd, at, key, whole)
	}
	var env struct {
		Batch []json.RawMessage `json:"batch"`
	}
	if err := json.Unmarshal(data, &env); err != nil {
		return batch{}, "invalid JSON: " + err.Error()
	}
	switch {
	case env.Batch == nil:
		return batch{}, "batch is missing"
	case len(env.Batch) > maxBatchLen:
		return batch{}, fmt.Sprintf("batch has %d messages, over %d", len(env.Batch), maxBatchLen)
	}
	msgs := make([]Received, 0, len(env.Batch))
	for i, raw := range env.Batch {
		m, problem := s.message(raw)
		if problem != "" {
			return batch{}, fmt.Sprintf("batch[%d]: %s", i, problem)
		}
		m.At, m.WriteKey = at, key
		msgs = append(msgs, m)
	}
	return batch{msgs: msgs}, ""
}

// batch is an accepted batch's messages: those kept whole, and WithoutBodies
// those whose messageId is a canonical UUID, to be kept compact.
type batch struct {
	msgs    []Received
	compact []arrival // alias the request's reading
}

// arrival is a message to keep compact: its id, and its event name as the
// body spells it.
type arrival struct {
	id    uuid.UUID
	event []byte
}

// reading is what a request is read into: a body of up to maxBodyBytes+1,
// and WithoutBodies what scanBatch and parseFields make of it. Nothing
// keeps a reading's bytes once the request is recorded (the messages hold
// copies), so a reading serves request after request between garbage
// collections (which empty a sync.Pool) instead of a growing buffer being
// allocated and cleared for each.
type reading struct {
	body     []byte
	scanned  []scanned
	arrivals []arrival
}

func (s *Server) reading() *reading {
	if rd, ok := s.readings.Get().(*reading); ok {
		return rd
	}
	return &reading{body: make([]byte, maxBodyBytes+1)}
}

// readUpTo reads r into buf until r ends (io.EOF) or buf is full, and
// returns what it read. Any other error is the body's: a body cut off
// before its Content-Length, or a gzip stream cut short, comes back as
// io.ErrUnexpectedEOF and must not pass for a whole one.
func readUpTo(r io.Reader, buf []byte) ([]byte, error) {
	n := 0
	for n < len(buf) {
		m, err := r.Read(buf[n:])
		n += m
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, err
		}
	}
	return buf[:n], nil
}

// fields are the parts of a message the server checks.
type fields struct {
	Type        string `json:"type"`
	Event       string `json:"event"`
	MessageID   string `json:"messageId"`
	UserID      string `json:"userId"`
	AnonymousID string `json:"anonymousId"`
}

// parseFields is parse for a server without bodies: the same field checks
// on a lighter reading of the body (scanBatch). The 32 KB message limit is
// not checked here; the sink enforces it before sending. Messages whose
// messageId is a canonical UUID come back as arrivals unless whole is set.
func (s *Server) parseFields(data []byte, rd *reading, at time.Time, key string, whole bool) (batch, string) {
	msgs, err := scanBatch(data, rd.scanned[:0])
	rd.scanned = msgs
	switch {
	case err != nil:
		return batch{}, "invalid JSON: " + err.Error()
	case len(msgs) > maxBatchLen:
		return batch{}, fmt.Sprintf("batch has %d messages, over %d", len(msgs), maxBatchLen)
	}
	var b batch
	b.compact = rd.arrivals[:0]
	for i := range msgs {
		f := &msgs[i]
		if problem := check(f.typ, f.event, f.messageID, f.userID, f.anonymousID); problem != "" {
			return batch{}, fmt.Sprintf("batch[%d]: %s", i, problem)
		}
		if id, ok := canonicalUUID(f.messageID); ok && !whole {
			b.compact = append(b.compact, arrival{id: id, event: f.event})
			continue
		}
		b.msgs = append(b.msgs, Received{WriteKey: key, MessageID: string(f.messageID), Event: string(f.event), At: at})
	}
	rd.arrivals = b.compact
	return b, ""
}

// canonicalUUID parses id when it is a UUID in its canonical lower-case
// form, the only one the compact form can give back (uuid.UUID.String).
func canonicalUUID(id []byte) (uuid.UUID, bool) {
	if len(id) != 36 || bytes.ContainsAny(id, "ABCDEF") {
		return uuid.UUID{}, false
	}
	u, err := uuid.ParseBytes(id)
	return u, err == nil
}

// check says what is wrong with a message's checked fields, "" if nothing.
func check[T ~string | ~[]byte](typ, event, messageID, userID, anonymousID T) string {
	switch {
	case len(typ) == 0:
		return "type is missing"
	case string(typ) == "track" && len(event) == 0:
		return "event is missing"
	case len(messageID) == 0:
		return "messageId is missing"
	case len(userID) == 0 && len(anonymousID) == 0:
		return "userId or anonymousId is required"
	}
	return ""
}

// message checks one message of a batch.
func (s *Server) message(raw json.RawMessage) (Received, string) {
	if len(raw) > maxMessageBytes {
		return Received{}, fmt.Sprintf("message is %d bytes, over %d", len(raw), maxMessageBytes)
	}
	var f fields
	if err := json.Unmarshal(raw, &f); err != nil {
		return Received{}, "invalid message: " + err.Error()
	}
	if problem := check(f.Type, f.Event, f.MessageID, f.UserID, f.AnonymousID); problem != "" {
		return Received{}, problem
	}
	// json.Unmarshal copied raw out of the body.
	return Received{MessageID: f.MessageID, Event: f.Event, UserID: f.UserID, AnonymousID: f.AnonymousID, Raw: raw}, ""
}
