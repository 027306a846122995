package integrations

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/rs/zerolog"
)

// redacted is what a write key prints as, wherever it is printed.
const redacted = "[redacted]"

// WriteKey is a Segment source's write key: a secret. Every way of printing
// or encoding it (fmt verbs, JSON, text, zerolog) gives "[redacted]"; only
// Reveal returns the key itself.
type WriteKey struct {
	// A struct, not a string kind: string(k) does not compile. The key sits
	// behind a pointer to a string, which fmt prints as an address whatever
	// the verb and however deep, so even a value holding an Integration in
	// an unexported field (where fmt cannot call Format) prints no key.
	// (unique.Handle would do the same and keep == by content, but costs
	// twice the memory and CPU for a table of 100,000.)
	p *string
	// Not comparable: == would compare pointers, not keys. Use Equal.
	_ [0]func()
}

// NewWriteKey wraps a key.
func NewWriteKey(key string) WriteKey {
	if key == "" {
		return WriteKey{}
	}
	return WriteKey{p: &key}
}

// Reveal returns the key, for the Authorization header of a request to
// Segment. Never log or wrap its result.
func (k WriteKey) Reveal() string {
	if k.p == nil {
		return ""
	}
	return *k.p
}

// IsZero reports whether the key is empty.
func (k WriteKey) IsZero() bool { return k.p == nil }

// Equal reports whether two keys are the same key, without revealing them.
func (k WriteKey) Equal(o WriteKey) bool { return k.Reveal() == o.Reveal() }

func (WriteKey) String() string   { return redacted }
func (WriteKey) GoString() string { return redacted }

// Format prints "[redacted]" for every verb, %x and %q included.
func (WriteKey) Format(f fmt.State, _ rune) { io.WriteString(f, redacted) }

func (WriteKey) MarshalJSON() ([]byte, error) { return []byte(`"` + redacted + `"`), nil }
func (WriteKey) MarshalText() ([]byte, error) { return []byte(redacted), nil }

// Region is the Segment region an integration's source lives in.
type Region string

// The regions. The contract maps us to SEGMENT_ENDPOINT and eu to
// SEGMENT_EU_ENDPOINT; the region is never guessed.
const (
	RegionUS Region = "us"
	RegionEU Region = "eu"
)

// ParseRegion reads "us" or "eu".
func ParseRegion(s string) (Region, error) {
	switch Region(s) {
	case RegionUS:
		return RegionUS, nil
	case RegionEU:
		return RegionEU, nil
	}
	return "", fmt.Errorf(`region must be "us" or "eu"`)
}

// Integration is one account's Segment integration.
type Integration struct {
	WriteKey WriteKey
	Region   Region // RegionUS or RegionEU
	// Active is false for a deactivated integration: its records are
	// skipped.
	Active bool
	// Account is the account's id as a Snapshot holds it, set on what its
	// Lookup returns (empty elsewhere, and ignored by Equal). Every lookup
	// of one account returns this same string, so the sink's destination
	// cache compares it by pointer rather than byte by byte.
	Account string
}

// Equal reports whether two integrations are the same: same key, region
// and state. (Integration is not comparable with ==, as WriteKey is not.)
func (it Integration) Equal(o Integration) bool {
	return it.WriteKey.Equal(o.WriteKey) && it.Region == o.Region && it.Active == o.Active
}

// MarshalZerologObject logs an integration without its key.
func (it Integration) MarshalZerologObject(e *zerolog.Event) {
	e.Str("region", string(it.Region)).Bool("active", it.Active).Str("write_key", redacted)
}

// MarshalJSON encodes the integration as the contract's object. The key is
// redacted like everywhere else; Publisher writes the real one.
func (it Integration) MarshalJSON() ([]byte, error) {
	return it.appendJSON(nil, redacted), nil
}

// appendJSON appends the contract's object with key as the writeKey.
func (it Integration) appendJSON(dst []byte, key string) []byte {
	k, _ := json.Marshal(key)
	dst = append(dst, `{"writeKey":`...)
	dst = append(dst, k...)
	dst = append(dst, `,"region":"`...)
	dst = append(dst, it.Region...)
	dst = append(dst, `","active":`...)
	return append(strconv.AppendBool(dst, it.Active), '}')
}

// State is what the table knows of an account, for the loaded metric.
type State string

// The states of a loaded integration.
const (
	StateActive   State = "active"
	StateInactive State = "inactive" // active: false
	StateInvalid  State = "invalid"  // the value breaks the contract: the account is inactive
)

func (it Integration) state() State {
	switch {
	case it.WriteKey.IsZero():
		return StateInvalid
	case !it.Active:
		return StateInactive
	}
	return StateActive
}

// InvalidError reports an integration value that breaks the contract. It
// names the account and the problem, never the key or any other value.
type InvalidError struct {
	Account string
	Problem string // e.g. "writeKey is missing"
}

func (e *InvalidError) Error() string {
	return "integration of account " + quoteAccount(e.Account) + ": " + e.Problem
}

// quoteAccount quotes an account id for a message, cut to 128 bytes.
func quoteAccount(a string) string {
	if len(a) > 128 {
		n := 128
		for n > 0 && !utf8.RuneStart(a[n]) {
			n--
		}
		return strconv.Quote(a[:n]) + "…"
	}
	return strconv.Quote(a)
}

// Parse reads one integration value as the contract defines it:
// {"writeKey": non-empty string, "region": "us" (also when absent or null)
// or "eu", "active": boolean (absent or null: true)}; other members are
// ignored. A value that breaks these rules is an *InvalidError; the caller
// treats the account as inactive.
func Parse(account string, value []byte) (Integration, error) {
	bad := func(problem string) (Integration, error) {
		return Integration{}, &InvalidError{Account: account, Problem: problem}
	}
	if v := bytes.TrimSpace(value); len(v) == 0 || v[0] != '{' {
		return bad("not a JSON object")
	}
	// One pass of encoding/json over the value: a table of 100,000
	// accounts loads in well under a second.
	var v struct {
		WriteKey json.RawMessage `json:"writeKey"`
		Region   json.RawMessage `json:"region"`
		Active   json.RawMessage `json:"active"`
	}
	if err := json.Unmarshal(value, &v); err != nil {
		// encoding/json's messages quote input characters: not repeated.
		return bad("not a valid JSON object")
	}
	// encoding/json matches member names ignoring case; the contract's
	// names are exact. When a member was found under a name that is not
	// spelled exactly anywhere in the value, read the members exactly.
	if (v.WriteKey != nil && !bytes.Contains(value, []byte(`"writeKey"`))) ||
		(v.Region != nil && !bytes.Contains(value, []byte(`"region"`))) ||
		(v.Active != nil && !bytes.Contains(value, []byte(`"active"`))) {
		var members map[string]json.RawMessage
		if json.Unmarshal(value, &members) != nil {
			return bad("not a valid JSON object")
		}
		v.WriteKey, v.Region, v.Active = members["writeKey"], members["region"], members["active"]
	}
	it := Integration{Region: RegionUS, Active: true}
	if v.WriteKey == nil || isNull(v.WriteKey) {
		return bad("writeKey is missing")
	}
	key, ok := jsonString(v.WriteKey)
	if !ok {
		return bad("writeKey must be a string")
	}
	if key = strings.TrimSpace(key); key == "" {
		return bad("writeKey is empty")
	}
	it.WriteKey = NewWriteKey(key)
	if v.Region != nil && !isNull(v.Region) {
		s, ok := jsonString(v.Region)
		if !ok {
			return bad(`region must be "us" or "eu"`)
		}
		r, err := ParseRegion(s)
		if err != nil {
			return bad(err.Error())
		}
		it.Region = r // one of the constants: 100,000 accounts share two strings
	}
	if v.Active != nil && !isNull(v.Active) {
		switch string(v.Active) {
		case "true":
		case "false":
			it.Active = false
		default:
			return bad("active must be true or false")
		}
	}
	return it, nil
}

// jsonString returns the text of a JSON string value: without escapes it
// is the bytes between the quotes, else encoding/json decodes it.
func jsonString(raw json.RawMessage) (string, bool) {
	if len(raw) < 2 || raw[0] != '"' {
		return "", false
	}
	if inner := raw[1 : len(raw)-1]; bytes.IndexByte(inner, '\\') < 0 {
		return string(inner), true
	}
	var s string
	return s, json.Unmarshal(raw, &s) == nil
}

func isNull(raw json.RawMessage) bool { return string(bytes.TrimSpace(raw)) == "null" }
