package consumer

import (
	"encoding/binary"
	"errors"
	"hash/crc32"
	"runtime"
	"testing"
	"time"

	"github.com/segmentio/kafka-go/protocol"
	fetchAPI "github.com/segmentio/kafka-go/protocol/fetch"
)

// rawRecord encodes one v2 record by hand, so that tests can write what
// kafka-go's encoder never does (a header count the record does not hold).
// A nil key or value is null.
func rawRecord(offsetDelta, tsDelta int64, key, value []byte, headers int64, headerBytes []byte) []byte {
	var body []byte
	body = append(body, 0) // attributes
	body = binary.AppendVarint(body, tsDelta)
	body = binary.AppendVarint(body, offsetDelta)
	for _, b := range [][]byte{key, value} {
		if b == nil {
			body = binary.AppendVarint(body, -1)
			continue
		}
		body = binary.AppendVarint(body, int64(len(b)))
		body = append(body, b...)
	}
	body = binary.AppendVarint(body, headers)
	body = append(body, headerBytes...)
	return append(binary.AppendVarint(nil, int64(len(body))), body...)
}

// rawBatch encodes an uncompressed v2 batch header around records (whole
// records, count of them) with a correct checksum: what a broker holds for
// a batch that compaction emptied (count 0), or one whose timestamps the
// broker set (LogAppendTime).
func rawBatch(base int64, attrs int16, lastOffsetDelta int32, producer, firstTS, maxTS int64, count int32, records []byte) []byte {
	b := binary.BigEndian.AppendUint64(nil, uint64(base))
	b = binary.BigEndian.AppendUint32(b, uint32(batchHeaderSize-12+len(records)))
	b = binary.BigEndian.AppendUint32(b, 0) // partition leader epoch
	b = append(b, 2)                        // magic
	b = binary.BigEndian.AppendUint32(b, 0) // crc, below
	b = binary.BigEndian.AppendUint16(b, uint16(attrs))
	b = binary.BigEndian.AppendUint32(b, uint32(lastOffsetDelta))
	b = binary.BigEndian.AppendUint64(b, uint64(firstTS))
	b = binary.BigEndian.AppendUint64(b, uint64(maxTS))
	b = binary.BigEndian.AppendUint64(b, uint64(producer))
	b = binary.BigEndian.AppendUint16(b, 0)          // producer epoch
	b = binary.BigEndian.AppendUint32(b, 0xffffffff) // base sequence
	b = binary.BigEndian.AppendUint32(b, uint32(count))
	b = append(b, records...)
	binary.BigEndian.PutUint32(b[17:], crc32.Checksum(b[crcStart:], castagnoli))
	return b
}

func decodeBody(t *testing.T, from int64, body []byte) (*batchReader, []int64, error) {
	t.Helper()
	part, _, found, err := parseFetch(body, "t", 0)
	if err != nil || !found {
		t.Fatalf("parseFetch = %v, found %v", err, found)
	}
	r := fakeBatchReader(nil)
	r.offset = from
	msgs, err := r.decode(&part)
	var offs []int64
	for _, m := range msgs {
		offs = append(offs, m.Offset)
	}
	return r, offs, err
}

// TestDecodeAbortMarkerFirst: a fetch that starts at an abort marker (the
// aborted transaction's records came in an earlier answer, or before the
// committed offset) gets that transaction in its aborted list all the
// same, as the broker lists every aborted transaction ending at or after
// the fetch offset. The marker ends it: the producer's next, committed,
// transaction is returned.
func TestDecodeAbortMarkerFirst(t *testing.T) {
	const p = 7
	txn := protocol.Attributes(attrTransactional)
	ctl := txn | protocol.Attributes(attrControl)
	at := time.UnixMilli(1700000000000)
	var set []byte
	set = append(set, encodeBatch(t, 20, ctl, p, []protocol.Record{{Offset: 20, Time: at, Key: protocol.NewBytes([]byte{0, 0, 0, 0}), Value: protocol.NewBytes([]byte{0, 0, 0, 0, 0, 0})}})...)
	set = append(set, encodeBatch(t, 21, txn, p, []protocol.Record{
		{Offset: 21, Time: at, Value: protocol.NewBytes([]byte("a"))},
		{Offset: 22, Time: at, Value: protocol.NewBytes([]byte("b"))},
	})...)
	set = append(set, encodeBatch(t, 23, ctl, p, []protocol.Record{{Offset: 23, Time: at, Key: protocol.NewBytes([]byte{0, 0, 0, 1}), Value: protocol.NewBytes([]byte{0, 0, 0, 0, 0, 0})}})...)
	body := fetchBody(24, []fetchAPI.ResponseTransaction{{ProducerID: p, FirstOffset: 10}}, set)
	r, got, err := decodeBody(t, 20, body)
	if err != nil || len(got) != 2 || got[0] != 21 || got[1] != 22 {
		t.Fatalf("decode from the abort marker = offsets %v, %v; want [21 22] (the committed transaction after it)", got, err)
	}
	if r.offset != 24 {
		t.Errorf("next offset %d, want 24", r.offset)
	}
}

// TestDecodeEmptyBatch: compaction keeps a batch whose records it all
// removed (to keep its producer's state) as a header with no records, its
// last offset delta still set. A fetch inside it moves past it, instead of
// asking for the same offset for ever.
func TestDecodeEmptyBatch(t *testing.T) {
	set := rawBatch(0, 0, 9, 3, 1700000000000, 1700000000000, 0, nil)
	r, got, err := decodeBody(t, 5, fetchBody(20, nil, set))
	if err != nil || len(got) != 0 {
		t.Fatalf("decode = %v, %v; want no records", got, err)
	}
	if r.offset != 10 {
		t.Errorf("next offset %d, want 10 (past the empty batch's last offset 9)", r.offset)
	}
}

// TestDecodeStopsAtBadRecord: a record that does not decode in a batch
// whose checksum matches ends the answer there: the records before it are
// returned and the next fetch starts at it (and reports it), rather than
// the batches after it being returned and the offsets between passed.
func TestDecodeStopsAtBadRecord(t *testing.T) {
	at := time.UnixMilli(1700000000000)
	var set []byte
	set = append(set, encodeBatch(t, 0, 0, -1, []protocol.Record{{Offset: 0, Time: at, Value: protocol.NewBytes([]byte("a"))}})...)
	// Three records announced, two held.
	recs := append(rawRecord(0, 0, nil, []byte("b"), 0, nil), rawRecord(1, 0, nil, []byte("c"), 0, nil)...)
	set = append(set, rawBatch(1, 0, 2, -1, at.UnixMilli(), at.UnixMilli(), 3, recs)...)
	set = append(set, encodeBatch(t, 4, 0, -1, []protocol.Record{{Offset: 4, Time: at, Value: protocol.NewBytes([]byte("d"))}})...)
	r, got, err := decodeBody(t, 0, fetchBody(5, nil, set))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 || got[2] != 2 || r.offset != 3 {
		t.Fatalf("decode = offsets %v, next %d; want [0 1 2], next 3 (the record that does not decode)", got, r.offset)
	}
	if _, _, err := decodeBody(t, 3, fetchBody(5, nil, set)); !errors.Is(err, errCorrupt) {
		t.Errorf("decode at the bad record = %v, want errCorrupt", err)
	}
}

// TestDecodeHeaderCount: a header count larger than the record could hold
// is a malformed record, not an allocation of that many headers.
func TestDecodeHeaderCount(t *testing.T) {
	for _, n := range []int64{1 << 40, 1 << 20} {
		rec := rawRecord(0, 0, nil, []byte("v"), n, []byte{0, 1})
		set := rawBatch(0, 0, 0, -1, 1700000000000, 1700000000000, 1, rec)
		var got []int64
		var err error
		func() {
			defer func() {
				if p := recover(); p != nil {
					t.Fatalf("%d headers: decode panicked: %v", n, p)
				}
			}()
			_, got, err = decodeBody(t, 0, fetchBody(1, nil, set))
		}()
		if !errors.Is(err, errCorrupt) {
			t.Errorf("%d headers: decode = %v, %v; want errCorrupt", n, got, err)
		}
	}
}

// TestDecodeBadHeader: a header that does not decode is an error, not a
// message returned with the headers before it.
func TestDecodeBadHeader(t *testing.T) {
	// Two headers announced: "k" = "v", then a key longer than the record.
	rec := rawRecord(0, 0, nil, []byte("v"), 2, []byte{2, 'k', 2, 'v', 40, 'x'})
	set := rawBatch(0, 0, 0, -1, 1700000000000, 1700000000000, 1, rec)
	if _, got, err := decodeBody(t, 0, fetchBody(1, nil, set)); !errors.Is(err, errCorrupt) {
		t.Errorf("decode = %v, %v; want errCorrupt", got, err)
	}
}

// TestDecodeLogAppendTime: in a batch whose timestamp type is
// LogAppendTime the broker set the batch's max timestamp to the time it
// appended it and left the records' own (create) times as the producer
// sent them; a record's time is the append time, as the Java client reads
// it.
func TestDecodeLogAppendTime(t *testing.T) {
	const create, appended = 1700000000000, 1700000099000
	recs := append(rawRecord(0, 0, nil, []byte("a"), 0, nil), rawRecord(1, 5, nil, []byte("b"), 0, nil)...)
	set := rawBatch(0, 0x08, 1, -1, create, appended, 2, recs)
	part, _, _, err := parseFetch(fetchBody(2, nil, set), "t", 0)
	if err != nil {
		t.Fatal(err)
	}
	msgs, err := fakeBatchReader(nil).decode(&part)
	if err != nil || len(msgs) != 2 {
		t.Fatalf("decode = %d messages, %v", len(msgs), err)
	}
	for _, m := range msgs {
		if got := m.Time.UnixMilli(); got != appended {
			t.Errorf("offset %d: time %d, want the append time %d", m.Offset, got, appended)
		}
	}
}

// TestParseFetchAbortedCount: an aborted-transactions count the answer
// cannot hold is malformed, found without allocating room for that many.
func TestParseFetchAbortedCount(t *testing.T) {
	body := fetchBody(1, nil, nil)
	// The count sits after the partition's index, error, and three offsets.
	at := 4 + 2 + 4 + 4 + 2 + 1 + 4 + 4 + 2 + 8 + 8 + 8
	if n := int32(binary.BigEndian.Uint32(body[at:])); n != 0 {
		t.Fatalf("aborted count at %d is %d: the layout changed", at, n)
	}
	binary.BigEndian.PutUint32(body[at:], 1<<24)
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	_, _, _, err := parseFetch(body, "t", 0)
	runtime.ReadMemStats(&after)
	if !errors.Is(err, errCorrupt) {
		t.Errorf("parseFetch = %v, want errCorrupt", err)
	}
	if n := after.TotalAlloc - before.TotalAlloc; n > 1<<20 {
		t.Errorf("parseFetch allocated %d bytes for an answer of %d", n, len(body))
	}
}

// FuzzDecodeRecords feeds arbitrary bytes as the records of a batch whose
// checksum matches (what the checksum cannot catch: a producer's or a
// codec's malformed records): decoding returns records or an error, never
// panics or sizes anything by a count the bytes cannot hold, and never
// moves the next offset past a record it did not return.
func FuzzDecodeRecords(f *testing.F) {
	f.Add(int32(2), int16(0), rawRecord(0, 0, []byte("k"), []byte("v"), 1, []byte{2, 'h', 0}))
	f.Add(int32(1), int16(0), rawRecord(0, 0, nil, []byte("v"), 1<<40, []byte{0, 1}))
	f.Add(int32(3), int16(0x08), append(rawRecord(0, 0, nil, nil, 0, nil), rawRecord(1, 3, []byte{}, []byte{}, 0, nil)...))
	f.Fuzz(func(t *testing.T, count int32, attrs int16, records []byte) {
		attrs &^= attrCompression | attrControl | attrTransactional
		set := rawBatch(100, attrs, max(count-1, 0), -1, 1700000000000, 1700000000000, count, records)
		part, _, _, err := parseFetch(fetchBody(200, nil, set), "t", 0)
		if err != nil {
			t.Fatal(err)
		}
		r := fakeBatchReader(nil)
		r.offset = 100
		msgs, err := r.decode(&part)
		if err != nil {
			if !errors.Is(err, errCorrupt) || r.offset != 100 {
				t.Fatalf("decode = %v, next %d; want errCorrupt and the offset kept", err, r.offset)
			}
			return
		}
		last := int64(99)
		for _, m := range msgs {
			last = max(last, m.Offset)
		}
		// Passed whole: the batch's last offset; else no further than
		// the records returned.
		if r.offset > last+1 && r.offset != 100+int64(max(count-1, 0))+1 {
			t.Fatalf("next offset %d after records up to %d of a batch of %d", r.offset, last, count)
		}
	})
}
