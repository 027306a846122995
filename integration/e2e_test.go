package integration

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/produktly/produktly-segment/consumer"
	"github.com/produktly/produktly-segment/mapping"
	"github.com/produktly/produktly-segment/sink/segmenttest"
)

// goodCase is a record the service must deliver, and the Segment call the
// contract says it becomes.
type goodCase struct {
	name      string
	value     string
	event     string
	userID    string
	anonID    string
	props     string    // the expected properties, as JSON
	timestamp time.Time // zero: the Kafka record's timestamp
	digits    []string  // number literals that must arrive digit for digit
}

// badCase is a record the service must dead-letter with code.
type badCase struct {
	name  string
	key   []byte
	value []byte
	code  mapping.Code
	field string // the produktly-error header must name it ("" = not checked)
}

// TestEndToEndAllEvents runs the service on one realistic record of each of
// the 14 events and one bad record per contract error code, spread over a
// keyed 4-partition topic, and checks the Segment calls field by field and
// the dead-letter copies header by header against the contract.
func TestEndToEndAllEvents(t *testing.T) {
	t.Parallel()
	pl := newPipeline(t, 4)
	const rejectedUser = "user-segment-rejects-this-one"
	pl.seg.RejectMessages(func(m segmenttest.Received) bool { return m.UserID == rejectedUser })

	const anon = "6f1c2a9e-3b7d-4e15-9c0a-2d8f4b6e1a37"
	ts := func(s string) time.Time {
		v, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	good := []goodCase{
		{name: "tour_available", event: "Tour Available", anonID: anon,
			value:     `{"type":"tour_available","id":"int_01JDX3KF0A","anonymousId":"` + anon + `","timestamp":"2026-11-29T10:00:00.000Z","tourId":"tour_onboarding_v3","companyId":"acme-42"}`,
			props:     `{"tour_id":"tour_onboarding_v3","company_id":"acme-42"}`,
			timestamp: ts("2026-11-29T10:00:00Z")},
		{name: "tour_start camelCase type, big integer id, epoch ms", event: "Tour Start", userID: "user-8812",
			value:     `{"type":"tourStart","userId":"user-8812","timestamp":1764410400123,"tourId":123456789012345678901,"locale":"en-GB"}`,
			props:     `{"tour_id":123456789012345678901,"locale":"en-GB"}`,
			timestamp: time.UnixMilli(1764410400123), digits: []string{"123456789012345678901"}},
		{name: "tour_auto_start spaced type, snake_case fields, no timestamp", event: "Tour Auto Start", userID: "user-8813",
			value: `{"type":"Tour Auto Start","user_id":"user-8813","tour_id":"tour_pricing","empty":"","gone":null,"plan_tier":"growth"}`,
			props: `{"tour_id":"tour_pricing","plan_tier":"growth"}`},
		{name: "tour_continue upper-case type, integer id", event: "Tour Continue", userID: "user-8814",
			value:     `{"type":"TOUR-CONTINUE","userId":"user-8814","timestamp":"2026-11-29T11:30:15.5+01:00","tourId":42,"stepCount":7}`,
			props:     `{"tour_id":42,"step_count":7}`,
			timestamp: ts("2026-11-29T10:30:15.5Z")},
		{name: "tour_finish both identities", event: "Tour Finish", userID: "user-8815", anonID: anon,
			value:     `{"type":"tour_finish","userId":"user-8815","anonymousId":"` + anon + `","timestamp":"2026-11-29T10:05:00.250Z","tourId":"tour_onboarding_v3","durationMs":183000}`,
			props:     `{"tour_id":"tour_onboarding_v3","duration_ms":183000}`,
			timestamp: ts("2026-11-29T10:05:00.250Z")},
		{name: "tour_step", event: "Tour Step", userID: "user-8812",
			value:     `{"type":"tour_step","id":"int_01JDX3KH2G","userId":"user-8812","timestamp":"2026-11-29T10:00:07.890Z","tourId":"tour_onboarding_v3","metadata":{"stepIndex":2,"type":"next","stepTitle":"Create your first report","elementSelector":"#new-report"},"companyId":"acme-42"}`,
			props:     `{"tour_id":"tour_onboarding_v3","metadata":{"stepIndex":2,"type":"next","stepTitle":"Create your first report","elementSelector":"#new-report"},"company_id":"acme-42"}`,
			timestamp: ts("2026-11-29T10:00:07.890Z")},
		{name: "checklist_step_completed integer stepId", event: "Checklist Step Completed", anonID: anon,
			value:     `{"type":"checklistStepCompleted","anonymousId":"` + anon + `","timestamp":"2026-11-29T10:15:00.000Z","checklistId":"cl_getting_started","metadata":{"stepId":7,"completedVia":"auto"}}`,
			props:     `{"checklist_id":"cl_getting_started","metadata":{"stepId":7,"completedVia":"auto"}}`,
			timestamp: ts("2026-11-29T10:15:00Z")},
		{name: "checklist_finished nested extra object", event: "Checklist Finished", userID: "user-8816",
			value:     `{"type":"checklist_finished","userId":"user-8816","timestamp":"2026-11-29T10:20:00.000Z","checklistId":"cl_getting_started","plan":{"name":"growth","seatCount":12,"addOns":["sso","audit"]}}`,
			props:     `{"checklist_id":"cl_getting_started","plan":{"name":"growth","seatCount":12,"addOns":["sso","audit"]}}`,
			timestamp: ts("2026-11-29T10:20:00Z")},
		{name: "smart_tip_available id above 2^53", event: "Smart Tip Available", userID: "user-8817",
			value:     `{"type":"smart_tip_available","userId":"user-8817","timestamp":"2026-11-29T10:21:00.000Z","smartTipId":9007199254740993}`,
			props:     `{"smart_tip_id":9007199254740993}`,
			timestamp: ts("2026-11-29T10:21:00Z"), digits: []string{"9007199254740993"}},
		{name: "smart_tip_open pascal type", event: "Smart Tip Open", userID: "user-8817",
			value:     `{"type":"SmartTipOpen","userId":"user-8817","timestamp":"2026-11-29T10:21:05.000Z","smartTipId":"tip_export_csv","trigger":"hover"}`,
			props:     `{"smart_tip_id":"tip_export_csv","trigger":"hover"}`,
			timestamp: ts("2026-11-29T10:21:05Z")},
		{name: "announcement_shown", event: "Announcement Shown", userID: "user-8818",
			value:     `{"type":"announcement_shown","id":"int_01JDX3KM9Z","userId":"user-8818","timestamp":"2026-11-29T10:30:00.000Z","announcementId":"ann_release_4_2","channel":"modal"}`,
			props:     `{"announcement_id":"ann_release_4_2","channel":"modal"}`,
			timestamp: ts("2026-11-29T10:30:00Z")},
		{name: "announcement_action_clicked", event: "Announcement Action Clicked", userID: "user-8818",
			value:     `{"type":"announcement_action_clicked","userId":"user-8818","timestamp":"2026-11-29T10:30:04.000Z","announcementId":"ann_release_4_2","actionUrl":"https://example.com/changelog","buttonLabel":"Read more"}`,
			props:     `{"announcement_id":"ann_release_4_2","action_url":"https://example.com/changelog","button_label":"Read more"}`,
			timestamp: ts("2026-11-29T10:30:04Z")},
		{name: "announcement_closed integer id", event: "Announcement Closed", anonID: anon,
			value:     `{"type":"announcement_closed","anonymousId":"` + anon + `","timestamp":"2026-11-29T10:30:09.000Z","announcementId":314}`,
			props:     `{"announcement_id":314}`,
			timestamp: ts("2026-11-29T10:30:09Z")},
		{name: "nps_widget_shown", event: "Nps Widget Shown", userID: "user-8819",
			value:     `{"type":"nps_widget_shown","userId":"user-8819","timestamp":"2026-11-29T10:40:00.000Z","npsWidgetId":"nps_q4_2026","companyId":"acme-42","isTrial":false}`,
			props:     `{"nps_widget_id":"nps_q4_2026","company_id":"acme-42","is_trial":false}`,
			timestamp: ts("2026-11-29T10:40:00Z")},
	}
	if len(good) != len(events) {
		t.Fatalf("%d good cases, want one per event (%d)", len(good), len(events))
	}
	bad := []badCase{
		{name: "truncated json", key: []byte("user-9001"), code: mapping.CodeInvalidJSON,
			value: []byte(`{"type":"tour_start","userId":"user-9001","tourId":`)},
		{name: "not utf-8", key: []byte("user-9002"), code: mapping.CodeInvalidJSON,
			value: []byte("{\"type\":\"tour_start\",\"userId\":\"user-\xff\xfe9002\",\"tourId\":\"tour_a\"}")},
		{name: "array, no key", key: nil, code: mapping.CodeInvalidJSON,
			value: []byte(`[{"type":"tour_start","userId":"user-9003","tourId":"tour_a"}]`)},
		{name: "unknown event", key: []byte("user-9004"), code: mapping.CodeUnknownEvent, field: "type",
			value: []byte(`{"type":"tour_exploded","userId":"user-9004","tourId":"tour_a"}`)},
		{name: "missing property", key: []byte("user-9005"), code: mapping.CodeMissingProperty, field: "tour_id",
			value: []byte(`{"type":"tour_start","userId":"user-9005","timestamp":"2026-11-29T10:00:00Z"}`)},
		{name: "invalid property", key: []byte("user-9006"), code: mapping.CodeInvalidProperty, field: "stepIndex",
			value: []byte(`{"type":"tour_step","userId":"user-9006","tourId":"tour_a","metadata":{"stepIndex":-1,"type":"next"}}`)},
		{name: "missing identity", key: []byte("user-9007"), code: mapping.CodeMissingIdentity, field: "user",
			value: []byte(`{"type":"tour_start","tourId":"tour_a","timestamp":"2026-11-29T10:00:00Z"}`)},
		{name: "invalid timestamp", key: []byte("user-9008"), code: mapping.CodeInvalidTimestamp, field: "timestamp",
			value: []byte(`{"type":"tour_start","userId":"user-9008","tourId":"tour_a","timestamp":"yesterday at noon"}`)},
		{name: "too large", key: []byte("user-9009"), code: mapping.CodeTooLarge,
			value: []byte(`{"type":"tour_start","userId":"user-9009","tourId":"tour_a","notes":"` + strings.Repeat("lorem ipsum ", 3000) + `"}`)},
		{name: "rejected by segment", key: []byte(rejectedUser), code: mapping.CodeRejected,
			value: []byte(`{"type":"tour_start","userId":"` + rejectedUser + `","tourId":"tour_a","timestamp":"2026-11-29T10:00:00Z"}`)},
	}

	// One Kafka timestamp for every record, so the record without its own
	// timestamp has a known one.
	kafkaTime := time.Date(2026, 11, 28, 23, 59, 58, 765e6, time.UTC)
	var msgs []kafka.Message
	for i, c := range good {
		msgs = append(msgs, kafka.Message{
			Key:   []byte(fmt.Sprintf("user-%d", 8800+i)),
			Value: []byte(c.value),
			Time:  kafkaTime,
			Headers: []kafka.Header{
				{Key: "x-case", Value: []byte(c.name)},
				{Key: "traceparent", Value: []byte("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")},
			},
		})
	}
	for _, c := range bad {
		msgs = append(msgs, kafka.Message{
			Key:   c.key,
			Value: c.value,
			Time:  kafkaTime,
			Headers: []kafka.Header{
				{Key: "x-case", Value: []byte(c.name)},
				{Key: "x-binary", Value: []byte{0, 0xff, 0x10}},
			},
		})
	}
	produce(t, pl.topic, msgs)

	p := pl.start("member", nil)
	pl.waitDistinct(len(good), 90*time.Second)
	waitFor(t, 60*time.Second, fmt.Sprintf("%d dead-lettered records", len(bad)),
		func() bool { return pl.dlqCount() >= int64(len(bad)) },
		func() string { return fmt.Sprintf("%d in the dead-letter topic", pl.dlqCount()) })
	waitCommitted(t, pl.group, pl.topic, pl.partitions, 60*time.Second)
	if n := pl.dlqCount(); n != int64(len(bad)) {
		t.Errorf("dead-letter topic holds %d records, want %d", n, len(bad))
	}

	// Where each record landed, by case.
	src := map[string]kafka.Message{}
	for _, m := range readTopic(t, pl.topic, pl.partitions) {
		c, _ := header(m, "x-case")
		src[c] = m
	}

	byUser := map[string]bool{}
	received := map[string][]segmenttest.Received{}
	for _, r := range pl.seg.Messages() {
		received[r.MessageID] = append(received[r.MessageID], r)
		byUser[r.UserID] = true
	}
	if byUser[rejectedUser] {
		t.Errorf("Segment accepted a message of %s, which it rejects", rejectedUser)
	}
	if len(received) != len(good) {
		t.Errorf("Segment holds %d distinct messageIds, want %d", len(received), len(good))
	}
	ids := map[string]string{}
	for _, c := range good {
		m, ok := src[c.name]
		if !ok {
			t.Fatalf("record %q not found in the source topic", c.name)
		}
		want, err := mapping.Map(mapping.Record{Topic: m.Topic, Partition: m.Partition, Offset: m.Offset, Time: m.Time, Value: m.Value})
		if err != nil {
			t.Fatalf("%s: mapping.Map: %v", c.name, err)
		}
		if other, dup := ids[want.MessageID]; dup {
			t.Errorf("%s and %s share messageId %s", c.name, other, want.MessageID)
		}
		ids[want.MessageID] = c.name
		copies := received[want.MessageID]
		if len(copies) == 0 {
			t.Errorf("%s (%d/%d): no Segment call with messageId %s", c.name, m.Partition, m.Offset, want.MessageID)
			continue
		}
		for _, r := range copies[1:] {
			if !bytes.Equal(r.Raw, copies[0].Raw) {
				t.Errorf("%s: copies of messageId %s differ:\n%s\n%s", c.name, want.MessageID, copies[0].Raw, r.Raw)
			}
		}
		checkCall(t, c, copies[0].Raw, m.Time)
	}

	checkDeadLetters(t, pl, bad, src)
	if code, _ := p.get("/healthz"); code != 200 {
		t.Errorf("/healthz = %d, want 200", code)
	}
}

// checkCall checks one Segment track call against the contract.
func checkCall(t *testing.T, c goodCase, raw []byte, kafkaTime time.Time) {
	t.Helper()
	var got struct {
		Type        string          `json:"type"`
		Event       string          `json:"event"`
		MessageID   string          `json:"messageId"`
		UserID      *string         `json:"userId"`
		AnonymousID *string         `json:"anonymousId"`
		Timestamp   string          `json:"timestamp"`
		Properties  json.RawMessage `json:"properties"`
		Context     struct {
			Integration json.RawMessage `json:"integration"`
		} `json:"context"`
	}
	if err := json.Unmarshal(raw, &got); err != nil {
		t.Errorf("%s: received JSON does not decode: %v\n%s", c.name, err, raw)
		return
	}
	if got.Type != "track" {
		t.Errorf("%s: type = %q, want track", c.name, got.Type)
	}
	if got.Event != c.event {
		t.Errorf("%s: event = %q, want %q", c.name, got.Event, c.event)
	}
	checkIdentity(t, c.name, "userId", got.UserID, c.userID)
	checkIdentity(t, c.name, "anonymousId", got.AnonymousID, c.anonID)
	wantTS := c.timestamp
	if wantTS.IsZero() {
		wantTS = kafkaTime
	}
	if gotTS, err := time.Parse(time.RFC3339Nano, got.Timestamp); err != nil || !gotTS.Equal(wantTS) {
		t.Errorf("%s: timestamp = %q, want %s", c.name, got.Timestamp, wantTS.UTC().Format(time.RFC3339Nano))
	}
	if g, w := decodeExact(t, got.Properties), decodeExact(t, []byte(c.props)); !reflect.DeepEqual(g, w) {
		t.Errorf("%s: properties = %s, want %s", c.name, got.Properties, c.props)
	}
	for _, d := range c.digits {
		if !bytes.Contains(got.Properties, []byte(":"+d)) {
			t.Errorf("%s: properties %s do not carry the number %s digit for digit", c.name, got.Properties, d)
		}
	}
	if g, w := decodeExact(t, got.Context.Integration), decodeExact(t, []byte(`{"name":"Produktly","version":"1.0.0"}`)); !reflect.DeepEqual(g, w) {
		t.Errorf("%s: context.integration = %s, want {\"name\":\"Produktly\",\"version\":\"1.0.0\"}", c.name, got.Context.Integration)
	}
}

func checkIdentity(t *testing.T, name, field string, got *string, want string) {
	t.Helper()
	switch {
	case want == "" && got != nil:
		t.Errorf("%s: %s = %q, want absent", name, field, *got)
	case want != "" && (got == nil || *got != want):
		t.Errorf("%s: %s = %v, want %q", name, field, got, want)
	}
}

// decodeExact decodes JSON keeping numbers as their text, so a big integer
// compares digit for digit and 7 differs from 7.0.
func decodeExact(t *testing.T, b []byte) any {
	t.Helper()
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	var v any
	if err := d.Decode(&v); err != nil {
		t.Errorf("decode %s: %v", b, err)
	}
	return v
}

// checkDeadLetters checks the dead-letter copy of every bad record: its
// original key, value and headers, then the contract's five headers.
func checkDeadLetters(t *testing.T, pl *pipeline, bad []badCase, src map[string]kafka.Message) {
	t.Helper()
	// Dead letters by the source coordinates they name.
	dead := map[string][]kafka.Message{}
	for _, m := range readTopic(t, pl.dlq, pl.dlqParts) {
		p, _ := header(m, consumer.HeaderSourcePartition)
		o, _ := header(m, consumer.HeaderSourceOffset)
		dead[p+"/"+o] = append(dead[p+"/"+o], m)
	}
	for _, c := range bad {
		orig := src[c.name]
		copies := dead[fmt.Sprintf("%d/%d", orig.Partition, orig.Offset)]
		if len(copies) != 1 {
			t.Errorf("%s (%d/%d): %d dead-letter copies, want 1", c.name, orig.Partition, orig.Offset, len(copies))
			if len(copies) == 0 {
				continue
			}
		}
		d := copies[0]
		if !bytes.Equal(d.Key, c.key) {
			t.Errorf("%s: dead-letter key %q, want %q", c.name, d.Key, c.key)
		}
		if !bytes.Equal(d.Value, c.value) {
			t.Errorf("%s: dead-letter value differs from the original:\ngot  %q\nwant %q", c.name, trunc(d.Value), trunc(c.value))
		}
		if n := len(orig.Headers); len(d.Headers) != n+5 || !reflect.DeepEqual(d.Headers[:n], orig.Headers) {
			t.Errorf("%s: dead-letter headers %v, want the original %v followed by the 5 contract headers", c.name, d.Headers, orig.Headers)
		}
		want := map[string]string{
			consumer.HeaderErrorCode:       string(c.code),
			consumer.HeaderSourceTopic:     pl.topic,
			consumer.HeaderSourcePartition: strconv.Itoa(orig.Partition),
			consumer.HeaderSourceOffset:    strconv.FormatInt(orig.Offset, 10),
		}
		for k, v := range want {
			if got, ok := header(d, k); !ok || got != v {
				t.Errorf("%s: header %s = %q (present %v), want %q", c.name, k, got, ok, v)
			}
		}
		msg, ok := header(d, consumer.HeaderError)
		if !ok || msg == "" {
			t.Errorf("%s: header %s missing or empty", c.name, consumer.HeaderError)
		} else if c.field != "" && !strings.Contains(strings.ToLower(msg), strings.ToLower(c.field)) {
			t.Errorf("%s: header %s = %q does not name the field %s", c.name, consumer.HeaderError, msg, c.field)
		}
	}
}

func trunc(b []byte) []byte {
	if len(b) > 200 {
		return append(b[:200:200], "…"...)
	}
	return b
}
