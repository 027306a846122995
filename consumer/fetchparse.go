package consumer

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"

	"github.com/segmentio/kafka-go/compress"
)

// This file reads Fetch v11 answers and the v2 record batches in them
// straight from the bytes read off the connection: keys and values are
// slices of those bytes, which the batch reader reads its next answer
// into, or of a compressed batch's decompressed records.

// errCorrupt is wrapped by every error about malformed answer bytes;
// errOldFormat by the error about a message set older than magic v2,
// which Kafka 4 topics of the default message format do not hold.
var (
	errCorrupt   = errors.New("malformed fetch answer")
	errOldFormat = errors.New("unsupported message format")
)

// wire reads big-endian integers and zigzag varints from b; the first
// read past the end sets err and every later read returns zero.
type wire struct {
	b   []byte
	off int
	err error
}

func (w *wire) fail(what string) {
	if w.err == nil {
		w.err = fmt.Errorf("%w: %s at byte %d", errCorrupt, what, w.off)
	}
	w.off = len(w.b)
}

func (w *wire) take(n int, what string) []byte {
	if w.err != nil || n < 0 || n > len(w.b)-w.off {
		w.fail(what)
		return nil
	}
	s := w.b[w.off : w.off+n : w.off+n]
	w.off += n
	return s
}

func (w *wire) int8() int8 {
	if w.err != nil || w.off >= len(w.b) {
		w.fail("int8")
		return 0
	}
	w.off++
	return int8(w.b[w.off-1])
}

func (w *wire) int16() int16 {
	b := w.take(2, "int16")
	if b == nil {
		return 0
	}
	return int16(binary.BigEndian.Uint16(b))
}

func (w *wire) int32() int32 {
	b := w.take(4, "int32")
	if b == nil {
		return 0
	}
	return int32(binary.BigEndian.Uint32(b))
}

func (w *wire) int64() int64 {
	b := w.take(8, "int64")
	if b == nil {
		return 0
	}
	return int64(binary.BigEndian.Uint64(b))
}

func (w *wire) varint() int64 {
	if w.err != nil {
		return 0
	}
	v, n := binary.Varint(w.b[w.off:])
	if n <= 0 {
		w.fail("varint")
		return 0
	}
	w.off += n
	return v
}

// varBytes reads a varint length and that many bytes; -1 is null (nil).
func (w *wire) varBytes(what string) []byte {
	n := w.varint()
	if n < 0 || w.err != nil {
		return nil
	}
	return w.take(int(n), what)
}

// fetchPartition is the part of a Fetch answer a partition reader reads.
type fetchPartition struct {
	errorCode     int16
	highWatermark int64
	aborted       []abortedTxn
	records       []byte // record batches, the last possibly cut short
}

type abortedTxn struct{ producerID, firstOffset int64 }

// parseFetch reads the body of a Fetch v11 answer (after the correlation
// id) to the one partition asked for. A top-level error code is returned
// as topErr; found is false when the answer does not hold the partition.
func parseFetch(body []byte, topic string, partition int32) (p fetchPartition, topErr int16, found bool, err error) {
	w := &wire{b: body}
	w.int32() // throttle time
	topErr = w.int16()
	w.int32() // session id
	for range w.int32() {
		name := w.take(int(w.int16()), "topic name")
		for range w.int32() {
			var q fetchPartition
			index := w.int32()
			q.errorCode = w.int16()
			q.highWatermark = w.int64()
			w.int64() // last stable offset
			w.int64() // log start offset
			if n := w.int32(); n > int32((len(body)-w.off)/16) {
				w.fail("aborted transactions") // more than the answer holds
			} else if n > 0 {
				q.aborted = make([]abortedTxn, 0, n)
				for range n {
					q.aborted = append(q.aborted, abortedTxn{producerID: w.int64(), firstOffset: w.int64()})
				}
			}
			w.int32() // preferred read replica
			if n := w.int32(); n > 0 {
				q.records = w.take(int(n), "records")
			}
			if w.err != nil {
				return p, topErr, false, w.err
			}
			if index == partition && string(name) == topic {
				p, found = q, true
			}
		}
		if w.err != nil {
			return p, topErr, false, w.err
		}
	}
	return p, topErr, found, w.err
}

// Record batch attributes (the magic v2 format).
const (
	attrCompression   = 0x07
	attrLogAppendTime = 0x08
	attrTransactional = 0x10
	attrControl       = 0x20
)

// batchHeaderSize is the size of a v2 batch's header, from its base
// offset to its record count; crcStart is where the checksummed part
// (attributes on) begins, magicAt where the magic byte sits in every
// message format.
const (
	batchHeaderSize = 61
	crcStart        = 21
	magicAt         = 16
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// recordBatch is one v2 record batch; records holds its records,
// decompressed.
type recordBatch struct {
	baseOffset      int64
	attributes      int16
	lastOffsetDelta int32
	firstTimestamp  int64
	maxTimestamp    int64
	producerID      int64
	numRecords      int32
	records         []byte
}

func (b *recordBatch) control() bool       { return b.attributes&attrControl != 0 }
func (b *recordBatch) transactional() bool { return b.attributes&attrTransactional != 0 }

// lastOffset is the offset of the batch's last record as produced: it
// stays when compaction removes records, even all of them.
func (b *recordBatch) lastOffset() int64 { return b.baseOffset + int64(b.lastOffsetDelta) }

// nextBatch reads the batch at the start of set. It returns ok false when
// set holds no whole batch any more (the broker cuts its answer at
// MaxBytes, possibly inside a batch), and an error for a batch that is
// corrupt, of an older message format, or compressed with an unknown
// codec.
func nextBatch(set []byte) (b recordBatch, rest []byte, ok bool, err error) {
	if len(set) < 12 {
		return b, nil, false, nil
	}
	size := int(int32(binary.BigEndian.Uint32(set[8:12])))
	if size < 0 || len(set) < 12+size {
		return b, nil, false, nil
	}
	raw, rest := set[:12+size], set[12+size:]
	switch {
	case len(raw) > magicAt && raw[magicAt] < 2:
		return b, nil, false, fmt.Errorf("%w: a message set of format v%d: only v2 record batches are read", errOldFormat, raw[magicAt])
	case len(raw) < batchHeaderSize || raw[magicAt] != 2:
		return b, nil, false, fmt.Errorf("%w: record batch of %d bytes", errCorrupt, len(raw))
	}
	if sum, want := crc32.Checksum(raw[crcStart:], castagnoli), binary.BigEndian.Uint32(raw[17:21]); sum != want {
		return b, nil, false, fmt.Errorf("%w: record batch at offset %d: crc32 %08x, want %08x", errCorrupt, int64(binary.BigEndian.Uint64(raw)), sum, want)
	}
	w := &wire{b: raw}
	b.baseOffset = w.int64()
	w.int32() // batch length
	w.int32() // partition leader epoch
	w.int8()  // magic
	w.int32() // crc
	b.attributes = w.int16()
	b.lastOffsetDelta = w.int32()
	b.firstTimestamp = w.int64()
	b.maxTimestamp = w.int64()
	b.producerID = w.int64()
	w.int16() // producer epoch
	w.int32() // base sequence
	b.numRecords = w.int32()
	b.records = raw[batchHeaderSize:]
	if codec := b.attributes & attrCompression; codec != 0 {
		if b.records, err = decompress(compress.Compression(codec), b.records); err != nil {
			return b, nil, false, fmt.Errorf("%w: record batch at offset %d: %w", errCorrupt, b.baseOffset, err)
		}
	}
	return b, rest, true, nil
}

// decompress returns the records of a compressed batch in a new buffer.
func decompress(c compress.Compression, data []byte) ([]byte, error) {
	codec := c.Codec()
	if codec == nil {
		return nil, fmt.Errorf("unknown compression codec %d", c)
	}
	r := codec.NewReader(bytes.NewReader(data))
	defer r.Close()
	var out bytes.Buffer
	out.Grow(4 * len(data))
	if _, err := io.Copy(&out, r); err != nil {
		return nil, fmt.Errorf("%s: %w", c, err)
	}
	return out.Bytes(), nil
}

// fetchedRecord is one record of a batch; key, value and header values are
// slices of the batch's bytes, nil when null.
type fetchedRecord struct {
	offset    int64
	timestamp int64 // ms since the epoch
	key       []byte
	value     []byte
	headers   int // number of headers, read with header
	w         wire
}

// recordReader walks the records of a batch.
type recordReader struct {
	batch *recordBatch
	w     wire
	left  int32
}

func newRecordReader(b *recordBatch) recordReader {
	return recordReader{batch: b, w: wire{b: b.records}, left: b.numRecords}
}

// next reads the next record into rec, leaving its headers for header;
// it returns false after the last record or at an error (err).
func (r *recordReader) next(rec *fetchedRecord) bool {
	if r.left <= 0 || r.w.err != nil {
		return false
	}
	r.left--
	w := &r.w
	n := w.varint() // record length
	end := w.off + int(n)
	if n < 0 || end > len(w.b) || w.err != nil {
		w.fail("record length")
		return false
	}
	w.int8() // attributes
	rec.timestamp = r.batch.firstTimestamp + w.varint()
	if r.batch.attributes&attrLogAppendTime != 0 {
		// The broker stamped the batch: its max timestamp is the time
		// it appended it, the records' own are the create times.
		rec.timestamp = r.batch.maxTimestamp
	}
	rec.offset = r.batch.baseOffset + w.varint()
	rec.key = w.varBytes("key")
	rec.value = w.varBytes("value")
	// A header takes at least two bytes (its key's and its value's
	// lengths): a count the record cannot hold is malformed, and must
	// not size the headers' array.
	h := w.varint()
	if h < 0 || h > int64(end-w.off)/2 {
		w.fail("header count")
		return false
	}
	rec.headers = int(h)
	if w.off > end {
		w.fail("record")
		return false
	}
	rec.w = wire{b: w.b[:end], off: w.off}
	w.off = end
	return w.err == nil
}

func (r *recordReader) err() error { return r.w.err }

// header reads the record's next header.
func (rec *fetchedRecord) header() (key, value []byte, err error) {
	key = rec.w.varBytes("header key")
	value = rec.w.varBytes("header value")
	return key, value, rec.w.err
}
