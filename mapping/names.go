package mapping

import (
	"encoding/binary"
	"strconv"
	"unicode"
	"unicode/utf16"
	"unicode/utf8"
)

// appendUnescaped appends the text of a JSON string, given without its
// quotes and already validated by the scanner. A lone UTF-16 surrogate
// becomes U+FFFD, as encoding/json does.
func appendUnescaped(dst, raw []byte) []byte {
	for i := 0; i < len(raw); {
		c := raw[i]
		if c != '\\' {
			j := i + 1
			for j < len(raw) && raw[j] != '\\' {
				j++
			}
			dst = append(dst, raw[i:j]...)
			i = j
			continue
		}
		switch e := raw[i+1]; e {
		case 'b':
			dst = append(dst, '\b')
		case 'f':
			dst = append(dst, '\f')
		case 'n':
			dst = append(dst, '\n')
		case 'r':
			dst = append(dst, '\r')
		case 't':
			dst = append(dst, '\t')
		case 'u':
			r := hex4(raw[i+2:])
			i += 6
			if utf16.IsSurrogate(r) {
				r2 := rune(-1)
				if i+6 <= len(raw) && raw[i] == '\\' && raw[i+1] == 'u' {
					r2 = hex4(raw[i+2:])
				}
				if p := utf16.DecodeRune(r, r2); p != unicode.ReplacementChar {
					r = p
					i += 6
				} else {
					r = unicode.ReplacementChar
				}
			}
			dst = utf8.AppendRune(dst, r)
			continue
		default: // '"', '\\', '/'
			dst = append(dst, e)
		}
		i += 2
	}
	return dst
}

func hex4(b []byte) rune {
	var r rune
	for _, c := range b[:4] {
		switch {
		case c <= '9':
			c -= '0'
		case c <= 'F':
			c -= 'A' - 10
		default:
			c -= 'a' - 10
		}
		r = r<<4 | rune(c)
	}
	return r
}

// appendSnake appends the snake_case form of a field name, so that camelCase
// and snake_case spellings of one field meet under one name:
//
//	tourId, tour_id, TourId, tour-id, "Tour Id" → tour_id
//	tourID → tour_id, HTTPServer → http_server, tourIDs → tour_ids
//	step2Index → step2_index, __typename → __typename
//
// Letters are lower-cased; '-' and ' ' become '_'; an '_' goes before an
// upper-case letter that follows a lower-case letter or a digit, and before
// the last capital of an acronym when a lower-case word of two or more
// letters follows it (so a plural "s" stays with its acronym). Every other
// character is kept.
func appendSnake(dst, name []byte) []byte {
	plain := true // the common case: already lower-case ASCII snake_case
	ascii := true
	for _, c := range name {
		if c >= utf8.RuneSelf {
			ascii, plain = false, false
			break
		}
		if 'A' <= c && c <= 'Z' || c == '-' || c == ' ' {
			plain = false
		}
	}
	if plain {
		return append(dst, name...)
	}
	if ascii {
		return appendSnakeASCII(dst, name)
	}
	return appendSnakeRunes(dst, name)
}

// appendSnakeRunes is appendSnake for any name, a rune at a time.
func appendSnakeRunes(dst, name []byte) []byte {
	start := len(dst)
	prev := rune(-1)
	for i := 0; i < len(name); {
		r, n := rune(name[i]), 1
		if r >= utf8.RuneSelf {
			r, n = utf8.DecodeRune(name[i:])
		}
		switch {
		case r == '-' || r == ' ' || r == '_':
			dst = append(dst, '_')
		case isUpper(r):
			if len(dst) > start && dst[len(dst)-1] != '_' &&
				(isLower(prev) || isDigitRune(prev) || isUpper(prev) && wordFollows(name[i+n:])) {
				dst = append(dst, '_')
			}
			dst = utf8.AppendRune(dst, toLower(r))
		default:
			dst = append(dst, name[i:i+n]...)
		}
		prev = r
		i += n
	}
	return dst
}

// appendSnakeASCII is appendSnake for a name of ASCII characters only, a
// byte at a time: the same rules without decoding runes.
func appendSnakeASCII(dst, name []byte) []byte {
	start := len(dst)
	prev := byte(0) // no character before the first
	for i, c := range name {
		switch {
		case c == '-' || c == ' ' || c == '_':
			dst = append(dst, '_')
		case 'A' <= c && c <= 'Z':
			if len(dst) > start && dst[len(dst)-1] != '_' &&
				('a' <= prev && prev <= 'z' || isDigit(prev) ||
					'A' <= prev && prev <= 'Z' && i+2 < len(name) && isLowerASCII(name[i+1]) && isLowerASCII(name[i+2])) {
				dst = append(dst, '_')
			}
			dst = append(dst, c+('a'-'A'))
		default:
			dst = append(dst, c)
		}
		prev = c
	}
	return dst
}

func isLowerASCII(c byte) bool { return 'a' <= c && c <= 'z' }

// wordFollows reports whether b starts with two or more lower-case letters.
func wordFollows(b []byte) bool {
	count := 0
	for i := 0; i < len(b) && count < 2; {
		r, n := rune(b[i]), 1
		if r >= utf8.RuneSelf {
			r, n = utf8.DecodeRune(b[i:])
		}
		if !isLower(r) {
			break
		}
		count++
		i += n
	}
	return count >= 2
}

func isUpper(r rune) bool {
	if r < utf8.RuneSelf {
		return 'A' <= r && r <= 'Z'
	}
	return unicode.IsUpper(r)
}

func isLower(r rune) bool {
	if r < utf8.RuneSelf {
		return 'a' <= r && r <= 'z'
	}
	return unicode.IsLower(r)
}

func isDigitRune(r rune) bool { return '0' <= r && r <= '9' }

func toLower(r rune) rune {
	if r < utf8.RuneSelf {
		return r + ('a' - 'A')
	}
	return unicode.ToLower(r)
}

// hexDigits is used for \u escapes and UUID text.
const hexDigits = "0123456789abcdef"

// appendString appends s as a JSON string. It escapes what JSON requires
// (quote, backslash, control characters) and nothing else; s must be valid
// UTF-8, which everything the mapping writes is.
func appendString[S ~string | ~[]byte](dst []byte, s S) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 0x20 && c != '"' && c != '\\' {
			continue
		}
		dst = append(dst, s[start:i]...)
		switch c {
		case '"', '\\':
			dst = append(dst, '\\', c)
		case '\n':
			dst = append(dst, '\\', 'n')
		case '\r':
			dst = append(dst, '\\', 'r')
		case '\t':
			dst = append(dst, '\\', 't')
		default:
			dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
		}
		start = i + 1
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
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

// commonNames are the field names records usually carry, spelled as
// producers usually spell them. A name found here skips the snake_case
// conversion and the role lookup; what it maps to is computed by those
// same functions when the table is built, so the two can never disagree.
var commonNames = [...]string{
	"type", "id", "userId", "user_id", "anonymousId", "anonymous_id", "timestamp", "accountId", "account_id",
	"tourId", "tour_id", "checklistId", "checklist_id", "smartTipId", "smart_tip_id",
	"announcementId", "announcement_id", "npsWidgetId", "nps_widget_id", "metadata",
	"companyId", "company_id", "locale", "url", "pageUrl", "page_url", "userAgent", "user_agent",
	"appVersion", "app_version", "plan", "seats", "referrer", "title", "path",
	// members of metadata objects
	"stepIndex", "step_index", "stepId", "step_id", "stepTitle", "step_title", "elementSelector", "element_selector",
}

// knownName is a commonNames entry with its snake_case name and role.
type knownName struct {
	spelling string
	snake    string
	role     role
	bit      uint8 // nameBit(snake), for dedupe
	verbatim bool  // spelling == snake
	// The spelling as keyWords reads it, compared whole instead of byte
	// by byte.
	lo, hi uint64
	n      uint8
}

// maxKnownLen is the longest spelling the table can hold: two words.
const maxKnownLen = 16

// keyWords packs a name of up to maxKnownLen bytes into two
// little-endian words, padded with zero bytes. JSON keys without escapes
// hold no zero byte, so the words and the length tell names apart.
func keyWords(b []byte) (lo, hi uint64) {
	var w [maxKnownLen]byte
	copy(w[:], b)
	return binary.LittleEndian.Uint64(w[:8]), binary.LittleEndian.Uint64(w[8:])
}

// keyWordsAt is keyWords of d[i:i+n] (n ≤ maxKnownLen), read as two
// whole words and masked when sixteen bytes from i lie within d, as they
// do for every key but those at the very end of a record.
func keyWordsAt(d []byte, i, n int) (lo, hi uint64) {
	if i+maxKnownLen > len(d) {
		return keyWords(d[i : i+n])
	}
	w := d[i : i+maxKnownLen]
	m := &keyMasks[n]
	return binary.LittleEndian.Uint64(w[:8]) & m[0], binary.LittleEndian.Uint64(w[8:]) & m[1]
}

// keyMasks[n] keeps the first n bytes of two words.
var keyMasks = func() (t [maxKnownLen + 1][2]uint64) {
	for n := range t {
		for i := 0; i < n; i++ {
			t[n][i/8] |= 0xff << (8 * (i % 8))
		}
	}
	return t
}()

// knownNames is an open-addressing hash table of commonNames, probed from
// a hash of keyWords: slot holds 1 + the index of an entry, 0 ends a
// probe. The slots fit in four cache lines.
type knownNames struct {
	slot    [256]uint8
	entries [len(commonNames)]knownName
	bits    uint8 // distinct snake_case names in entries (nameBit)
}

// nameBit returns the bit of a snake_case name in the 64-bit set by
// which collect tells whether a record may spell a field twice: each
// snake_case name of commonNames has a bit of its own (0 to t.bits-1),
// and any other name one of the others, by nameHash. Two names with the
// same bit may be the same name; two with different bits never are, so a
// record whose names have distinct bits leaves dedupe nothing to do.
func (t *knownNames) nameBit(snake []byte) uint8 {
	if kn := t.lookup(snake); kn != nil && kn.snake == string(snake) {
		return kn.bit
	}
	return t.bits + nameHash(snake)%(64-t.bits)
}

func nameHash(name []byte) uint8 {
	n := len(name)
	if n == 0 {
		return 0
	}
	return uint8(n*31) ^ name[0]*7 ^ name[n-1]*13 ^ name[n/2]
}

// wordsHash is the slot a name's keyWords probe first.
func wordsHash(lo, hi uint64) uint8 {
	return uint8(((lo ^ hi*0x9e3779b97f4a7c15) * 0xff51afd7ed558ccd) >> 56)
}

var known = func() *knownNames {
	t := new(knownNames)
	bits := map[string]uint8{}
	for i, sp := range commonNames {
		if len(sp) > maxKnownLen {
			panic("mapping: common name " + sp + " is longer than keyWords reads")
		}
		snake := string(appendSnake(nil, []byte(sp)))
		bit, ok := bits[snake]
		if !ok {
			bit = uint8(len(bits))
			bits[snake] = bit
		}
		lo, hi := keyWords([]byte(sp))
		t.entries[i] = knownName{spelling: sp, snake: snake, role: roleOf([]byte(snake)), bit: bit,
			lo: lo, hi: hi, n: uint8(len(sp)), verbatim: sp == snake}
		h := wordsHash(lo, hi)
		for t.slot[h] != 0 {
			h++
		}
		t.slot[h] = uint8(i + 1)
	}
	// nameBit finds a name's own bit by looking the snake_case name up
	// as a spelling, and leaves the others at least 16 bits to share.
	for snake := range bits {
		if kn := t.lookup([]byte(snake)); kn == nil || kn.snake != snake {
			panic("mapping: common name " + snake + " (a snake_case form) is not itself in commonNames")
		}
	}
	if len(bits) > 48 {
		panic("mapping: more than 48 distinct common names leave too few bits for the others")
	}
	t.bits = uint8(len(bits))
	return t
}()

// lookup returns the entry of a raw (unescaped) field name, or nil.
func (t *knownNames) lookup(name []byte) *knownName {
	if len(name) > maxKnownLen {
		return nil
	}
	lo, hi := keyWords(name)
	return t.find(lo, hi, len(name))
}

// lookupAt is lookup of d[i:i+n].
func (t *knownNames) lookupAt(d []byte, i, n int) *knownName {
	if n > maxKnownLen {
		return nil
	}
	lo, hi := keyWordsAt(d, i, n)
	return t.find(lo, hi, n)
}

// find returns the entry whose keyWords and length these are, or nil.
func (t *knownNames) find(lo, hi uint64, n int) *knownName {
	for h := wordsHash(lo, hi); t.slot[h] != 0; h++ {
		if e := &t.entries[t.slot[h]-1]; e.lo == lo && e.hi == hi && int(e.n) == n {
			return e
		}
	}
	return nil
}

// knownUnescaped looks a key up in the common-names table when it has no
// escapes (a key with escapes is not spelled as the table spells it).
func knownUnescaped(key []byte, keyFlags uint8) *knownName {
	if keyFlags&flagEscaped != 0 {
		return nil
	}
	return known.lookup(key)
}
