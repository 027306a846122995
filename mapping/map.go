package mapping

import (
	"bytes"
	"encoding/json"
	"errors"
	"reflect"
	"strconv"
	"time"
	"unicode/utf8"
)

// Record is one raw Kafka record as the mapping sees it.
type Record struct {
	Topic     string
	Partition int
	Offset    int64
	Time      time.Time // the Kafka record timestamp
	Value     []byte
}

// Call is one mapped Segment track call.
type Call struct {
	MessageID   string
	Event       string
	UserID      string // "" when the record has no userId
	AnonymousID string // "" when the record has no anonymousId
	Timestamp   time.Time
	// Properties are the call's properties in input order, under their
	// snake_case names. Each Value aliases JSON: treat both as read-only.
	Properties []Property
	// JSON is the encoded Segment track message, exactly what goes into the
	// "batch" array of a /v1/batch request. len(JSON) ≤ 32000.
	JSON []byte
}

// Property is one property of a call: its snake_case name and its value,
// forwarded from the record unchanged apart from insignificant whitespace.
type Property struct {
	Name  string
	Value json.RawMessage
}

// role says what a top-level field of the record is for.
type role uint8

const (
	roleProperty role = iota // forwarded as a property
	roleType
	roleID
	roleUserID
	roleAnonymousID
	roleTimestamp
	roles
)

// roleOf maps a snake_case field name to its role: the envelope fields are
// not repeated as properties.
func roleOf(name []byte) role {
	switch string(name) {
	case "type":
		return roleType
	case "id":
		return roleID
	case "user_id":
		return roleUserID
	case "anonymous_id":
		return roleAnonymousID
	case "timestamp":
		return roleTimestamp
	}
	return roleProperty
}

// span locates bytes in a buffer.
type span struct{ start, end int }

// field is a present (neither null nor "") top-level member of the record.
type field struct {
	pair
	name span // snake_case name, in the names buffer
	role role
}

// Map maps one raw record to its Segment track call. It is pure: the result
// depends on r alone, and the same record always maps to the same call, byte
// for byte. Every error is an *Error carrying one of the contract's codes;
// when a record breaks several rules, the first in this order is reported:
// invalid_json; invalid_property for two spellings with different values;
// unknown_event; invalid_property for userId or anonymousId, then
// missing_identity; invalid_property for id; invalid_timestamp; the event's
// own id, then its metadata (missing_property, invalid_property); too_large.
func Map(r Record) (Call, error) {
	// Fixed buffers keep a typical record off the heap; larger ones grow.
	var fieldBuf [32]field
	var nameBuf [512]byte
	fields, names, err := collect(r.Value, fieldBuf[:0], nameBuf[:0])
	if err != nil {
		return Call{}, err
	}
	if fields, err = dedupe(fields, names); err != nil {
		return Call{}, err
	}
	var env [roles]*field
	for i := range fields {
		if f := &fields[i]; f.role != roleProperty {
			env[f.role] = f
		}
	}

	ev, err := eventOf(env[roleType])
	if err != nil {
		return Call{}, err
	}
	for _, f := range [...]*field{env[roleUserID], env[roleAnonymousID]} {
		if f != nil && f.kind != kindString {
			return Call{}, newError(CodeInvalidProperty, nameOf(f, names), "must be a string, not "+f.kind.String())
		}
	}
	if env[roleUserID] == nil && env[roleAnonymousID] == nil {
		return Call{}, newError(CodeMissingIdentity, "user_id", "absent, and so is anonymous_id: one of them is required")
	}
	if f := env[roleID]; f != nil && f.kind != kindString {
		return Call{}, newError(CodeInvalidProperty, "id", "must be a string, not "+f.kind.String())
	}
	ts, err := timestampOf(env[roleTimestamp], r.Time)
	if err != nil {
		return Call{}, err
	}
	if err := checkEvent(ev, fields, names); err != nil {
		return Call{}, err
	}

	// Every string the call needs lives in one allocation: the property
	// names collected so far, then the message id and the identities.
	d := draft{ev: ev, ts: ts}
	strs := names
	d.msgID.start = len(strs)
	if f := env[roleID]; f != nil {
		var buf [64]byte
		strs = appendMessageID(strs, text(buf[:0], &f.pair), &r)
	} else {
		strs = appendMessageID(strs, nil, &r)
	}
	d.msgID.end = len(strs)
	if f := env[roleUserID]; f != nil {
		d.user = f.val
		d.userID.start = len(strs)
		strs = appendText(strs, &f.pair)
		d.userID.end = len(strs)
	}
	if f := env[roleAnonymousID]; f != nil {
		d.anon = f.val
		d.anonID.start = len(strs)
		strs = appendText(strs, &f.pair)
		d.anonID.end = len(strs)
	}
	return encode(d, fields, string(strs))
}

// collect scans the record and returns its present fields in input order,
// with their snake_case names appended to names.
func collect(data []byte, fields []field, names []byte) ([]field, []byte, error) {
	s := scanner{data: data}
	s.space()
	if s.pos >= len(data) {
		return nil, nil, newError(CodeInvalidJSON, "", "the value is empty")
	}
	if what := startsValue(data[s.pos]); what != "" && what != "an object" {
		return nil, nil, newError(CodeInvalidJSON, "", "the value is "+what+", not an object")
	}
	it := objectIter{s: s, depth: 1}
	var keyBuf [64]byte
	for {
		p, ok := it.next()
		if !ok {
			break
		}
		if p.absent() {
			continue
		}
		start := len(names)
		names = appendSnake(names, unquote(keyBuf[:0], p.key, p.keyFlags))
		fields = append(fields, field{pair: p, name: span{start, len(names)}, role: roleOf(names[start:])})
	}
	if it.s.err != "" {
		f := ""
		if it.key != nil {
			var buf [64]byte
			f = string(appendSnake(nil, unquote(buf[:0], it.key, flagEscaped)))
		}
		return nil, nil, newError(CodeInvalidJSON, f, it.s.err)
	}
	it.s.space()
	if it.s.pos < len(data) {
		it.s.fail("unexpected data after the object")
		return nil, nil, newError(CodeInvalidJSON, "", it.s.err)
	}
	return fields, names, nil
}

// startsValue names the JSON type a value starting with c would have, or
// returns "" when no JSON value starts with c.
func startsValue(c byte) string {
	switch {
	case c == '{':
		return "an object"
	case c == '[':
		return "an array"
	case c == '"':
		return "a string"
	case c == 't' || c == 'f':
		return "a boolean"
	case c == 'n':
		return "null"
	case c == '-' || isDigit(c):
		return "a number"
	}
	return ""
}

// dedupe drops the later spellings of a field that repeat its value and
// fails on the first spelling that contradicts it.
func dedupe(fields []field, names []byte) ([]field, error) {
	kept := fields[:0]
	var index map[string]int // for records with many fields: linear search is quadratic
	if len(fields) > 32 {
		index = make(map[string]int, len(fields))
	}
next:
	for _, f := range fields {
		name := names[f.name.start:f.name.end]
		if index != nil {
			if j, ok := index[string(name)]; ok {
				if !jsonEqual(kept[j].val, f.val) {
					return nil, conflict(string(name), kept[j].key, f.key)
				}
				continue
			}
			index[string(name)] = len(kept)
		} else {
			for j := range kept {
				if bytes.Equal(names[kept[j].name.start:kept[j].name.end], name) {
					if !jsonEqual(kept[j].val, f.val) {
						return nil, conflict(string(name), kept[j].key, f.key)
					}
					continue next
				}
			}
		}
		kept = append(kept, f)
	}
	return kept, nil
}

func conflict(field string, key1, key2 []byte) *Error {
	if bytes.Equal(key1, key2) {
		return newError(CodeInvalidProperty, field, `"`+string(key1)+`" appears twice with different values`)
	}
	return newError(CodeInvalidProperty, field, `"`+string(key1)+`" and "`+string(key2)+`" have different values`)
}

// jsonEqual reports whether two valid JSON values are the same value:
// equal once decoded, numbers compared by their text. Only records that
// spell a field twice get past the first comparison.
func jsonEqual(a, b []byte) bool {
	if bytes.Equal(a, b) {
		return true
	}
	va, errA := decode(a)
	vb, errB := decode(b)
	return errA == nil && errB == nil && reflect.DeepEqual(va, vb)
}

func decode(b []byte) (any, error) {
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	var v any
	err := d.Decode(&v)
	return v, err
}

// eventOf finds the catalogue row the type field names.
func eventOf(f *field) (*event, error) {
	if f == nil {
		return nil, newError(CodeUnknownEvent, "type", "missing")
	}
	if f.kind != kindString {
		return nil, newError(CodeUnknownEvent, "type", "must be a string naming one of the "+strconv.Itoa(len(catalogue))+" events, not "+f.kind.String())
	}
	var buf [64]byte
	typ := text(buf[:0], &f.pair)
	ev := lookup(typ)
	if ev == nil {
		return nil, newError(CodeUnknownEvent, "type", quote(typ)+" is not one of the "+strconv.Itoa(len(catalogue))+" events")
	}
	return ev, nil
}

// timestampOf returns the call's timestamp: the record's, else the Kafka
// record's, in UTC with millisecond precision. Never the current time.
func timestampOf(f *field, kafka time.Time) (time.Time, error) {
	var t time.Time
	switch {
	case f == nil:
		// Kafka reports "no timestamp" as -1 ms; a zero time is a caller
		// that set none. Either way there is no honest time to send.
		if kafka.IsZero() || kafka.UnixMilli() < 0 {
			return t, newError(CodeInvalidTimestamp, "timestamp", "absent, and the Kafka record has no timestamp either")
		}
		t = kafka
	case f.kind == kindString:
		var buf, upper [64]byte
		s := text(buf[:0], &f.pair)
		var err error
		if !rfc3339(s) {
			err = errNotRFC3339
		} else {
			// time.Parse wants an upper-case T and Z, RFC 3339 allows both cases.
			u := append(upper[:0], s...)
			for i, c := range u {
				if c == 't' || c == 'z' {
					u[i] = c - ('a' - 'A')
				}
			}
			t, err = time.Parse(time.RFC3339, string(u))
		}
		if err != nil {
			return t, newError(CodeInvalidTimestamp, "timestamp", quote(s)+" is neither RFC 3339 nor integer epoch milliseconds")
		}
	case f.kind == kindNumber && f.flags&flagInteger != 0:
		ms, ok := parseInt(f.val)
		if !ok {
			return t, newError(CodeInvalidTimestamp, "timestamp", quote(f.val)+" is out of range")
		}
		t = time.UnixMilli(ms)
	case f.kind == kindNumber:
		return t, newError(CodeInvalidTimestamp, "timestamp", quote(f.val)+" is not an integer number of epoch milliseconds")
	default:
		return t, newError(CodeInvalidTimestamp, "timestamp", "must be an RFC 3339 string or integer epoch milliseconds, not "+f.kind.String())
	}
	t = t.UTC().Truncate(time.Millisecond)
	// RFC 3339 has four-digit years, and analytics-go takes the zero time
	// for "unset" and would replace it with the time of sending.
	if y := t.Year(); y < 1 || y > 9999 || t.IsZero() {
		return t, newError(CodeInvalidTimestamp, "timestamp", "out of range: must lie after 0001-01-01T00:00:00Z and before year 10000")
	}
	return t, nil
}

var errNotRFC3339 = errors.New("not RFC 3339")

// rfc3339 reports whether s has the shape of an RFC 3339 date-time:
//
//	YYYY-MM-DDTHH:MM:SS[.fraction](Z|+HH:MM|-HH:MM), T and Z in either case
//
// time.Parse checks the ranges of the parts but is more lenient about the
// shape: it takes a comma before the fraction and offset hours up to 24.
func rfc3339(s []byte) bool {
	const shape = "dddd-dd-ddTdd:dd:dd"
	if len(s) < len(shape)+1 {
		return false
	}
	for i := 0; i < len(shape); i++ {
		switch c := s[i]; shape[i] {
		case 'd':
			if !isDigit(c) {
				return false
			}
		case 'T':
			if c != 'T' && c != 't' {
				return false
			}
		default:
			if c != shape[i] {
				return false
			}
		}
	}
	s = s[len(shape):]
	if s[0] == '.' {
		n := 1
		for n < len(s) && isDigit(s[n]) {
			n++
		}
		if n == 1 {
			return false
		}
		s = s[n:]
	}
	switch {
	case len(s) == 1:
		return s[0] == 'Z' || s[0] == 'z'
	case len(s) == 6:
		return (s[0] == '+' || s[0] == '-') && isDigit(s[1]) && isDigit(s[2]) && s[3] == ':' &&
			isDigit(s[4]) && isDigit(s[5]) && (s[1]-'0')*10+s[2]-'0' <= 23 && s[4] <= '5'
	}
	return false
}

// parseInt parses a JSON integer into an int64.
func parseInt(b []byte) (int64, bool) {
	neg := b[0] == '-'
	if neg {
		b = b[1:]
	}
	var n uint64
	for _, c := range b {
		if n > (1<<63)/10 {
			return 0, false
		}
		n = n*10 + uint64(c-'0')
	}
	switch {
	case neg && n <= 1<<63:
		return -int64(n), true
	case !neg && n < 1<<63:
		return int64(n), true
	}
	return 0, false
}

// checkEvent checks what the event requires: its id and its metadata.
func checkEvent(ev *event, fields []field, names []byte) error {
	id := find(fields, names, ev.ID)
	if id == nil {
		return newError(CodeMissingProperty, ev.ID, "required by "+quote([]byte(ev.Name)))
	}
	if msg := ruleStringOrInteger.check(&id.pair, nil); msg != "" {
		return newError(CodeInvalidProperty, ev.ID, msg)
	}
	if len(ev.Metadata) == 0 {
		return nil
	}
	md := find(fields, names, metadataName)
	if md == nil {
		return newError(CodeMissingProperty, metadataName, "required by "+quote([]byte(ev.Name)))
	}
	if md.kind != kindObject {
		return newError(CodeInvalidProperty, metadataName, "must be an object, not "+md.kind.String())
	}
	return checkMetadata(ev, md.val)
}

// checkMetadata checks the members the event requires of its metadata.
// Members may be spelled in camelCase or snake_case, like fields; they are
// checked here and forwarded as given.
func checkMetadata(ev *event, raw []byte) error {
	var gotBuf [4]pair
	got := gotBuf[:0]
	for range ev.Metadata {
		got = append(got, pair{})
	}
	it := objectIter{s: scanner{data: raw}, depth: 2}
	var keyBuf, nameBuf [64]byte
	for {
		p, ok := it.next()
		if !ok {
			break
		}
		if p.absent() {
			continue
		}
		name := appendSnake(nameBuf[:0], unquote(keyBuf[:0], p.key, p.keyFlags))
		for i := range ev.Metadata {
			if string(name) != ev.Metadata[i].snake {
				continue
			}
			if got[i].kind == 0 {
				got[i] = p
			} else if !jsonEqual(got[i].val, p.val) {
				return conflict(metadataName+"."+ev.Metadata[i].Name, got[i].key, p.key)
			}
			break
		}
	}
	for i, m := range ev.Metadata {
		field := metadataName + "." + m.Name
		if got[i].kind == 0 {
			return newError(CodeMissingProperty, field, "required by "+quote([]byte(ev.Name)))
		}
		if msg := m.Rule.check(&got[i], m.OneOf); msg != "" {
			return newError(CodeInvalidProperty, field, msg)
		}
	}
	return nil
}

// check returns "" when the value obeys the rule, else what is wrong.
func (r rule) check(p *pair, oneOf []string) string {
	integer := p.kind == kindNumber && p.flags&flagInteger != 0
	switch r {
	case ruleStringOrInteger:
		if p.kind == kindString || integer {
			return ""
		}
	case ruleNonNegativeInteger:
		if integer && (p.flags&flagNegative == 0 || isZero(p.val)) {
			return ""
		}
	case ruleOneOf:
		if p.kind == kindString {
			var buf [64]byte
			s := text(buf[:0], p)
			for _, want := range oneOf {
				if string(s) == want {
					return ""
				}
			}
		}
	}
	return "must be " + article(r.describe(oneOf)) + ", not " + show(p)
}

func article(desc string) string {
	if desc[0] == '"' {
		return desc
	}
	if desc[0] == 'i' {
		return "an " + desc
	}
	return "a " + desc
}

// isZero reports whether an integer's digits are all zero ("-0").
func isZero(b []byte) bool {
	for _, c := range b {
		if c != '-' && c != '0' {
			return false
		}
	}
	return true
}

// show describes a wrong value for an error message: scalars as given
// (shortened), containers by their type.
func show(p *pair) string {
	if p.kind == kindObject || p.kind == kindArray {
		return p.kind.String()
	}
	return quoteJSON(p.val)
}

// find returns the field with the given snake_case name, or nil.
func find(fields []field, names []byte, name string) *field {
	for i := range fields {
		if string(names[fields[i].name.start:fields[i].name.end]) == name {
			return &fields[i]
		}
	}
	return nil
}

func nameOf(f *field, names []byte) string {
	return string(names[f.name.start:f.name.end])
}

// text returns the text of the string value p: its raw bytes when it has
// no escapes, else its decoded text in buf.
func text(buf []byte, p *pair) []byte {
	return unquote(buf, p.val[1:len(p.val)-1], p.flags)
}

// appendText appends the text of the string value p.
func appendText(dst []byte, p *pair) []byte {
	raw := p.val[1 : len(p.val)-1]
	if p.flags&flagEscaped == 0 {
		return append(dst, raw...)
	}
	return appendUnescaped(dst, raw)
}

// unquote returns the text of a JSON string given without its quotes.
func unquote(buf, raw []byte, flags uint8) []byte {
	if flags&flagEscaped == 0 {
		return raw
	}
	return appendUnescaped(buf, raw)
}

// maxShown bounds how much of a value an error message repeats.
const maxShown = 64

// quote quotes text for an error message.
func quote(s []byte) string {
	s, more := shorten(s)
	return strconv.Quote(string(s)) + more
}

// quoteJSON repeats a JSON value for an error message.
func quoteJSON(v []byte) string {
	v, more := shorten(v)
	return string(v) + more
}

// shorten cuts s to at most maxShown bytes at a character boundary.
func shorten(s []byte) ([]byte, string) {
	if len(s) <= maxShown {
		return s, ""
	}
	n := maxShown
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n], "…"
}
