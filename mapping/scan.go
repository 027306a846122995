package mapping

import (
	"encoding/binary"
	"math/bits"
	"strconv"
	"unicode/utf8"
)

// maxDepth bounds how deeply objects and arrays may nest, counting the record
// object itself as level 1. The scanner is iterative, so the bound is not
// about the Go stack: it keeps pathological records (100k nested brackets)
// cheap to reject and keeps decoders further down the line safe.
const maxDepth = 100

// kind is the JSON type of a scanned value.
type kind uint8

const (
	kindString kind = iota + 1
	kindNumber
	kindObject
	kindArray
	kindBool
	kindNull
)

func (k kind) String() string {
	switch k {
	case kindString:
		return "a string"
	case kindNumber:
		return "a number"
	case kindObject:
		return "an object"
	case kindArray:
		return "an array"
	case kindBool:
		return "a boolean"
	case kindNull:
		return "null"
	}
	return "not a JSON value"
}

// Value flags collected while scanning.
const (
	flagEscaped  uint8 = 1 << iota // a string holding backslash escapes
	flagSpace                      // insignificant whitespace inside the value
	flagInteger                    // a number without fraction or exponent
	flagNegative                   // a number with a leading minus sign
)

// plain marks the bytes a JSON string may hold literally without further
// checks: printable ASCII other than the quote and the backslash.
var plain = func() (t [256]bool) {
	for c := 0x20; c < 0x80; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

// special reports whether any of the eight bytes in w is not plain: a
// control character, a quote, a backslash or a byte of a multi-byte UTF-8
// sequence. (x - n·ones) &^ x & highs is non-zero exactly when some byte of
// x is below n (for n ≤ 0x80), so each term is exact for "any byte".
func special(w uint64) bool { return specials(w) != 0 }

// specials is special's mask: the high bit of each flagged byte. A borrow
// only runs towards higher bytes, so the lowest flagged byte is exactly
// the first byte that is not plain (bytes above it may be flagged
// spuriously).
func specials(w uint64) uint64 {
	const ones, highs = 0x0101010101010101, 0x8080808080808080
	const quotes, backslashes = '"' * ones, '\\' * ones
	control := (w - 0x20*ones) &^ w
	quote := ((w ^ quotes) - ones) &^ (w ^ quotes)
	backslash := ((w ^ backslashes) - ones) &^ (w ^ backslashes)
	return (w | control | quote | backslash) & highs
}

// scanner validates JSON in one pass without decoding it. It yields the
// extent of each value so the mapping can forward raw bytes unchanged.
// It accepts exactly RFC 8259 JSON in valid UTF-8 (what encoding/json
// accepts, minus invalid UTF-8), up to maxDepth levels.
type scanner struct {
	data []byte
	pos  int
	err  string // set on failure: what went wrong and where
}

func (s *scanner) fail(msg string) bool {
	s.err = msg + " at byte " + strconv.Itoa(s.pos)
	return false
}

func (s *scanner) failEOF() bool {
	s.err = "unexpected end of input"
	return false
}

func (s *scanner) failChar() bool {
	if s.pos >= len(s.data) {
		return s.failEOF()
	}
	c := s.data[s.pos]
	if c < 0x20 || c >= 0x7f {
		return s.fail("unexpected byte 0x" + strconv.FormatUint(uint64(c), 16))
	}
	return s.fail("unexpected character " + strconv.QuoteRune(rune(c)))
}

// space skips JSON whitespace and reports whether there was any.
func (s *scanner) space() bool {
	// Most JSON has no whitespace between tokens.
	if s.pos < len(s.data) && s.data[s.pos] > ' ' {
		return false
	}
	start := s.pos
	for s.pos < len(s.data) {
		switch s.data[s.pos] {
		case ' ', '\t', '\n', '\r':
			s.pos++
			continue
		}
		break
	}
	return s.pos != start
}

// str scans the string starting at s.pos (a quote) and leaves s.pos past
// its closing quote.
func (s *scanner) str() (flags uint8, ok bool) {
	d := s.data
	i := s.pos + 1
	for {
		// Eight bytes at a time up to the first that needs a closer look;
		// byte by byte in the last few bytes of the input.
		for i+8 <= len(d) {
			if m := specials(binary.LittleEndian.Uint64(d[i:])); m != 0 {
				i += bits.TrailingZeros64(m) / 8
				goto look
			}
			i += 8
		}
		for i < len(d) && plain[d[i]] {
			i++
		}
	look:
		if i >= len(d) {
			return 0, s.failEOF()
		}
		switch c := d[i]; {
		case c == '"':
			s.pos = i + 1
			return flags, true
		case c == '\\':
			flags |= flagEscaped
			if i+1 >= len(d) {
				return 0, s.failEOF()
			}
			switch d[i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				i += 2
			case 'u':
				for j := i + 2; j < i+6; j++ {
					if j >= len(d) {
						return 0, s.failEOF()
					}
					if !isHex(d[j]) {
						s.pos = j
						return 0, s.fail("invalid \\u escape in a string")
					}
				}
				i += 6
			default:
				s.pos = i
				return 0, s.fail("invalid escape in a string")
			}
		case c < 0x20:
			s.pos = i
			return 0, s.fail("control character in a string")
		default:
			r, n := utf8.DecodeRune(d[i:])
			if r == utf8.RuneError && n == 1 {
				s.pos = i
				return 0, s.fail("invalid UTF-8")
			}
			i += n
		}
	}
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

// num scans the number starting at s.pos.
func (s *scanner) num() (flags uint8, ok bool) {
	d := s.data
	i := s.pos
	flags = flagInteger
	if d[i] == '-' {
		flags |= flagNegative
		i++
	}
	switch {
	case i >= len(d):
		s.pos = i
		return 0, s.failEOF()
	case d[i] == '0':
		i++
	case isDigit(d[i]):
		for i < len(d) && isDigit(d[i]) {
			i++
		}
	default:
		s.pos = i
		return 0, s.failChar()
	}
	if i < len(d) && d[i] == '.' {
		flags &^= flagInteger
		i++
		if i >= len(d) || !isDigit(d[i]) {
			s.pos = i
			return 0, s.failChar()
		}
		for i < len(d) && isDigit(d[i]) {
			i++
		}
	}
	if i < len(d) && (d[i] == 'e' || d[i] == 'E') {
		flags &^= flagInteger
		i++
		if i < len(d) && (d[i] == '+' || d[i] == '-') {
			i++
		}
		if i >= len(d) || !isDigit(d[i]) {
			s.pos = i
			return 0, s.failChar()
		}
		for i < len(d) && isDigit(d[i]) {
			i++
		}
	}
	s.pos = i
	return flags, true
}

// literal scans true, false or null.
func (s *scanner) literal(word string) bool {
	d := s.data[s.pos:]
	for i := 0; i < len(word); i++ {
		if i >= len(d) {
			s.pos += i
			return s.failEOF()
		}
		if d[i] != word[i] {
			s.pos += i
			return s.failChar()
		}
	}
	s.pos += len(word)
	return true
}

// key scans an object key, the colon after it and the whitespace around.
func (s *scanner) key() (flags uint8, ok bool) {
	if s.pos >= len(s.data) || s.data[s.pos] != '"' {
		if s.pos >= len(s.data) {
			return 0, s.failEOF()
		}
		return 0, s.fail("expected a string key")
	}
	if flags, ok = s.str(); !ok {
		return 0, false
	}
	if s.space() {
		flags |= flagSpace
	}
	if s.pos >= len(s.data) {
		return 0, s.failEOF()
	}
	if s.data[s.pos] != ':' {
		return 0, s.fail("expected ':' after an object key")
	}
	s.pos++
	if s.space() {
		flags |= flagSpace
	}
	return flags, true
}

// value scans one value that sits at the given depth (the record object is
// depth 1, its members' values depth 2…), leaving s.pos just past it. The
// returned flags describe a scalar; flagSpace is set for any value holding
// whitespace between its tokens. Containers are walked iteratively with a
// fixed stack, so no input can exhaust the Go stack.
func (s *scanner) value(depth int) (k kind, flags uint8, ok bool) {
	// Most values are strings and numbers: scan them without the container
	// machinery.
	if s.pos < len(s.data) {
		switch c := s.data[s.pos]; {
		case c == '"':
			flags, ok = s.str()
			return kindString, flags, ok
		case c == '-' || isDigit(c):
			flags, ok = s.num()
			return kindNumber, flags, ok
		}
	}
	return s.container(depth)
}

// container is value for any value; it walks containers iteratively.
func (s *scanner) container(depth int) (k kind, flags uint8, ok bool) {
	var closers [maxDepth]byte
	n := 0 // open containers within this value
	d := s.data
	for {
		if s.pos >= len(d) {
			return 0, 0, s.failEOF()
		}
		var vk kind
		switch c := d[s.pos]; c {
		case '"':
			f, ok := s.str()
			if !ok {
				return 0, 0, false
			}
			vk = kindString
			if n == 0 {
				flags |= f
			}
		case '{', '[':
			if depth+n > maxDepth {
				return 0, 0, s.fail("nesting deeper than " + strconv.Itoa(maxDepth) + " levels")
			}
			s.pos++
			if s.space() {
				flags |= flagSpace
			}
			closer := byte(']')
			vk = kindArray
			if c == '{' {
				closer = '}'
				vk = kindObject
			}
			if n == 0 {
				k = vk
			}
			if s.pos < len(d) && d[s.pos] == closer {
				s.pos++ // an empty container is a complete value
				break
			}
			closers[n] = closer
			n++
			if c == '{' {
				f, ok := s.key()
				if !ok {
					return 0, 0, false
				}
				flags |= f & flagSpace
			}
			continue
		case 't':
			vk = kindBool
			if !s.literal("true") {
				return 0, 0, false
			}
		case 'f':
			vk = kindBool
			if !s.literal("false") {
				return 0, 0, false
			}
		case 'n':
			vk = kindNull
			if !s.literal("null") {
				return 0, 0, false
			}
		default:
			if c != '-' && !isDigit(c) {
				return 0, 0, s.failChar()
			}
			f, ok := s.num()
			if !ok {
				return 0, 0, false
			}
			vk = kindNumber
			if n == 0 {
				flags |= f
			}
		}
		if n == 0 {
			return vk, flags, true
		}
		// A value inside a container is complete: close containers until
		// the next member or element starts.
		for {
			if s.space() {
				flags |= flagSpace
			}
			if s.pos >= len(d) {
				return 0, 0, s.failEOF()
			}
			c := d[s.pos]
			if c == ',' {
				s.pos++
				if s.space() {
					flags |= flagSpace
				}
				if closers[n-1] == '}' {
					f, ok := s.key()
					if !ok {
						return 0, 0, false
					}
					flags |= f & flagSpace
				}
				break
			}
			if c != closers[n-1] {
				return 0, 0, s.fail("expected ',' or '" + string(closers[n-1]) + "'")
			}
			s.pos++
			n--
			if n == 0 {
				return k, flags, true
			}
		}
	}
}
