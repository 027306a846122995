package consumer

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/protocol"
	fetchAPI "github.com/segmentio/kafka-go/protocol/fetch"
)

// fakeFetches answers the batch reader's Fetch requests in turn: each
// answer is an error, a partition error code, or records.
type fakeFetches struct {
	mu      sync.Mutex
	answers []fetchAnswer
	offsets []int64  // FetchOffset of each request
	bodies  [][]byte // each answer's body, as returned
}

type fetchAnswer struct {
	err     error
	code    kafka.Error
	records []protocol.Record
}

// send answers req as a broker would: the Fetch response body, encoded by
// kafka-go, read into buf's array when it holds it, as the connection
// reads it.
func (f *fakeFetches) send(ctx context.Context, req *fetchAPI.Request, buf []byte) ([]byte, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.offsets = append(f.offsets, req.Topics[0].Partitions[0].FetchOffset)
	if len(f.answers) == 0 {
		<-ctx.Done()
		return nil, ctx.Err()
	}
	a := f.answers[0]
	f.answers = f.answers[1:]
	if a.err != nil {
		return nil, a.err
	}
	p := fetchAPI.ResponsePartition{ErrorCode: int16(a.code), HighWatermark: 100}
	if len(a.records) > 0 {
		p.RecordSet = protocol.RecordSet{Version: 2, Records: protocol.NewRecordReader(a.records...)}
	}
	base := int64(0)
	if len(a.records) > 0 {
		base = a.records[0].Offset
	}
	answer, err := encodeFetch(&fetchAPI.Response{Topics: []fetchAPI.ResponseTopic{{Topic: "t", Partitions: []fetchAPI.ResponsePartition{p}}}}, base)
	if err != nil {
		return nil, err
	}
	body := answerBuffer(buf, len(answer))
	copy(body, answer)
	f.bodies = append(f.bodies, body)
	return body, nil
}

// encodeFetch encodes res as a broker's Fetch v11 answer and returns its
// body (what follows the size and the correlation id). The record sets are
// kafka-go's encoding, which numbers a batch's records from 0: their
// offsets are base and on. The rest is written here, as kafka-go cannot
// encode a partition without records (an error answer).
func encodeFetch(res *fetchAPI.Response, base int64) ([]byte, error) {
	var b bytes.Buffer
	put := func(v any) { binary.Write(&b, binary.BigEndian, v) }
	put(res.ThrottleTimeMs)
	put(res.ErrorCode)
	put(res.SessionID)
	put(int32(len(res.Topics)))
	for _, t := range res.Topics {
		put(int16(len(t.Topic)))
		b.WriteString(t.Topic)
		put(int32(len(t.Partitions)))
		for _, p := range t.Partitions {
			put(p.Partition)
			put(p.ErrorCode)
			put(p.HighWatermark)
			put(p.LastStableOffset)
			put(p.LogStartOffset)
			put(int32(len(p.AbortedTransactions)))
			for _, a := range p.AbortedTransactions {
				put(a.ProducerID)
				put(a.FirstOffset)
			}
			put(p.PreferredReadReplica)
			if p.RecordSet.Records == nil {
				put(int32(-1))
				continue
			}
			at := b.Len() + 4 // after the size
			if _, err := p.RecordSet.WriteTo(&b); err != nil {
				return nil, err
			}
			binary.BigEndian.PutUint64(b.Bytes()[at:], uint64(base))
		}
	}
	return b.Bytes(), nil
}

func fakeBatchReader(f *fakeFetches) *batchReader {
	r := &batchReader{topic: "t", partition: 0, maxBytes: 1 << 20, log: func(string, ...any) {}}
	if f != nil {
		r.send = f.send
	}
	return r
}

// TestBatchReaderRetriesLeaderMoves: answers that a leader moved (the
// broker's NotLeaderForPartition, or a leader the metadata does not know
// yet) are waited out and fetched again at the same offset; an
// error that is not retriable is returned; an empty answer is fetched
// again.
func TestBatchReaderRetriesLeaderMoves(t *testing.T) {
	f := &fakeFetches{answers: []fetchAnswer{
		{code: kafka.NotLeaderForPartition},
		{err: fetchAPI.NewError(protocol.NewErrNoLeader("t", 0))},
		{records: []protocol.Record{}}, // nothing new within the wait
		{records: []protocol.Record{
			{Offset: 3, Value: protocol.NewBytes([]byte("before the offset asked for"))},
			{Offset: 4, Value: protocol.NewBytes([]byte("a"))},
			{Offset: 5, Key: protocol.NewBytes([]byte("k")), Value: protocol.NewBytes([]byte("b"))},
		}},
		{code: kafka.TopicAuthorizationFailed},
	}}
	r := fakeBatchReader(f)
	r.SetOffset(4)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	got, err := r.FetchBatch(ctx)
	if err != nil {
		t.Fatalf("FetchBatch = %v, want the records after the leader moves", err)
	}
	if len(got) != 2 || got[0].Offset != 4 || string(got[0].Value) != "a" || got[1].Offset != 5 || string(got[1].Key) != "k" {
		t.Errorf("got %v, want the records at 4 and 5", got)
	}
	if want := []int64{4, 4, 4, 4}; len(f.offsets) != 4 || f.offsets[0] != want[0] || f.offsets[3] != want[3] {
		t.Errorf("fetched at %v, want %v", f.offsets, want)
	}
	if _, err := r.FetchBatch(ctx); !errors.Is(err, kafka.TopicAuthorizationFailed) {
		t.Errorf("FetchBatch after a refusal = %v, want TopicAuthorizationFailed", err)
	}
	if last := f.offsets[len(f.offsets)-1]; last != 6 {
		t.Errorf("fetched next at %d, want 6", last)
	}
}

// TestBatchReaderCancelDuringBackoff: a cancelled ctx ends the wait after a
// retriable error at once.
func TestBatchReaderCancelDuringBackoff(t *testing.T) {
	answers := make([]fetchAnswer, 100)
	for i := range answers {
		answers[i] = fetchAnswer{code: kafka.LeaderNotAvailable}
	}
	r := fakeBatchReader(&fakeFetches{answers: answers})
	r.SetOffset(0)
	fetchCanceled(t, r, "retrying a leader move")
}

// fetchCanceled starts r.FetchBatch, cancels its ctx and fails the test
// unless it returns context.Canceled promptly: a revoke or shutdown must
// never wait on a fetch (what: the reader's state, for the message).
func fetchCanceled(t *testing.T, r *batchReader, what string) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := r.FetchBatch(ctx)
		done <- err
	}()
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("FetchBatch %s, cancelled = %v, want context.Canceled", what, err)
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("FetchBatch %s did not return after its ctx ended", what)
	}
}

// TestBatchReaderCopiedMessagesKeepTheirBytes: the records of one fetch,
// copied as the partition loop copies them (ownBytes, from newChunk),
// keep their keys, values and headers once the reader has read the next
// answer into the same buffer; an empty key stays empty and not null, a
// null one null, a large value is whole, and appending to a key or value
// never writes into another record's or field's bytes. The two answers
// are of one size, so that the second is read into the first's bytes: the
// test checks that it was, and that the records as returned, not copied,
// then no longer read as they did (what a caller keeping them would see).
func TestBatchReaderCopiedMessagesKeepTheirBytes(t *testing.T) {
	large := func(base int64) []byte { return bytes.Repeat([]byte{byte('L' + base%7)}, 100_000) }
	want := func(o int64) kafka.Message {
		m := kafka.Message{Offset: o, Key: []byte(fmt.Sprintf("k%04d", o)), Value: []byte(fmt.Sprintf("v%04d", o)),
			Headers: []kafka.Header{{Key: "h", Value: []byte(fmt.Sprintf("%04d", o))}}}
		switch o % 300 {
		case 1:
			m.Key = []byte{}
		case 2:
			m.Key = nil
		case 3:
			m.Value = large(o - 3)
		}
		return m
	}
	answer := func(base int64) fetchAnswer {
		var recs []protocol.Record
		for o := base; o < base+300; o++ {
			m := want(o)
			rec := protocol.Record{Offset: o, Value: protocol.NewBytes(m.Value), Headers: []protocol.Header{{Key: "h", Value: m.Headers[0].Value}}}
			if m.Key != nil {
				rec.Key = protocol.NewBytes(m.Key)
			}
			recs = append(recs, rec)
		}
		return fetchAnswer{records: recs}
	}
	r := fakeBatchReader(&fakeFetches{answers: []fetchAnswer{answer(0), answer(300)}})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var got, raw []kafka.Message
	var arrays []*byte
	for range 2 {
		batch, err := r.FetchBatch(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for i := range batch {
			// Appends must not reach the next record's bytes.
			_ = append(batch[i].Key, "!!"...)
			_ = append(batch[i].Value, "!!"...)
			_ = append(batch[i].Headers, kafka.Header{Key: "x"})
		}
		raw = append(raw, batch...) // the structs only: their bytes are the reader's
		got = append(got, ownBytes(batch)...)
		arrays = append(arrays, &r.body[0])
	}
	if arrays[0] != arrays[1] {
		t.Fatal("the second answer was read into a new buffer, not the first one's")
	}
	if len(got) != 600 {
		t.Fatalf("read %d records, want 600", len(got))
	}
	for _, m := range got {
		o := m.Offset
		w := want(o)
		if (m.Key == nil) != (w.Key == nil) {
			t.Errorf("offset %d: key %q, want %q (null and empty apart)", o, m.Key, w.Key)
		}
		if string(m.Key) != string(w.Key) || string(m.Value) != string(w.Value) {
			t.Errorf("offset %d: key %.20q value %.20q, want %.20q %.20q", o, m.Key, m.Value, w.Key, w.Value)
		}
		if len(m.Headers) != 1 || m.Headers[0].Key != "h" || string(m.Headers[0].Value) != string(w.Headers[0].Value) {
			t.Errorf("offset %d: headers %v, want %v", o, m.Headers, w.Headers)
		}
	}
	overwritten := 0
	for _, m := range raw[:300] {
		if w := want(m.Offset); string(m.Key) != string(w.Key) || string(m.Value) != string(w.Value) {
			overwritten++
		}
	}
	if overwritten == 0 {
		t.Error("the first answer's records, not copied, read as before after the second answer was read into their buffer")
	}
}

// TestBatchReaderAnswerBuffer: an answer is read into the buffer of the
// one before when it fits, into a new one, kept for the next answers, when
// not; a buffer larger than keepAnswers × FetchMaxBytes (an answer whose
// first batch is larger than that) is used once, and the reader goes back
// to the one it had. Close drops the buffer.
func TestBatchReaderAnswerBuffer(t *testing.T) {
	const maxBytes = 16 << 10
	next := int64(0)
	records := func(n, size int) fetchAnswer {
		var recs []protocol.Record
		for range n {
			recs = append(recs, protocol.Record{Offset: next, Value: protocol.NewBytes(bytes.Repeat([]byte{'x'}, size))})
			next++
		}
		return fetchAnswer{records: recs}
	}
	steps := []struct {
		what   string
		answer fetchAnswer
		reuse  int // the step whose buffer this answer must be read into, or -1: a new one
		keep   int // the step whose buffer the reader keeps after it
	}{
		{"the first answer", records(10, 100), -1, 0},
		{"a smaller answer", records(2, 100), 0, 0},
		{"a larger answer", records(50, 200), -1, 2},
		{"a smaller answer after it", records(10, 100), 2, 2},
		{"an answer of more than keepAnswers × FetchMaxBytes", records(1, keepAnswers*maxBytes+1), -1, 2},
		{"an answer after it", records(50, 200), 2, 2},
	}
	f := &fakeFetches{}
	for _, s := range steps {
		f.answers = append(f.answers, s.answer)
	}
	r := fakeBatchReader(f)
	r.maxBytes = maxBytes
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for i, s := range steps {
		batch, err := r.FetchBatch(ctx)
		if err != nil || len(batch) != len(s.answer.records) {
			t.Fatalf("%s: %d records, %v; want %d", s.what, len(batch), err, len(s.answer.records))
		}
		if v := batch[0].Value; len(v) == 0 || v[0] != 'x' {
			t.Fatalf("%s: value %.20q", s.what, v)
		}
		body := &f.bodies[i][0]
		if s.reuse >= 0 && body != &f.bodies[s.reuse][0] {
			t.Errorf("%s: read into a new buffer, want the one of step %d", s.what, s.reuse)
		}
		for j := range i {
			if s.reuse < 0 && body == &f.bodies[j][0] {
				t.Errorf("%s: read into the buffer of step %d, which cannot hold it", s.what, j)
			}
		}
		if &r.body[0] != &f.bodies[s.keep][0] {
			t.Errorf("after %s: the reader keeps another buffer than the one of step %d", s.what, s.keep)
		}
		if cap(r.body) > keepAnswers*maxBytes {
			t.Errorf("after %s: the reader keeps a buffer of %d bytes, more than %d", s.what, cap(r.body), keepAnswers*maxBytes)
		}
	}
	r.Close()
	if r.body != nil {
		t.Error("Close kept the answer buffer")
	}
}
