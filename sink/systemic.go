package sink

import "sync"

// systemic tells a systemic 400 from bad calls. Segment answers 400 for a
// call that breaks its rules, and the sink rejects such a call once it has
// it alone in a request. But a proxy or an envelope bug can answer 400 to
// every request, and then every call would be rejected and dead-lettered.
// So when SystemicRejects single-call requests in a row, for distinct
// calls and with no success in between, were answered 400, the sink calls
// it an outage: it keeps the calls and retries them with backoff, reports
// unhealthy, and sets the systemic_rejection gauge, until a request
// succeeds.
type systemic struct {
	limit int // Options.SystemicRejects

	mu     sync.Mutex
	streak int    // single-call 400s in a row since the last success
	lastID string // the call of the last one, so a retried call counts once
	on     bool
}

// rejected records a 400 for a request that carried the call id alone. It
// reports whether that makes (or keeps) the 400s an outage, in which case
// the call must be retried, not rejected.
func (y *systemic) rejected(id string) bool {
	y.mu.Lock()
	defer y.mu.Unlock()
	if y.on {
		return true
	}
	if id != y.lastID || y.streak == 0 {
		y.streak++
		y.lastID = id
	}
	if y.streak >= y.limit {
		y.on = true
	}
	return y.on
}

// delivered records a 2xx: Segment takes calls, so 400s are about calls.
func (y *systemic) delivered() {
	y.mu.Lock()
	defer y.mu.Unlock()
	y.streak, y.lastID, y.on = 0, "", false
}

// active reports whether 400s are being treated as an outage.
func (y *systemic) active() bool {
	y.mu.Lock()
	defer y.mu.Unlock()
	return y.on
}
