package consumer

import (
	"cmp"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/protocol"
	fetchAPI "github.com/segmentio/kafka-go/protocol/fetch"

	"github.com/produktly/produktly-segment/backoff"
)

// batchReader reads one partition a whole Fetch response at a time: one
// request to the partition's leader, over a connection of its own,
// returns every record batch the broker has up to FetchMaxBytes, so there
// is no channel crossing or socket deadline per record as in kafka-go's
// Reader. It reads the answer's bytes itself (fetchparse.go) rather than
// through kafka-go's decoder, and the messages' keys, values and header
// values are slices of those bytes. The reader reads each answer into the
// buffer of the one before (growing it when an answer is larger), so the
// messages FetchBatch returns are valid only until its next call, as the
// reader interface says: the partition loop copies what it keeps
// (ownBytes) before it fetches again.
//
// It follows kafka-go's Reader where that one decides (start offsets,
// OffsetOutOfRange), and does what the Reader leaves undone for
// read-committed isolation (kafka-go issue #1332): records of aborted
// transactions and the control batches (transaction markers) are not
// returned, but their offsets are passed.
type batchReader struct {
	dialer    *kafka.Dialer // TLS and SASL of the fetch connection
	client    *kafka.Client // Metadata (the leader) and ListOffsets
	topic     string
	partition int
	maxBytes  int
	log       func(format string, args ...any) // warnings
	// send sends a Fetch to the partition's leader and returns the
	// answer's body, read into buf's array when that holds it
	// (answerBuffer); sendToLeader, and unit tests answer themselves.
	send func(ctx context.Context, req *fetchAPI.Request, buf []byte) ([]byte, error)

	leader string      // the leader's address, "" until looked up
	conn   *brokerConn // to leader, nil until dialled

	offset int64 // next offset to fetch, or FirstOffset / LastOffset
	buf    []kafka.Message
	// body is the buffer the next answer is read into: the last answer's,
	// unless that one was larger than keepAnswers allows.
	body []byte
	// compactedGap is set while the reader steps one offset at a time
	// through the end of a batch whose last records were compacted away.
	compactedGap bool
}

// fetchWait is how long the broker holds a Fetch for data (MinBytes 1);
// fetchTimeout bounds the request once connected. A cancelled ctx ends
// FetchBatch at once whatever these are: a connection with an answer in
// flight is then closed.
const (
	fetchWait    = 500 * time.Millisecond
	fetchTimeout = fetchWait + 15*time.Second
)

// keepAnswers bounds the buffer a reader keeps for its next answer, in
// multiples of its FetchMaxBytes. A broker answers up to MaxBytes plus
// some framing, but returns a partition's first record batch whole even
// when it is larger: the buffer of such an answer is used once and left
// to the garbage collector, so that one huge batch is not held for as
// long as the partition is read.
const keepAnswers = 2

// fetchRetry is the wait between attempts after an error the broker
// reports as retriable (a leader move, a timeout); after a leader move the
// reader looks the leader up again, from the Transport's metadata, which
// follows the move within its MetadataTTL.
var fetchRetry = backoff.Policy{Base: 100 * time.Millisecond, Max: time.Second, Jitter: 0.2}

func (c *Consumer) newBatchReader(topic string, partition int) *batchReader {
	r := &batchReader{
		dialer:    c.opts.Dialer,
		client:    &kafka.Client{Addr: kafka.TCP(c.opts.Brokers...), Transport: c.opts.Transport, Timeout: 10 * time.Second},
		topic:     topic,
		partition: partition,
		maxBytes:  c.opts.FetchMaxBytes,
		log: func(f string, a ...any) {
			c.log.Warn().Str("reader_topic", topic).Int("partition", partition).Msgf("fetch: "+f, a...)
		},
		offset: kafka.FirstOffset,
	}
	r.send = r.sendToLeader
	return r
}

// SetOffset positions the reader; kafka.FirstOffset and kafka.LastOffset
// are resolved when it next fetches.
func (r *batchReader) SetOffset(offset int64) error {
	r.offset = offset
	return nil
}

// Close closes the reader's connection and drops its buffers; the
// messages last returned keep their bytes, since no answer is read into
// them any more.
func (r *batchReader) Close() error {
	r.forgetLeader()
	r.body, r.buf = nil, nil
	return nil
}

// FetchBatch returns the next records, at least one, valid until the next
// call (their bytes are the answer's, and the next answer is read into
// the same buffer); it fetches again while the answers are empty (nothing
// new within fetchWait, or only aborted records and markers), and waits
// and retries on retriable broker errors. It returns ctx.Err() once ctx
// ends, and other errors (an unreachable broker, a non-retriable answer)
// for the caller to report.
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
// broker calls temporary, or a leader the metadata does not know yet.
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

// fetch sends one Fetch request, reads its answer into r.body and
// decodes it into r.buf.
func (r *batchReader) fetch(ctx context.Context) ([]kafka.Message, error) {
	if r.offset < 0 {
		if err := r.resolve(ctx); err != nil {
			return nil, err
		}
	}
	body, err := r.send(ctx, r.request(), r.body)
	if err != nil {
		// r.body is kept: whatever a broken read left in it is
		// overwritten by the next answer.
		return nil, fmt.Errorf("fetch %s/%d at %d: %w", r.topic, r.partition, r.offset, err)
	}
	if cap(body) <= keepAnswers*r.maxBytes {
		r.body = body
	}
	part, topErr, found, err := parseFetch(body, r.topic, int32(r.partition))
	switch {
	case err != nil:
		r.forgetLeader() // the stream may be out of step
		return nil, fmt.Errorf("fetch %s/%d at %d: %w", r.topic, r.partition, r.offset, err)
	case topErr != 0:
		return nil, fmt.Errorf("fetch %s/%d: %w", r.topic, r.partition, kafka.Error(topErr))
	case !found:
		r.forgetLeader()
		return nil, fmt.Errorf("fetch %s/%d: %w", r.topic, r.partition, kafka.UnknownTopicOrPartition)
	}
	switch code := kafka.Error(part.errorCode); {
	case code == 0:
	case errors.Is(code, kafka.OffsetOutOfRange):
		return nil, r.outOfRange(ctx)
	default:
		if leaderMoved(code) {
			r.forgetLeader()
		}
		return nil, fmt.Errorf("fetch %s/%d at %d: %w", r.topic, r.partition, r.offset, code)
	}
	return r.decode(&part)
}

// request is the Fetch request for r.offset.
func (r *batchReader) request() *fetchAPI.Request {
	return &fetchAPI.Request{
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
	}
}

// leaderMoved reports whether a partition error code says that the broker
// asked is not (or no longer) the partition's leader.
func leaderMoved(code kafka.Error) bool {
	switch code {
	case kafka.NotLeaderForPartition, kafka.UnknownTopicOrPartition, kafka.LeaderNotAvailable,
		kafka.ReplicaNotAvailable, kafka.FencedLeaderEpoch, kafka.UnknownLeaderEpoch, kafka.KafkaStorageError:
		return true
	}
	return false
}

// sendToLeader sends req to the partition's leader, looking the leader up
// and connecting first when the reader has no connection, and returns the
// answer's body, read into buf's array when that holds it. A connection
// that served before and fails (the broker closed it while idle, or went
// away) is replaced at once, once; other errors are returned, and the
// next call starts from a new lookup.
func (r *batchReader) sendToLeader(ctx context.Context, req *fetchAPI.Request, buf []byte) ([]byte, error) {
	for again := true; ; again = false {
		if r.conn == nil {
			if r.leader == "" {
				leader, err := r.lookupLeader(ctx)
				if err != nil {
					return nil, err
				}
				r.leader = leader
			}
			conn, err := dialBroker(ctx, r.dialer, r.leader)
			if err != nil {
				r.leader = ""
				return nil, err
			}
			r.conn = conn
		}
		body, err := r.conn.fetch(ctx, req, fetchTimeout, buf)
		if err == nil {
			return body, nil
		}
		reused := r.conn.used
		r.forgetLeader()
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if !reused || !again {
			return nil, err
		}
	}
}

// forgetLeader closes the connection and drops the leader's address, so
// that the next fetch looks the leader up again.
func (r *batchReader) forgetLeader() {
	if r.conn != nil {
		r.conn.close()
		r.conn = nil
	}
	r.leader = ""
}

// lookupLeader returns the address of the partition's leader.
func (r *batchReader) lookupLeader(ctx context.Context) (string, error) {
	md, err := r.client.Metadata(ctx, &kafka.MetadataRequest{Topics: []string{r.topic}})
	if err != nil {
		return "", fmt.Errorf("metadata of %s: %w", r.topic, err)
	}
	for _, t := range md.Topics {
		if t.Name != r.topic {
			continue
		}
		if t.Error != nil {
			return "", fmt.Errorf("metadata of %s: %w", r.topic, t.Error)
		}
		for _, p := range t.Partitions {
			if p.ID != r.partition {
				continue
			}
			if p.Error != nil {
				return "", fmt.Errorf("metadata of %s/%d: %w", r.topic, r.partition, p.Error)
			}
			if p.Leader.Host == "" {
				return "", fetchAPI.NewError(protocol.NewErrNoLeader(r.topic, int32(r.partition)))
			}
			return net.JoinHostPort(p.Leader.Host, strconv.Itoa(p.Leader.Port)), nil
		}
	}
	return "", fmt.Errorf("metadata of %s/%d: %w", r.topic, r.partition, kafka.UnknownTopicOrPartition)
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
// and moves r.offset past every offset the answer covered. Keys, values
// and header values are slices of the answer's bytes (of a compressed
// batch's decompressed records); header keys are strings of their own.
//
// Read-committed filtering follows the Java client: a transactional batch
// whose producer has an aborted transaction starting at or before it is
// skipped, until that producer's abort marker; control batches are never
// returned. The broker only answers up to the last stable offset, so open
// transactions are not seen yet.
func (r *batchReader) decode(part *fetchPartition) ([]kafka.Message, error) {
	out := r.buf[:0]
	clear(r.buf[:cap(r.buf)])
	aborted := part.aborted
	slices.SortFunc(aborted, func(a, b abortedTxn) int { return cmp.Compare(a.firstOffset, b.firstOffset) })
	var abortedBy map[int64]struct{} // producers inside an aborted transaction
	var headers []kafka.Header       // the answer's headers, sliced per message
	next := r.offset
	seen := 0 // records read, returned or not
	var err error
	for set := part.records; ; {
		b, rest, ok, berr := nextBatch(set)
		if berr != nil {
			if len(out) == 0 {
				err = berr
			}
			break
		}
		if !ok {
			break // the end, or a batch cut short at MaxBytes
		}
		set = rest
		var rec fetchedRecord
		rr := newRecordReader(&b)
		if b.producerID >= 0 {
			// As the Java client does, for markers too: an abort marker
			// first in the answer ends a transaction listed as aborted
			// whose records came before the fetch offset, and must not
			// leave its producer marked for its next transaction.
			for len(aborted) > 0 && aborted[0].firstOffset <= b.lastOffset() {
				if abortedBy == nil {
					abortedBy = map[int64]struct{}{}
				}
				abortedBy[aborted[0].producerID] = struct{}{}
				aborted = aborted[1:]
			}
		}
		if b.control() {
			for rr.next(&rec) {
				if len(rec.key) != 4 {
					break // not a control record: kafka-go stops too
				}
				seen++
				next = max(next, rec.offset+1)
				if binary.BigEndian.Uint16(rec.key[2:]) == 0 { // abort marker
					delete(abortedBy, b.producerID)
				}
			}
		} else {
			_, skip := abortedBy[b.producerID]
			skip = skip && b.transactional()
			for rr.next(&rec) {
				if skip || rec.offset < r.offset {
					seen++
					next = max(next, rec.offset+1)
					continue
				}
				m := kafka.Message{
					Topic: r.topic, Partition: r.partition, Offset: rec.offset, HighWaterMark: part.highWatermark,
					Key: rec.key, Value: rec.value, Time: time.UnixMilli(rec.timestamp),
				}
				if rec.headers > 0 {
					if cap(headers)-len(headers) < rec.headers {
						// A new array: the messages returned keep the old one.
						headers = make([]kafka.Header, 0, max(rec.headers, 256))
					}
					from := len(headers)
					for range rec.headers {
						k, v, herr := rec.header()
						if herr != nil {
							rr.w.err = herr // the record is malformed: stop before it
							break
						}
						headers = append(headers, kafka.Header{Key: string(k), Value: v})
					}
					if rr.w.err != nil {
						break
					}
					m.Headers = headers[from:len(headers):len(headers)]
				}
				seen++
				next = max(next, rec.offset+1)
				out = append(out, m)
			}
		}
		if rerr := rr.err(); rerr != nil {
			// A record that does not decode ends the answer before it:
			// passing it, or the batches after it, would lose it. The
			// next fetch starts at it and reports it.
			if len(out) == 0 {
				err = rerr
			}
			break
		}
		// Past the whole batch: compaction may have removed its last
		// records, or all of them.
		next = max(next, b.lastOffset()+1)
	}
	if len(out) == 0 && err != nil {
		return nil, fmt.Errorf("fetch %s/%d at %d: decoding: %w", r.topic, r.partition, r.offset, err)
	}
	r.advance(next, seen, part.highWatermark)
	r.buf = out
	return out, nil
}

// advance moves the next offset to fetch after an answer that read seen
// records, up to next: past them, or, when all of them lay before the
// offset asked for, one offset on.
func (r *batchReader) advance(next int64, seen int, highWatermark int64) {
	switch {
	case next > r.offset:
		r.compactedGap = false
		r.offset = next
	case seen > 0 && r.offset < highWatermark:
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
}
