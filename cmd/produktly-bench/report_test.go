package main

import (
	"math/rand/v2"
	"testing"
	"time"
)

func TestSummariseMedianAndSpread(t *testing.T) {
	rs := []result{
		{records: 1000, elapsed: time.Second, cpu: 3 * time.Millisecond},
		{records: 1000, elapsed: time.Second, cpu: 1 * time.Millisecond},
		{records: 1000, elapsed: time.Second, cpu: 2 * time.Millisecond},
	}
	got := summarise(rs, func(r result) float64 { return r.cpuPerRecord() })
	if want := (summary{median: 2, min: 1, max: 3}); !approx(got, want) {
		t.Errorf("odd runs: got %+v, want %+v", got, want)
	}
	got = summarise(rs[:2], func(r result) float64 { return r.cpuPerRecord() })
	if want := (summary{median: 2, min: 1, max: 3}); !approx(got, want) {
		t.Errorf("even runs: got %+v, want %+v", got, want)
	}
}

func approx(a, b summary) bool {
	near := func(x, y float64) bool { return x-y < 1e-9 && y-x < 1e-9 }
	return near(a.median, b.median) && near(a.min, b.min) && near(a.max, b.max)
}

// The busiest of 1,000 Zipf (s = 1) accounts has 1/H(1000) ≈ 13.4 % of
// the records, the second half of that, and every account gets some.
func TestZipfVolumes(t *testing.T) {
	z := newZipf(1000, 1)
	rng := rand.New(rand.NewPCG(1, 2))
	counts := make([]int, 1000)
	const n = 1_000_000
	for range n {
		counts[z.draw(rng)]++
	}
	if share := float64(counts[0]) / n; share < 0.128 || share > 0.140 {
		t.Errorf("busiest account's share %.3f, want ≈ 0.134", share)
	}
	if ratio := float64(counts[0]) / float64(counts[1]); ratio < 1.9 || ratio > 2.1 {
		t.Errorf("first ÷ second account %.2f, want ≈ 2", ratio)
	}
	for i, c := range counts {
		if c == 0 {
			t.Fatalf("account %d got no records", i)
		}
	}
}
