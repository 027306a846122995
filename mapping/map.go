package mapping

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"math/bits"
	"reflect"
	"slices"
	"time"
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
	// AccountID is the record's accountId as text (an integer as its
	// decimal digits), "" when the record has none. It is read in both
	// modes and never sent to Segment: in accounts mode it names the
	// integration the call goes to.
	AccountID string
	Timestamp time.Time
	// Properties are the call's properties in input order, under their
	// snake_case names. Each Value aliases JSON: treat both as read-only.
	// MapInto and MapAccountInto leave it nil (every call has at least
	// its required id, so nil means "not built").
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
	roleAccountID
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
	case "account_id":
		return roleAccountID
	}
	return roleProperty
}

// span locates bytes in a buffer. Its offsets are 32 bits wide, which
// keeps fields small: no record comes near 2 GiB.
type span struct{ start, end int32 }

func spanOf(start, end int) span { return span{int32(start), int32(end)} }

func (s span) len() int { return int(s.end - s.start) }

// field is a present (neither null nor "") top-level member of the record.
// It holds offsets, not slices: fields are written once per member of
// every record, and stores without pointers need no write barrier while
// the garbage collector runs.
type field struct {
	key, val        span // in the record: the key without its quotes, the value
	name            span // snake_case name, in the names buffer
	out             span // a property's value in the encoded call
	keyFlags, flags uint8
	kind            kind
	role            role
	bit             uint8 // known.nameBit of the snake_case name
	// verbatim: the member as written, "key":value, is the property as
	// encoded (the key is its snake_case name, nothing to compact).
	verbatim bool
}

// pairIn returns the field as a pair of slices of the record data.
func (f *field) pairIn(data []byte) pair {
	return pair{key: data[f.key.start:f.key.end], keyFlags: f.keyFlags, val: data[f.val.start:f.val.end], kind: f.kind, flags: f.flags}
}

// Map maps one raw record to its Segment track call in single-source mode.
// It is pure: the result depends on r alone, and the same record always
// maps to the same call, byte for byte. Every error is an *Error carrying
// one of the contract's codes; when a record breaks several rules, the
// first in this order is reported: invalid_json; invalid_property for two
// spellings with different values; unknown_event; invalid_property for
// userId or anonymousId, then missing_identity; invalid_property for
// accountId; invalid_property for id; invalid_timestamp; the event's own
// id, then its metadata (missing_property, invalid_property); too_large.
//
// accountId is read and checked (Call.AccountID carries it) but neither
// required nor sent, and it plays no part in the messageId.
func Map(r Record) (Call, error) {
	c, _, err := mapRecord(nil, r, withProps)
	return c, err
}

// MapAccount maps one raw record in accounts mode (contract v2). It is Map
// with two differences: a record without accountId (absent, null or "")
// fails with missing_account, reported right after missing_identity; and
// the messageId of a record with an id is derived from
// "account:<accountId>/id:<id>", so two accounts whose interaction ids
// collide never share one. Records without an id keep their Kafka
// coordinates' messageId, as in Map. On success Call.AccountID is never "".
func MapAccount(r Record) (Call, error) {
	c, _, err := mapRecord(nil, r, accountsMode|withProps)
	return c, err
}

// MapInto is Map for callers that send the encoded call and need none of
// its Properties: it appends the call's JSON to dst and returns the
// extended buffer, so a batch of calls can share one, and it leaves
// Call.Properties nil instead of building it (Call.Track still works: it
// reads the properties back from Call.JSON). Call.JSON is the appended
// part, capped so that appending to it never overwrites a later call;
// Call's strings never alias dst. Errors are Map's, and on error dst is
// returned at its length (bytes beyond it may have been written). The
// bytes appended are exactly Map's Call.JSON.
func MapInto(dst []byte, r Record) ([]byte, Call, error) {
	c, dst, err := mapRecord(dst, r, 0)
	return dst, c, err
}

// MapAccountInto is MapInto in accounts mode: MapAccount's rules and
// bytes, MapInto's buffer and Properties.
func MapAccountInto(dst []byte, r Record) ([]byte, Call, error) {
	c, dst, err := mapRecord(dst, r, accountsMode)
	return dst, c, err
}

// MapOnto is MapInto for a caller that keeps every call it appends to
// arena alive together (a consumer's batch of records): Call's strings are
// appended to arena too, behind the call's JSON, so that a call needs no
// allocation of its own when arena has room for it. It returns arena
// extended by the call's JSON and its strings. The caller must never
// write to the bytes appended (the strings alias them), nor pass arena
// with its length cut back. Call.JSON is capped, as in MapInto. On error
// arena is returned at its length. The bytes of Call.JSON are exactly
// Map's.
func MapOnto(arena []byte, r Record) ([]byte, Call, error) {
	c, arena, err := mapRecord(arena, r, stringsInDst)
	return arena, c, err
}

// how says what a mapRecord call builds, beside the JSON.
type how uint8

const (
	// accountsMode applies contract v2's accounts rules (MapAccount).
	accountsMode how = 1 << iota
	// withProps builds Call.Properties (Map, MapAccount).
	withProps
	// stringsInDst appends Call's strings to dst behind the JSON (MapOnto).
	stringsInDst
)

// mapRecord maps r, appending its JSON to dst, as h says.
func mapRecord(dst []byte, r Record, h how) (Call, []byte, error) {
	accounts := h&accountsMode != 0
	// Fixed buffers keep a typical record off the heap; larger ones grow.
	// They are sized to typical records (the service's carry up to 14
	// fields, whose names take some 110 bytes), no larger: Go zeroes
	// them on every call, whatever part of them a record uses.
	var fieldBuf [16]field
	var nameBuf [256]byte
	fields, names, dup, err := collect(r.Value, fieldBuf[:0], nameBuf[:0])
	if err != nil {
		return Call{}, dst, err
	}
	if dup {
		if fields, err = dedupe(fields, names, r.Value); err != nil {
			return Call{}, dst, err
		}
	}
	// The envelope fields, as pairs; a nil pointer is an absent field.
	// Their values are all that is read of them (errors name envelope
	// fields by their snake_case names), so their keys are left out.
	data := r.Value
	var envPairs [roles]pair
	var env [roles]*pair
	for i := range fields {
		if f := &fields[i]; f.role != roleProperty {
			// In place, as in collect.
			p := &envPairs[f.role]
			p.val, p.kind, p.flags = data[f.val.start:f.val.end], f.kind, f.flags
			env[f.role] = p
		}
	}

	ev, err := eventOf(env[roleType])
	if err != nil {
		return Call{}, dst, err
	}
	for _, identity := range [...]role{roleUserID, roleAnonymousID} {
		if f := env[identity]; f != nil && f.kind != kindString {
			return Call{}, dst, newError(CodeInvalidProperty, nameOf(fields, names, identity), "must be a string, not "+f.kind.String())
		}
	}
	if env[roleUserID] == nil && env[roleAnonymousID] == nil {
		return Call{}, dst, newError(CodeMissingIdentity, "user_id", "absent, and so is anonymous_id: one of them is required")
	}
	// An absent accountId and a present one of the wrong type exclude each
	// other, so missing_account sits right after missing_identity.
	if f := env[roleAccountID]; f != nil {
		if msg := accountRule(f); msg != "" {
			return Call{}, dst, newError(CodeInvalidProperty, accountField, msg)
		}
	} else if accounts {
		return Call{}, dst, newError(CodeMissingAccount, accountField, "absent: accounts mode needs the account the interaction belongs to")
	}
	if f := env[roleID]; f != nil && f.kind != kindString {
		return Call{}, dst, newError(CodeInvalidProperty, "id", "must be a string, not "+f.kind.String())
	}
	ts, err := timestampOf(env[roleTimestamp], r.Time)
	if err != nil {
		return Call{}, dst, err
	}
	if err := checkEvent(ev, fields, names, data); err != nil {
		return Call{}, dst, err
	}

	// The strings the call needs (account, message id, identities) are
	// gathered in ids, on the stack for a typical record.
	d := draft{ev: ev, ts: ts, tsText: canonicalTimestamp(env[roleTimestamp])}
	var idBuf [256]byte
	ids := idBuf[:0]
	var account []byte
	if f := env[roleAccountID]; f != nil {
		ids = appendAccount(ids, f)
		d.accountID = spanOf(0, len(ids))
		if accounts {
			account = ids[:d.accountID.end]
		}
	}
	msgStart := len(ids)
	if f := env[roleID]; f != nil {
		var buf [64]byte
		id := text(buf[:0], f)
		// account aliases ids; appending to ids leaves its bytes be.
		ids = appendMessageID(ids, account, id, &r)
	} else {
		ids = appendMessageID(ids, nil, nil, &r)
	}
	d.msgID = spanOf(msgStart, len(ids))
	if f := env[roleUserID]; f != nil {
		d.user = f.val
		start := len(ids)
		ids = appendText(ids, f)
		d.userID = spanOf(start, len(ids))
	}
	if f := env[roleAnonymousID]; f != nil {
		d.anon = f.val
		start := len(ids)
		ids = appendText(ids, f)
		d.anonID = spanOf(start, len(ids))
	}
	return encode(dst, d, data, fields, names, ids, h)
}

// collect scans the record and returns its present fields in input order,
// with their snake_case names appended to names, and whether two of the
// names may be the same (dedupe has work to do).
func collect(data []byte, fields []field, names []byte) ([]field, []byte, bool, error) {
	if fs, ns, dup, ok := collectValid(data, fields, names); ok {
		return fs, ns, dup, nil
	}
	fields, names, err := collectChecked(data, fields[:0], names[:0])
	return fields, names, true, err
}

// collectValid is collect for a record that is valid JSON, in one loop
// without objectIter's bookkeeping. On anything malformed it gives up
// (ok false) and collectChecked starts over to say what is wrong.
func collectValid(data []byte, fields []field, names []byte) (_ []field, _ []byte, dup, ok bool) {
	// The position lives in a local, which stays in a register; the
	// scanner methods, which need the scanner in memory, see only the
	// values that are neither plain strings nor whitespace-free scalars.
	d := data
	pos := skipSpace(d, 0)
	if pos >= len(d) || d[pos] != '{' {
		return nil, nil, false, false
	}
	pos = skipSpace(d, pos+1)
	var seen uint64 // nameBit bits of the names so far
	if pos < len(d) && d[pos] == '}' {
		pos++
	} else {
		s := scanner{data: data}
		for {
			if pos >= len(d) || d[pos] != '"' {
				return nil, nil, false, false
			}
			var keyFlags uint8
			keyStart := pos + 1
			if pos = plainEnd(d, keyStart); pos >= len(d) || d[pos] != '"' {
				s.pos = keyStart - 1
				if keyFlags, ok = s.str(); !ok {
					return nil, nil, false, false
				}
				pos = s.pos - 1
			}
			key := spanOf(keyStart, pos)
			pos = skipSpace(d, pos+1)
			if pos >= len(d) || d[pos] != ':' {
				return nil, nil, false, false
			}
			pos = skipSpace(d, pos+1)
			if pos >= len(d) {
				return nil, nil, false, false
			}
			valStart := pos
			var k kind
			var flags uint8
			if c := d[pos]; c == '"' {
				k = kindString
				if pos = plainEnd(d, pos+1); pos < len(d) && d[pos] == '"' {
					pos++
				} else {
					s.pos = valStart
					if flags, ok = s.str(); !ok {
						return nil, nil, false, false
					}
					pos = s.pos
				}
			} else {
				s.pos = pos
				if c == '-' || isDigit(c) {
					k = kindNumber
					flags, ok = s.num()
				} else {
					k, flags, ok = s.container(2)
				}
				if !ok {
					return nil, nil, false, false
				}
				pos = s.pos
			}
			if k != kindNull && (k != kindString || pos-valStart != 2) { // else absent
				// appendField, inlined: this loop runs for every member.
				start := len(names)
				var r role
				var h uint8
				raw := d[key.start:key.end]
				verbatim := flags&flagSpace == 0 && int(key.end)+2 == valStart && keyFlags&flagEscaped == 0
				var kn *knownName
				if keyFlags&flagEscaped == 0 {
					kn = known.lookupAt(d, int(key.start), key.len())
				}
				if kn != nil {
					names = append(names, kn.snake...)
					r, h = kn.role, kn.bit
					verbatim = verbatim && kn.verbatim
				} else {
					if keyFlags&flagEscaped == 0 {
						names = appendSnake(names, raw)
					} else {
						var keyBuf [64]byte
						names = appendSnake(names, appendUnescaped(keyBuf[:0], raw))
					}
					r, h = roleOf(names[start:]), known.nameBit(names[start:])
					verbatim = verbatim && bytes.Equal(names[start:], raw)
				}
				if len(fields) == cap(fields) {
					fields = slices.Grow(fields, 1)
				}
				fields = fields[:len(fields)+1]
				f := &fields[len(fields)-1]
				f.key, f.val, f.name, f.out = key, spanOf(valStart, pos), spanOf(start, len(names)), span{}
				f.keyFlags, f.flags, f.kind, f.role, f.bit = keyFlags, flags, k, r, h
				f.verbatim = verbatim
				bit := uint64(1) << h
				dup = dup || seen&bit != 0
				seen |= bit
			}
			pos = skipSpace(d, pos)
			if pos >= len(d) {
				return nil, nil, false, false
			}
			if d[pos] == ',' {
				pos = skipSpace(d, pos+1)
				continue
			}
			if d[pos] != '}' {
				return nil, nil, false, false
			}
			pos++
			break
		}
	}
	if pos = skipSpace(d, pos); pos < len(d) {
		return nil, nil, false, false
	}
	// dedupe indexes records with many fields whatever their hashes.
	return fields, names, dup || len(fields) > 32, true
}

// skipSpace returns the position of the first byte at or after i that is
// not JSON whitespace.
func skipSpace(d []byte, i int) int {
	for i < len(d) && d[i] <= ' ' && (d[i] == ' ' || d[i] == '\t' || d[i] == '\n' || d[i] == '\r') {
		i++
	}
	return i
}

// plainEnd returns the position of the first byte at or after i that is
// not plain (len(d) if there is none): the closing quote of a string
// without escapes, control characters or multi-byte characters.
func plainEnd(d []byte, i int) int {
	for ; i+8 <= len(d); i += 8 {
		if m := specials(binary.LittleEndian.Uint64(d[i:])); m != 0 {
			return i + bits.TrailingZeros64(m)/8
		}
	}
	for i < len(d) && plain[d[i]] {
		i++
	}
	return i
}

// appendField appends the field of a present member and its snake_case
// name, and returns the name's nameBit.
func appendField(fields []field, names, data []byte, key span, keyFlags uint8, val span, flags uint8, k kind) ([]field, []byte, uint8) {
	raw := data[key.start:key.end]
	start := len(names)
	var r role
	var h uint8
	if kn := knownUnescaped(raw, keyFlags); kn != nil {
		names = append(names, kn.snake...)
		r, h = kn.role, kn.bit
	} else {
		var keyBuf [64]byte
		names = appendSnake(names, unquote(keyBuf[:0], raw, keyFlags))
		r, h = roleOf(names[start:]), known.nameBit(names[start:])
	}
	// Written in place: a field built aside and copied in is stored a
	// byte at a time and loaded back whole, which stalls the copy.
	if len(fields) == cap(fields) {
		fields = slices.Grow(fields, 1)
	}
	fields = fields[:len(fields)+1]
	f := &fields[len(fields)-1]
	f.key, f.val, f.name, f.out = key, val, spanOf(start, len(names)), span{}
	f.keyFlags, f.flags, f.kind, f.role, f.bit = keyFlags, flags, k, r, h
	f.verbatim = false // collectChecked's records are rare: encode them piece by piece
	return fields, names, h
}

// collectChecked is collect through objectIter, which words what is wrong
// with a malformed record.
func collectChecked(data []byte, fields []field, names []byte) ([]field, []byte, error) {
	s := scanner{data: data}
	s.space()
	if s.pos >= len(data) {
		return nil, nil, newError(CodeInvalidJSON, "", "the value is empty")
	}
	if what := startsValue(data[s.pos]); what != "" && what != "an object" {
		return nil, nil, newError(CodeInvalidJSON, "", "the value is "+what+", not an object")
	}
	it := objectIter{s: s, depth: 1}
	for it.member() {
		if it.kind == kindNull || it.kind == kindString && it.val.len() == 2 {
			continue // absent
		}
		fields, names, _ = appendField(fields, names, data, it.key, it.keyFlags, it.val, it.flags, it.kind)
	}
	if it.s.err != "" {
		f := ""
		if key := it.failedKey(); key != nil {
			var buf [64]byte
			f = string(appendSnake(nil, unquote(buf[:0], key, flagEscaped)))
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
func dedupe(fields []field, names, data []byte) ([]field, error) {
	kept := fields[:0]
	var index map[string]int // for records with many fields: linear search is quadratic
	if len(fields) > 32 {
		index = make(map[string]int, len(fields))
	}
	// seen has a bit for each name kept, by a hash of the name: a name
	// whose bit is clear repeats none kept so far, and most records
	// repeat none.
	var seen uint64
next:
	for i := range fields {
		f := &fields[i] // kept only ever writes below i
		name := names[f.name.start:f.name.end]
		bit := uint64(1) << f.bit
		if seen&bit != 0 || index != nil {
			if index != nil {
				if j, ok := index[string(name)]; ok {
					if !sameValue(&kept[j], f, data) {
						return nil, conflict(string(name), kept[j].keyIn(data), f.keyIn(data))
					}
					continue
				}
				index[string(name)] = len(kept)
			} else {
				for j := range kept {
					if bytes.Equal(names[kept[j].name.start:kept[j].name.end], name) {
						if !sameValue(&kept[j], f, data) {
							return nil, conflict(string(name), kept[j].keyIn(data), f.keyIn(data))
						}
						continue next
					}
				}
			}
		}
		seen |= bit
		if len(kept) == i {
			kept = kept[:i+1] // in place: nothing dropped yet
		} else {
			kept = append(kept, *f)
		}
	}
	return kept, nil
}

// sameValue reports whether two spellings of one field carry the same
// value: the same JSON value, except that an account given once as a
// string and once as an integer is the same account when the texts agree.
func sameValue(a, b *field, data []byte) bool {
	pa, pb := a.pairIn(data), b.pairIn(data)
	if a.role == roleAccountID && accountRule(&pa) == "" && accountRule(&pb) == "" {
		var abuf, bbuf [64]byte
		return bytes.Equal(appendAccount(abuf[:0], &pa), appendAccount(bbuf[:0], &pb))
	}
	return jsonEqual(pa.val, pb.val)
}

// keyIn returns the field's key in the record data, as written.
func (f *field) keyIn(data []byte) []byte { return data[f.key.start:f.key.end] }

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
