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
	depth   int  // of the object itself: the record is 1
	started bool // the '{' has been consumed
	done    bool // the '}' has been consumed, or scanning failed
	// The member last scanned, as offsets into s.data (no pointers, so
	// scanning stores nothing the garbage collector must hear of): the key
	// without its quotes, and the value.
	key, val        span
	keyFlags, flags uint8
	kind            kind
	inValue         bool // the value of key is being scanned, for errors
}

func (it *objectIter) next() (p pair, ok bool) {
	ok = it.nextInto(&p)
	return p, ok
}

// nextInto is next writing the member into *p, which it may change even
// when it returns false.
func (it *objectIter) nextInto(p *pair) bool {
	if !it.member() {
		return false
	}
	d := it.s.data
	*p = pair{key: d[it.key.start:it.key.end], keyFlags: it.keyFlags, val: d[it.val.start:it.val.end], kind: it.kind, flags: it.flags}
	return true
}

// failedKey returns the key whose value failed to scan, or nil.
func (it *objectIter) failedKey() []byte {
	if !it.inValue {
		return nil
	}
	return it.s.data[it.key.start:it.key.end]
}

// member scans the next member into it.key, it.val and their flags.
func (it *objectIter) member() (ok bool) {
	s := &it.s
	if it.done {
		return false
	}
	it.inValue = false
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
	if it.keyFlags, ok = s.str(); !ok {
		it.done = true
		return false
	}
	it.key = spanOf(start+1, s.pos-1)
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
	it.inValue = true
	start = s.pos
	if it.kind, it.flags, ok = s.value(it.depth + 1); !ok {
		it.done = true
		return false
	}
	it.val = spanOf(start, s.pos)
	return true
}

// absent reports whether a value counts as absent: null or "".
func (p *pair) absent() bool {
	return p.kind == kindNull || p.kind == kindString && len(p.val) == 2
}
