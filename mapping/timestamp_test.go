package mapping

import (
	"math/rand/v2"
	"testing"
	"time"
)

func TestAppendTimestampMatchesLayout(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	lo := time.Date(1, 1, 1, 0, 0, 0, 0, time.UTC).Unix()
	hi := time.Date(9999, 12, 31, 23, 59, 59, 0, time.UTC).Unix()
	cases := []time.Time{
		time.Date(1, 1, 1, 0, 0, 0, 0, time.UTC),
		time.Date(9999, 12, 31, 23, 59, 59, 999_999_999, time.UTC),
		time.Date(2026, 11, 29, 10, 0, 0, 5_000_000, time.FixedZone("x", 5*3600+1800)),
	}
	for i := 0; i < 10000; i++ {
		cases = append(cases, time.Unix(lo+rng.Int64N(hi-lo), rng.Int64N(1e9)))
	}
	for _, ts := range cases {
		got := string(appendTimestamp(nil, ts))
		want := ts.UTC().Format(timeLayout)
		if got != want {
			t.Fatalf("appendTimestamp(%v) = %s, want %s", ts, got, want)
		}
	}
}
