package consumer

import (
	"context"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

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

func TestDeadLetterWithoutValueSaysSo(t *testing.T) {
	src := kafka.Message{
		Topic: "produktly.interactions", Partition: 3, Offset: 42,
		Key: []byte("user-1"), Value: make([]byte, 1_048_400),
		Headers: []kafka.Header{{Key: "trace-id", Value: []byte("abc")}},
	}
	long := strings.Repeat("é", 2500) // two bytes each: the cap falls inside a character
	got := dlqMessage(dlqItem{msg: src, code: mapping.CodeTooLarge, reason: long, omit: omitValue})
	if got.Value != nil || string(got.Key) != "user-1" {
		t.Fatalf("value-omitted copy: key %q, %d value bytes; want key user-1, no value", got.Key, len(got.Value))
	}
	h := headerMap(got.Headers)
	for k, v := range map[string]string{
		"trace-id": "abc", HeaderErrorCode: "too_large", HeaderOmitted: "value", HeaderOriginalValueSize: "1048400",
		HeaderSourceTopic: "produktly.interactions", HeaderSourcePartition: "3", HeaderSourceOffset: "42",
	} {
		if h[k] != v {
			t.Errorf("header %s = %q, want %q", k, h[k], v)
		}
	}
	if n := len(h[HeaderError]); n > maxReasonBytes || !utf8.ValidString(h[HeaderError]) {
		t.Errorf("%s is %d bytes (valid UTF-8: %v), want at most %d of valid UTF-8", HeaderError, n, utf8.ValidString(h[HeaderError]), maxReasonBytes)
	}

	all := dlqMessage(dlqItem{msg: src, code: mapping.CodeTooLarge, reason: "r", omit: omitAll})
	h = headerMap(all.Headers)
	if all.Key != nil || all.Value != nil || h["trace-id"] != "" {
		t.Fatalf("fully omitted copy keeps key %q, %d value bytes, headers %v", all.Key, len(all.Value), h)
	}
	for k, v := range map[string]string{
		HeaderOmitted: "value,key,headers", HeaderOriginalValueSize: "1048400", HeaderOriginalKeySize: "6",
		HeaderSourcePartition: "3", HeaderSourceOffset: "42",
	} {
		if h[k] != v {
			t.Errorf("header %s = %q, want %q", k, h[k], v)
		}
	}
}

// A record from the retry topic carries its original coordinates; its
// dead letter keeps them rather than the retry topic's.
func TestDeadLetterKeepsOriginalCoordinates(t *testing.T) {
	src := kafka.Message{
		Topic: "produktly.interactions.retry", Partition: 0, Offset: 7, Value: []byte("{}"),
		Headers: []kafka.Header{
			{Key: HeaderSourceTopic, Value: []byte("produktly.interactions")},
			{Key: HeaderSourcePartition, Value: []byte("5")},
			{Key: HeaderSourceOffset, Value: []byte("900")},
		},
	}
	for _, omit := range []int{omitNothing, omitAll} {
		h := headerMap(dlqMessage(dlqItem{msg: src, code: mapping.CodeRejected, reason: "400", omit: omit}).Headers)
		if h[HeaderSourceTopic] != "produktly.interactions" || h[HeaderSourcePartition] != "5" || h[HeaderSourceOffset] != "900" {
			t.Errorf("omit %d: source headers %v, want the original coordinates", omit, h)
		}
	}
}

// TestLanesIsolatePartitions: while one partition's item cannot be
// written, another partition's items still are.
func TestLanesIsolatePartitions(t *testing.T) {
	type item struct {
		part int
		done chan bool
	}
	l := newLanes(func(it item) int { return it.part }, 10)
	stuck := make(chan struct{})
	work := func(ctx context.Context, batch []item) {
		for _, it := range batch {
			if it.part == 0 {
				select { // never written until released or ctx ends
				case <-stuck:
				case <-ctx.Done():
					it.done <- false
					continue
				}
			}
			it.done <- true
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan struct{})
	go func() {
		defer close(ran)
		l.run(ctx, work, func(it item) { it.done <- false })
	}()
	blocked := item{0, make(chan bool, 1)}
	l.send(blocked)
	for i := range 3 {
		it := item{1, make(chan bool, 1)}
		if !l.send(it) {
			t.Fatal("send refused while running")
		}
		select {
		case ok := <-it.done:
			if !ok {
				t.Fatalf("item %d of partition 1 not written", i)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("item %d of partition 1 waits behind partition 0", i)
		}
	}
	cancel()
	<-ran
	if ok := <-blocked.done; ok {
		t.Error("the stuck item was reported written")
	}
	late := item{2, make(chan bool, 1)}
	if l.send(late) {
		t.Error("send accepted an item after run ended")
	}
}

// The backoff between dead-letter attempts ends at once when the consumer
// stops or the record's partition is abandoned.
func TestDeadLetterBackoffEndsOnCancel(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if waitOrCancel(ctx, time.Hour, nil) {
		t.Error("waitOrCancel on an ended context reported the wait done")
	}
	abandoned := make(chan struct{})
	close(abandoned)
	done := make(chan bool, 1)
	go func() { done <- waitOrCancel(context.Background(), time.Hour, []<-chan struct{}{abandoned}) }()
	select {
	case ok := <-done:
		if !ok {
			t.Error("waitOrCancel reported the context ended; want an early return for the abandoned item")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("waitOrCancel kept waiting after the item's partition was abandoned")
	}
}

// A replayed record goes back to the partition its source headers name;
// replayed to another topic, it is left to murmur2 of its key.
func TestReplayTargetsSourcePartition(t *testing.T) {
	dead := dlqMessage(dlqItem{msg: kafka.Message{Topic: "src", Partition: 7, Offset: 3, Key: []byte("k")}, code: mapping.CodeRejected, reason: "400"})
	for _, tc := range []struct {
		to   string
		want int
	}{{"", 7}, {"src", 7}, {"elsewhere", -1}} {
		re, _, ok := replayOf(dead, tc.to)
		if !ok || re.Partition != tc.want {
			t.Errorf("replay to %q: partition %d (ok %v), want %d", tc.to, re.Partition, ok, tc.want)
		}
	}
}
