package mapping

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"
)

// FuzzMap holds Map to its invariants on any input: it never panics; every
// failure is an *Error with a mapping code; every success is valid JSON of
// at most 32000 bytes that decodes back to the call, passes
// Track().Validate() and came from valid JSON; and the same record always
// gives the same bytes.
func FuzzMap(f *testing.F) {
	for i, v := range readRecords(f) {
		r := goldenRecord(i, v)
		f.Add(v, r.Partition, r.Offset, r.Time.UnixMilli())
	}
	nasty := []string{
		``, `{}`, `[]`, `null`, "\xff", "\xef\xbb\xbf{}", `{"type":"tour_start","userId":"u","tourId":1,"a":"` + "\xff\xfe" + `"}`,
		`{"type":"tour_start","userId":"u","tourId":1,"deep":` + strings.Repeat("[", 100_000) + `}`,
		`{"type":"tour_start","userId":"u","tourId":1,"deep":` + strings.Repeat(`{"a":`, 99) + `1` + strings.Repeat(`}`, 99) + `}`,
		strings.Repeat("[", 10_000),
		`{"type":"tour_start","userId":"u","tourId":1,"tourId":2}`,
		`{"type":"tour_start","userId":"u","tourId":1,"tour_id":1,"TourID":1}`,
		`{"type":"tour_start","userId":"u","tourId":1,"type":"TourStart"}`,
		`{"type":"tour_step","userId":"u","tourId":1,"metadata":{"stepIndex":1,"step_index":1,"type":"next","type":"next"}}`,
		`{"type":"tour_start","userId":"u","tourId":1,"big":"` + strings.Repeat("x", 40_000) + `"}`,
		`{"type":"tour_start","userId":"u","tourId":1,"big":"` + strings.Repeat(`\u0000`, 6_000) + `"}`,
		`{"type":"tour_start","userId":"u","tourId":1,"` + strings.Repeat("K", 40_000) + `":1}`,
		`{"type":"tour_start","anonymousId":"\ud800","tourId":123456789012345678901234567890,"timestamp":-62135596800000}`,
		`{"type":"tour_start","userId":"u","tourId":1,"timestamp":"0001-01-01T00:00:00.001Z"}`,
		`{"type":"tour_start","userId":"u","tourId":1,"timestamp":"9999-12-31T23:59:59.999-23:59"}`,
		`{"type":"tour_start","userId":"u","tourId":1,"timestamp":253402300799999}`,
		`{"type":"checklist_step_completed","userId":"u","checklistId":-0,"metadata":{"stepId":-0}}`,
		`{"type":"tour_start","userId":"u","tourId":1,"\u0000\"\\":"\u2028"}`,
		`{"type":"tour_start","userId":"u","tourId":1,"ÀÉÎ":1,"àéî":2}`,
		`{"type":"tour_start","id":"kafka:produktly.interactions/3/1000","userId":"u","tourId":1}`,
		`{"type":"tour_start","id":"i","accountId":"42","account_id":42,"userId":"u","tourId":1}`,
		`{"type":"tour_start","accountId":"","account_id":null,"userId":"u","tourId":1}`,
		`{"type":"tour_start","accountId":1.5,"userId":"u","tourId":1}`,
		`{"type":"tour_start","accountId":"\u0034\u0032","AccountID":42,"id":"x","userId":"u","tourId":1}`,
		`{"type":"tour_start","id":"account:1/id:2","accountId":-0,"userId":"u","tourId":1}`,
	}
	for i, v := range nasty {
		f.Add([]byte(v), i, int64(i), int64(1795950000000))
	}
	f.Fuzz(func(t *testing.T, value []byte, partition int, offset int64, ms int64) {
		checkMap(t, Record{Topic: "produktly.interactions", Partition: partition, Offset: offset, Time: time.UnixMilli(ms), Value: value})
	})
}

// FuzzMapFields reaches deeper than FuzzMap: it builds records that are
// valid JSON around fuzzed pieces (a type, two field names, two values),
// so names, spellings and values get exercised rather than the scanner's
// first error.
func FuzzMapFields(f *testing.F) {
	f.Add("tour_step", "tourId", "tour_id", []byte(`1`), []byte(`1`), []byte(`{"stepIndex":0,"type":"next"}`))
	f.Add("TourStart", "companyID", "company_id", []byte(`"c"`), []byte(`"\u0063"`), []byte(`null`))
	f.Add("Checklist Step Completed", "checklistId", "metadata", []byte(`"c"`), []byte(`{"step_id":5}`), []byte(`{}`))
	f.Add("nps_widget_shown", "npsWidgetID", "Timestamp", []byte(`123456789012345678901234567890`), []byte(`"2026-11-29t10:00:00z"`), []byte(`[]`))
	f.Add("tour-start", "USER_ID", "tour id", []byte(`"u2"`), []byte(`-0`), []byte(`1e999`))
	f.Add("tour_start", "accountId", "account_id", []byte(`42`), []byte(`"42"`), []byte(`null`))
	f.Add("tour_start", "AccountID", "account-id", []byte(`"a\u0062"`), []byte(`"ab"`), []byte(`{}`))
	f.Add("tour_start", "accountId", "id", []byte(`1e3`), []byte(`"x"`), []byte(`{}`))
	f.Add("tour_start", "account_id", "id", []byte(`""`), []byte(`"x"`), []byte(`{}`))
	f.Fuzz(func(t *testing.T, typ, key1, key2 string, val1, val2, meta []byte) {
		var b bytes.Buffer
		b.WriteString(`{"type":`)
		b.Write(appendString(nil, typ))
		b.WriteString(`,"userId":"u","tourId":7,"metadata":`)
		b.Write(meta)
		b.WriteByte(',')
		b.Write(appendString(nil, key1))
		b.WriteByte(':')
		b.Write(val1)
		b.WriteByte(',')
		b.Write(appendString(nil, key2))
		b.WriteByte(':')
		b.Write(val2)
		b.WriteByte('}')
		checkMap(t, Record{Topic: "t", Partition: 1, Offset: 2, Time: time.UnixMilli(1795950000000), Value: b.Bytes()})
	})
}

// checkMap maps r in both modes and checks the invariants every mapping
// obeys, then those that tie the two modes together.
func checkMap(t *testing.T, r Record) {
	checkMapWith(t, Map, r)
	checkMapWith(t, MapAccount, r)
	checkModes(t, r)
}

// checkModes holds accounts mode to single-source mode: the same rules
// apply, but accounts mode requires an account and names a record's id
// with it. Call.AccountID agrees with an independent reading of the input.
func checkModes(t *testing.T, r Record) {
	single, errS := Map(r)
	acc, errA := MapAccount(r)
	var eS, eA *Error
	errors.As(errS, &eS)
	errors.As(errA, &eA)
	switch {
	case errS != nil && errA != nil:
		if eA.Code != eS.Code && eA.Code != CodeMissingAccount {
			t.Fatalf("single source fails with %v, accounts mode with %v", errS, errA)
		}
		return
	case errS != nil:
		t.Fatalf("single source fails with %v, accounts mode maps %s", errS, acc.JSON)
	case errA != nil:
		if eA.Code != CodeMissingAccount || single.AccountID != "" {
			t.Fatalf("single source maps (account %q), accounts mode fails with %v", single.AccountID, errA)
		}
		return
	}
	if acc.AccountID == "" || acc.AccountID != single.AccountID {
		t.Fatalf("AccountID: accounts mode %q, single source %q", acc.AccountID, single.AccountID)
	}
	// The calls differ at most in their messageId.
	if !bytes.Equal(bytes.Replace(acc.JSON, []byte(acc.MessageID), []byte(single.MessageID), 1), single.JSON) {
		t.Fatalf("the modes map to different calls:\n%s\n%s", acc.JSON, single.JSON)
	}
	in := members(t, r.Value)
	var id string
	accounts := map[string]bool{}
	for _, m := range in {
		var s string
		switch string(appendSnake(nil, []byte(m.key))) {
		case "id":
			if json.Unmarshal(m.val, &s) == nil && s != "" {
				id = s
			}
		case "account_id":
			if json.Unmarshal(m.val, &s) == nil {
				if s != "" {
					accounts[s] = true
				}
			} else if string(m.val) != "null" {
				accounts[string(m.val)] = true // an integer, as written
			}
		}
	}
	if len(accounts) != 1 || !accounts[acc.AccountID] {
		t.Fatalf("AccountID %q; the record names the accounts %v: %s", acc.AccountID, accounts, r.Value)
	}
	want := uuid.NewSHA1(namespace, []byte(fmt.Sprintf("kafka:%s/%d/%d", r.Topic, r.Partition, r.Offset))).String()
	if id != "" {
		want = uuid.NewSHA1(namespace, []byte("account:"+acc.AccountID+"/id:"+id)).String()
		if single.MessageID != uuid.NewSHA1(namespace, []byte("id:"+id)).String() {
			t.Fatalf("single-source messageId %s is not that of id %q", single.MessageID, id)
		}
	}
	if acc.MessageID != want {
		t.Fatalf("accounts-mode messageId %s, want %s (account %q, id %q)", acc.MessageID, want, acc.AccountID, id)
	}
}

// checkMapWith maps r with mapFn (Map or MapAccount) and checks the
// invariants every mapping obeys.
func checkMapWith(t *testing.T, mapFn func(Record) (Call, error), r Record) {
	value := r.Value
	c, err := mapFn(r)
	if err != nil {
		var e *Error
		if !errors.As(err, &e) {
			t.Fatalf("error %T %v is not an *Error", err, err)
		}
		if e.Code == CodeRejected || !slices.Contains(Codes(), e.Code) {
			t.Fatalf("error %v: code %q is not a mapping code", err, e.Code)
		}
		if !strings.HasPrefix(err.Error(), string(e.Code)+": ") || !utf8.ValidString(err.Error()) {
			t.Fatalf("error text %q", err.Error())
		}
		if e.Code != CodeInvalidJSON && !(json.Valid(value) && utf8.Valid(value)) {
			t.Fatalf("invalid JSON passed the scanner, then failed with %v", err)
		}
		if e.Code == CodeInvalidJSON && json.Valid(value) && utf8.Valid(value) {
			trimmed := bytes.TrimLeft(value, " \t\r\n")
			if len(trimmed) > 0 && trimmed[0] == '{' && !strings.Contains(e.Msg, "nesting deeper") {
				t.Fatalf("valid JSON object rejected: %v", err)
			}
		}
		return
	}

	if !json.Valid(value) || !utf8.Valid(value) {
		t.Fatalf("mapped a value encoding/json rejects or that is not UTF-8: %q", value)
	}
	if len(c.JSON) > maxMessageBytes {
		t.Fatalf("call of %d bytes", len(c.JSON))
	}
	if !json.Valid(c.JSON) || !utf8.Valid(c.JSON) {
		t.Fatalf("encoded call is not valid JSON: %s", c.JSON)
	}
	if err := c.Track().Validate(); err != nil {
		t.Fatalf("Track().Validate(): %v", err)
	}
	var msg struct {
		Type        string                     `json:"type"`
		MessageID   string                     `json:"messageId"`
		UserID      *string                    `json:"userId"`
		AnonymousID *string                    `json:"anonymousId"`
		Event       string                     `json:"event"`
		Timestamp   time.Time                  `json:"timestamp"`
		Properties  map[string]json.RawMessage `json:"properties"`
		Context     map[string]map[string]any  `json:"context"`
	}
	if err := json.Unmarshal(c.JSON, &msg); err != nil {
		t.Fatalf("decode %s: %v", c.JSON, err)
	}
	ev := lookup([]byte(c.Event))
	switch {
	case msg.Type != "track" || msg.MessageID != c.MessageID || msg.Event != c.Event:
		t.Fatalf("decoded type/messageId/event %q %q %q, call has %q %q", msg.Type, msg.MessageID, msg.Event, c.MessageID, c.Event)
	case ev == nil || ev.Name != c.Event:
		t.Fatalf("event %q is not in the catalogue", c.Event)
	case deref(msg.UserID) != c.UserID || deref(msg.AnonymousID) != c.AnonymousID:
		t.Fatalf("decoded identities %v %v, call has %q %q", msg.UserID, msg.AnonymousID, c.UserID, c.AnonymousID)
	case (msg.UserID != nil && *msg.UserID == "") || (msg.AnonymousID != nil && *msg.AnonymousID == ""):
		t.Fatalf("an empty identity was sent: %s", c.JSON)
	case !msg.Timestamp.Equal(c.Timestamp) || c.Timestamp.Location() != time.UTC:
		t.Fatalf("decoded timestamp %v, call has %v", msg.Timestamp, c.Timestamp)
	case len(msg.Properties) != len(c.Properties):
		t.Fatalf("decoded %d properties, call has %d: %s", len(msg.Properties), len(c.Properties), c.JSON)
	case msg.Context["integration"]["name"] != "Produktly" || msg.Context["integration"]["version"] != "1.0.0":
		t.Fatalf("context %v", msg.Context)
	}
	for _, p := range c.Properties {
		if got, ok := msg.Properties[p.Name]; !ok || !bytes.Equal(got, p.Value) {
			t.Fatalf("property %q: decoded %s, call has %s", p.Name, got, p.Value)
		}
		if roleOf([]byte(p.Name)) != roleProperty {
			t.Fatalf("envelope field %q repeated as a property", p.Name)
		}
		if string(p.Value) == "null" || string(p.Value) == `""` {
			t.Fatalf("absent value forwarded for %q", p.Name)
		}
	}
	id, ok := msg.Properties[ev.ID]
	if !ok || !(id[0] == '"' || !bytes.ContainsAny(id, ".eE")) {
		t.Fatalf("required %s is %s", ev.ID, id)
	}
	// An independent reading of the input: encoding/json decodes it, and
	// the call's id and identities must be values it holds under some
	// spelling of their names.
	in := members(t, value)
	spelled := func(name string, want func(json.RawMessage) bool) bool {
		for _, m := range in {
			if string(appendSnake(nil, []byte(m.key))) == name && want(m.val) {
				return true
			}
		}
		return false
	}
	if !spelled(ev.ID, func(v json.RawMessage) bool { return jsonEqual(v, id) }) {
		t.Fatalf("%s %s is not a value of the record %s", ev.ID, id, value)
	}
	for name, got := range map[string]string{"user_id": c.UserID, "anonymous_id": c.AnonymousID} {
		if got == "" {
			continue
		}
		if !spelled(name, func(v json.RawMessage) bool {
			var s string
			return json.Unmarshal(v, &s) == nil && s == got
		}) {
			t.Fatalf("%s %q is not a value of the record %s", name, got, value)
		}
	}
	if u, err := uuid.Parse(c.MessageID); err != nil || u.Version() != 5 {
		t.Fatalf("messageId %q is not a version 5 UUID", c.MessageID)
	}
	if got, want := newSHA1(value), uuid.NewSHA1(namespace, value); got != want {
		t.Fatalf("newSHA1 = %s, uuid.NewSHA1 = %s", got, want)
	}
	b, err := json.Marshal(c.Track())
	if err != nil {
		t.Fatalf("marshal Track(): %v", err)
	}
	if !sameMessage(t, b, c.JSON) {
		t.Fatalf("Track() marshals to\n%s\nnot the same message as\n%s", b, c.JSON)
	}

	again, err := mapFn(r)
	if err != nil || !bytes.Equal(again.JSON, c.JSON) {
		t.Fatalf("second Map differs: %s, %v\nfirst: %s", again.JSON, err, c.JSON)
	}
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

type rawMember struct {
	key string
	val json.RawMessage
}

// members reads the top-level members of an object with encoding/json,
// keeping every duplicate key (json.Unmarshal into a map keeps the last).
func members(t *testing.T, doc []byte) []rawMember {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(doc))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		t.Fatalf("encoding/json cannot read a mapped record as an object: %v %v", tok, err)
	}
	var ms []rawMember
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			t.Fatalf("encoding/json: %v", err)
		}
		var m rawMember
		m.key, _ = tok.(string)
		if err := dec.Decode(&m.val); err != nil {
			t.Fatalf("encoding/json: %v", err)
		}
		ms = append(ms, m)
	}
	return ms
}
