package mapping

import (
	"bytes"
	"slices"
	"strings"
	"testing"
	"time"
)

// fastPathRecords are records that take collectValid's and encode's fast
// paths and their fallbacks: escaped and non-ASCII keys and values,
// whitespace around every token, absent fields between verbatim ones,
// common names at the very end of a record (fewer than sixteen bytes
// left to read), names one byte too long for the table, repeated names.
var fastPathRecords = []string{
	`{"type":"tour_start","userId":"u","tourId":1,"locale":"en","plan":"team","seats":3}`,
	`{"type":"tour_start","userId":"u","tour_id":1,"locale":null,"plan":"team","seats":"","trigger":"x"}`,
	`{"type":"tour_start","userId":"u","tour_id":1,"page_path":"/a","trigger":"b","company_id":"c"}`,
	`{"type":"tour_start","userId":"u","tour_id":1,"page_path" :"/a","trigger": "b","x":{"a": 1},"y":[1, 2]}`,
	` { "type" : "tour_start" , "userId" : "u" , "tourId" : 1 , "locale" : "en" } `,
	"{\"type\":\"tour_start\",\n\t\"userId\":\"u\",\r\n\"tourId\":1}",
	`{"type":"tour_start","userId":"\u00fcser \"q\"","tourId":"t\\1","n\u00e4me":"v","\u0074ype2":1}`,
	`{"type":"tour_start","userId":"üser","tourId":"tür","Größe":"groß","日本":"語"}`,
	`{"type":"tour_start","userId":"u","tourId":1,"announcementIdx":1,"announcement_id":2,"elementSelectors":3}`,
	`{"type":"tour_start","userId":"u","tourId":1,"TourId":1,"tour-id":1,"locale":"en","Locale":"en"}`,
	`{"type":"tour_start","userId":"u","tourId":1,"seats":1}`,
	`{"type":"tour_start","userId":"u","tourId":1,"id":"i"}`,
	`{"tourId":1,"userId":"u","type":"tour_start"}`,
	`{"type":"tour_start","userId":"u","tourId":1,"a\"b":1,"c\\d":2,"e\u0001f":3,"g\/h":4}`,
	`{"type":"tour_start","userId":"u","tourId":1,"big":123456789012345678901234567890,"f":-1.5e+300,"t":true,"n":false}`,
	`{"type":"tour_start","userId":"u","tourId":1,"s":"\ud83d\ude00 \ud800 end"}`,
	`{"type":"tour_start","userId":"u","tourId":1,"timestamp":"2026-11-29T10:00:07.890Z","plan":"x"}`,
	// Malformed: collectValid gives up, collectChecked words the error.
	`{"type":"tour_start","userId":"u","tourId":1,}`,
	`{"type":"tour_start","userId":"u" "tourId":1}`,
	`{"type":"tour_start","userId":"u","tourId":01}`,
	`{"type":"tour_start","userId":"u","tourId":1} x`,
	"{\"type\":\"tour_start\",\"userId\":\"u\x01\",\"tourId\":1}",
	"{\"type\":\"tour_start\",\"userId\":\"u\xff\",\"tourId\":1}",
	`{"type":"tour_start","userId":"u","tourId":"\x"}`,
	`{"type":"tour_start","userId":"u","tourId`,
	`{"type":"tour_start","userId":"u","tourId":1`,
	`{"type":"tour_start","userId":"u","tourId":tru}`,
	`{`, `{}`, ` {} `, `[]`, `"x"`, ``,
}

// TestCollectValidMatchesChecked holds collect's one-loop scan of valid
// records to the objectIter scan that words errors: the same fields and
// names for every record the first accepts, and the first accepts every
// record the second does.
func TestCollectValidMatchesChecked(t *testing.T) {
	var values [][]byte
	for _, s := range fastPathRecords {
		values = append(values, []byte(s))
	}
	gen := newDiffGen(99)
	for range 3000 {
		values = append(values, gen.record().Value)
	}
	mix, _ := serviceMix(300)
	for _, r := range mix {
		values = append(values, r.Value)
	}
	for _, v := range values {
		fastFields, fastNames, _, ok := collectValid(v, nil, nil)
		fields, names, err := collectChecked(v, nil, nil)
		if ok != (err == nil) {
			t.Fatalf("%q: collectValid ok %v, collectChecked %v", v, ok, err)
		}
		if !ok {
			continue
		}
		if !bytes.Equal(fastNames, names) || len(fastFields) != len(fields) {
			t.Fatalf("%q: names %q, want %q; %d fields, want %d", v, fastNames, names, len(fastFields), len(fields))
		}
		for i := range fields {
			got, want := fastFields[i], fields[i]
			got.verbatim, want.verbatim = false, false // collectChecked sets none
			if got != want {
				t.Fatalf("%q: field %d is %+v, want %+v", v, i, got, want)
			}
			if fastFields[i].verbatim {
				// A verbatim member is its encoded property as written.
				f := &fastFields[i]
				enc := `"` + string(names[f.name.start:f.name.end]) + `":` + string(v[f.val.start:f.val.end])
				if string(v[f.key.start-1:f.val.end]) != enc {
					t.Fatalf("%q: field %d is not written as it is encoded (%s)", v, i, enc)
				}
			}
		}
	}
}

// TestFastPathRecords maps the records with the fast paths' fallbacks
// through the invariants FuzzMap checks, in every entry point.
func TestFastPathRecords(t *testing.T) {
	for _, s := range fastPathRecords {
		r := Record{Topic: "t", Partition: 1, Offset: 2, Time: time.UnixMilli(1795950000000), Value: []byte(s)}
		checkMap(t, r)
		c, err := Map(r)
		_, ci, erri := MapInto(nil, r)
		if (err == nil) != (erri == nil) || err != nil && err.Error() != erri.Error() {
			t.Fatalf("%s: Map %v, MapInto %v", s, err, erri)
		}
		if err == nil && !bytes.Equal(c.JSON, ci.JSON) {
			t.Fatalf("%s: Map %s, MapInto %s", s, c.JSON, ci.JSON)
		}
	}
}

// TestKnownNamesAtEnd looks every common name up where fewer than sixteen
// bytes follow it, and at every offset, against the slice lookup.
func TestKnownNamesAtEnd(t *testing.T) {
	names := append(slices.Clone(commonNames[:]), "announcementIdx", "x", "ab", "abcdefghijklmnop", "abcdefghijklmnopq")
	for _, sp := range names {
		for pad := 0; pad < 20; pad++ {
			d := []byte(strings.Repeat("\"", pad) + sp + strings.Repeat("\"", pad))
			got := known.lookupAt(d, pad, len(sp))
			if want := known.lookup([]byte(sp)); got != want {
				t.Fatalf("lookupAt(%q at %d) = %v, want %v", sp, pad, got, want)
			}
			if short := d[:pad+len(sp)]; known.lookupAt(short, pad, len(sp)) != known.lookup([]byte(sp)) {
				t.Fatalf("lookupAt(%q at the end of %q) differs from lookup", sp, short)
			}
		}
	}
}

// TestNameBit holds the bits by which collect decides that a record has
// nothing for dedupe to do: every snake_case name of commonNames has its
// own bit, the same for all its spellings; any other name, however it is
// spelled, gets one of the remaining bits, and a name that snake_cases to
// a common name gets that name's bit.
func TestNameBit(t *testing.T) {
	owner := map[uint8]string{}
	for _, sp := range commonNames {
		snake := string(appendSnake(nil, []byte(sp)))
		kn := known.lookup([]byte(sp))
		if kn == nil || kn.snake != snake {
			t.Fatalf("lookup(%q) = %v, want the entry of %q", sp, kn, snake)
		}
		if got := known.nameBit([]byte(snake)); got != kn.bit || got >= known.bits {
			t.Fatalf("nameBit(%q) = %d, want its own bit %d (< %d)", snake, got, kn.bit, known.bits)
		}
		if o, ok := owner[kn.bit]; ok && o != snake {
			t.Fatalf("%q and %q share bit %d", o, snake, kn.bit)
		}
		owner[kn.bit] = snake
	}
	if len(owner) != int(known.bits) {
		t.Fatalf("%d distinct common names, known.bits = %d", len(owner), known.bits)
	}
	for _, sp := range []string{"trigger", "page_path", "ctx", "x", "announcement_idx", "element_selectors", "a_very_long_custom_field_name"} {
		if got := known.nameBit([]byte(sp)); got < known.bits || got > 63 {
			t.Errorf("nameBit(%q) = %d, want one of %d..63", sp, got, known.bits)
		}
	}
	// A spelling the table does not hold whose snake_case name it does.
	for _, sp := range []string{"TourId", "anonymousID", "UserId"} {
		snake := appendSnake(nil, []byte(sp))
		if kn := known.lookup(snake); kn == nil || known.nameBit(snake) != kn.bit {
			t.Errorf("%q → %q: nameBit %d, want the common name's bit", sp, snake, known.nameBit(snake))
		}
	}
}
