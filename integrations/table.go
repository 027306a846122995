package integrations

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
)

// Snapshot is an immutable table of integrations: once published it never
// changes, so any number of goroutines read it without locks.
type Snapshot struct {
	m      map[string]Integration // an invalid integration is stored as Integration{}
	counts [3]int                 // by state: active, inactive, invalid
}

var emptySnapshot = &Snapshot{m: map[string]Integration{}}

func newSnapshot(m map[string]Integration) *Snapshot {
	s := &Snapshot{m: m}
	for k, it := range m {
		s.counts[stateIndex(it.state())]++
		it.Account = k
		m[k] = it
	}
	return s
}

func stateIndex(s State) int {
	switch s {
	case StateActive:
		return 0
	case StateInactive:
		return 1
	}
	return 2
}

// Lookup returns the account's integration, and ok true when its records
// are to be sent: false for an unknown, removed, deactivated or invalid
// account. It takes no lock and allocates nothing.
func (s *Snapshot) Lookup(account string) (it Integration, ok bool) {
	it = s.m[account]
	return it, it.Active && !it.WriteKey.IsZero()
}

// LookupBytes is Lookup for an account id held as bytes; it does not
// allocate either (the map index converts without copying).
func (s *Snapshot) LookupBytes(account []byte) (it Integration, ok bool) {
	it = s.m[string(account)]
	return it, it.Active && !it.WriteKey.IsZero()
}

// Len returns the number of accounts in the table, in any state.
func (s *Snapshot) Len() int { return len(s.m) }

// Count returns the number of accounts in the given state.
func (s *Snapshot) Count(st State) int { return s.counts[stateIndex(st)] }

// Format prints the counts, never the table (which holds keys).
func (s *Snapshot) Format(f fmt.State, _ rune) {
	io.WriteString(f, "integrations.Snapshot{active: "+strconv.Itoa(s.counts[0])+
		", inactive: "+strconv.Itoa(s.counts[1])+", invalid: "+strconv.Itoa(s.counts[2])+"}")
}

// Table is the current snapshot of one source's integrations. Lookup and
// Ready are safe for concurrent use; Run follows the source and is called
// once.
type Table struct {
	cur    atomic.Pointer[Snapshot]
	ready  atomic.Bool
	loaded chan struct{}
	once   sync.Once
	ran    atomic.Bool

	log zerolog.Logger
	m   *metrics
	run func(ctx context.Context) error
}

func newTable(log zerolog.Logger, reg prometheus.Registerer) (*Table, error) {
	m, err := newMetrics(reg)
	if err != nil {
		return nil, err
	}
	t := &Table{loaded: make(chan struct{}), log: log, m: m}
	t.cur.Store(emptySnapshot)
	return t, nil
}

// Snapshot returns the current snapshot: one atomic load. A caller that
// looks up several accounts for one decision reads one snapshot.
func (t *Table) Snapshot() *Snapshot { return t.cur.Load() }

// Lookup is Snapshot().Lookup(account).
func (t *Table) Lookup(account string) (Integration, bool) { return t.cur.Load().Lookup(account) }

// LookupBytes is Snapshot().LookupBytes(account).
func (t *Table) LookupBytes(account []byte) (Integration, bool) {
	return t.cur.Load().LookupBytes(account)
}

// Ready reports whether the table is loaded: for a topic, read up to the
// end offsets it had when reading started; for a file, always (NewFile
// loads it). It stays true once true. /readyz is false until it is.
func (t *Table) Ready() bool { return t.ready.Load() }

// Loaded is closed when Ready turns true.
func (t *Table) Loaded() <-chan struct{} { return t.loaded }

// ErrRunTwice is returned by a second call of Run.
var ErrRunTwice = errors.New("integrations: Run called twice")

// Run follows the source until ctx is done, then returns nil. Lookups keep
// answering from the last snapshot after it returns. A source that cannot
// be read (a missing topic, a file that stopped parsing) is logged,
// counted and retried: it never ends Run.
func (t *Table) Run(ctx context.Context) error {
	if !t.ran.CompareAndSwap(false, true) {
		return ErrRunTwice
	}
	err := t.run(ctx)
	if ctx.Err() != nil {
		return nil
	}
	return err
}

// Format prints the current counts, never the table.
func (t *Table) Format(f fmt.State, verb rune) { t.cur.Load().Format(f, verb) }

// publish swaps in a new snapshot built from m, which the caller hands
// over and must not change afterwards.
func (t *Table) publish(m map[string]Integration) {
	s := newSnapshot(m)
	t.cur.Store(s)
	t.m.loaded(s)
}

// markReady turns Ready true (once).
func (t *Table) markReady() {
	t.once.Do(func() {
		t.ready.Store(true)
		t.m.ready.Set(1)
		close(t.loaded)
	})
}

// reporter logs invalid integrations, at most maxLogged per load so that a
// table of 100,000 bad values does not flood the log, and counts each.
type reporter struct {
	log     zerolog.Logger
	m       *metrics
	logged  int
	dropped int
}

const maxLogged = 20

func (r *reporter) invalid(err error) {
	r.m.errors.WithLabelValues(reasonInvalid).Inc()
	var ie *InvalidError
	if !errors.As(err, &ie) {
		return
	}
	if r.logged >= maxLogged {
		r.dropped++
		return
	}
	r.logged++
	r.log.Warn().Str("account", ie.Account).Str("problem", ie.Problem).
		Msg("invalid integration: the account is inactive until it is fixed")
}

// flush logs how many were not logged, and starts a new load.
func (r *reporter) flush() {
	if r.dropped > 0 {
		r.log.Warn().Int("more", r.dropped).Msg("more invalid integrations (not logged one by one)")
	}
	r.logged, r.dropped = 0, 0
}
