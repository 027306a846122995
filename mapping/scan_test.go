package mapping

import (
	"encoding/json"
	"strings"
	"testing"
	"unicode/utf8"
)

// jsonDocs are documents for the scanner, valid and invalid, each checked
// against encoding/json's idea of validity.
var jsonDocs = []string{
	`{}`, ` { } `, `{"a":1}`, `{"a":[]}`, `{"a":[1,2,{"b":null}]}`, `{"a":{"b":{"c":[true,false]}}}`,
	`{"a":-0}`, `{"a":-0.0e-0}`, `{"a":1E+2}`, `{"a":0.5}`, `{"a":"\"\\\/\b\f\n\r\t\u00e9\uD83D\uDE00"}`,
	`{"a":"é😀"}`, "{\"a\":\"\x7f\"}", `{"":""}`, "{\n\t\"a\" :\r 1 \n}",
	`{"a":01}`, `{"a":1.}`, `{"a":.5}`, `{"a":1e}`, `{"a":-}`, `{"a":+1}`, `{"a":0x10}`, `{"a":Infinity}`,
	`{"a":"\u00zz"}`, `{"a":"\q"}`, "{\"a\":\"\x01\"}", `{"a":[1,]}`, `{"a":[,1]}`, `{"a":{,}}`, `{"a":{"b"}}`,
	`{"a":{"b":}}`, `{"a":{"b":1,}}`, `{"a" 1}`, `{"a":1 "b":2}`, `{"a":[1 2]}`, `{"a":[}`, `{"a":{]}`,
	`{"a":nul}`, `{"a":truex}`, `{"a":"}`, `{"a`, `{`, `{"a":`, `{"a":[`, `{"a":{`, `{"a":1}}`, `{"a":1}]`,
	`{"a":"\ud800"}`, `{"a":"\udc00\ud800"}`,
}

func TestScannerAgreesWithEncodingJSON(t *testing.T) {
	for _, doc := range jsonDocs {
		it := objectIter{s: scanner{data: []byte(doc)}, depth: 1}
		for {
			if _, ok := it.next(); !ok {
				break
			}
		}
		ok := it.s.err == ""
		if ok {
			it.s.space()
			ok = it.s.pos == len(doc)
		}
		if want := json.Valid([]byte(doc)) && utf8.ValidString(doc); ok != want {
			t.Errorf("scanner accepts %q: %v, encoding/json: %v (%s)", doc, ok, want, it.s.err)
		}
	}
}

func TestCompact(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{`1`, `1`},
		{"[ 1 ,\n2 ]", `[1,2]`},
		{`{ "a b" : " c \" d " }`, `{"a b":" c \" d "}`},
		{`[ "\\" , "x" ]`, `["\\","x"]`},
	} {
		if got := string(appendCompact(nil, []byte(tc.in))); got != tc.want {
			t.Errorf("compact(%q): got %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestUnescapeAgreesWithEncodingJSON(t *testing.T) {
	for _, s := range []string{
		`plain`, `\"\\\/\b\f\n\r\t`, `\u0041\u00e9\u20ac`, `\uD83D\uDE00`, `\ud83d\ude00x`,
		`\ud800`, `\ud800x`, `\udc00`, `\ud800\u0041`, `\ud800\ud800\udc00`, `a\u0000b`, `é😀`,
	} {
		var want string
		if err := json.Unmarshal([]byte(`"`+s+`"`), &want); err != nil {
			t.Fatalf("%q: %v", s, err)
		}
		if got := string(appendUnescaped(nil, []byte(s))); got != want {
			t.Errorf("unescape(%q): got %q, want %q", s, got, want)
		}
	}
}

func TestAppendString(t *testing.T) {
	for _, s := range []string{"", "plain", `q"b\`, "\x00\x01\x1f\n\r\t", "é😀\u2028", "<&>", strings.Repeat("x", 100)} {
		enc := appendString(nil, s)
		var got string
		if err := json.Unmarshal(enc, &got); err != nil || got != s {
			t.Errorf("appendString(%q) = %s, decodes to %q (%v)", s, enc, got, err)
		}
	}
}

func TestTypeKeysAreDistinct(t *testing.T) {
	if len(byKey) != len(catalogue) {
		t.Errorf("%d catalogue rows share lookup keys", len(catalogue)-len(byKey))
	}
	for _, ev := range catalogue {
		if string(appendSnake(nil, []byte(ev.Type))) != ev.Type {
			t.Errorf("type %q is not in snake_case", ev.Type)
		}
		if string(appendSnake(nil, []byte(ev.ID))) != ev.ID || roleOf([]byte(ev.ID)) != roleProperty || ev.ID == metadataName {
			t.Errorf("%s: id property %q must be a snake_case, non-envelope name", ev.Type, ev.ID)
		}
		if len(ev.Metadata) > 4 {
			t.Errorf("%s: checkMetadata's buffer holds 4 members, the event needs %d", ev.Type, len(ev.Metadata))
		}
	}
}
