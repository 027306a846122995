package consumer

import (
	"cmp"
	"errors"
	"fmt"
	"io"
	"slices"

	"github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/protocol"
	fetchAPI "github.com/segmentio/kafka-go/protocol/fetch"
)

// refDecode is the batch reader's decoding before it read answers
// itself, over kafka-go's decoder: the reference the fuzz test holds the
// new one to. It turns the answer's record batches into messages from r.offset on
// and moves r.offset past every offset the answer covered.
//
// Read-committed filtering follows the Java client: a transactional batch
// whose producer has an aborted transaction starting at or before it is
// skipped, until that producer's abort marker; control batches are never
// returned. The broker only answers up to the last stable offset, so open
// transactions are not seen yet.
func refDecode(r *batchReader, part *fetchAPI.ResponsePartition) ([]kafka.Message, error) {
	out := r.buf[:0]
	clear(r.buf[:cap(r.buf)])
	aborted := part.AbortedTransactions
	slices.SortFunc(aborted, func(a, b fetchAPI.ResponseTransaction) int { return cmp.Compare(a.FirstOffset, b.FirstOffset) })
	var abortedBy map[int64]struct{} // producers inside an aborted transaction
	next := r.offset
	seen := 0 // records read, returned or not
	batches := []protocol.RecordReader{part.RecordSet.Records}
	if s, ok := part.RecordSet.Records.(*protocol.RecordStream); ok {
		batches = s.Records
	}
	var err error
	for _, b := range batches {
		if b == nil {
			continue
		}
		skip := false
		switch b := b.(type) {
		case *protocol.ControlBatch:
			skip = true
			for {
				cr, rerr := b.ReadControlRecord()
				if rerr != nil {
					break
				}
				seen++
				next = max(next, cr.Offset+1)
				if cr.Type == 0 { // abort marker
					delete(abortedBy, b.ProducerID)
				}
			}
			continue
		case *protocol.RecordBatch:
			if b.Attributes.Transactional() {
				for len(aborted) > 0 && aborted[0].FirstOffset <= b.BaseOffset {
					if abortedBy == nil {
						abortedBy = map[int64]struct{}{}
					}
					abortedBy[aborted[0].ProducerID] = struct{}{}
					aborted = aborted[1:]
				}
				_, skip = abortedBy[b.ProducerID]
			}
		}
		for {
			rec, rerr := b.ReadRecord()
			if rerr != nil {
				if !errors.Is(rerr, io.EOF) && len(out) == 0 {
					err = rerr
				}
				break
			}
			seen++
			if skip || rec.Offset < r.offset {
				closeBytes(rec.Key)
				closeBytes(rec.Value)
				next = max(next, rec.Offset+1)
				continue
			}
			m, cerr := refMessage(r, rec, part.HighWatermark)
			if cerr != nil {
				err = cerr
				break
			}
			out = append(out, m)
			next = max(next, rec.Offset+1)
		}
		if err != nil {
			break
		}
	}
	if len(out) == 0 && err != nil {
		return nil, fmt.Errorf("fetch %s/%d at %d: decoding: %w", r.topic, r.partition, r.offset, err)
	}
	r.advance(next, seen, part.HighWatermark)
	r.buf = out
	return out, nil
}

// refMessage copies rec into a kafka.Message: key and value share one
// allocation, headers keep the values the decoder already copied.
func refMessage(r *batchReader, rec *protocol.Record, hwm int64) (kafka.Message, error) {
	defer closeBytes(rec.Key)
	defer closeBytes(rec.Value)
	m := kafka.Message{Topic: r.topic, Partition: r.partition, Offset: rec.Offset, HighWaterMark: hwm, Time: rec.Time}
	kl, vl := bytesLen(rec.Key), bytesLen(rec.Value)
	if kl >= 0 || vl >= 0 {
		b := make([]byte, max(kl, 0)+max(vl, 0))
		if kl >= 0 {
			m.Key = b[:kl:kl]
			if _, err := io.ReadFull(rec.Key, m.Key); err != nil {
				return m, err
			}
		}
		if vl >= 0 {
			m.Value = b[max(kl, 0):]
			if _, err := io.ReadFull(rec.Value, m.Value); err != nil {
				return m, err
			}
		}
	}
	if len(rec.Headers) > 0 {
		m.Headers = make([]kafka.Header, len(rec.Headers))
		for i, h := range rec.Headers {
			m.Headers[i] = kafka.Header{Key: h.Key, Value: h.Value}
		}
	}
	return m, nil
}

// bytesLen is the length of b, or -1 for a null key or value.
func bytesLen(b protocol.Bytes) int {
	if b == nil {
		return -1
	}
	return b.Len()
}

func closeBytes(b protocol.Bytes) {
	if b != nil {
		b.Close()
	}
}

// closeRecords releases the buffers of records not read.
func closeRecords(rr protocol.RecordReader) {
	if rr == nil {
		return
	}
	for {
		rec, err := rr.ReadRecord()
		if err != nil {
			return
		}
		closeBytes(rec.Key)
		closeBytes(rec.Value)
	}
}
