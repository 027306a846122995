package mapping

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math/bits"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
	"time"
	"unsafe"
)

// TestMapInto holds MapInto and MapAccountInto to Map and MapAccount on the
// differential corpus: the same bytes, fields and errors, no Properties,
// the same Track(); and calls appended one after another to one buffer
// stay intact.
func TestMapInto(t *testing.T) {
	modes := []struct {
		name   string
		mapFn  func(Record) (Call, error)
		intoFn func([]byte, Record) ([]byte, Call, error)
	}{
		{"single source", Map, MapInto},
		{"accounts", MapAccount, MapAccountInto},
	}
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			gen := newDiffGen(7)
			var shared []byte // calls appended back to back
			var calls []Call
			var wants [][]byte
			for i := range 2000 {
				r := gen.record()
				want, wantErr := m.mapFn(r)
				_, alone, err := m.intoFn(nil, r)
				if !reflect.DeepEqual(err, wantErr) {
					t.Fatalf("record %d %s: error %v, want %v", i, r.Value, err, wantErr)
				}
				before := len(shared)
				var inShared Call
				shared, inShared, err = m.intoFn(shared, r)
				if !reflect.DeepEqual(err, wantErr) {
					t.Fatalf("record %d into a shared buffer: error %v, want %v", i, err, wantErr)
				}
				if wantErr != nil {
					if len(shared) != before {
						t.Fatalf("record %d: a failed MapInto grew the buffer from %d to %d bytes", i, before, len(shared))
					}
					continue
				}
				for _, got := range []Call{alone, inShared} {
					if got.Properties != nil {
						t.Fatalf("record %d: MapInto built Properties", i)
					}
					if !bytes.Equal(got.JSON, want.JSON) || cap(got.JSON) != len(got.JSON) {
						t.Fatalf("record %d: JSON %s (cap %d)\nwant %s", i, got.JSON, cap(got.JSON), want.JSON)
					}
					w := want
					w.Properties, w.JSON = nil, got.JSON
					if !reflect.DeepEqual(got, w) {
						t.Fatalf("record %d: call %+v\nwant %+v", i, got, w)
					}
					if !reflect.DeepEqual(got.Track(), want.Track()) {
						t.Fatalf("record %d: Track() %+v\nwant %+v", i, got.Track(), want.Track())
					}
				}
				if !bytes.Equal(shared[before:], want.JSON) {
					t.Fatalf("record %d: appended %s, want %s", i, shared[before:], want.JSON)
				}
				calls = append(calls, inShared)
				wants = append(wants, want.JSON)
			}
			for i, c := range calls {
				if !bytes.Equal(c.JSON, wants[i]) {
					t.Fatalf("call %d was overwritten by a later one: %s\nwant %s", i, c.JSON, wants[i])
				}
			}
		})
	}
}

// TestMapOnto holds MapOnto to Map on the differential corpus, into an
// arena with room and into one that has to grow: the same JSON and
// strings; a failed call leaves the arena at its length; every call stays
// intact while later ones are appended; and a call into an arena with
// room allocates nothing, its strings in the arena behind its JSON.
func TestMapOnto(t *testing.T) {
	for _, start := range []struct {
		name  string
		arena []byte
	}{{"with room", make([]byte, 0, 4<<20)}, {"growing", nil}} {
		t.Run(start.name, func(t *testing.T) {
			gen := newDiffGen(11)
			arena := start.arena
			var calls, wants []Call
			for i := range 2000 {
				r := gen.record()
				want, wantErr := Map(r)
				before := len(arena)
				var got Call
				var err error
				arena, got, err = MapOnto(arena, r)
				if !reflect.DeepEqual(err, wantErr) {
					t.Fatalf("record %d %s: error %v, want %v", i, r.Value, err, wantErr)
				}
				if wantErr != nil {
					if len(arena) != before {
						t.Fatalf("record %d: a failed MapOnto grew the arena from %d to %d bytes", i, before, len(arena))
					}
					continue
				}
				if !bytes.Equal(got.JSON, want.JSON) || cap(got.JSON) != len(got.JSON) {
					t.Fatalf("record %d: JSON %s (cap %d)\nwant %s", i, got.JSON, cap(got.JSON), want.JSON)
				}
				if !bytes.Equal(arena[before:before+len(got.JSON)], want.JSON) {
					t.Fatalf("record %d: appended %s, want %s", i, arena[before:], want.JSON)
				}
				if cap(start.arena) > 0 && !inside(arena[:cap(arena)], got.MessageID) {
					t.Fatalf("record %d: messageId %q is not in the arena", i, got.MessageID)
				}
				calls = append(calls, got)
				wants = append(wants, want)
			}
			for i, c := range calls {
				w := wants[i]
				w.Properties, w.JSON = nil, c.JSON
				if !bytes.Equal(c.JSON, wants[i].JSON) || !reflect.DeepEqual(c, w) {
					t.Fatalf("call %d was overwritten by a later one: %+v\nwant %+v", i, c, wants[i])
				}
			}
		})
	}

	r := record(`{"type":"tour_start","id":"i-1","userId":"user-1","anonymousId":"anon-1","tourId":1}`)
	arena := make([]byte, 0, 1<<20)
	if n := testing.AllocsPerRun(100, func() {
		var err error
		if arena, _, err = MapOnto(arena, r); err != nil {
			t.Fatal(err)
		}
	}); n != 0 {
		t.Fatalf("MapOnto into an arena with room: %v allocations per call, want 0", n)
	}
}

// inside reports whether s's bytes lie within b's array.
func inside(b []byte, s string) bool {
	if len(s) == 0 || len(b) == 0 {
		return false
	}
	lo := uintptr(unsafe.Pointer(unsafe.SliceData(b)))
	p := uintptr(unsafe.Pointer(unsafe.StringData(s)))
	return p >= lo && p+uintptr(len(s)) <= lo+uintptr(len(b))
}

// TestMapIntoStrings: a call's strings never alias the caller's buffer,
// and appending to Call.JSON never reaches them.
func TestMapIntoStrings(t *testing.T) {
	r := record(`{"type":"tour_start","id":"i-1","userId":"user-1","anonymousId":"anon-1","accountId":"acct-1","tourId":1}`)
	buf := make([]byte, 0, 4096)
	buf, c, err := MapAccountInto(buf, r)
	if err != nil {
		t.Fatal(err)
	}
	want := c
	want.MessageID = string([]byte(c.MessageID)) // copies, not aliases
	want.UserID, want.AnonymousID, want.AccountID = "user-1", "anon-1", "acct-1"
	for i := range buf[:cap(buf)] {
		buf[:cap(buf)][i] = 'x'
	}
	if c.MessageID != want.MessageID || c.UserID != want.UserID || c.AnonymousID != want.AnonymousID || c.AccountID != want.AccountID {
		t.Fatalf("overwriting the buffer changed the call's strings: %+v", c)
	}

	c, err = MapAccount(r)
	if err != nil {
		t.Fatal(err)
	}
	names := make([]string, len(c.Properties))
	for i, p := range c.Properties {
		names[i] = p.Name
	}
	grown := append(c.JSON, bytes.Repeat([]byte("y"), 256)...)
	_ = grown
	if c.MessageID != want.MessageID || c.UserID != "user-1" || c.AnonymousID != "anon-1" || c.AccountID != "acct-1" || !reflect.DeepEqual(names, []string{"tour_id"}) {
		t.Fatalf("appending to Call.JSON changed the call's strings: %+v", c)
	}
	if !json.Valid(c.JSON) {
		t.Fatalf("appending to Call.JSON changed it: %s", c.JSON)
	}
}

// TestSpecial holds the eight-byte test of the string scanner to the
// byte-wise table.
func TestSpecial(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	interesting := []byte{0, 0x1f, 0x20, 0x21, '"', '\\', 0x5b, 0x5d, 0x7e, 0x7f, 0x80, 0xff, 'a', 0x01, 0x22 ^ 0x80, 0x5c ^ 0x80}
	var b [8]byte
	for range 200000 {
		for i := range b {
			if rng.IntN(3) == 0 {
				b[i] = interesting[rng.IntN(len(interesting))]
			} else {
				b[i] = byte(0x20 + rng.IntN(0x60))
			}
		}
		want := false
		for _, c := range b {
			want = want || !plain[c]
		}
		w := uint64(b[0]) | uint64(b[1])<<8 | uint64(b[2])<<16 | uint64(b[3])<<24 | uint64(b[4])<<32 | uint64(b[5])<<40 | uint64(b[6])<<48 | uint64(b[7])<<56
		if got := special(w); got != want {
			t.Fatalf("special(% x) = %v, want %v", b, got, want)
		}
	}
}

// TestKnownNames: every common spelling is found and means what the slow
// path makes of it; other names are not found.
func TestKnownNames(t *testing.T) {
	for _, sp := range commonNames {
		k := known.lookup([]byte(sp))
		if k == nil || k.spelling != sp {
			t.Fatalf("lookup(%q) = %+v", sp, k)
		}
		snake := appendSnake(nil, []byte(sp))
		if k.snake != string(snake) || k.role != roleOf(snake) {
			t.Errorf("%q: table says %q role %d, appendSnake and roleOf %q role %d", sp, k.snake, k.role, snake, roleOf(snake))
		}
	}
	for _, other := range []string{"", "Type", "ids", "userid", "tourID", "user_Id", "timestamps", "localee", "x"} {
		if k := known.lookup([]byte(other)); k != nil {
			t.Errorf("lookup(%q) = %+v, want nil", other, k)
		}
	}
}

// TestAppendSnakeASCII holds the byte-wise conversion to the rune-wise one
// on generated ASCII names.
func TestAppendSnakeASCII(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	const alphabet = "aAbBzZ09_- .$xXyY"
	for range 100000 {
		name := make([]byte, rng.IntN(12))
		for i := range name {
			name[i] = alphabet[rng.IntN(len(alphabet))]
		}
		if got, want := appendSnakeASCII(nil, name), appendSnakeRunes(nil, name); !bytes.Equal(got, want) {
			t.Fatalf("%q: byte-wise %q, rune-wise %q", name, got, want)
		}
	}
}

// TestParseRFC3339 holds parseRFC3339 to time.Parse (in UTC, truncated to
// milliseconds) on generated date-times of rfc3339's shape, in range and
// out.
func TestParseRFC3339(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	fracs := []string{"", ".0", ".5", ".123", ".999999999", ".1234567891", ".00000000012345"}
	zones := []string{"Z", "z", "+00:00", "-00:00", "+01:00", "-05:30", "+23:59", "-23:59", "+14:45"}
	for range 200000 {
		s := fmt.Sprintf("%04d-%02d-%02d%c%02d:%02d:%02d%s%s",
			[]int{0, 1, 1600, 1900, 2000, 2023, 2024, 2100, 9999}[rng.IntN(9)]+rng.IntN(2),
			rng.IntN(14), rng.IntN(33), "Tt"[rng.IntN(2)], rng.IntN(25), rng.IntN(61), rng.IntN(62),
			fracs[rng.IntN(len(fracs))], zones[rng.IntN(len(zones))])
		if !rfc3339([]byte(s)) {
			continue
		}
		want, err := time.Parse(time.RFC3339, strings.NewReplacer("t", "T", "z", "Z").Replace(s))
		got, ok := parseRFC3339([]byte(s))
		want = want.UTC().Truncate(time.Millisecond)
		if ok != (err == nil) || ok && (got != want || got.Location() != time.UTC) {
			t.Fatalf("%s: parseRFC3339 = %v, %v; time.Parse = %v, %v", s, got, ok, want, err)
		}
	}
}

// TestSpecialsFirst: the lowest flagged byte of specials is exactly the
// first byte that is not plain.
func TestSpecialsFirst(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 10))
	interesting := []byte{0, 0x1f, 0x20, 0x21, '"', '\\', 0x5b, 0x5d, 0x7e, 0x7f, 0x80, 0xff, 'a', 0x01, 0xa2, 0xdc, 0x9f}
	var b [8]byte
	for range 300000 {
		for i := range b {
			if rng.IntN(4) == 0 {
				b[i] = interesting[rng.IntN(len(interesting))]
			} else {
				b[i] = byte(0x20 + rng.IntN(0x60))
			}
		}
		first := 8
		for i, c := range b {
			if !plain[c] {
				first = i
				break
			}
		}
		m := specials(binary.LittleEndian.Uint64(b[:]))
		got := 8
		if m != 0 {
			got = bits.TrailingZeros64(m) / 8
		}
		if got != first {
			t.Fatalf("% x: specials says byte %d, the first not plain is %d", b, got, first)
		}
	}
}
