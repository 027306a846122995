package timestamp

import (
	"math/rand/v2"
	"testing"
	"time"
)

// Append writes what time's own formatting writes with Layout, in UTC,
// over the whole range of years a call can carry: at the edges, at the
// leap days, at random milliseconds and at random nanoseconds (cut, not
// rounded), whatever the time's zone.
func TestAppendMatchesLayout(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	lo := time.Date(1, 1, 1, 0, 0, 0, 0, time.UTC).UnixMilli()
	hi := time.Date(9999, 12, 31, 23, 59, 59, 999e6, time.UTC).UnixMilli()
	cases := []time.Time{
		time.Date(9999, 12, 31, 23, 59, 59, 999_999_999, time.UTC),
		time.Date(2026, 11, 29, 10, 0, 0, 5_000_000, time.FixedZone("x", 5*3600+1800)),
		time.Date(2026, 12, 6, 23, 59, 59, 999_999_999, time.FixedZone("CEST", 2*3600)),
	}
	for _, ms := range []int64{lo, hi, 0, -1, 1, 951782400000, 951868800000, 4107542400000, -62135596800000 + 86400000*59} {
		cases = append(cases, time.UnixMilli(ms))
	}
	for range 300_000 {
		cases = append(cases, time.UnixMilli(lo+rng.Int64N(hi-lo+1)))
	}
	for range 10_000 {
		cases = append(cases, time.Unix(lo/1000+rng.Int64N((hi-lo)/1000), rng.Int64N(1e9)))
	}
	for _, tm := range cases {
		got := Append(nil, tm)
		if want := tm.UTC().Format(Layout); string(got) != want || len(got) != Width {
			t.Fatalf("Append(%v) = %s (%d bytes), want %s (%d)", tm, got, len(got), want, Width)
		}
	}
}

// BenchmarkAppend writes times 37 ms apart, so that the seconds, minutes
// and days change as they do in a backlog.
func BenchmarkAppend(b *testing.B) {
	t0 := time.Date(2026, 11, 29, 10, 0, 7, 890e6, time.UTC)
	buf := make([]byte, 0, Width)
	for i := 0; i < b.N; i++ {
		buf = Append(buf[:0], t0.Add(time.Duration(i)*37*time.Millisecond))
	}
	if len(buf) != Width {
		b.Fatalf("appended %d bytes, want %d", len(buf), Width)
	}
}
