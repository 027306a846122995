package segmenttest

import (
	"bytes"
	"encoding/json"
	"errors"
)

// scanBatch is the benchmark server's reading of a batch body: one pass
// over the bytes that checks the structure (balanced objects and arrays,
// terminated strings) and picks the checked fields of each message out of
// its top level, without decoding anything else. It is how a server on the
// same two cores as the service keeps out of the way of what a benchmark
// measures; the full server (without WithoutBodies) decodes everything with
// encoding/json and is what the correctness tests use.
//
// It appends to out, which it may reuse from an earlier body. The fields
// alias data, except a string with escapes, which is decoded into a copy.
func scanBatch(data []byte, out []scanned) ([]scanned, error) {
	i := bytes.Index(data, []byte(`"batch"`))
	if i < 0 {
		return nil, errors.New("batch is missing")
	}
	i = skipSpace(data, i+len(`"batch"`))
	if i >= len(data) || data[i] != ':' {
		return nil, errors.New("invalid JSON after \"batch\"")
	}
	i = skipSpace(data, i+1)
	if i >= len(data) || data[i] != '[' {
		return nil, errors.New("batch is not an array")
	}
	i++
	first := len(out)
	for {
		i = skipSpace(data, i)
		if i >= len(data) {
			return nil, errors.New("unterminated batch")
		}
		if data[i] == ']' {
			return out, nil
		}
		if len(out) > first {
			if data[i] != ',' {
				return nil, errors.New("invalid JSON between messages")
			}
			i = skipSpace(data, i+1)
		}
		if len(out) == cap(out) {
			out = append(out, scanned{})[:len(out)]
		}
		out = out[:len(out)+1]
		f := &out[len(out)-1]
		*f = scanned{}
		var err error
		if i, err = scanMessage(data, i, f); err != nil {
			return nil, err
		}
	}
}

// scanned are the checked fields of one message as scanBatch reads them.
type scanned struct {
	typ, event, messageID, userID, anonymousID []byte
}

// scanMessage reads one message object starting at data[i] and returns the
// index after it.
func scanMessage(data []byte, i int, f *scanned) (int, error) {
	if i >= len(data) || data[i] != '{' {
		return 0, errors.New("message is not an object")
	}
	i++
	for first := true; ; first = false {
		i = skipSpace(data, i)
		if i < len(data) && data[i] == '}' {
			return i + 1, nil
		}
		if !first {
			if i >= len(data) || data[i] != ',' {
				return 0, errors.New("invalid JSON in message")
			}
			i = skipSpace(data, i+1)
		}
		kStart := i
		end, err := skipString(data, i)
		if err != nil {
			return 0, err
		}
		key := data[kStart+1 : end-1]
		i = skipSpace(data, end)
		if i >= len(data) || data[i] != ':' {
			return 0, errors.New("invalid JSON in message")
		}
		i = skipSpace(data, i+1)
		vStart := i
		if i, err = skipValue(data, i); err != nil {
			return 0, err
		}
		var dst *[]byte
		switch string(key) {
		case "type":
			dst = &f.typ
		case "event":
			dst = &f.event
		case "messageId":
			dst = &f.messageID
		case "userId":
			dst = &f.userID
		case "anonymousId":
			dst = &f.anonymousID
		}
		if dst != nil && data[vStart] == '"' {
			v := data[vStart+1 : i-1]
			if bytes.IndexByte(v, '\\') >= 0 {
				// JSON's escapes, not Go's (\/ is JSON, \x41 is not).
				var s string
				if err := json.Unmarshal(data[vStart:i], &s); err != nil {
					return 0, errors.New("invalid string")
				}
				v = []byte(s)
			}
			*dst = v
		}
	}
}

// skipValue returns the index after the JSON value at data[i].
func skipValue(data []byte, i int) (int, error) {
	if i >= len(data) {
		return 0, errors.New("unexpected end of JSON")
	}
	switch data[i] {
	case '"':
		return skipString(data, i)
	case '{', '[':
		depth := 0
		for i < len(data) {
			switch data[i] {
			case '"':
				end, err := skipString(data, i)
				if err != nil {
					return 0, err
				}
				i = end
				continue
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return i + 1, nil
				}
			}
			i++
		}
		return 0, errors.New("unterminated object or array")
	default: // number, true, false, null
		start := i
	scalar:
		for ; i < len(data); i++ {
			switch data[i] {
			case ',', '}', ']', ' ', '\t', '\r', '\n':
				break scalar
			}
		}
		if i == start {
			return 0, errors.New("invalid JSON value")
		}
		return i, nil
	}
}

// skipString returns the index after the JSON string at data[i].
func skipString(data []byte, i int) (int, error) {
	if i >= len(data) || data[i] != '"' {
		return 0, errors.New("expected a string")
	}
	for j := i + 1; ; {
		k := bytes.IndexByte(data[j:], '"')
		if k < 0 {
			return 0, errors.New("unterminated string")
		}
		q := j + k
		// The quote ends the string unless an odd run of backslashes
		// escapes it.
		n := 0
		for p := q - 1; p > i && data[p] == '\\'; p-- {
			n++
		}
		if n%2 == 0 {
			return q + 1, nil
		}
		j = q + 1
	}
}

func skipSpace(data []byte, i int) int {
	for i < len(data) && (data[i] == ' ' || data[i] == '\t' || data[i] == '\n' || data[i] == '\r') {
		i++
	}
	return i
}
