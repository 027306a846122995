package integrations

import (
	"strconv"
	"strings"
	"sync"
	"testing"
	"unsafe"

	"github.com/rs/zerolog"
)

func testTable(t testing.TB, m map[string]Integration) *Table {
	t.Helper()
	tb, err := newTable(zerolog.Nop(), nil)
	if err != nil {
		t.Fatal(err)
	}
	tb.publish(m)
	return tb
}

func TestLookup(t *testing.T) {
	tb := testTable(t, map[string]Integration{
		"us":       {WriteKey: NewWriteKey("k-us"), Region: RegionUS, Active: true},
		"eu":       {WriteKey: NewWriteKey("k-eu"), Region: RegionEU, Active: true},
		"inactive": {WriteKey: NewWriteKey("k-off"), Region: RegionUS, Active: false},
		"invalid":  {},
	})
	for _, tc := range []struct {
		account    string
		wantOK     bool
		wantRegion Region
		wantKey    string
	}{
		{"us", true, RegionUS, "k-us"},
		{"eu", true, RegionEU, "k-eu"},
		{"inactive", false, RegionUS, "k-off"},
		{"invalid", false, "", ""},
		{"unknown", false, "", ""},
		{"", false, "", ""},
	} {
		for name, lookup := range map[string]func() (Integration, bool){
			"string": func() (Integration, bool) { return tb.Lookup(tc.account) },
			"bytes":  func() (Integration, bool) { return tb.LookupBytes([]byte(tc.account)) },
		} {
			it, ok := lookup()
			if ok != tc.wantOK || it.Region != tc.wantRegion || it.WriteKey.Reveal() != tc.wantKey {
				t.Errorf("Lookup%s(%q) = %v %v %v, want %v %v %v", name, tc.account, it.WriteKey.Reveal(), it.Region, ok,
					tc.wantKey, tc.wantRegion, tc.wantOK)
			}
		}
	}
	s := tb.Snapshot()
	if s.Len() != 4 || s.Count(StateActive) != 2 || s.Count(StateInactive) != 1 || s.Count(StateInvalid) != 1 {
		t.Errorf("counts: len %d, active %d, inactive %d, invalid %d; want 4, 2, 1, 1",
			s.Len(), s.Count(StateActive), s.Count(StateInactive), s.Count(StateInvalid))
	}
	noSecrets(t, []string{"k-us", "k-eu", "k-off"}, strconvQuote(s), strconvQuote(tb))
}

// TestLookupSharesAccount: every lookup of an account returns the table's
// one copy of its id, whatever string or bytes it was looked up by, so
// that comparing two of them is a pointer check (the sink's destination
// cache). An unknown account gets none.
func TestLookupSharesAccount(t *testing.T) {
	tb := testTable(t, map[string]Integration{
		"acct-1": {WriteKey: NewWriteKey("k1"), Region: RegionUS, Active: true},
		"acct-2": {WriteKey: NewWriteKey("k2"), Region: RegionEU, Active: false},
	})
	for _, account := range []string{"acct-1", "acct-2"} {
		a, _ := tb.Lookup(strings.Clone(account))
		b, _ := tb.LookupBytes([]byte(account))
		if a.Account != account || b.Account != account {
			t.Fatalf("Lookup(%q).Account = %q, LookupBytes: %q", account, a.Account, b.Account)
		}
		if unsafe.StringData(a.Account) != unsafe.StringData(b.Account) {
			t.Errorf("two lookups of %q return two copies of its id", account)
		}
		if !a.Equal(Integration{WriteKey: a.WriteKey, Region: a.Region, Active: a.Active}) {
			t.Errorf("Equal tells %q apart by its Account", account)
		}
	}
	if it, _ := tb.Lookup("nobody"); it.Account != "" {
		t.Errorf("Lookup(nobody).Account = %q, want empty", it.Account)
	}
}

func strconvQuote(v any) string { return strconv.Quote(sprint(v)) }

// TestLookupAllocatesNothing holds the per-record path to its promise.
func TestLookupAllocatesNothing(t *testing.T) {
	m := map[string]Integration{}
	for i := range 1000 {
		m["acct-"+strconv.Itoa(i)] = Integration{WriteKey: NewWriteKey("k" + strconv.Itoa(i)), Region: RegionEU, Active: true}
	}
	tb := testTable(t, m)
	key := []byte("acct-517")
	var ok bool
	for name, fn := range map[string]func(){
		"Lookup":        func() { _, ok = tb.Lookup("acct-517") },
		"LookupBytes":   func() { _, ok = tb.LookupBytes(key) },
		"LookupMissing": func() { _, ok = tb.LookupBytes([]byte("nobody")) },
	} {
		if n := testing.AllocsPerRun(1000, fn); n != 0 {
			t.Errorf("%s allocates %v times per call, want 0", name, n)
		}
	}
	_ = ok
}

// TestSnapshotSwap reads while snapshots are swapped (run with -race): a
// reader sees one whole snapshot or the next, never a mix.
func TestSnapshotSwap(t *testing.T) {
	tb := testTable(t, map[string]Integration{"a": {WriteKey: NewWriteKey("k0"), Region: RegionUS, Active: true}})
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				s := tb.Snapshot()
				a, _ := s.Lookup("a")
				b, _ := s.Lookup("b")
				if a.WriteKey.Reveal() != b.WriteKey.Reveal() && s.Len() == 2 {
					t.Errorf("one snapshot holds %s and %s", a.WriteKey.Reveal(), b.WriteKey.Reveal())
					return
				}
			}
		}()
	}
	for i := range 2000 {
		k := NewWriteKey("k" + strconv.Itoa(i))
		tb.publish(map[string]Integration{"a": {WriteKey: k, Region: RegionUS, Active: true}, "b": {WriteKey: k, Region: RegionUS, Active: true}})
	}
	close(stop)
	wg.Wait()
}

func BenchmarkLookup(b *testing.B) {
	m := map[string]Integration{}
	for i := range 100_000 {
		m[strconv.Itoa(i)] = Integration{WriteKey: NewWriteKey("k" + strconv.Itoa(i)), Region: RegionUS, Active: true}
	}
	tb := testTable(b, m)
	keys := make([][]byte, 1024)
	for i := range keys {
		keys[i] = []byte(strconv.Itoa(i * 97))
	}
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			if _, ok := tb.LookupBytes(keys[i&1023]); !ok {
				b.Fatal("not found")
			}
			i++
		}
	})
}
