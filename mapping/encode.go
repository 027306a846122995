package mapping

import (
	"crypto/sha1"
	"slices"
	"strconv"
	"time"
	"unsafe"

	"github.com/google/uuid"
	"github.com/segmentio/analytics-go/v3"

	"github.com/produktly/produktly-segment/timestamp"
)

// maxMessageBytes is Segment's per-message limit, as analytics-go enforces
// it (maxMessageBytes in its message.go): 32000 bytes of encoded message.
const maxMessageBytes = 32000

// The partner-source convention: context.integration names the source.
const (
	integrationName    = "Produktly"
	integrationVersion = "1.0.0"
)

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
	// The hashed input is the namespace, then the name.
	var buf [128]byte
	name := append(buf[:0], namespace[:]...)
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
	return appendUUID(dst, version5(sha1.Sum(name)))
}

// newSHA1 is uuid.NewSHA1(namespace, name) without its heap allocations
// (a hash.Hash and its sum); a test holds the two equal.
func newSHA1(name []byte) uuid.UUID {
	var buf [256]byte
	return version5(sha1.Sum(append(append(buf[:0], namespace[:]...), name...)))
}

// version5 makes a version 5 UUID of a SHA-1 sum.
func version5(sum [sha1.Size]byte) uuid.UUID {
	var u uuid.UUID
	copy(u[:], sum[:])
	u[6] = u[6]&0x0f | 0x50 // version 5
	u[8] = u[8]&0x3f | 0x80 // RFC 4122 variant
	return u
}

// appendUUID appends u in its canonical 36-character form.
func appendUUID(dst []byte, u uuid.UUID) []byte {
	var b [uuidLen]byte
	// Two hex digits per byte from one table entry, at fixed positions.
	for i, j := range uuidPos {
		h := hexPairs[u[i]]
		b[j], b[j+1] = h[0], h[1]
	}
	b[8], b[13], b[18], b[23] = '-', '-', '-', '-'
	return append(dst, b[:]...)
}

// uuidPos is where the hex digits of each byte of a UUID go in its text.
var uuidPos = [16]uint8{0, 2, 4, 6, 9, 11, 14, 16, 19, 21, 24, 26, 28, 30, 32, 34}

// hexPairs holds the two lower-case hex digits of every byte.
var hexPairs = func() (t [256][2]byte) {
	for i := range t {
		t[i] = [2]byte{hexDigits[i>>4], hexDigits[i&0xf]}
	}
	return t
}()

// draft is a call whose parts have been checked, ready to encode.
type draft struct {
	ev *event
	ts time.Time
	// tsText is the record's timestamp text when it is ts as the message
	// writes it, else nil.
	tsText []byte
	// Spans in the call's strings (see encode).
	msgID, userID, anonID, accountID span
	// user and anon are the raw JSON strings of userId and anonymousId,
	// nil when absent; they are copied into the message as given.
	user, anon []byte
}

// encode writes the track message by appending to dst:
//
//	{"type":"track","messageId":…,"userId":…,"anonymousId":…,"event":…,
//	 "timestamp":…,"properties":{…},"context":{"integration":{…}}}
//
// fields are the record's present fields, deduplicated, in input order;
// names holds their snake_case names, ids the message id, the identities
// and the account (d's spans). With withProps, the call carries its
// Properties. Neither is a draft field: escape analysis is not
// field-sensitive, and fields, names and ids live in Map's stack buffers,
// which must not appear to flow into the result.
func encode(dst []byte, d draft, data []byte, fields []field, names, ids []byte, h how) (Call, []byte, error) {
	props, onto := h&withProps != 0, h&stringsInDst != 0
	// The exact size, unless names need escapes (rare: the slack covers a
	// few) or values lose whitespace. (Sized just so, a message often
	// fits a smaller size class.)
	size := len(msgHead) + uuidLen + len(`"`) + len(d.ev.eventPart) + timestamp.Width +
		len(`","properties":{`) + len(msgTail)
	if d.user != nil {
		size += len(`,"userId":`) + len(d.user)
	}
	if d.anon != nil {
		size += len(`,"anonymousId":`) + len(d.anon)
	}
	n := 0
	slack := 0
	for i := range fields {
		if f := &fields[i]; f.role == roleProperty {
			n++
			size += f.name.len() + f.val.len() + len(`,"":`)
			if f.keyFlags&flagEscaped != 0 {
				slack = 32
			}
		}
	}
	size += slack
	// A call encoded into a buffer of its own shares it with its strings
	// (see below), so that one allocation holds the whole call.
	strsLen := len(ids)
	if props {
		strsLen += len(names)
	}
	fresh := len(dst) == 0 && cap(dst) < size
	var out []byte
	switch {
	case fresh:
		out = make([]byte, 0, size+strsLen)
	case onto:
		out = slices.Grow(dst, size+strsLen)
	default:
		out = slices.Grow(dst, size)
	}
	base := len(dst)
	out = append(out, msgHead...)
	out = append(out, ids[d.msgID.start:d.msgID.end]...)
	out = append(out, '"')
	if d.user != nil {
		out = append(out, `,"userId":`...)
		out = append(out, d.user...)
	}
	if d.anon != nil {
		out = append(out, `,"anonymousId":`...)
		out = append(out, d.anon...)
	}
	out = append(out, d.ev.eventPart...)
	if d.tsText != nil {
		out = append(out, d.tsText...)
	} else {
		out = timestamp.Append(out, d.ts)
	}
	out = append(out, `","properties":{`...)

	first := true
	for i := 0; i < len(fields); i++ {
		f := &fields[i]
		if f.role != roleProperty {
			continue
		}
		if !first {
			out = append(out, ',')
		}
		first = false
		if f.verbatim {
			// Verbatim properties next to each other in the record are
			// the same bytes in the message, commas included: one copy.
			from, to := f.key.start-1, f.val.end
			j := i
			for j+1 < len(fields) {
				g := &fields[j+1]
				if g.role != roleProperty || !g.verbatim || g.key.start != to+2 {
					break
				}
				j++
				to = g.val.end
			}
			at := int32(len(out)-base) - from
			out = append(out, data[from:to]...)
			for k := i; k <= j; k++ {
				g := &fields[k]
				g.out = span{at + g.val.start, at + g.val.end}
			}
			i = j
			continue
		}
		name := names[f.name.start:f.name.end]
		if f.keyFlags&flagEscaped == 0 {
			// The name came from an unescaped JSON key: it holds no quote,
			// backslash or control character, and neither does its
			// snake_case form.
			out = append(out, '"')
			out = append(out, name...)
			out = append(out, '"', ':')
		} else {
			out = appendString(out, name)
			out = append(out, ':')
		}
		start := len(out)
		if val := data[f.val.start:f.val.end]; f.flags&flagSpace != 0 {
			out = appendCompact(out, val)
		} else {
			out = append(out, val...)
		}
		f.out = spanOf(start-base, len(out)-base)
	}
	out = append(out, msgTail...)

	msg := out[base:len(out):len(out)]
	if len(msg) > maxMessageBytes {
		var largest *field
		for i := range fields {
			if f := &fields[i]; f.role == roleProperty && (largest == nil || f.out.len() > largest.out.len()) {
				largest = f
			}
		}
		return Call{}, dst, newError(CodeTooLarge, string(names[largest.name.start:largest.name.end]),
			"the encoded call is "+strconv.Itoa(len(msg))+" bytes, over Segment's limit of "+
				strconv.Itoa(maxMessageBytes)+"; this property's value is "+
				strconv.Itoa(largest.out.len())+" bytes")
	}

	// The call's strings, with props the property names first, in one
	// piece: behind the message in a fresh buffer, or in an arena
	// (MapOnto), when it has room, where they are out of reach of the
	// message's slice (capped at its length), so nothing can write to
	// them once they are strings; else in a string of their own. A fresh
	// buffer is returned capped before them, an arena extended over them.
	var sb []byte
	behind := (fresh || onto) && cap(out)-len(out) >= strsLen
	if behind {
		sb = out[len(out):len(out)]
	} else {
		sb = make([]byte, 0, strsLen)
	}
	if props {
		sb = append(sb, names...)
	}
	sb = append(sb, ids...)
	switch {
	case behind && onto:
		out = out[:len(out)+len(sb)]
	case behind:
		out = out[:len(out):len(out)]
	}
	strs := unsafe.String(unsafe.SliceData(sb), len(sb))
	off := 0
	var ps []Property
	if props {
		off = len(names)
		ps = make([]Property, 0, n)
		for i := range fields {
			if f := &fields[i]; f.role == roleProperty {
				ps = append(ps, Property{Name: strs[f.name.start:f.name.end], Value: msg[f.out.start:f.out.end:f.out.end]})
			}
		}
	}
	return Call{
		MessageID:   strs[off+int(d.msgID.start) : off+int(d.msgID.end)],
		Event:       d.ev.Name,
		UserID:      strs[off+int(d.userID.start) : off+int(d.userID.end)],
		AnonymousID: strs[off+int(d.anonID.start) : off+int(d.anonID.end)],
		AccountID:   strs[off+int(d.accountID.start) : off+int(d.accountID.end)],
		Timestamp:   d.ts,
		Properties:  ps,
		JSON:        msg,
	}, out, nil
}

// The fixed parts of every message.
const (
	msgHead = `{"type":"track","messageId":"`
	msgTail = `},"context":{"integration":{"name":"` + integrationName + `","version":"` + integrationVersion + `"}}}`
	uuidLen = 36
)

// Track converts the call to analytics-go's form, losslessly: marshalled
// with encoding/json it is the same message as c.JSON (keys in another
// order). Property values are json.RawMessage sharing c.JSON's bytes.
// Prefer c.JSON for sending: analytics-go escapes <, > and & in strings,
// which can make its encoding longer than c.JSON.
func (c Call) Track() analytics.Track {
	ps := c.Properties
	if ps == nil {
		ps = propertiesOf(c.JSON)
	}
	props := make(analytics.Properties, len(ps))
	for _, p := range ps {
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

// propertiesOf reads the properties back from an encoded call, for a call
// that MapInto made without them. Every call has at least its required id,
// so a nil Properties always means "not built".
func propertiesOf(msg []byte) []Property {
	var ps []Property
	it := objectIter{s: scanner{data: msg}, depth: 1}
	var p pair
	for it.nextInto(&p) {
		if string(p.key) != "properties" {
			continue
		}
		inner := objectIter{s: scanner{data: p.val}, depth: 2}
		var q pair
		for inner.nextInto(&q) {
			ps = append(ps, Property{Name: string(unquote(nil, q.key, q.keyFlags)), Value: q.val[:len(q.val):len(q.val)]})
		}
		break
	}
	return ps
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
