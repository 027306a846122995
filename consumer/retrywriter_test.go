package consumer

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/segmentio/kafka-go"
)

// TestRetryDelaySchedule: the first park waits 1–5 s, each further park's
// range doubles, and no wait exceeds 10 minutes.
func TestRetryDelaySchedule(t *testing.T) {
	for _, tc := range []struct {
		attempt int
		lo, hi  time.Duration
	}{
		{1, time.Second, 5 * time.Second},
		{2, 2 * time.Second, 10 * time.Second},
		{3, 4 * time.Second, 20 * time.Second},
		{7, 64 * time.Second, 320 * time.Second},
		{8, 2 * time.Minute, 10 * time.Minute}, // 640 s capped at 600 s
		{30, 2 * time.Minute, 10 * time.Minute},
		{1 << 20, 2 * time.Minute, 10 * time.Minute},
	} {
		lo, hi := retrySchedule.Range(tc.attempt - 1)
		if lo != tc.lo || hi != tc.hi {
			t.Errorf("attempt %d: range [%v, %v], want [%v, %v]", tc.attempt, lo, hi, tc.lo, tc.hi)
		}
		for range 1000 {
			if d := retryDelay(tc.attempt); d < tc.lo || d > tc.hi {
				t.Fatalf("retryDelay(%d) = %v, outside [%v, %v]", tc.attempt, d, tc.lo, tc.hi)
			}
		}
	}
}

func TestRetryMessageFirstPark(t *testing.T) {
	now := time.Date(2026, 12, 1, 10, 0, 0, 0, time.FixedZone("CET", 3600))
	at := time.Date(2026, 11, 29, 10, 0, 0, 0, time.UTC)
	src := kafka.Message{
		Topic: "produktly.interactions", Partition: 4, Offset: 1234, Time: at,
		Key: []byte("user-1"), Value: []byte(`{"type":"tour_start"}`),
		Headers: []kafka.Header{{Key: "traceparent", Value: []byte("00-abc-01")}},
	}
	got := retryMessage(src, "acct-42", now)
	if string(got.Key) != "user-1" || string(got.Value) != `{"type":"tour_start"}` || !got.Time.Equal(at) || got.Topic != "" {
		t.Fatalf("retry copy changed the record: topic %q key %q value %q time %v", got.Topic, got.Key, got.Value, got.Time)
	}
	h := headerMap(got.Headers)
	for k, v := range map[string]string{
		"traceparent": "00-abc-01", HeaderRetryAccount: "acct-42", HeaderRetryAttempt: "1",
		HeaderSourceTopic: "produktly.interactions", HeaderSourcePartition: "4", HeaderSourceOffset: "1234",
	} {
		if h[k] != v {
			t.Errorf("header %s = %q, want %q", k, h[k], v)
		}
	}
	if len(got.Headers) != 7 {
		t.Errorf("%d headers, want 7: %v", len(got.Headers), h)
	}
	nb := h[HeaderRetryNotBefore]
	if !strings.HasSuffix(nb, "Z") {
		t.Errorf("%s = %q, want UTC with Z", HeaderRetryNotBefore, nb)
	}
	when, err := time.Parse(time.RFC3339, nb)
	if err != nil {
		t.Fatalf("%s = %q is not RFC 3339: %v", HeaderRetryNotBefore, nb, err)
	}
	if d := when.Sub(now); d < time.Second || d > 5*time.Second {
		t.Errorf("first park not before now + %v, want 1–5 s", d)
	}
	account, attempt, notBefore, ok := retryInfo(kafka.Message{Headers: got.Headers})
	if !ok || account != "acct-42" || attempt != 1 || !notBefore.Equal(when) {
		t.Errorf("retryInfo = %q %d %v %v, want acct-42 1 %v true", account, attempt, notBefore, ok, when)
	}
}

// A record consumed from the retry topic and parked again keeps its
// original coordinates (not the retry topic's) and counts one more
// attempt, with one set of retry headers.
func TestRetryMessageParkedAgain(t *testing.T) {
	now := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	first := retryMessage(kafka.Message{Topic: "src", Partition: 2, Offset: 77, Key: []byte("k"), Value: []byte("v")}, "a", now)
	fetched := first
	fetched.Topic, fetched.Partition, fetched.Offset = "src.retry", 0, 5
	again := retryMessage(fetched, "a", now)
	h := headerMap(again.Headers)
	if h[HeaderSourceTopic] != "src" || h[HeaderSourcePartition] != "2" || h[HeaderSourceOffset] != "77" {
		t.Errorf("coordinates %s/%s/%s, want the original src/2/77", h[HeaderSourceTopic], h[HeaderSourcePartition], h[HeaderSourceOffset])
	}
	if h[HeaderRetryAttempt] != "2" {
		t.Errorf("attempt %q, want 2", h[HeaderRetryAttempt])
	}
	if len(again.Headers) != len(first.Headers) {
		t.Errorf("parked again with %d headers, first park had %d: %v", len(again.Headers), len(first.Headers), h)
	}
	when, _ := time.Parse(time.RFC3339, h[HeaderRetryNotBefore])
	if d := when.Sub(now); d < 2*time.Second || d > 10*time.Second {
		t.Errorf("second park not before now + %v, want 2–10 s", d)
	}
	if topic, p, o := origin(fetched); topic != "src" || p != 2 || o != 77 {
		t.Errorf("origin of the retry-topic record = %s/%d/%d, want src/2/77", topic, p, o)
	}
	if topic, p, o := origin(kafka.Message{Topic: "src", Partition: 1, Offset: 9}); topic != "src" || p != 1 || o != 9 {
		t.Errorf("origin of a plain record = %s/%d/%d, want its own coordinates", topic, p, o)
	}
}

func TestParkAfterStopIsAbandoned(t *testing.T) {
	m, err := newMetrics(nil)
	if err != nil {
		t.Fatal(err)
	}
	o := Options{Brokers: []string{"127.0.0.1:1"}, Topic: "src"}.WithDefaults()
	r := newRetryWriter(o, zerolog.Nop(), m)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := r.run(ctx); err != nil {
		t.Fatal(err)
	}
	got := make(chan error, 1)
	r.park(kafka.Message{Topic: "src"}, "a", nil, func(err error) { got <- err })
	if err := <-got; !errors.Is(err, ErrParkAbandoned) {
		t.Fatalf("park after run ended: %v, want ErrParkAbandoned", err)
	}
}
