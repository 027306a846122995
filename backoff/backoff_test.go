package backoff

import (
	"context"
	"testing"
	"time"
)

func TestCeilingDoublesAndCaps(t *testing.T) {
	p := Policy{Base: 100 * time.Millisecond, Max: 30 * time.Second}
	for _, tc := range []struct {
		attempt int
		want    time.Duration
	}{
		{-1, 100 * time.Millisecond},
		{0, 100 * time.Millisecond},
		{1, 200 * time.Millisecond},
		{8, 25600 * time.Millisecond},
		{9, 30 * time.Second},
		{40, 30 * time.Second},
		{63, 30 * time.Second},
		{1000, 30 * time.Second},
	} {
		if got := p.Ceiling(tc.attempt); got != tc.want {
			t.Errorf("Ceiling(%d) = %v, want %v", tc.attempt, got, tc.want)
		}
	}
}

func TestDelayStaysInRange(t *testing.T) {
	for _, p := range []Policy{
		{Base: 100 * time.Millisecond, Max: 30 * time.Second, Jitter: 0.5},
		{Base: 5 * time.Second, Max: 10 * time.Minute, Jitter: 0.8},
		{Base: time.Second, Max: time.Minute, Jitter: 0},
		{Base: time.Second, Max: time.Minute, Jitter: 1},
	} {
		for attempt := range 20 {
			lo, hi := p.Range(attempt)
			if want := p.Ceiling(attempt); hi != want {
				t.Fatalf("%+v: Range(%d) hi = %v, want the ceiling %v", p, attempt, hi, want)
			}
			if wantLo := hi - time.Duration(float64(hi)*p.Jitter); lo != wantLo {
				t.Fatalf("%+v: Range(%d) lo = %v, want %v", p, attempt, lo, wantLo)
			}
			seenLow, seenHigh := false, false
			for range 2000 {
				d := p.Delay(attempt)
				if d < lo || d > hi {
					t.Fatalf("%+v: Delay(%d) = %v, outside [%v, %v]", p, attempt, d, lo, hi)
				}
				seenLow = seenLow || d < lo+(hi-lo)/4
				seenHigh = seenHigh || d > hi-(hi-lo)/4
			}
			if hi > lo && (!seenLow || !seenHigh) {
				t.Fatalf("%+v: Delay(%d) is not spread over [%v, %v]", p, attempt, lo, hi)
			}
		}
	}
}

func TestSleepEndsWithContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := Sleep(ctx, time.Hour); err != context.Canceled {
		t.Fatalf("Sleep on a cancelled context = %v, want context.Canceled", err)
	}
	if err := Sleep(context.Background(), time.Millisecond); err != nil {
		t.Fatalf("Sleep = %v, want nil", err)
	}
}
