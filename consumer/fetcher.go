package consumer

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/protocol"
	fetchAPI "github.com/segmentio/kafka-go/protocol/fetch"

	"github.com/produktly/produktly-segment/backoff"
)

// batchReader reads one partition a whole Fetch response at a time: one
// request through the Transport (which routes it to the partition's
// leader from its cached metadata, over its TLS and SASL connections)
// returns every record batch the broker has up to FetchMaxBytes, so there
// is no channel crossing or socket deadline per record as in kafka-go's
// Reader.
//
// It follows kafka-go's Reader where that one decides (start offsets,
// OffsetOutOfRange), and does what the Reader leaves undone for
// read-committed isolation (kafka-go issue #1332): records of aborted
// transactions and the control batches (transaction markers) are not
// returned, but their offsets are passed.
type batchReader struct {
	transport kafka.RoundTripper
	client    *kafka.Client // ListOffsets
	addr      net.Addr
	topic     string
	partition int
	maxBytes  int
	log       func(format string, args ...any) // warnings

	offset int64 // next offset to fetch, or FirstOffset / LastOffset
	buf    []kafka.Message
	// compactedGap is set while the reader steps one offset at a time
	// through the end of a batch whose last records were compacted away.
	compactedGap bool
}

// fetchWait is how long the broker holds a Fetch for data (MinBytes 1);
// fetchTimeout bounds the whole request, connection included. A cancelled
// ctx ends FetchBatch at once whatever these are: the request's answer is
// then read and dropped by the Transport.
const (
	fetchWait    = 500 * time.Millisecond
	fetchTimeout = fetchWait + 15*time.Second
)

// fetchRetry is the wait between attempts after an error the broker
// reports as retriable (a leader move, a timeout); the Transport's
// metadata follows a leader move within its MetadataTTL.
var fetchRetry = backoff.Policy{Base: 100 * time.Millisecond, Max: time.Second, Jitter: 0.2}

func (c *Consumer) newBatchReader(topic string, partition int) *batchReader {
	addr := kafka.TCP(c.opts.Brokers...)
	return &batchReader{
		transport: c.opts.Transport,
		client:    &kafka.Client{Addr: addr, Transport: c.opts.Transport, Timeout: 10 * time.Second},
		addr:      addr,
		topic:     topic,
		partition: partition,
		maxBytes:  c.opts.FetchMaxBytes,
		log: func(f string, a ...any) {
			c.log.Warn().Str("reader_topic", topic).Int("partition", partition).Msgf("fetch: "+f, a...)
		},
		offset: kafka.FirstOffset,
	}
}

// SetOffset positions the reader; kafka.FirstOffset and kafka.LastOffset
// are resolved when it next fetches.
func (r *batchReader) SetOffset(offset int64) error {
	r.offset = offset
	return nil
}

func (r *batchReader) Close() error { return nil }

// FetchBatch returns the next records, at least one; it fetches again
// while the answers are empty (nothing new within fetchWait, or only
// aborted records and markers), and waits and retries on retriable broker
// errors. It returns ctx.Err() once ctx ends, and other errors (an
// unreachable broker, a non-retriable answer) for the caller to report.
func (r *batchReader) FetchBatch(ctx context.Context) ([]kafka.Message, error) {
	for attempt := 0; ; {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		msgs, err := r.fetch(ctx)
		switch {
		case err == nil && len(msgs) > 0:
			return msgs, nil
		case err == nil:
			attempt = 0
			continue
		case ctx.Err() != nil:
			return nil, ctx.Err()
		case !retriable(err):
			return nil, err
		}
		wait := fetchRetry.Delay(attempt)
		attempt++
		if attempt == 4 {
			r.log("retrying at offset %d: %v", r.offset, err)
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, ctx.Err()
		case <-t.C:
		}
	}
}

// retriable reports whether err is one to wait out: an error code the
// broker calls temporary, or a leader the Transport does not know yet.
func retriable(err error) bool {
	if errors.Is(err, errOffsetPastEnd) {
		return true
	}
	var ke kafka.Error
	if errors.As(err, &ke) {
		return ke.Temporary()
	}
	var fe *fetchAPI.Error
	return errors.As(err, &fe)
}

// errOffsetPastEnd is what fetch returns while the next offset is past the
// partition's end (OffsetOutOfRange above the last offset); FetchBatch
// waits and fetches again, as the Reader does.
var errOffsetPastEnd = errors.New("offset past the partition's end: waiting for records")

// fetch sends one Fetch request and decodes its answer into r.buf.
func (r *batchReader) fetch(ctx context.Context) ([]kafka.Message, error) {
	if r.offset < 0 {
		if err := r.resolve(ctx); err != nil {
			return nil, err
		}
	}
	rctx, cancel := context.WithTimeout(ctx, fetchTimeout)
	defer cancel()
	m, err := r.transport.RoundTrip(rctx, r.addr, &fetchAPI.Request{
		ReplicaID:      -1,
		MaxWaitTime:    int32(fetchWait / time.Millisecond),
		MinBytes:       1,
		MaxBytes:       int32(r.maxBytes),
		IsolationLevel: int8(kafka.ReadCommitted),
		SessionID:      -1,
		SessionEpoch:   -1,
		Topics: []fetchAPI.RequestTopic{{
			Topic: r.topic,
			Partitions: []fetchAPI.RequestPartition{{
				Partition:          int32(r.partition),
				CurrentLeaderEpoch: -1,
				FetchOffset:        r.offset,
				LogStartOffset:     -1,
				PartitionMaxBytes:  int32(r.maxBytes),
			}},
		}},
	})
	if err != nil {
		return nil, fmt.Errorf("fetch %s/%d at %d: %w", r.topic, r.partition, r.offset, err)
	}
	res := m.(*fetchAPI.Response)
	if res.ErrorCode != 0 {
		return nil, fmt.Errorf("fetch %s/%d: %w", r.topic, r.partition, kafka.Error(res.ErrorCode))
	}
	if len(res.Topics) == 0 || len(res.Topics[0].Partitions) == 0 {
		return nil, fmt.Errorf("fetch %s/%d: %w", r.topic, r.partition, kafka.UnknownTopicOrPartition)
	}
	part := &res.Topics[0].Partitions[0]
	switch code := kafka.Error(part.ErrorCode); {
	case code == 0:
	case errors.Is(code, kafka.OffsetOutOfRange):
		return nil, r.outOfRange(ctx)
	default:
		closeRecords(part.RecordSet.Records)
		return nil, fmt.Errorf("fetch %s/%d at %d: %w", r.topic, r.partition, r.offset, code)
	}
	return r.decode(part)
}

// resolve turns FirstOffset or LastOffset into the partition's offset.
func (r *batchReader) resolve(ctx context.Context) error {
	first, last, err := r.bounds(ctx)
	if err != nil {
		return err
	}
	if r.offset == kafka.LastOffset {
		r.offset = last
	} else {
		r.offset = first
	}
	return nil
}

// outOfRange does what kafka-go's Reader does with OffsetOutOfRange: below
// the log start (records deleted by retention) it moves to the first
// offset, logging the records skipped; at or past the end it waits for
// records to arrive.
func (r *batchReader) outOfRange(ctx context.Context) error {
	first, last, err := r.bounds(ctx)
	if err != nil {
		return err
	}
	switch {
	case r.offset < first:
		r.log("offset %d is before the first offset %d: skipping %d records deleted by retention", r.offset, first, first-r.offset)
		r.offset = first
		return nil
	case r.offset < last:
		return nil // records arrived meanwhile: fetch again at once
	}
	return errOffsetPastEnd
}

func (r *batchReader) bounds(ctx context.Context) (first, last int64, err error) {
	res, err := r.client.ListOffsets(ctx, &kafka.ListOffsetsRequest{
		Topics: map[string][]kafka.OffsetRequest{r.topic: {kafka.FirstOffsetOf(r.partition), kafka.LastOffsetOf(r.partition)}},
	})
	if err != nil {
		return 0, 0, fmt.Errorf("list offsets of %s/%d: %w", r.topic, r.partition, err)
	}
	for _, p := range res.Topics[r.topic] {
		if p.Partition == r.partition {
			if p.Error != nil {
				return 0, 0, fmt.Errorf("list offsets of %s/%d: %w", r.topic, r.partition, p.Error)
			}
			return p.FirstOffset, p.LastOffset, nil
		}
	}
	return 0, 0, fmt.Errorf("list offsets of %s/%d: %w", r.topic, r.partition, kafka.UnknownTopicOrPartition)
}

// decode turns the answer's record batches into messages from r.offset on
// and moves r.offset past every offset the answer covered.
//
// Read-committed filtering follows the Java client: a transactional batch
// whose producer has an aborted transaction starting at or before it is
// skipped, until that producer's abort marker; control batches are never
// returned. The broker only answers up to the last stable offset, so open
// transactions are not seen yet.
func (r *batchReader) decode(part *fetchAPI.ResponsePartition) ([]kafka.Message, error) {
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
			m, cerr := r.message(rec, part.HighWatermark)
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
	switch {
	case next > r.offset:
		r.compactedGap = false
		r.offset = next
	case seen > 0 && r.offset < part.HighWatermark:
		// Only records before the offset asked for: the batch that holds
		// it lost its last records to compaction, and its end is not
		// known here. Stepping one offset at a time cannot pass over a
		// record that exists.
		if !r.compactedGap {
			r.compactedGap = true
			r.log("offset %d lies in a compacted batch end: stepping over it", r.offset)
		}
		r.offset++
	}
	r.buf = out
	return out, nil
}

// message copies rec into a kafka.Message: key and value share one
// allocation, headers keep the values the decoder already copied.
func (r *batchReader) message(rec *protocol.Record, hwm int64) (kafka.Message, error) {
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
