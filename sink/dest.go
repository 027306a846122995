package sink

import (
	"cmp"
	"encoding/base64"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Destination names the Segment source a message goes to. Requests carry
// one write key each, so the sink batches, paces, backs off and tracks
// health per destination. The zero Destination is the single source of
// Options (Endpoint and WriteKey).
//
// Destination is comparable and small: the sink looks it up once per
// message in a map owned by one goroutine, with no lock, so build it once
// per account (for example in an integrations snapshot) and copy it.
type Destination struct {
	// Account labels the destination in logs and Status; it is never sent.
	Account string
	// WriteKey authenticates the source. It is sent as the basic auth user
	// name and never logged, counted, put into errors or Status.
	// Empty: Options.WriteKey.
	WriteKey string
	// Endpoint is the Tracking API's base URL, for example
	// "https://events.eu1.segmentapis.com" for an EU source. Empty:
	// Options.Endpoint.
	Endpoint string
}

// String describes d without its write key.
func (d Destination) String() string {
	return fmt.Sprintf("{Account:%q Endpoint:%q}", d.Account, d.Endpoint)
}

// GoString describes d without its write key, for %#v.
func (d Destination) GoString() string { return "sink.Destination" + d.String() }

// DestinationState is what Status reports of a destination.
type DestinationState string

const (
	// StateFailing: its last attempt failed and its messages are being
	// retried.
	StateFailing DestinationState = "failing"
	// StateParked: it kept failing for longer than Options.ParkAfter (or
	// held more than Options.ParkAbove messages while failing); its
	// messages complete Parked without an attempt, except Retry ones.
	StateParked DestinationState = "parked"
)

// DestinationStatus describes one failing or parked destination. It
// carries no write key.
type DestinationStatus struct {
	Account  string
	Endpoint string
	State    DestinationState
	// Since is when its deliveries began failing (StateFailing) or when it
	// was parked (StateParked).
	Since time.Time
	// LastError is the last failure: the status or transport error and
	// the start of Segment's answer.
	LastError string
	// Waiting is how many of its messages the sink holds.
	Waiting int
}

// How long a destination that holds nothing is remembered after its last
// message: a healthy one, and a parked one (longer, so that its messages
// keep being parked at once while its records come back from the retry
// topic, whose delays reach 10 minutes).
const (
	idleAfter       = time.Minute
	parkedIdleAfter = 15 * time.Minute
)

// dest is the sink's state for one Destination. The dispatcher (batchLoop)
// owns the map of them and the fields marked as its own; the batches of a
// destination, each delivered by its own goroutine, share the rest through
// atomics and mu.
type dest struct {
	key      Destination // as the messages name it (the map key)
	account  string
	endpoint string
	// req is every request's template: its URL parsed and its headers
	// set once, shared read-only by the requests (attempt). Nil, with
	// reqErr, when the endpoint does not make a request.
	req    *http.Request
	reqErr error
	single bool // the zero Destination: never forgotten

	// Owned by the dispatcher.
	cur      *batch
	curFirst time.Time // when cur's first message was taken
	curDue   time.Time // when cur must go even if not full: Linger after curFirst
	// youngFirst is the curFirst of d's entry in the dispatcher's age
	// order (linger.go), zero if it has none.
	youngFirst time.Time
	pending    []*batch // not sealed; waiting for a send slot, oldest first
	lastUsed   time.Time
	schedAt    time.Time // its entry in the dispatcher's timer heap; zero if none
	drained    bool      // its waiting messages were parked since it was parked
	bodyHint   int       // body bytes of its last batch sent: the next one's buffer size

	live      atomic.Int32 // batches handed to a delivery goroutine, not finished
	waiting   atomic.Int64 // messages held: in cur, pending and live batches
	attn      atomic.Bool  // queued for the dispatcher's attention
	parked    atomic.Bool
	readyNs   atomic.Int64 // unix ns before which no request may start (pacing, Retry-After)
	failingNs atomic.Int64 // failingSince in unix ns, 0 when not failing: read per message

	health health

	mu           sync.Mutex
	next         time.Time // pacing: earliest start of the next request
	pausedUntil  time.Time // Retry-After
	failingSince time.Time // zero unless the last attempt failed
	lastErr      string
	parkedSince  time.Time
	parkCh       chan struct{} // closed when parked; replaced when unparked
}

// newDest builds the state of destination k, filling its blanks from o.
func (s *Segment) newDest(k Destination) *dest {
	ep := cmp.Or(k.Endpoint, s.o.Endpoint)
	key := cmp.Or(k.WriteKey, s.o.WriteKey)
	shown := ep
	if u, err := url.Parse(ep); err == nil {
		shown = u.Redacted() // an endpoint is shown in logs and Status
	}
	d := &dest{
		key:      k,
		account:  k.Account,
		endpoint: shown,
		single:   k == Destination{},
		parkCh:   make(chan struct{}),
	}
	// Segment's basic auth: the write key is the user, the password is empty.
	auth := "Basic " + base64.StdEncoding.EncodeToString([]byte(key+":"))
	d.req, d.reqErr = requestTemplate(strings.TrimRight(ep, "/")+"/v1/batch", auth)
	return d
}

// requestTemplate is the request that attempt copies for every request to
// url: net/http's transport reads a request's URL and headers and never
// writes them, so the copies share them, and no request parses the URL or
// builds its headers again (in accounts mode, with a request per 20
// records, that was a fifth of the sink's own cost per request, outside
// net/http). A Client with a cookie Jar adds to the headers: attempt then
// gives each request its own.
func requestTemplate(url, auth string) (*http.Request, error) {
	req, err := http.NewRequest(http.MethodPost, url, http.NoBody)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", auth)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "produktly-segment/"+libraryVersion)
	return req, nil
}

// lookup returns the state of destination k, creating it. Only the
// dispatcher calls it. Messages of one account tend to come in runs, so
// the last one is kept at hand: comparing strings that share their bytes
// is a pointer comparison.
func (s *Segment) lookup(k Destination) *dest {
	if s.last != nil && s.last.key == k {
		return s.last
	}
	d, ok := s.dests[k]
	if !ok {
		d = s.newDest(k)
		s.destMu.Lock()
		s.dests[k] = d
		s.destMu.Unlock()
	}
	s.last = d
	return d
}

// sweep forgets destinations that hold nothing and were not used for a
// while, so that per-destination state stays bounded by the destinations
// in use. A parked one is kept longer, so that its messages keep being
// parked at once while its account's records come back from the retry
// topic.
func (s *Segment) sweep(now time.Time) {
	for k, d := range s.dests {
		if d.single || d.cur != nil || len(d.pending) > 0 || d.live.Load() > 0 || d.waiting.Load() > 0 {
			continue
		}
		idle := now.Sub(d.lastUsed)
		if idle < s.idleAfter || d.parked.Load() && idle < s.parkedIdleAfter {
			continue
		}
		d.mu.Lock()
		if !d.failingSince.IsZero() {
			s.nFailing.Add(-1)
		}
		if d.parked.Load() {
			s.nParked.Add(-1)
		}
		d.mu.Unlock()
		s.destMu.Lock()
		delete(s.dests, k)
		s.destMu.Unlock()
		if s.last == d {
			s.last = nil
		}
	}
}

// ready reports whether a request of d may start at now.
func (d *dest) ready(now time.Time) bool { return d.readyNs.Load() <= now.UnixNano() }

// reserve takes the request slot at now if pacing and Retry-After allow.
func (d *dest) reserve(now time.Time, interval time.Duration) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	if now.Before(d.next) || now.Before(d.pausedUntil) {
		return false
	}
	d.next = now.Add(interval)
	d.publishReady()
	return true
}

// reserveRetry takes the next request slot for a retry and returns how
// long to wait for it.
func (d *dest) reserveRetry(now time.Time, interval time.Duration) time.Duration {
	d.mu.Lock()
	defer d.mu.Unlock()
	at := now
	if at.Before(d.next) {
		at = d.next
	}
	if at.Before(d.pausedUntil) {
		at = d.pausedUntil
	}
	d.next = at.Add(interval)
	d.publishReady()
	return at.Sub(now)
}

// pause makes d send nothing before until (Retry-After).
func (d *dest) pause(until time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if until.After(d.pausedUntil) {
		d.pausedUntil = until
		d.publishReady()
	}
}

func (d *dest) publishReady() {
	r := d.next
	if d.pausedUntil.After(r) {
		r = d.pausedUntil
	}
	d.readyNs.Store(r.UnixNano())
}

// succeeded records a 2xx of d: it is no longer failing, and no longer
// parked.
func (s *Segment) succeeded(d *dest) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if !d.failingSince.IsZero() {
		d.failingSince = time.Time{}
		d.failingNs.Store(0)
		s.nFailing.Add(-1)
	}
	d.lastErr = ""
	if d.parked.Load() {
		d.parked.Store(false)
		d.parkCh = make(chan struct{})
		s.nParked.Add(-1)
		s.log.Info().Str("account", d.account).Str("endpoint", d.endpoint).
			Dur("parked_for", time.Since(d.parkedSince)).Msg("destination delivers again: unparked")
	}
}

// failed records a failed attempt of d and reports whether d is (now)
// parked, so that the batch's messages complete Parked.
func (s *Segment) failed(d *dest, now time.Time, why string) bool {
	d.mu.Lock()
	if d.failingSince.IsZero() {
		d.failingSince = now
		d.failingNs.Store(now.UnixNano())
		s.nFailing.Add(1)
	}
	d.lastErr = why
	d.mu.Unlock()
	if reason := s.parkReason(d, now); reason != "" {
		s.park(d, now, reason)
	}
	return d.parked.Load()
}

// parkReason says why a failing d must be parked now, or "".
func (s *Segment) parkReason(d *dest, now time.Time) string {
	if s.o.ParkAfter == 0 && s.o.ParkAbove == 0 || d.parked.Load() {
		return ""
	}
	ns := d.failingNs.Load()
	switch {
	case ns == 0:
		return ""
	case s.o.ParkAfter > 0 && now.Sub(time.Unix(0, ns)) >= s.o.ParkAfter:
		return "failing for longer than ParkAfter"
	case s.o.ParkAbove > 0 && d.waiting.Load() > int64(s.o.ParkAbove):
		return "failing and holding more than ParkAbove messages"
	}
	return ""
}

// park parks d: its batches sleeping in a backoff wake and complete their
// messages Parked, and the dispatcher parks what it holds of d.
func (s *Segment) park(d *dest, now time.Time, reason string) {
	d.mu.Lock()
	if d.parked.Load() {
		d.mu.Unlock()
		return
	}
	d.parked.Store(true)
	d.parkedSince = now
	close(d.parkCh)
	since, last := d.failingSince, d.lastErr
	d.mu.Unlock()
	s.nParked.Add(1)
	s.log.Warn().Str("account", d.account).Str("endpoint", d.endpoint).Str("reason", reason).
		Dur("failing_for", now.Sub(since)).Int64("waiting", d.waiting.Load()).Str("last_error", last).
		Msg("destination parked: its messages complete Parked until a retried one is delivered")
	s.notify(d)
}

// parkedCh returns the channel closed when d is parked.
func (d *dest) parkedCh() <-chan struct{} {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.parkCh
}

// Status returns the destinations that are failing or parked, by account,
// for an admin endpoint. It never shows a write key.
func (s *Segment) Status() []DestinationStatus {
	s.destMu.RLock()
	defer s.destMu.RUnlock()
	var out []DestinationStatus
	for _, d := range s.dests {
		d.mu.Lock()
		st := DestinationStatus{Account: d.account, Endpoint: d.endpoint, LastError: d.lastErr, Waiting: int(d.waiting.Load())}
		switch {
		case d.parked.Load():
			st.State, st.Since = StateParked, d.parkedSince
		case !d.failingSince.IsZero():
			st.State, st.Since = StateFailing, d.failingSince
		}
		d.mu.Unlock()
		if st.State != "" {
			out = append(out, st)
		}
	}
	slices.SortFunc(out, func(a, b DestinationStatus) int {
		return cmp.Or(cmp.Compare(a.Account, b.Account), cmp.Compare(a.Endpoint, b.Endpoint))
	})
	return out
}

// notify asks the dispatcher to look at d: one of its batches finished (a
// send slot is free) or it was parked.
func (s *Segment) notify(d *dest) {
	if d.attn.CompareAndSwap(false, true) {
		s.attnMu.Lock()
		s.attn = append(s.attn, d)
		s.attnMu.Unlock()
	}
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// takeAttention returns the destinations notify queued.
func (s *Segment) takeAttention(buf []*dest) []*dest {
	s.attnMu.Lock()
	buf = append(buf[:0], s.attn...)
	clear(s.attn)
	s.attn = s.attn[:0]
	s.attnMu.Unlock()
	for _, d := range buf {
		d.attn.Store(false)
	}
	return buf
}

// wakeups is the dispatcher's timer heap: when to look at which
// destination again (a partial batch due, a pacing slot). Entries are not
// removed when they become moot; a popped entry that is not its
// destination's schedAt is skipped.
type wakeup struct {
	at time.Time
	d  *dest
}

type wakeups []wakeup

func (h *wakeups) push(w wakeup) {
	*h = append(*h, w)
	i := len(*h) - 1
	for i > 0 {
		p := (i - 1) / 2
		if !(*h)[i].at.Before((*h)[p].at) {
			break
		}
		(*h)[i], (*h)[p] = (*h)[p], (*h)[i]
		i = p
	}
}

func (h *wakeups) pop() wakeup {
	old := *h
	top := old[0]
	n := len(old) - 1
	old[0] = old[n]
	old[n] = wakeup{}
	*h = old[:n]
	i := 0
	for {
		l, r, m := 2*i+1, 2*i+2, i
		if l < n && (*h)[l].at.Before((*h)[m].at) {
			m = l
		}
		if r < n && (*h)[r].at.Before((*h)[m].at) {
			m = r
		}
		if m == i {
			return top
		}
		(*h)[i], (*h)[m] = (*h)[m], (*h)[i]
		i = m
	}
}
