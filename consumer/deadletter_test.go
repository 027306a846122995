package consumer

import (
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/produktly/produktly-segment/mapping"
)

func headerMap(hs []kafka.Header) map[string]string {
	m := map[string]string{}
	for _, h := range hs {
		m[h.Key] = string(h.Value)
	}
	return m
}

func TestDeadLetterMessageKeepsRecordAndAddsContractHeaders(t *testing.T) {
	at := time.Date(2026, 11, 29, 10, 0, 0, 0, time.UTC)
	src := kafka.Message{
		Topic: "produktly.interactions", Partition: 3, Offset: 42, Time: at,
		Key: []byte("user-1"), Value: []byte(`{"type":"tour_start"}`),
		Headers: []kafka.Header{{Key: "trace-id", Value: []byte("abc")}},
	}
	got := dlqMessage(dlqItem{msg: src, code: mapping.CodeMissingProperty, reason: "missing_property: tour_id: required"})
	if string(got.Key) != "user-1" || string(got.Value) != `{"type":"tour_start"}` || !got.Time.Equal(at) {
		t.Fatalf("dead-letter copy changed the record: key %q value %q time %v", got.Key, got.Value, got.Time)
	}
	if got.Topic != "" {
		t.Errorf("Topic = %q, want empty (the writer names the dead-letter topic)", got.Topic)
	}
	h := headerMap(got.Headers)
	want := map[string]string{
		"trace-id":            "abc",
		HeaderErrorCode:       "missing_property",
		HeaderError:           "missing_property: tour_id: required",
		HeaderSourceTopic:     "produktly.interactions",
		HeaderSourcePartition: "3",
		HeaderSourceOffset:    "42",
	}
	for k, v := range want {
		if h[k] != v {
			t.Errorf("header %s = %q, want %q", k, h[k], v)
		}
	}
	if len(got.Headers) != len(want) {
		t.Errorf("got %d headers, want %d", len(got.Headers), len(want))
	}
}

func TestReplayRoundTrip(t *testing.T) {
	at := time.Date(2026, 11, 29, 10, 0, 0, 0, time.UTC)
	src := kafka.Message{
		Topic: "a.b/c", Partition: 5, Offset: 77, Time: at, Key: []byte("k"), Value: []byte("v"),
		Headers: []kafka.Header{{Key: "trace-id", Value: []byte("abc")}},
	}
	dead := dlqMessage(dlqItem{msg: src, code: mapping.CodeRejected, reason: "status 400"})
	re, code, ok := replayOf(dead, "")
	if !ok || code != "rejected" {
		t.Fatalf("replayOf = code %q ok %v, want rejected true", code, ok)
	}
	if re.Topic != "a.b/c" || string(re.Key) != "k" || string(re.Value) != "v" || !re.Time.Equal(at) {
		t.Fatalf("replayed record = topic %q key %q value %q time %v", re.Topic, re.Key, re.Value, re.Time)
	}
	h := headerMap(re.Headers)
	if h["trace-id"] != "abc" || h[HeaderReplayedFrom] != "a.b/c/5/77" || len(h) != 2 {
		t.Fatalf("replayed headers = %v, want trace-id and %s only", h, HeaderReplayedFrom)
	}
	re.Partition, re.Offset = 0, 900 // where it landed
	topic, part, off, ok := replayOrigin(re)
	if !ok || topic != "a.b/c" || part != 5 || off != 77 {
		t.Fatalf("replayOrigin = %q %d %d %v, want a.b/c 5 77 true", topic, part, off, ok)
	}

	// Dead-lettered again after the replay, then replayed again: the first
	// origin stays, so the messageId stays.
	re.Topic = "a.b/c"
	dead2 := dlqMessage(dlqItem{msg: re, code: mapping.CodeRejected, reason: "status 400"})
	re2, _, ok := replayOf(dead2, "other")
	if !ok || re2.Topic != "other" {
		t.Fatalf("second replay: ok %v topic %q", ok, re2.Topic)
	}
	if got := headerMap(re2.Headers)[HeaderReplayedFrom]; got != "a.b/c/5/77" {
		t.Fatalf("second replay origin = %q, want a.b/c/5/77", got)
	}
	if n := len(re2.Headers); n != 2 {
		t.Fatalf("second replay has %d headers, want 2: %v", n, headerMap(re2.Headers))
	}
}

func TestReplaySkipsForeignRecords(t *testing.T) {
	if _, _, ok := replayOf(kafka.Message{Value: []byte("x")}, ""); ok {
		t.Fatal("a record without dead-letter headers was accepted for replay")
	}
	if _, _, _, ok := replayOrigin(kafka.Message{Headers: []kafka.Header{{Key: HeaderReplayedFrom, Value: []byte("t/x/1")}}}); ok {
		t.Fatal("a malformed replay origin was accepted")
	}
}
