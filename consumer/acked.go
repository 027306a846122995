package consumer

import (
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
)

// A partition's commit point stops at its oldest unfinished record, while
// the records after it go on being acknowledged. So every commit also says,
// in the offset commit's metadata (a string Kafka keeps beside the offset
// and hands back with it), which records above the commit point are already
// acknowledged. Whoever owns the partition next, after a crash or a
// rebalance, still reads from the committed offset but does not send those
// records again: only the records that were really unfinished are
// replayed. The same scheme as Confluent's parallel consumer, which keeps
// its offset map in the commit metadata too.
//
// The metadata is AckedPrefix and then, in unpadded standard base64, the
// commit point as a uvarint followed by each acknowledged span as two
// uvarints: its distance from the end of the span before it (from the
// commit point for the first) and its length. A metadata string that does
// not start with AckedPrefix (committed by another tool, or empty) means
// nothing is known beyond the commit point.

// AckedPrefix starts the commit metadata that carries acknowledged spans.
const AckedPrefix = "produktly-acked/1:"

// maxCommitMetadata bounds the metadata committed with one offset: the
// broker refuses more than offset.metadata.max.bytes, 4096 by default.
// Spans that do not fit are left out: their records are replayed, as they
// would be without the metadata.
const maxCommitMetadata = 4000

// maxAckedSpans bounds the spans a tracker reports for one commit; with a
// few bytes each, more would not fit maxCommitMetadata anyway.
const maxAckedSpans = 2048

// Span is the offsets From to To-1 of one partition.
type Span struct{ From, To int64 }

// Acked is what a commit's metadata says about its partition: the offset
// committed with it and the spans above it whose records were acknowledged
// by then, ascending and apart.
type Acked struct {
	Commit int64
	Spans  []Span
}

// metadata encodes a as commit metadata of at most limit bytes, leaving out
// the spans that do not fit; "" when there are no spans.
func (a Acked) metadata(limit int) string {
	if len(a.Spans) == 0 || a.Commit < 0 {
		return ""
	}
	room := (limit - len(AckedPrefix)) * 3 / 4 // base64: 4 characters per 3 bytes
	buf := binary.AppendUvarint(make([]byte, 0, 64), uint64(a.Commit))
	prev, n := a.Commit, 0
	for _, s := range a.Spans {
		if s.From < prev || s.To <= s.From {
			break // not ascending: stop rather than encode nonsense
		}
		before := len(buf)
		buf = binary.AppendUvarint(buf, uint64(s.From-prev))
		buf = binary.AppendUvarint(buf, uint64(s.To-s.From))
		if len(buf) > room {
			buf = buf[:before]
			break
		}
		prev, n = s.To, n+1
	}
	if n == 0 {
		return ""
	}
	return AckedPrefix + base64.RawStdEncoding.EncodeToString(buf)
}

// ErrNoAcked reports commit metadata that carries no acknowledged spans:
// empty, or written by another tool.
var ErrNoAcked = errors.New("consumer: commit metadata carries no acknowledged spans")

// ParseAcked reads the commit metadata written with a commit. It returns
// ErrNoAcked for metadata it did not write, and an error for metadata it
// wrote that does not decode.
func ParseAcked(md string) (Acked, error) {
	text, ok := strings.CutPrefix(md, AckedPrefix)
	if !ok {
		return Acked{}, ErrNoAcked
	}
	b, err := base64.RawStdEncoding.DecodeString(text)
	if err != nil {
		return Acked{}, fmt.Errorf("consumer: commit metadata: %w", err)
	}
	next := func() (int64, bool) {
		v, n := binary.Uvarint(b)
		if n <= 0 || v >= maxOffset {
			return 0, false
		}
		b = b[n:]
		return int64(v), true
	}
	commit, ok := next()
	if !ok {
		return Acked{}, errors.New("consumer: commit metadata: bad commit offset")
	}
	a := Acked{Commit: commit}
	prev := commit
	for len(b) > 0 {
		gap, ok1 := next()
		length, ok2 := next()
		// Each value is below maxOffset, and so is prev: no overflow.
		if !ok1 || !ok2 || length == 0 || prev+gap+length >= maxOffset {
			return Acked{}, fmt.Errorf("consumer: commit metadata: bad span after offset %d", prev)
		}
		from := prev + gap
		a.Spans = append(a.Spans, Span{From: from, To: from + length})
		prev = from + length
	}
	return a, nil
}

// maxOffset bounds every offset in commit metadata, far above any real
// one, so that decoding needs no overflow checks beyond it.
const maxOffset = 1 << 61

// skipper answers, for offsets asked in ascending order, whether a record
// was acknowledged before the partition's last commit (Acked spans).
type skipper struct{ spans []Span }

// acked reports whether offset is in a span; spans below it are dropped.
func (s *skipper) acked(offset int64) bool {
	for len(s.spans) > 0 && s.spans[0].To <= offset {
		s.spans = s.spans[1:]
	}
	return len(s.spans) > 0 && s.spans[0].From <= offset
}
