package mapping

import (
	"strconv"
	"time"

	"github.com/produktly/produktly-segment/timestamp"
)

// eventOf finds the catalogue row the type field names.
func eventOf(f *pair) (*event, error) {
	if f == nil {
		return nil, newError(CodeUnknownEvent, "type", "missing")
	}
	if f.kind != kindString {
		return nil, newError(CodeUnknownEvent, "type", "must be a string naming one of the "+strconv.Itoa(len(catalogue))+" events, not "+f.kind.String())
	}
	var buf [64]byte
	typ := text(buf[:0], f)
	ev := lookup(typ)
	if ev == nil {
		return nil, newError(CodeUnknownEvent, "type", quote(typ)+" is not one of the "+strconv.Itoa(len(catalogue))+" events")
	}
	return ev, nil
}

// timestampOf returns the call's timestamp: the record's, else the Kafka
// record's, in UTC with millisecond precision. Never the current time.
func timestampOf(f *pair, kafka time.Time) (time.Time, error) {
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
		var buf [64]byte
		s := text(buf[:0], f)
		ok := rfc3339(s)
		if ok {
			t, ok = parseRFC3339(s)
		}
		if !ok {
			return t, newError(CodeInvalidTimestamp, "timestamp", quote(s)+" is neither RFC 3339 nor integer epoch milliseconds")
		}
		// parseRFC3339 gives UTC in whole milliseconds already.
		if sec := t.Unix(); sec > minUnix && sec < maxUnix {
			return t, nil
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
	// for "unset" and would replace it with the time of sending. Inside
	// the window the year needs no computing.
	if sec := t.Unix(); sec > minUnix && sec < maxUnix {
		return t, nil
	}
	if y := t.Year(); y < 1 || y > 9999 || t.IsZero() {
		return t, newError(CodeInvalidTimestamp, "timestamp", "out of range: must lie after 0001-01-01T00:00:00Z and before year 10000")
	}
	return t, nil
}

// canonicalTimestamp returns the text of a valid timestamp that is
// written exactly as the message writes it (timestamp.Append: UTC, three
// fractional digits, upper-case T and Z), else nil. Such a text is copied
// into the message instead of formatting the time again.
func canonicalTimestamp(p *pair) []byte {
	if p == nil || p.kind != kindString || p.flags&flagEscaped != 0 || len(p.val) != timestamp.Width+2 {
		return nil
	}
	// timestampOf accepted the shape: digits where digits go.
	v := p.val[1 : len(p.val)-1]
	if v[10] != 'T' || v[19] != '.' || v[23] != 'Z' {
		return nil
	}
	return v
}

// The seconds of 0001-01-01T00:00:00Z, the zero time, and of
// 10000-01-01T00:00:00Z: a time strictly between lies in years 1-9999 and
// is not the zero time.
const (
	minUnix = -62135596800
	maxUnix = 253402300800
)

// parseRFC3339 parses a date-time that has rfc3339's shape and checks the
// ranges of its parts as time.Parse(time.RFC3339, …) does (days of the
// month, leap years, seconds below 60, offsets up to 23:59), without its
// search for a local zone that matches the offset, and returns the time
// as timestampOf does: in UTC, truncated to milliseconds.
func parseRFC3339(s []byte) (time.Time, bool) {
	two := func(b []byte) int { return int(b[0]-'0')*10 + int(b[1]-'0') }
	year := two(s[0:])*100 + two(s[2:])
	month, day := two(s[5:]), two(s[8:])
	hour, minute, sec := two(s[11:]), two(s[14:]), two(s[17:])
	if month < 1 || month > 12 || day < 1 || day > daysIn(month, year) || hour > 23 || minute > 59 || sec > 59 {
		return time.Time{}, false
	}
	s = s[19:]
	nsec := 0
	if s[0] == '.' {
		n := 1
		for ; n < len(s) && isDigit(s[n]); n++ {
			if n <= 9 {
				nsec = nsec*10 + int(s[n]-'0')
			}
		}
		for i := n; i <= 9; i++ {
			nsec *= 10
		}
		s = s[n:]
	}
	unix := daysSinceEpoch(year, month, day)*86400 + int64(hour*3600+minute*60+sec)
	if len(s) == 6 { // ±hh:mm; rfc3339 checked its ranges
		offset := int64(two(s[1:])*3600 + two(s[4:])*60)
		if s[0] == '+' {
			offset = -offset
		}
		unix += offset
	}
	// In UTC and whole milliseconds, as timestampOf returns every time.
	return time.Unix(unix, int64(nsec/1e6*1e6)).UTC(), true
}

// daysSinceEpoch is the day of a proleptic Gregorian date counted from
// 1970-01-01 (H. Hinnant's civil-to-days algorithm; civil inverts it).
func daysSinceEpoch(year, month, day int) int64 {
	y := int64(year)
	if month <= 2 {
		y--
	}
	era := y / 400
	if y < 0 && y%400 != 0 {
		era--
	}
	yoe := y - era*400 // [0, 399]
	m := int64(month)
	if m > 2 {
		m -= 3
	} else {
		m += 9
	}
	doy := (153*m+2)/5 + int64(day) - 1    // [0, 365]
	doe := yoe*365 + yoe/4 - yoe/100 + doy // [0, 146096]
	return era*146097 + doe - 719468
}

// daysIn is the number of days in the month of the year, proleptic
// Gregorian as in package time.
func daysIn(month, year int) int {
	switch month {
	case 2:
		if year%4 == 0 && (year%100 != 0 || year%400 == 0) {
			return 29
		}
		return 28
	case 4, 6, 9, 11:
		return 30
	}
	return 31
}

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
	// The separators, then the digits: every other position of the shape.
	if s[4] != '-' || s[7] != '-' || s[10] != 'T' && s[10] != 't' || s[13] != ':' || s[16] != ':' {
		return false
	}
	for _, i := range [...]uint8{0, 1, 2, 3, 5, 6, 8, 9, 11, 12, 14, 15, 17, 18} {
		if !isDigit(s[i]) {
			return false
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

// accountField is the name errors give accountId, in snake_case like every
// field name in errors.
const accountField = "account_id"

// accountRule returns "" when p is a valid accountId (a string, or a number
// without fraction or exponent), else what is wrong. The value itself is
// not quoted: error messages repeat no value of an identifying field.
func accountRule(p *pair) string {
	switch {
	case p.kind == kindString:
		return ""
	case p.kind == kindNumber && p.flags&flagInteger != 0:
		return ""
	case p.kind == kindNumber:
		return "must be a string or an integer, not a number with a fraction or an exponent"
	}
	return "must be a string or an integer, not " + p.kind.String()
}

// appendAccount appends the text of a valid accountId: a string's text, an
// integer's decimal digits as written (JSON integers have no leading zeros
// or plus sign, so 42 and "42" meet).
func appendAccount(dst []byte, p *pair) []byte {
	if p.kind == kindNumber {
		return append(dst, p.val...)
	}
	return appendText(dst, p)
}

// checkEvent checks what the event requires: its id and its metadata.
func checkEvent(ev *event, fields []field, names, data []byte) error {
	idField := find(fields, names, ev.ID)
	if idField == nil {
		return newError(CodeMissingProperty, ev.ID, "required by "+quote([]byte(ev.Name)))
	}
	id := idField.pairIn(data)
	if msg := ruleStringOrInteger.check(&id, nil); msg != "" {
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
	return checkMetadata(ev, data[md.val.start:md.val.end])
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
	for it.member() {
		if it.kind == kindNull || it.kind == kindString && it.val.len() == 2 {
			continue // absent
		}
		key := raw[it.key.start:it.key.end]
		var name []byte
		if k := knownUnescaped(key, it.keyFlags); k != nil {
			name = append(nameBuf[:0], k.snake...)
		} else {
			name = appendSnake(nameBuf[:0], unquote(keyBuf[:0], key, it.keyFlags))
		}
		for i := range ev.Metadata {
			if string(name) != ev.Metadata[i].snake {
				continue
			}
			p := pair{key: key, keyFlags: it.keyFlags, val: raw[it.val.start:it.val.end], kind: it.kind, flags: it.flags}
			if got[i].kind == 0 {
				got[i] = p
			} else if !jsonEqual(got[i].val, p.val) {
				return conflict(metadataName+"."+ev.Metadata[i].Name, got[i].key, p.key)
			}
			break
		}
	}
	for i := range ev.Metadata {
		m := &ev.Metadata[i]
		field := m.field
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

// nameOf returns the snake_case name of the field with role r.
func nameOf(fields []field, names []byte, r role) string {
	for i := range fields {
		if fields[i].role == r {
			return string(names[fields[i].name.start:fields[i].name.end])
		}
	}
	return ""
}
