package consumer

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/compress"
	"github.com/segmentio/kafka-go/protocol"
	fetchAPI "github.com/segmentio/kafka-go/protocol/fetch"
)

// shape draws the choices of a generated answer from the fuzzer's bytes.
type shape struct{ b []byte }

func (s *shape) next(n int) int {
	if len(s.b) == 0 {
		return 0
	}
	v := int(s.b[0]) % n
	s.b = s.b[1:]
	return v
}

// encodeBatch encodes records as one v2 batch with kafka-go's encoder,
// then sets what that encoder leaves out (it encodes for producing): the
// base offset, and the producer id of a transactional batch, with the
// checksum over the latter.
func encodeBatch(t *testing.T, base int64, attrs protocol.Attributes, producer int64, recs []protocol.Record) []byte {
	t.Helper()
	var buf bytes.Buffer
	rs := protocol.RecordSet{Version: 2, Attributes: attrs, Records: protocol.NewRecordReader(recs...)}
	if _, err := rs.WriteTo(&buf); err != nil {
		t.Fatal(err)
	}
	b := buf.Bytes()[4:] // after the record set's size
	binary.BigEndian.PutUint64(b[0:], uint64(base))
	binary.BigEndian.PutUint64(b[43:], uint64(producer))
	binary.BigEndian.PutUint32(b[17:], crc32.Checksum(b[21:], castagnoli))
	return b
}

// fetchBody is the body of a Fetch v11 answer for partition 0 of topic
// "t" holding records (record batches, raw).
func fetchBody(hwm int64, aborted []fetchAPI.ResponseTransaction, records []byte) []byte {
	var b bytes.Buffer
	put := func(v any) { binary.Write(&b, binary.BigEndian, v) }
	put(int32(0))      // throttle
	put(int16(0))      // error
	put(int32(0))      // session
	put(int32(1))      // topics
	put(int16(1))      // name length
	b.WriteString("t") //
	put(int32(1))      // partitions
	put(int32(0))      // index
	put(int16(0))      // error
	put(hwm)           // high watermark
	put(hwm)           // last stable offset
	put(int64(0))      // log start offset
	put(int32(len(aborted)))
	for _, a := range aborted {
		put(a.ProducerID)
		put(a.FirstOffset)
	}
	put(int32(-1)) // preferred read replica
	put(int32(len(records)))
	b.Write(records)
	return b.Bytes()
}

var fuzzCodecs = []compress.Compression{0, compress.Gzip, compress.Snappy, compress.Lz4, compress.Zstd}

// genAnswer builds a Fetch answer body from the fuzzer's bytes: batches of
// every codec, with and without keys, values and headers (null and
// empty), transactional batches committed and aborted with their markers,
// and possibly a last batch cut short. It returns the offset to read
// from too.
func genAnswer(t *testing.T, data []byte) (body []byte, from int64) {
	s := &shape{b: data}
	var set []byte
	var aborted []fetchAPI.ResponseTransaction
	open := map[int64]int64{} // producer → first offset of its open transaction
	offset := int64(s.next(5) * 10)
	from = offset + int64(s.next(4))
	at := time.UnixMilli(1700000000000 + int64(s.next(1000)))
	nb := 1 + s.next(6)
	whole := 0 // length of set before the last batch
	for i := range nb {
		whole = len(set)
		offset += int64(s.next(3)) // a gap: compacted or a marker elsewhere
		producer := int64(-1)
		var attrs protocol.Attributes
		kind := s.next(4)
		if kind >= 2 { // transactional
			producer = int64(1 + s.next(2))
			attrs |= protocol.Attributes(attrTransactional)
		}
		if first, ok := open[producer]; ok && kind == 3 { // its marker
			abort := s.next(2) == 0
			typ := byte(1)
			if abort {
				typ = 0
				aborted = append(aborted, fetchAPI.ResponseTransaction{ProducerID: producer, FirstOffset: first})
			}
			set = append(set, encodeBatch(t, offset, attrs|protocol.Attributes(attrControl), producer, []protocol.Record{
				{Offset: offset, Time: at, Key: protocol.NewBytes([]byte{0, 0, 0, typ}), Value: protocol.NewBytes([]byte{0, 0, 0, 0, 0, 0})},
			})...)
			delete(open, producer)
			offset++
			continue
		}
		if producer >= 0 {
			if _, ok := open[producer]; !ok {
				open[producer] = offset
			}
		}
		attrs |= protocol.Attributes(fuzzCodecs[s.next(len(fuzzCodecs))])
		n := 1 + s.next(8)
		recs := make([]protocol.Record, n)
		for j := range recs {
			r := &recs[j]
			r.Offset = offset + int64(j)
			r.Time = at.Add(time.Duration(s.next(50)) * time.Millisecond)
			switch s.next(3) {
			case 0:
				r.Key = protocol.NewBytes([]byte{})
			case 1:
				r.Key = protocol.NewBytes([]byte{byte('a' + i), byte('a' + j)})
			}
			switch s.next(4) {
			case 0:
				r.Value = protocol.NewBytes([]byte{})
			case 1, 2:
				r.Value = protocol.NewBytes(bytes.Repeat([]byte{byte('0' + j)}, 1+s.next(200)))
			}
			for h := range s.next(3) {
				var v []byte
				if s.next(2) == 0 {
					v = []byte{byte(h), byte(j)}
				}
				r.Headers = append(r.Headers, protocol.Header{Key: string(rune('h' + h)), Value: v})
			}
		}
		set = append(set, encodeBatch(t, offset, attrs, producer, recs)...)
		offset += int64(n)
	}
	if nb > 1 && s.next(3) == 0 { // cut inside the last batch, at MaxBytes
		last := len(set) - whole
		set = set[:whole+s.next(last)]
	}
	return fetchBody(offset, aborted, set), from
}

// FuzzFetchDecode holds the reader's own decoding to the one it replaced
// (kafka-go's decoder, then refDecode) on the same answer bytes: the same
// messages, the same next offset, an error from both or neither.
func FuzzFetchDecode(f *testing.F) {
	f.Add([]byte{})
	f.Add([]byte{0, 0, 0, 5, 0, 1, 3, 1, 2, 1, 0, 2, 1, 1, 0, 3, 0, 2, 1, 1, 1, 2, 3, 4})
	f.Add([]byte{1, 2, 3, 4, 2, 1, 2, 2, 2, 2, 3, 1, 1, 3, 3, 2, 0, 1, 1, 1, 0, 4, 2, 2, 1, 1, 3, 0, 0})
	f.Add([]byte{0, 1, 0, 5, 1, 1, 4, 7, 1, 1, 1, 2, 2, 3, 0, 0, 1, 2, 1, 0, 1, 0, 2, 0, 0, 3, 100, 7})
	f.Add([]byte{2, 0, 5, 5, 0, 3, 0, 4, 2, 2, 2, 0, 0, 3, 3, 1, 1, 3, 0, 3, 0, 0, 2, 0, 0, 0, 0, 0, 1, 3, 2, 1, 1, 1, 0, 0, 0})
	for c := range len(fuzzCodecs) {
		f.Add([]byte{0, 0, 0, 3, 0, 0, byte(c), 7, 1, 1, 2, 1, 3, 2, 0, 2, 1, 1, 1, 0, 1, 2, 2, 2, 0, byte(c), 4, 1, 1, 1, 1, 0, 0})
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		body, from := genAnswer(t, data)

		refR := fakeBatchReader(nil)
		refR.offset = from
		frame := binary.BigEndian.AppendUint32(nil, uint32(len(body)+4))
		frame = binary.BigEndian.AppendUint32(frame, 1)
		_, res, err := protocol.ReadResponse(bufio.NewReader(bytes.NewReader(append(frame, body...))), protocol.Fetch, fetchVersion)
		var want []kafka.Message
		var wantErr error
		if err != nil {
			wantErr = err
		} else {
			want, wantErr = refDecode(refR, &res.(*fetchAPI.Response).Topics[0].Partitions[0])
		}

		r := fakeBatchReader(nil)
		r.offset = from
		var got []kafka.Message
		part, _, found, gotErr := parseFetch(body, "t", 0)
		if gotErr == nil && !found {
			t.Fatal("partition not found")
		}
		if gotErr == nil {
			got, gotErr = r.decode(&part)
		}
		if (gotErr != nil) != (wantErr != nil) {
			t.Fatalf("error %v, want %v", gotErr, wantErr)
		}
		if gotErr != nil {
			return
		}
		if r.offset != refR.offset {
			t.Errorf("next offset %d, want %d", r.offset, refR.offset)
		}
		if len(got) != len(want) {
			t.Fatalf("%d messages, want %d", len(got), len(want))
		}
		for i := range got {
			if err := sameMessage(got[i], want[i]); err != nil {
				t.Errorf("message %d (offset %d): %v", i, want[i].Offset, err)
			}
		}
	})
}

func sameMessage(got, want kafka.Message) error {
	switch {
	case got.Topic != want.Topic || got.Partition != want.Partition || got.Offset != want.Offset || got.HighWaterMark != want.HighWaterMark:
		return errors.New("coordinates differ")
	case (got.Key == nil) != (want.Key == nil) || !bytes.Equal(got.Key, want.Key):
		return errors.New("keys differ")
	case (got.Value == nil) != (want.Value == nil) || !bytes.Equal(got.Value, want.Value):
		return errors.New("values differ")
	case !got.Time.Equal(want.Time):
		return errors.New("times differ")
	case len(got.Headers) != len(want.Headers):
		return errors.New("header counts differ")
	}
	for i := range got.Headers {
		if got.Headers[i].Key != want.Headers[i].Key || !bytes.Equal(got.Headers[i].Value, want.Headers[i].Value) {
			return errors.New("headers differ")
		}
	}
	return nil
}

// TestFetchDecodeRejects: a batch whose checksum does not match, and a
// message set older than v2, are errors, not records.
func TestFetchDecodeRejects(t *testing.T) {
	good := encodeBatch(t, 0, 0, -1, []protocol.Record{{Offset: 0, Value: protocol.NewBytes([]byte("v"))}})
	flipped := bytes.Clone(good)
	flipped[len(flipped)-2] ^= 1
	old := bytes.Clone(good)
	old[magicAt] = 1
	for name, set := range map[string][]byte{"crc": flipped, "magic v1": old} {
		part, _, _, err := parseFetch(fetchBody(1, nil, set), "t", 0)
		if err != nil {
			t.Fatal(err)
		}
		r := fakeBatchReader(nil)
		if msgs, err := r.decode(&part); !errors.Is(err, errCorrupt) && !errors.Is(err, errOldFormat) {
			t.Errorf("%s: decode = %d messages, %v; want an error", name, len(msgs), err)
		}
	}
	part, _, _, err := parseFetch(fetchBody(1, nil, good), "t", 0)
	if err != nil {
		t.Fatal(err)
	}
	if msgs, err := fakeBatchReader(nil).decode(&part); err != nil || len(msgs) != 1 {
		t.Errorf("decode of the good batch = %d messages, %v", len(msgs), err)
	}
}
