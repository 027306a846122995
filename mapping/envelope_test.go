package mapping

import (
	"bytes"
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/produktly/produktly-segment/timestamp"
)

func TestIdentity(t *testing.T) {
	for _, tc := range []struct {
		name, value           string
		wantUser, wantAnon    string
		wantInJSON, notInJSON string
	}{
		{"userId only", `{"type":"tour_start","userId":"u1","tourId":1}`, "u1", "", `"userId":"u1"`, `"anonymousId"`},
		{"anonymousId only", `{"type":"tour_start","anonymousId":"a1","tourId":1}`, "", "a1", `"anonymousId":"a1"`, `"userId"`},
		{"both are sent", `{"type":"tour_start","userId":"u1","anonymousId":"a1","tourId":1}`, "u1", "a1", `"userId":"u1","anonymousId":"a1"`, ""},
		{"empty userId is absent", `{"type":"tour_start","userId":"","anonymousId":"a1","tourId":1}`, "", "a1", `"anonymousId":"a1"`, `"userId"`},
		{"null anonymousId is absent", `{"type":"tour_start","userId":"u1","anonymousId":null,"tourId":1}`, "u1", "", `"userId":"u1"`, `"anonymousId"`},
		{"escapes decoded in the call, kept in JSON", `{"type":"tour_start","userId":"caf\u00e9 \"x\"","tourId":1}`, `café "x"`, "", `"userId":"caf\u00e9 \"x\""`, ""},
		{"snake_case spellings", `{"type":"tour_start","user_id":"u1","anonymous_id":"a1","tourId":1}`, "u1", "a1", `"userId":"u1","anonymousId":"a1"`, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Map(record(tc.value))
			if err != nil {
				t.Fatalf("Map(%s): %v", tc.value, err)
			}
			if c.UserID != tc.wantUser || c.AnonymousID != tc.wantAnon {
				t.Errorf("got userId %q, anonymousId %q; want %q, %q", c.UserID, c.AnonymousID, tc.wantUser, tc.wantAnon)
			}
			if !bytes.Contains(c.JSON, []byte(tc.wantInJSON)) {
				t.Errorf("JSON %s\nlacks %s", c.JSON, tc.wantInJSON)
			}
			if tc.notInJSON != "" && bytes.Contains(c.JSON, []byte(tc.notInJSON)) {
				t.Errorf("JSON %s\nhas %s", c.JSON, tc.notInJSON)
			}
			if err := c.Track().Validate(); err != nil {
				t.Errorf("Track().Validate(): %v", err)
			}
		})
	}
}

var identityErrorCases = []bad{
	{"neither", `{"type":"tour_start","tourId":1}`, CodeMissingIdentity, "user_id"},
	{"both empty", `{"type":"tour_start","userId":"","anonymousId":"","tourId":1}`, CodeMissingIdentity, "user_id"},
	{"both null", `{"type":"tour_start","userId":null,"anonymousId":null,"tourId":1}`, CodeMissingIdentity, "user_id"},
	{"userId a number", `{"type":"tour_start","userId":42,"tourId":1}`, CodeInvalidProperty, "user_id"},
	{"anonymousId an object", `{"type":"tour_start","userId":"u","anonymousId":{},"tourId":1}`, CodeInvalidProperty, "anonymous_id"},
	{"userId a boolean beside a good anonymousId", `{"type":"tour_start","userId":true,"anonymousId":"a","tourId":1}`, CodeInvalidProperty, "user_id"},
	{"identity checked before the event's id", `{"type":"tour_start"}`, CodeMissingIdentity, "user_id"},
	{"id must be a string", `{"type":"tour_start","id":123,"userId":"u","tourId":1}`, CodeInvalidProperty, "id"},
	{"id an object", `{"type":"tour_start","id":{"v":1},"userId":"u","tourId":1}`, CodeInvalidProperty, "id"},
}

func TestIdentityErrors(t *testing.T) { runBad(t, identityErrorCases) }

func TestTimestamp(t *testing.T) {
	for _, tc := range []struct {
		name string
		ts   string // the timestamp member, "" for none
		want string // in the encoded call
	}{
		{"RFC 3339 UTC", `"timestamp":"2026-11-29T10:00:00Z"`, "2026-11-29T10:00:00.000Z"},
		{"RFC 3339 with milliseconds", `"timestamp":"2026-11-29T10:00:00.123Z"`, "2026-11-29T10:00:00.123Z"},
		{"RFC 3339 with an offset, converted to UTC", `"timestamp":"2026-11-29T11:30:00.5+01:30"`, "2026-11-29T10:00:00.500Z"},
		{"nanoseconds truncated to milliseconds", `"timestamp":"2026-11-29T10:00:00.123999999Z"`, "2026-11-29T10:00:00.123Z"},
		{"escaped string", `"timestamp":"2026-11-29T10:00:00\u005a"`, "2026-11-29T10:00:00.000Z"},
		{"lower-case t and z", `"timestamp":"2026-11-29t10:00:00.1z"`, "2026-11-29T10:00:00.100Z"},
		{"unknown local offset", `"timestamp":"2026-11-29T10:00:00-00:00"`, "2026-11-29T10:00:00.000Z"},
		{"largest offset", `"timestamp":"2026-11-30T09:59:00+23:59"`, "2026-11-29T10:00:00.000Z"},
		{"epoch milliseconds", `"timestamp":1795951200456`, "2026-11-29T11:20:00.456Z"},
		{"epoch zero", `"timestamp":0`, "1970-01-01T00:00:00.000Z"},
		{"negative epoch milliseconds", `"timestamp":-1500`, "1969-12-31T23:59:58.500Z"},
		{"snake_case spelling is the same field", `"Timestamp":1795951200456`, "2026-11-29T11:20:00.456Z"},
		{"absent: the Kafka record's", ``, "2026-11-29T10:00:05.250Z"},
		{"null: the Kafka record's", `"timestamp":null`, "2026-11-29T10:00:05.250Z"},
		{"empty: the Kafka record's", `"timestamp":""`, "2026-11-29T10:00:05.250Z"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := `{"type":"tour_start","userId":"u","tourId":1`
			if tc.ts != "" {
				v += "," + tc.ts
			}
			c, err := Map(record(v + "}"))
			if err != nil {
				t.Fatalf("Map(%s): %v", v, err)
			}
			if got := c.Timestamp.Format(timestamp.Layout); got != tc.want {
				t.Errorf("Call.Timestamp: got %s, want %s", got, tc.want)
			}
			if c.Timestamp.Location() != time.UTC {
				t.Errorf("Call.Timestamp is in %v, want UTC", c.Timestamp.Location())
			}
			if want := `"timestamp":"` + tc.want + `"`; !bytes.Contains(c.JSON, []byte(want)) {
				t.Errorf("JSON %s\nlacks %s", c.JSON, want)
			}
		})
	}
}

func TestKafkaTimestampInAnotherZone(t *testing.T) {
	r := record(`{"type":"tour_start","userId":"u","tourId":1}`)
	r.Time = time.Date(2026, 11, 29, 11, 0, 0, 999_999_999, time.FixedZone("CET", 3600))
	c, err := Map(r)
	if err != nil {
		t.Fatal(err)
	}
	if want := time.Date(2026, 11, 29, 10, 0, 0, 999_000_000, time.UTC); c.Timestamp != want {
		t.Errorf("got %v, want %v", c.Timestamp, want)
	}
}

var timestampErrorCases = []bad{
	{"date only", `{"type":"tour_start","userId":"u","tourId":1,"timestamp":"2026-11-29"}`, CodeInvalidTimestamp, "timestamp"},
	{"space instead of T", `{"type":"tour_start","userId":"u","tourId":1,"timestamp":"2026-11-29 10:00:00Z"}`, CodeInvalidTimestamp, "timestamp"},
	{"no zone", `{"type":"tour_start","userId":"u","tourId":1,"timestamp":"2026-11-29T10:00:00"}`, CodeInvalidTimestamp, "timestamp"},
	{"words", `{"type":"tour_start","userId":"u","tourId":1,"timestamp":"yesterday"}`, CodeInvalidTimestamp, "timestamp"},
	{"epoch as a string", `{"type":"tour_start","userId":"u","tourId":1,"timestamp":"1795951200456"}`, CodeInvalidTimestamp, "timestamp"},
	{"fractional epoch", `{"type":"tour_start","userId":"u","tourId":1,"timestamp":1795951200456.5}`, CodeInvalidTimestamp, "timestamp"},
	{"exponent epoch", `{"type":"tour_start","userId":"u","tourId":1,"timestamp":1.795951200456e12}`, CodeInvalidTimestamp, "timestamp"},
	{"epoch past int64", `{"type":"tour_start","userId":"u","tourId":1,"timestamp":9223372036854775808}`, CodeInvalidTimestamp, "timestamp"},
	{"epoch past year 9999", `{"type":"tour_start","userId":"u","tourId":1,"timestamp":253402300800000}`, CodeInvalidTimestamp, "timestamp"},
	{"year zero once in UTC", `{"type":"tour_start","userId":"u","tourId":1,"timestamp":"0001-01-01T00:30:00+01:00"}`, CodeInvalidTimestamp, "timestamp"},
	{"the zero time", `{"type":"tour_start","userId":"u","tourId":1,"timestamp":"0001-01-01T00:00:00Z"}`, CodeInvalidTimestamp, "timestamp"},
	{"comma before the fraction", `{"type":"tour_start","userId":"u","tourId":1,"timestamp":"2026-11-29T10:00:00,5Z"}`, CodeInvalidTimestamp, "timestamp"},
	{"empty fraction", `{"type":"tour_start","userId":"u","tourId":1,"timestamp":"2026-11-29T10:00:00.Z"}`, CodeInvalidTimestamp, "timestamp"},
	{"offset hour 24", `{"type":"tour_start","userId":"u","tourId":1,"timestamp":"2026-11-29T10:00:00+24:00"}`, CodeInvalidTimestamp, "timestamp"},
	{"offset minute 60", `{"type":"tour_start","userId":"u","tourId":1,"timestamp":"2026-11-29T10:00:00+01:60"}`, CodeInvalidTimestamp, "timestamp"},
	{"offset without colon", `{"type":"tour_start","userId":"u","tourId":1,"timestamp":"2026-11-29T10:00:00+0100"}`, CodeInvalidTimestamp, "timestamp"},
	{"short year", `{"type":"tour_start","userId":"u","tourId":1,"timestamp":"226-11-29T10:00:00Z"}`, CodeInvalidTimestamp, "timestamp"},
	{"one-digit month", `{"type":"tour_start","userId":"u","tourId":1,"timestamp":"2026-1-29T10:00:00Z"}`, CodeInvalidTimestamp, "timestamp"},
	{"February 30", `{"type":"tour_start","userId":"u","tourId":1,"timestamp":"2026-02-30T10:00:00Z"}`, CodeInvalidTimestamp, "timestamp"},
	{"trailing text", `{"type":"tour_start","userId":"u","tourId":1,"timestamp":"2026-11-29T10:00:00Z "}`, CodeInvalidTimestamp, "timestamp"},
	{"hour 24", `{"type":"tour_start","userId":"u","tourId":1,"timestamp":"2026-11-29T24:00:00Z"}`, CodeInvalidTimestamp, "timestamp"},
	{"boolean", `{"type":"tour_start","userId":"u","tourId":1,"timestamp":true}`, CodeInvalidTimestamp, "timestamp"},
	{"object", `{"type":"tour_start","userId":"u","tourId":1,"timestamp":{"ms":1}}`, CodeInvalidTimestamp, "timestamp"},
	{"checked before the event's id", `{"type":"tour_start","userId":"u","timestamp":"x"}`, CodeInvalidTimestamp, "timestamp"},
}

func TestTimestampErrors(t *testing.T) { runBad(t, timestampErrorCases) }

func TestNoTimestampAnywhere(t *testing.T) {
	for _, kafka := range []time.Time{{}, time.UnixMilli(-1)} {
		r := record(`{"type":"tour_start","userId":"u","tourId":1}`)
		r.Time = kafka
		checkBad(t, r, CodeInvalidTimestamp, "timestamp")
		// A record that carries its own timestamp needs no Kafka one.
		r.Value = []byte(`{"type":"tour_start","userId":"u","tourId":1,"timestamp":1}`)
		if _, err := Map(r); err != nil {
			t.Errorf("Kafka time %v, record timestamp 1: %v", kafka, err)
		}
	}
}

func TestMessageID(t *testing.T) {
	mapID := func(t *testing.T, r Record) string {
		t.Helper()
		c, err := Map(r)
		if err != nil {
			t.Fatalf("Map(%s): %v", r.Value, err)
		}
		return c.MessageID
	}
	at := func(topic string, partition int, offset int64, value string) Record {
		r := record(value)
		r.Topic, r.Partition, r.Offset = topic, partition, offset
		return r
	}
	withID := `{"type":"tour_start","id":"int_1","userId":"u","tourId":1}`
	noID := `{"type":"tour_start","userId":"u","tourId":1}`

	if got, want := mapID(t, at("t", 0, 5, withID)), uuid.NewSHA1(namespace, []byte("id:int_1")).String(); got != want {
		t.Errorf("with id: got %s, want uuid.NewSHA1(namespace, %q) = %s", got, "id:int_1", want)
	}
	if got, want := mapID(t, at("t", 2, 5, noID)), uuid.NewSHA1(namespace, []byte("kafka:t/2/5")).String(); got != want {
		t.Errorf("without id: got %s, want uuid.NewSHA1(namespace, %q) = %s", got, "kafka:t/2/5", want)
	}
	if a, b := mapID(t, at("t", 0, 5, withID)), mapID(t, at("other", 9, 99, withID)); a != b {
		t.Errorf("the same id at two places got two message ids: %s, %s", a, b)
	}
	if a, b := mapID(t, at("t", 0, 5, noID)), mapID(t, at("t", 0, 5, noID)); a != b {
		t.Errorf("a redelivered record got two message ids: %s, %s", a, b)
	}
	if a, b := mapID(t, at("t", 0, 5, withID)), mapID(t, at("t", 0, 5, `{"type":"tour_start","id":"int_\u0031","userId":"u","tourId":1}`)); a != b {
		t.Errorf("one id spelled with an escape got another message id: %s, %s", a, b)
	}
	if a, b := mapID(t, at("t", 0, 5, noID)), mapID(t, at("t", 0, 5, `{"type":"tour_start","id":"","userId":"u","tourId":1}`)); a != b {
		t.Errorf("an empty id must count as absent: %s, %s", a, b)
	}
	distinct := map[string]Record{}
	for _, r := range []Record{
		at("t", 0, 5, noID), at("t", 0, 6, noID), at("t", 1, 5, noID), at("u", 0, 5, noID),
		at("t/0", 5, 5, noID), at("t", 0, 55, noID), at("t", 05, 5, `{"type":"tour_start","userId":"u","tourId":1,"x":1}`),
		at("t", 0, 5, `{"type":"tour_start","id":"kafka:t/0/5","userId":"u","tourId":1}`),
		at("t", 0, 5, withID), at("t", 0, 5, `{"type":"tour_start","id":"int_2","userId":"u","tourId":1}`),
	} {
		id := mapID(t, r)
		if prev, ok := distinct[id]; ok && !(prev.Topic == r.Topic && prev.Partition == r.Partition && prev.Offset == r.Offset && !bytes.Contains(r.Value, []byte(`"id"`))) {
			t.Errorf("two interactions share message id %s: %s@%s/%d/%d and %s@%s/%d/%d", id, prev.Value, prev.Topic, prev.Partition, prev.Offset, r.Value, r.Topic, r.Partition, r.Offset)
		}
		distinct[id] = r
		if u, err := uuid.Parse(id); err != nil || u.Version() != 5 || u.Variant() != uuid.RFC4122 {
			t.Errorf("message id %s is not a version 5 RFC 4122 UUID (%v)", id, err)
		}
	}
}

func TestNamespace(t *testing.T) {
	if want := uuid.NewSHA1(uuid.NameSpaceURL, []byte("https://github.com/produktly/produktly-segment")); namespace != want {
		t.Errorf("namespace: got %s, want %s", namespace, want)
	}
	for _, name := range []string{"", "id:x", "kafka:t/0/0", strings.Repeat("long ", 100)} {
		if got, want := newSHA1([]byte(name)), uuid.NewSHA1(namespace, []byte(name)); got != want {
			t.Errorf("newSHA1(%q) = %s, want uuid.NewSHA1 = %s", name, got, want)
		}
	}
}

func TestEncodedCall(t *testing.T) {
	v := `{"type":"tour_start","id":"i1","userId":"u1","anonymousId":"a1","timestamp":"2026-11-29T10:00:00.123Z","tourId":42,"companyId":"c1"}`
	c, err := Map(record(v))
	if err != nil {
		t.Fatal(err)
	}
	want := `{"type":"track","messageId":"` + uuid.NewSHA1(namespace, []byte("id:i1")).String() + `","userId":"u1","anonymousId":"a1","event":"Tour Start","timestamp":"2026-11-29T10:00:00.123Z","properties":{"tour_id":42,"company_id":"c1"},"context":{"integration":{"name":"Produktly","version":"1.0.0"}}}`
	if string(c.JSON) != want {
		t.Errorf("encoded call\n got %s\nwant %s", c.JSON, want)
	}
	gotCall := Call{MessageID: c.MessageID, Event: c.Event, UserID: c.UserID, AnonymousID: c.AnonymousID, Timestamp: c.Timestamp}
	wantCall := Call{MessageID: uuid.NewSHA1(namespace, []byte("id:i1")).String(), Event: "Tour Start", UserID: "u1", AnonymousID: "a1", Timestamp: time.Date(2026, 11, 29, 10, 0, 0, 123_000_000, time.UTC)}
	if !reflect.DeepEqual(gotCall, wantCall) {
		t.Errorf("call\n got %+v\nwant %+v", gotCall, wantCall)
	}
}

// TestTrack checks that Call.Track is lossless: analytics-go's own encoding
// of it is the same message as Call.JSON.
func TestTrack(t *testing.T) {
	for i, v := range readRecords(t) {
		c, err := Map(goldenRecord(i, v))
		if err != nil {
			t.Fatal(err)
		}
		tr := c.Track()
		if err := tr.Validate(); err != nil {
			t.Errorf("%s: Validate: %v", catalogue[i].Type, err)
		}
		b, err := json.Marshal(tr)
		if err != nil {
			t.Fatalf("%s: marshal: %v", catalogue[i].Type, err)
		}
		if !sameMessage(t, b, c.JSON) {
			t.Errorf("%s: Track() marshals to\n%s\nwant the same message as\n%s", catalogue[i].Type, b, c.JSON)
		}
	}
}

// sameMessage reports whether two encoded messages hold the same value,
// numbers compared by their text and timestamps as instants (analytics-go
// writes RFC3339Nano, which drops trailing zeros).
func sameMessage(t testing.TB, a, b []byte) bool {
	t.Helper()
	var ts [2]time.Time
	var vs [2]any
	for i, doc := range [][]byte{a, b} {
		v, err := decode(doc)
		if err != nil {
			t.Fatalf("decode %s: %v", doc, err)
		}
		m, ok := v.(map[string]any)
		if !ok {
			t.Fatalf("%s is not an object", doc)
		}
		s, _ := m["timestamp"].(string)
		if ts[i], err = time.Parse(time.RFC3339Nano, s); err != nil {
			t.Fatalf("timestamp of %s: %v", doc, err)
		}
		delete(m, "timestamp")
		vs[i] = m
	}
	return ts[0].Equal(ts[1]) && reflect.DeepEqual(vs[0], vs[1])
}

func TestTooLarge(t *testing.T) {
	// Find the padding that makes the call exactly 32000 bytes.
	build := func(n int) Record {
		return record(`{"type":"tour_start","userId":"u","tourId":1,"small":"s","blob":"` + strings.Repeat("x", n) + `"}`)
	}
	c, err := Map(build(1))
	if err != nil {
		t.Fatal(err)
	}
	n := maxMessageBytes - len(c.JSON) + 1
	if c, err = Map(build(n)); err != nil || len(c.JSON) != maxMessageBytes {
		t.Fatalf("a call of exactly %d bytes: got %d bytes, error %v", maxMessageBytes, len(c.JSON), err)
	}
	checkBad(t, build(n+1), CodeTooLarge, "blob")
	_, err = Map(build(n + 1))
	if want := "too_large: blob: the encoded call is 32001 bytes, over Segment's limit of 32000; this property's value is "; err == nil || !strings.HasPrefix(err.Error(), want) {
		t.Errorf("got %v, want %s…", err, want)
	}

	// The limit applies to the encoded call, not to the record.
	spaced := `{"type":"tour_start","userId":"u","tourId":1,"a":[` + strings.Repeat(" ", 100_000) + `1]}`
	if c, err := Map(record(spaced)); err != nil || !bytes.Contains(c.JSON, []byte(`"a":[1]`)) {
		t.Errorf("a large record with a small call: got %s, %v", c.JSON, err)
	}
	dropped := `{"type":"tour_start","userId":"u","tourId":1,"big":null` + strings.Repeat(`,"big":null`, 10_000) + `}`
	if _, err := Map(record(dropped)); err != nil {
		t.Errorf("a large record of absent fields: %v", err)
	}
}
