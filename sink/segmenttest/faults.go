package segmenttest

import (
	"math/rand/v2"
	"net/http"
	"time"
)

// Pseudo-statuses for FailNext that are not HTTP answers.
const (
	// Hang holds the request without answering until the client gives up
	// (or the Server closes).
	Hang = -1
	// Drop closes the connection without answering.
	Drop = -2
	// Cut accepts and records the batch, then closes the connection in
	// the middle of the response headers: the client cannot tell whether
	// it was delivered, and its retry is a duplicate Segment de-duplicates.
	Cut = -3
)

// faults is the injected misbehaviour; guarded by Server.mu.
type faults struct {
	next       []int
	outage     int
	retryAfter time.Duration
	latency    time.Duration
	rate       float64
	rng        *rand.Rand
	drop       int
	reject     func(Received) bool
	rejectWith int // the status a batch holding a rejected message gets
	byKey      map[string]keyFault
}

// keyFault is a persistent fault of one write key.
type keyFault struct {
	status     int
	retryAfter time.Duration
}

// randomFaults are what SetFaultRate draws from, evenly.
var randomFaults = []int{
	http.StatusInternalServerError,
	http.StatusBadGateway,
	http.StatusServiceUnavailable,
	http.StatusTooManyRequests,
	Hang,
	Cut,
}

// FailNext makes the next requests answer these statuses, one each, in
// order. Besides HTTP statuses it takes Hang, Drop and Cut.
func (s *Server) FailNext(statuses ...int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.f.next = append(s.f.next, statuses...)
}

// SetOutage makes every request answer status (or Hang, Drop, Cut) until
// ClearOutage.
func (s *Server) SetOutage(status int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.f.outage = status
}

// ClearOutage ends an outage.
func (s *Server) ClearOutage() { s.SetOutage(0) }

// SetRetryAfter makes 429 and 503 answers carry Retry-After with d rounded
// up to whole seconds; 0 removes the header (random 429s then carry 1).
func (s *Server) SetRetryAfter(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.f.retryAfter = d
}

// SetLatency delays every answer by d.
func (s *Server) SetLatency(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.f.latency = d
}

// SetFaultRate makes a random fraction p of requests fail, evenly among 500,
// 502, 503, 429 with Retry-After, Hang and Cut. The draws come from seed, so
// a run is repeatable given the same order of requests. p = 0 turns it off.
func (s *Server) SetFaultRate(p float64, seed int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.f.rate = p
	s.f.rng = rand.New(rand.NewPCG(uint64(seed), uint64(seed)^0x9e3779b97f4a7c15))
}

// DropConnections makes the next n requests close their connection without
// an answer.
func (s *Server) DropConnections(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.f.drop += n
}

// RejectMessages makes a batch that holds a message for which bad returns
// true answer 400 as a whole, like Segment does for a bad call. nil stops.
func (s *Server) RejectMessages(bad func(Received) bool) {
	s.FailMessages(http.StatusBadRequest, bad)
}

// FailMessages makes a batch that holds a message for which bad returns
// true answer status as a whole (a retryable 503, say), while batches
// without one are served: bad decides per call, so it can fail a message
// once and let its retry through. nil stops.
func (s *Server) FailMessages(status int, bad func(Received) bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.f.reject, s.f.rejectWith = bad, status
}

// FailKey makes every request with write key key answer status (or Hang,
// Drop, Cut) until ClearKey, with Retry-After rounded up to whole seconds
// when retryAfter > 0, while requests with other keys are served: one
// account's source fails, the others do not. Scripted statuses, outages
// and random faults take precedence.
func (s *Server) FailKey(key string, status int, retryAfter time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.f.byKey == nil {
		s.f.byKey = map[string]keyFault{}
	}
	s.f.byKey[key] = keyFault{status: status, retryAfter: retryAfter}
}

// ClearKey ends FailKey's fault of key.
func (s *Server) ClearKey(key string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.f.byKey, key)
}

// plan is what the handler must do with one request.
type plan struct {
	fault      int // 0, an HTTP status, Hang, Drop or Cut
	latency    time.Duration
	retryAfter time.Duration
	reject     func(Received) bool
	rejectWith int
}

// nextPlan counts the request and draws its fault, in order of precedence:
// dropped connections, scripted statuses, outage, random faults.
func (s *Server) nextPlan(key string) plan {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.requests++
	s.byKey[key]++
	p := plan{latency: s.f.latency, retryAfter: s.f.retryAfter, reject: s.f.reject, rejectWith: s.f.rejectWith}
	switch {
	case s.f.drop > 0:
		s.f.drop--
		p.fault = Drop
	case len(s.f.next) > 0:
		p.fault = s.f.next[0]
		s.f.next = s.f.next[1:]
	case s.f.outage != 0:
		p.fault = s.f.outage
	case s.f.rate > 0 && s.f.rng.Float64() < s.f.rate:
		p.fault = randomFaults[s.f.rng.IntN(len(randomFaults))]
		if p.fault == http.StatusTooManyRequests && p.retryAfter <= 0 {
			p.retryAfter = time.Second
		}
	default:
		if kf, ok := s.f.byKey[key]; ok {
			p.fault, p.retryAfter = kf.status, kf.retryAfter
		}
	}
	return p
}
