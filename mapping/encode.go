package mapping

import (
	"crypto/sha1"
	"strconv"
	"time"

	"github.com/google/uuid"
	"github.com/segmentio/analytics-go/v3"
)

// maxMessageBytes is Segment's per-message limit, as analytics-go enforces
// it (maxMessageBytes in its message.go): 32000 bytes of encoded message.
const maxMessageBytes = 32000

// The partner-source convention: context.integration names the source.
const (
	integrationName    = "Produktly"
	integrationVersion = "1.0.0"
)

// timeLayout is RFC 3339 in UTC with exactly three fractional digits:
// Segment keeps milliseconds, and a fixed width keeps messages comparable.
const timeLayout = "2006-01-02T15:04:05.000Z07:00"

// namespace is the project's UUID namespace for message ids, fixed forever:
// uuid.NewSHA1(uuid.NameSpaceURL, []byte("https://github.com/produktly/produktly-segment")).
// Changing it would give every redelivered record a new message id and
// defeat Segment's de-duplication.
var namespace = uuid.MustParse("3cb87268-174b-5295-bc79-ee14a9373ac5")

// appendMessageID appends the call's deterministic message id: a version 5
// UUID of "id:<id>" when the record has an id, else of
// "kafka:<topic>/<partition>/<offset>". The prefixes keep the two name
// spaces apart, and partition and offset are integers, so a name reads back
// unambiguously from the right whatever the topic holds: distinct records
// never share a name. In accounts mode (account non-nil) a record's id is
// named "account:<account>/id:<id>" instead.
func appendMessageID(dst, account, id []byte, r *Record) []byte {
	var buf [128]byte
	name := buf[:0]
	if id != nil {
		if account != nil {
			name = append(name, "account:"...)
			name = append(name, account...)
			name = append(name, '/')
		}
		name = append(name, "id:"...)
		name = append(name, id...)
	} else {
		name = append(name, "kafka:"...)
		name = append(name, r.Topic...)
		name = append(name, '/')
		name = strconv.AppendInt(name, int64(r.Partition), 10)
		name = append(name, '/')
		name = strconv.AppendInt(name, r.Offset, 10)
	}
	return appendUUID(dst, newSHA1(name))
}

// newSHA1 is uuid.NewSHA1(namespace, name) without its heap allocations
// (a hash.Hash and its sum); a test holds the two equal.
func newSHA1(name []byte) uuid.UUID {
	var buf [256]byte
	sum := sha1.Sum(append(append(buf[:0], namespace[:]...), name...))
	var u uuid.UUID
	copy(u[:], sum[:])
	u[6] = u[6]&0x0f | 0x50 // version 5
	u[8] = u[8]&0x3f | 0x80 // RFC 4122 variant
	return u
}

// appendUUID appends u in its canonical 36-character form.
func appendUUID(dst []byte, u uuid.UUID) []byte {
	for i, b := range u {
		if i == 4 || i == 6 || i == 8 || i == 10 {
			dst = append(dst, '-')
		}
		dst = append(dst, hexDigits[b>>4], hexDigits[b&0xf])
	}
	return dst
}

// draft is a call whose parts have been checked, ready to encode.
type draft struct {
	ev *event
	ts time.Time
	// Spans in the call's strings (see encode).
	msgID, userID, anonID, accountID span
	// user and anon are the raw JSON strings of userId and anonymousId,
	// nil when absent; they are copied into the message as given.
	user, anon []byte
}

// encode writes the track message by appending to one buffer:
//
//	{"type":"track","messageId":…,"userId":…,"anonymousId":…,"event":…,
//	 "timestamp":…,"properties":{…},"context":{"integration":{…}}}
//
// fields are the record's present fields, deduplicated, in input order;
// strs holds the property names, the message id and the identities. Neither
// is a draft field: escape analysis is not field-sensitive, and fields live
// in Map's stack buffer, which must not appear to flow into the result.
func encode(d draft, fields []field, strs string) (Call, error) {
	size := 256 + len(d.user) + len(d.anon)
	n := 0
	for i := range fields {
		if f := &fields[i]; f.role == roleProperty {
			n++
			size += f.name.end - f.name.start + len(f.val) + 4
		}
	}
	out := make([]byte, 0, size)
	out = append(out, `{"type":"track","messageId":"`...)
	out = append(out, strs[d.msgID.start:d.msgID.end]...)
	out = append(out, '"')
	if d.user != nil {
		out = append(out, `,"userId":`...)
		out = append(out, d.user...)
	}
	if d.anon != nil {
		out = append(out, `,"anonymousId":`...)
		out = append(out, d.anon...)
	}
	out = append(out, `,"event":`...)
	out = appendString(out, d.ev.Name)
	out = append(out, `,"timestamp":"`...)
	out = appendTimestamp(out, d.ts)
	out = append(out, `","properties":{`...)

	props := make([]Property, 0, n)
	var spanBuf [32]span
	spans := spanBuf[:0]
	for i := range fields {
		f := &fields[i]
		if f.role != roleProperty {
			continue
		}
		if len(props) > 0 {
			out = append(out, ',')
		}
		name := strs[f.name.start:f.name.end]
		out = appendString(out, name)
		out = append(out, ':')
		start := len(out)
		if f.flags&flagSpace != 0 {
			out = appendCompact(out, f.val)
		} else {
			out = append(out, f.val...)
		}
		spans = append(spans, span{start, len(out)})
		props = append(props, Property{Name: name})
	}
	out = append(out, `},"context":{"integration":{"name":"`+integrationName+`","version":"`+integrationVersion+`"}}}`...)

	if len(out) > maxMessageBytes {
		largest := 0
		for i := range spans {
			if spans[i].end-spans[i].start > spans[largest].end-spans[largest].start {
				largest = i
			}
		}
		return Call{}, newError(CodeTooLarge, props[largest].Name,
			"the encoded call is "+strconv.Itoa(len(out))+" bytes, over Segment's limit of "+
				strconv.Itoa(maxMessageBytes)+"; this property's value is "+
				strconv.Itoa(spans[largest].end-spans[largest].start)+" bytes")
	}
	for i, s := range spans {
		props[i].Value = out[s.start:s.end:s.end]
	}
	return Call{
		MessageID:   strs[d.msgID.start:d.msgID.end],
		Event:       d.ev.Name,
		UserID:      strs[d.userID.start:d.userID.end],
		AnonymousID: strs[d.anonID.start:d.anonID.end],
		AccountID:   strs[d.accountID.start:d.accountID.end],
		Timestamp:   d.ts,
		Properties:  props,
		JSON:        out,
	}, nil
}

// Track converts the call to analytics-go's form, losslessly: marshalled
// with encoding/json it is the same message as c.JSON (keys in another
// order). Property values are json.RawMessage sharing c.JSON's bytes.
// Prefer c.JSON for sending: analytics-go escapes <, > and & in strings,
// which can make its encoding longer than c.JSON.
func (c Call) Track() analytics.Track {
	props := make(analytics.Properties, len(c.Properties))
	for _, p := range c.Properties {
		props[p.Name] = p.Value
	}
	return analytics.Track{
		Type:        "track",
		MessageId:   c.MessageID,
		AnonymousId: c.AnonymousID,
		UserId:      c.UserID,
		Event:       c.Event,
		Timestamp:   c.Timestamp,
		Context: &analytics.Context{Extra: map[string]any{
			"integration": map[string]any{"name": integrationName, "version": integrationVersion},
		}},
		Properties: props,
	}
}

// appendCompact appends the valid JSON value v without insignificant
// whitespace. Bytes inside strings are copied unchanged.
func appendCompact(dst, v []byte) []byte {
	inString := false
	start := 0
	for i := 0; i < len(v); i++ {
		c := v[i]
		if inString {
			switch c {
			case '\\':
				i++
			case '"':
				inString = false
			}
			continue
		}
		switch c {
		case '"':
			inString = true
		case ' ', '\t', '\n', '\r':
			dst = append(dst, v[start:i]...)
			start = i + 1
		}
	}
	return append(dst, v[start:]...)
}

// appendTimestamp appends t as timeLayout does, in UTC, without the general
// layout interpreter of time.Time.AppendFormat, which was a tenth of the
// service's CPU time spent in mapping. Years are 0001–9999 (timestamps
// outside are refused before encoding).
func appendTimestamp(b []byte, t time.Time) []byte {
	t = t.UTC()
	year, month, day := t.Date()
	hour, minute, sec := t.Clock()
	ms := t.Nanosecond() / 1e6
	b = append(b, byte('0'+year/1000), byte('0'+year/100%10), byte('0'+year/10%10), byte('0'+year%10), '-')
	b = appendTwo(b, int(month), '-')
	b = appendTwo(b, day, 'T')
	b = appendTwo(b, hour, ':')
	b = appendTwo(b, minute, ':')
	b = appendTwo(b, sec, '.')
	return append(b, byte('0'+ms/100), byte('0'+ms/10%10), byte('0'+ms%10), 'Z')
}

func appendTwo(b []byte, v int, sep byte) []byte {
	return append(b, byte('0'+v/10), byte('0'+v%10), sep)
}
