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
	offsets []int64 // FetchOffset of each request
}

type fetchAnswer struct {
	err     error
	code    kafka.Error
	records []protocol.Record
}

// send answers req as a broker would: the Fetch response body, encoded by
// kafka-go.
func (f *fakeFetches) send(ctx context.Context, req *fetchAPI.Request) ([]byte, error) {
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
	return encodeFetch(&fetchAPI.Response{Topics: []fetchAPI.ResponseTopic{{Topic: "t", Partitions: []fetchAPI.ResponsePartition{p}}}}, base)
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

// TestBatchReaderMessagesKeepTheirBytes: keys, values and headers stay as
// read after later fetches (the reader contract), an empty key stays empty
// and not null, a null one null, a large value is whole, and appending to
// a key or value never writes into another record's or field's bytes.
func TestBatchReaderMessagesKeepTheirBytes(t *testing.T) {
	large := bytes.Repeat([]byte("L"), 100_000)
	answer := func(base int64) fetchAnswer {
		var recs []protocol.Record
		for i := range int64(300) {
			o := base + i
			recs = append(recs, protocol.Record{
				Offset: o, Key: protocol.NewBytes([]byte(fmt.Sprint("k", o))), Value: protocol.NewBytes([]byte(fmt.Sprint("v", o))),
				Headers: []protocol.Header{{Key: "h", Value: []byte(fmt.Sprint(o))}},
			})
		}
		recs[1].Key = protocol.NewBytes([]byte{})
		recs[2].Key = nil
		recs[3].Value = protocol.NewBytes(large)
		return fetchAnswer{records: recs}
	}
	r := fakeBatchReader(&fakeFetches{answers: []fetchAnswer{answer(0), answer(300)}})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var got []kafka.Message
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
		got = append(got, batch...)
	}
	if len(got) != 600 {
		t.Fatalf("read %d records, want 600", len(got))
	}
	for _, m := range got {
		o := m.Offset
		wantKey, wantValue := fmt.Sprint("k", o), fmt.Sprint("v", o)
		switch o % 300 {
		case 1:
			wantKey = ""
		case 2:
			wantKey = ""
			if m.Key != nil {
				t.Errorf("offset %d: key %q, want null", o, m.Key)
			}
		case 3:
			wantValue = string(large)
		}
		if o%300 == 1 && m.Key == nil {
			t.Errorf("offset %d: empty key read as null", o)
		}
		if string(m.Key) != wantKey || string(m.Value) != wantValue {
			t.Errorf("offset %d: key %.20q value %.20q, want %.20q %.20q", o, m.Key, m.Value, wantKey, wantValue)
		}
		if len(m.Headers) != 1 || m.Headers[0].Key != "h" || string(m.Headers[0].Value) != fmt.Sprint(o) {
			t.Errorf("offset %d: headers %v", o, m.Headers)
		}
	}
}
