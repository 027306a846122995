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
	msgs, problem := s.parse(r, at, user)
	if problem != "" {
		answer(w, http.StatusBadRequest, problem)
		return
	}
	if p.reject != nil {
		for _, m := range msgs {
			if p.reject(m) {
				answer(w, p.rejectWith, fmt.Sprintf("message %s is invalid", m.MessageID))
				return
			}
		}
	}
	for i := range msgs {
		msgs[i].Cut, msgs[i].Via = p.fault == Cut, via
	}
	s.record(msgs)
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

// parse reads and checks a batch body. It returns the messages, or why the
// whole batch is refused.
func (s *Server) parse(r *http.Request, at time.Time, key string) ([]Received, string) {
	var body io.Reader = r.Body
	switch enc := strings.ToLower(strings.TrimSpace(r.Header.Get("Content-Encoding"))); enc {
	case "", "identity":
	case "gzip":
		zr, err := gzip.NewReader(io.LimitReader(r.Body, maxBodyBytes+1))
		if err != nil {
			return nil, "invalid gzip body"
		}
		defer zr.Close()
		body = zr
	default:
		return nil, fmt.Sprintf("unsupported Content-Encoding %q", enc)
	}
	buf, _ := s.bodies.Get().(*[]byte)
	if buf == nil {
		b := make([]byte, maxBodyBytes+1)
		buf = &b
	}
	defer s.bodies.Put(buf)
	data, err := readUpTo(body, *buf)
	switch {
	case err != nil:
		return nil, "reading body: " + err.Error()
	case len(data) > maxBodyBytes:
		return nil, fmt.Sprintf("body is over %d bytes", maxBodyBytes)
	}

	if s.noBodies {
		// Benchmarks: one typed pass, no copies of the messages.
		return s.parseFields(data, at, key)
	}
	var env struct {
		Batch []json.RawMessage `json:"batch"`
	}
	if err := json.Unmarshal(data, &env); err != nil {
		return nil, "invalid JSON: " + err.Error()
	}
	switch {
	case env.Batch == nil:
		return nil, "batch is missing"
	case len(env.Batch) > maxBatchLen:
		return nil, fmt.Sprintf("batch has %d messages, over %d", len(env.Batch), maxBatchLen)
	}
	msgs := make([]Received, 0, len(env.Batch))
	for i, raw := range env.Batch {
		m, problem := s.message(raw)
		if problem != "" {
			return nil, fmt.Sprintf("batch[%d]: %s", i, problem)
		}
		m.At, m.WriteKey = at, key
		msgs = append(msgs, m)
	}
	return msgs, ""
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
// not checked here; the sink enforces it before sending.
func (s *Server) parseFields(data []byte, at time.Time, key string) ([]Received, string) {
	batch, err := scanBatch(data)
	switch {
	case err != nil:
		return nil, "invalid JSON: " + err.Error()
	case len(batch) > maxBatchLen:
		return nil, fmt.Sprintf("batch has %d messages, over %d", len(batch), maxBatchLen)
	}
	msgs := make([]Received, 0, len(batch))
	for i, f := range batch {
		if problem := f.check(); problem != "" {
			return nil, fmt.Sprintf("batch[%d]: %s", i, problem)
		}
		msgs = append(msgs, Received{WriteKey: key, MessageID: f.MessageID, Event: f.Event, At: at})
	}
	return msgs, ""
}

func (f fields) check() string {
	switch {
	case f.Type == "":
		return "type is missing"
	case f.Type == "track" && f.Event == "":
		return "event is missing"
	case f.MessageID == "":
		return "messageId is missing"
	case f.UserID == "" && f.AnonymousID == "":
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
	if problem := f.check(); problem != "" {
		return Received{}, problem
	}
	// json.Unmarshal copied raw out of the body.
	return Received{MessageID: f.MessageID, Event: f.Event, UserID: f.UserID, AnonymousID: f.AnonymousID, Raw: raw}, ""
}
