package mapping

// pair is one member of a JSON object, as slices of the scanned input.
type pair struct {
	key      []byte // without its quotes, still escaped
	keyFlags uint8
	val      []byte
	kind     kind
	flags    uint8
}

// objectIter walks the members of the object starting at s.pos. After next
// returns false, s.err says whether the object was malformed.
type objectIter struct {
	s       scanner
	depth   int    // of the object itself: the record is 1
	started bool   // the '{' has been consumed
	done    bool   // the '}' has been consumed, or scanning failed
	key     []byte // the key whose value is being scanned, for errors
}

func (it *objectIter) next() (p pair, ok bool) {
	ok = it.nextInto(&p)
	return p, ok
}

// nextInto is next writing the member into *p, which it may change even
// when it returns false.
func (it *objectIter) nextInto(p *pair) (ok bool) {
	s := &it.s
	if it.done {
		return false
	}
	it.key = nil
	s.space()
	if !it.started {
		it.started = true
		if s.pos >= len(s.data) {
			it.done = true
			return s.failEOF()
		}
		if s.data[s.pos] != '{' {
			it.done = true
			return s.failChar()
		}
		s.pos++
		s.space()
		if s.pos < len(s.data) && s.data[s.pos] == '}' {
			s.pos++
			it.done = true
			return false
		}
	} else {
		if s.pos >= len(s.data) {
			it.done = true
			return s.failEOF()
		}
		switch s.data[s.pos] {
		case ',':
			s.pos++
			s.space()
		case '}':
			s.pos++
			it.done = true
			return false
		default:
			it.done = true
			return s.fail("expected ',' or '}'")
		}
	}
	if s.pos >= len(s.data) || s.data[s.pos] != '"' {
		it.done = true
		if s.pos >= len(s.data) {
			return s.failEOF()
		}
		return s.fail("expected a string key")
	}
	start := s.pos
	if p.keyFlags, ok = s.str(); !ok {
		it.done = true
		return false
	}
	p.key = s.data[start+1 : s.pos-1]
	s.space()
	if s.pos >= len(s.data) || s.data[s.pos] != ':' {
		it.done = true
		if s.pos >= len(s.data) {
			return s.failEOF()
		}
		return s.fail("expected ':' after an object key")
	}
	s.pos++
	s.space()
	it.key = p.key
	start = s.pos
	if p.kind, p.flags, ok = s.value(it.depth + 1); !ok {
		it.done = true
		return false
	}
	p.val = s.data[start:s.pos]
	return true
}

// absent reports whether a value counts as absent: null or "".
func (p *pair) absent() bool {
	return p.kind == kindNull || p.kind == kindString && len(p.val) == 2
}
