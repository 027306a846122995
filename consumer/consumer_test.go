package consumer

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"
	"unsafe"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/segmentio/kafka-go"

	"github.com/produktly/produktly-segment/mapping"
	"github.com/produktly/produktly-segment/sink"
)

func TestConsumerDeliversAndCommits(t *testing.T) {
	tc := newTestConsumer(t, 2, nil)
	tc.topic.produce(0, 30)
	tc.topic.produce(1, 20)
	stop := tc.run(t)
	tc.fc.start(t, 1, 0, 1)
	tc.fc.waitCommitted(t, 0, 30, 10*time.Second)
	tc.fc.waitCommitted(t, 1, 20, 10*time.Second)
	stop()
	tc.sink.mu.Lock()
	defer tc.sink.mu.Unlock()
	if len(tc.sink.got) != 50 {
		t.Errorf("sink got %d messages, want 50", len(tc.sink.got))
	}
	for id, n := range tc.sink.byID {
		if n != 1 {
			t.Errorf("message %s enqueued %d times, want 1", id, n)
		}
	}
}

// msgOffset returns the offset a fake record's message carries; the fake
// sink only sees sink.Messages, so the tests find records by messageId.
func (tc *testConsumer) idOf(t *testing.T, p int, o int64) string {
	t.Helper()
	tc.topic.mu.Lock()
	m := tc.topic.logs[p][o]
	tc.topic.mu.Unlock()
	call, err := mapping.Map(mapping.Record{Topic: m.Topic, Partition: m.Partition, Offset: m.Offset, Time: m.Time, Value: m.Value})
	if err != nil {
		t.Fatal(err)
	}
	return call.MessageID
}

// TestSpanBound: one record that never finishes holds its partition's
// commit point; fetching must stop once the span from it reaches
// MaxUncommitted, and go on once it finishes.
func TestSpanBound(t *testing.T) {
	const limit = 20
	tc := newTestConsumer(t, 1, func(o *Options) {
		o.MaxInFlightPerPartition = 5
		o.MaxUncommitted = limit
	})
	tc.topic.produce(0, 100)
	stuck := tc.idOf(t, 0, 0)
	ids := map[string]int64{}
	for o := int64(0); o < 100; o++ {
		ids[tc.idOf(t, 0, o)] = o
	}
	tc.sink.hold = func(m sink.Message) bool { return m.ID == stuck }
	tc.run(t)
	tc.fc.start(t, 1, 0)
	// Either fetching passes the cap (the defect) or it waits at it.
	passed := func(s *fakeSink) bool {
		for _, m := range s.got {
			if ids[m.ID] >= limit {
				return true
			}
		}
		return false
	}
	tc.sink.waitFor(t, "fetching waits at the span cap or passes it", 10*time.Second, func(s *fakeSink) bool {
		return passed(s) || (len(s.got) == limit && counterValue(tc.metrics.spanWaits) > 0)
	})
	tc.sink.mu.Lock()
	over := passed(tc.sink)
	n := len(tc.sink.got)
	tc.sink.mu.Unlock()
	if over {
		t.Fatalf("a record %d or more offsets past the unfinished record was fetched (%d fetched)", limit, n)
	}
	tc.fc.mu.Lock()
	got := tc.fc.committed[0]
	tc.fc.mu.Unlock()
	if got != 0 {
		t.Errorf("committed %d, want 0: the record at 0 is not finished", got)
	}
	tc.sink.complete(stuck, sink.Result{Outcome: sink.Delivered})
	tc.fc.waitCommitted(t, 0, 100, 10*time.Second)
}

// TestOldestUnacked: the gauge shows the age of the oldest unacknowledged
// record, and 0 once it is acknowledged.
func TestOldestUnacked(t *testing.T) {
	tr := newTracker(0)
	now := time.Unix(1000, 0)
	tr.now = func() time.Time { return now }
	tr.add(0)
	now = now.Add(time.Second)
	tr.add(1)
	now = now.Add(5 * time.Second)
	if got := tr.oldest(); got != 6*time.Second {
		t.Errorf("oldest = %s, want 6s (record 0)", got)
	}
	tr.ack(1)
	if got := tr.oldest(); got != 6*time.Second {
		t.Errorf("after ack(1): oldest = %s, want 6s: record 0 still holds the commit point", got)
	}
	tr.ack(0)
	if got := tr.oldest(); got != 0 {
		t.Errorf("all acknowledged: oldest = %s, want 0", got)
	}
}

// TestPartitionStaysKeepsInFlight: a partition that comes back to its
// member in the next generation keeps its in-flight records (no replay)
// and commits them with the new generation; one that moved is abandoned.
func TestPartitionStaysKeepsInFlight(t *testing.T) {
	tc := newTestConsumer(t, 2, func(o *Options) { o.RevokeTimeout = 200 * time.Millisecond })
	tc.topic.produce(0, 10)
	tc.topic.produce(1, 10)
	held0, held1 := tc.idOf(t, 0, 5), tc.idOf(t, 1, 3)
	tc.sink.hold = func(m sink.Message) bool { return m.ID == held0 || m.ID == held1 }
	tc.run(t)
	g1 := tc.fc.start(t, 1, 0, 1)
	tc.fc.waitCommitted(t, 0, 5, 10*time.Second)
	tc.fc.waitCommitted(t, 1, 3, 10*time.Second)
	tc.sink.waitFor(t, "all 20 records enqueued", 10*time.Second, func(s *fakeSink) bool { return len(s.got) == 20 })

	g1.end() // a rebalance: the drain times out with the two records held
	<-g1.ended
	tc.fc.start(t, 2, 0) // partition 0 stays, 1 moved
	tc.sink.waitFor(t, "the moved partition's record abandoned", 10*time.Second, func(s *fakeSink) bool { return s.canceled[held1] })
	if !tc.sink.complete(held0, sink.Result{Outcome: sink.Delivered}) {
		t.Fatal("the kept partition's in-flight record was abandoned")
	}
	tc.fc.waitCommitted(t, 0, 10, 10*time.Second)
	committedIn2 := false
	for _, c := range tc.fc.commitsOf(2) {
		if c[0] == 10 {
			committedIn2 = true
		}
	}
	if !committedIn2 {
		t.Errorf("partition 0's offset 10 was not committed with generation 2: %v", tc.fc.commitsOf(2))
	}
	tc.sink.mu.Lock()
	defer tc.sink.mu.Unlock()
	for id, n := range tc.sink.byID {
		if n != 1 {
			t.Errorf("message %s enqueued %d times, want 1 (nothing replayed on the partition that stayed)", id, n)
		}
	}
}

// TestPartitionMovedAndBackStartsAfresh: when another member committed in
// between, the carried state is dropped and the partition starts from the
// coordinator's offset.
func TestPartitionMovedAndBackStartsAfresh(t *testing.T) {
	tc := newTestConsumer(t, 1, func(o *Options) { o.RevokeTimeout = 200 * time.Millisecond })
	tc.topic.produce(0, 10)
	held := tc.idOf(t, 0, 5)
	tc.sink.hold = func(m sink.Message) bool { return m.ID == held }
	tc.run(t)
	g1 := tc.fc.start(t, 1, 0)
	tc.fc.waitCommitted(t, 0, 5, 10*time.Second)
	g1.end()
	<-g1.ended
	// Another member owned partition 0 and committed up to 8.
	tc.fc.mu.Lock()
	tc.fc.committed[0] = 8
	tc.fc.mu.Unlock()
	tc.fc.start(t, 3, 0)
	tc.sink.waitFor(t, "the stale record abandoned", 10*time.Second, func(s *fakeSink) bool { return s.canceled[held] })
	tc.fc.waitCommitted(t, 0, 10, 10*time.Second)
	tc.sink.mu.Lock()
	defer tc.sink.mu.Unlock()
	if n := tc.sink.byID[tc.idOf(t, 0, 8)]; n != 2 {
		t.Errorf("record 8 enqueued %d times, want 2 (read again from the new committed offset)", n)
	}
}

// TestCommitsDuringDrain: records acknowledged while a revoked
// generation drains are committed as they finish, not only at the end.
func TestCommitsDuringDrain(t *testing.T) {
	tc := newTestConsumer(t, 1, func(o *Options) { o.RevokeTimeout = 20 * time.Second; o.RebalanceTimeout = 30 * time.Second })
	tc.topic.produce(0, 4)
	a, b := tc.idOf(t, 0, 1), tc.idOf(t, 0, 2)
	tc.sink.hold = func(m sink.Message) bool { return m.ID == a || m.ID == b }
	tc.run(t)
	g1 := tc.fc.start(t, 1, 0)
	tc.fc.waitCommitted(t, 0, 1, 10*time.Second)
	tc.sink.waitFor(t, "all enqueued", 10*time.Second, func(s *fakeSink) bool { return len(s.got) == 4 })
	g1.end()
	tc.sink.complete(a, sink.Result{Outcome: sink.Delivered})
	// b is still held, so the drain goes on; the commit of 2 must not wait
	// for its end.
	tc.fc.waitCommitted(t, 0, 2, 10*time.Second)
	select {
	case <-g1.ended:
		t.Fatal("the drain ended although a record was still in flight")
	default:
	}
	tc.sink.complete(b, sink.Result{Outcome: sink.Delivered})
	tc.fc.waitCommitted(t, 0, 4, 10*time.Second)
}

// TestShutdownDuringRevokeKeepsDraining: SIGTERM during a rebalance's
// drain must not cut the drain short at the revoke timeout and abandon
// what is still in flight (its partition's next owner would deliver
// everything behind it again): the records get the shutdown timeout, are
// committed, and the member leaves.
func TestShutdownDuringRevokeKeepsDraining(t *testing.T) {
	const revoke = time.Second
	tc := newTestConsumer(t, 1, func(o *Options) {
		o.RevokeTimeout = revoke
		o.ShutdownTimeout = 20 * time.Second
		o.RebalanceTimeout = 30 * time.Second
	})
	tc.topic.produce(0, 3)
	held := tc.idOf(t, 0, 1)
	tc.sink.hold = func(m sink.Message) bool { return m.ID == held }
	stop := tc.run(t)
	g1 := tc.fc.start(t, 1, 0)
	tc.sink.waitFor(t, "all enqueued", 10*time.Second, func(s *fakeSink) bool { return len(s.got) == 3 })
	tc.fc.waitCommitted(t, 0, 1, 10*time.Second)
	g1.end() // a rebalance: the drain has RevokeTimeout
	tc.sink.waitFor(t, "the revoke's drain", 10*time.Second, func(*fakeSink) bool { return !tc.ready.Load() })
	stopped := make(chan struct{})
	go func() { defer close(stopped); stop() }() // and then SIGTERM
	// Past the revoke timeout the held record must still be in flight,
	// not abandoned.
	time.Sleep(revoke + 500*time.Millisecond)
	if !tc.sink.complete(held, sink.Result{Outcome: sink.Delivered}) {
		t.Fatalf("the record in flight was abandoned at the revoke timeout (%s) although shutdown, with its %s, had begun", revoke, 20*time.Second)
	}
	tc.fc.waitCommitted(t, 0, 3, 10*time.Second)
	select {
	case <-stopped:
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after the drain")
	}
}

// TestAbandonedDropsTrackerEntry: a record the sink abandoned no longer
// counts as in flight (drain does not wait for it), and the commit point
// never passes it.
func TestAbandonedDropsTrackerEntry(t *testing.T) {
	tc := newTestConsumer(t, 1, nil)
	p := tc.newPartition("src", 0, 0)
	m := kafka.Message{Partition: 0, Offset: 0, Value: []byte(`{}`)}
	h := takeOne(t, p, m)
	p.finish(m, h, sent{}, sink.Result{Outcome: sink.Abandoned, Err: sink.ErrCanceled})
	if n := p.tr.inFlight(); n != 0 {
		t.Errorf("in flight after Abandoned = %d, want 0", n)
	}
	select {
	case <-p.tr.drained():
	default:
		t.Error("drain would wait for an abandoned record")
	}
	if got := p.tr.committable(); got != 0 {
		t.Errorf("committable = %d, want 0: the abandoned record must be read again", got)
	}
}

// TestRejectedCodeFromSinkError: a message Segment refused as too large
// (413) is dead-lettered as too_large, others as rejected; the sink's error
// type is what decides (the old errors.As looked for *mapping.Error, which
// the sink never returns).
func TestRejectedCodeFromSinkError(t *testing.T) {
	tests := []struct {
		err  error
		want mapping.Code
	}{
		{&sink.RejectedError{Status: http.StatusRequestEntityTooLarge, Body: "too big"}, mapping.CodeTooLarge},
		{&sink.RejectedError{Status: http.StatusBadRequest, Body: "bad"}, mapping.CodeRejected},
		{fmt.Errorf("batch: %w", &sink.RejectedError{Status: http.StatusRequestEntityTooLarge}), mapping.CodeTooLarge},
	}
	for _, tt := range tests {
		tc := newTestConsumer(t, 1, nil)
		p := tc.newPartition("src", 0, 0)
		m := kafka.Message{Offset: 0, Value: []byte(`{}`)}
		p.finish(m, takeOne(t, p, m), sent{}, sink.Result{Outcome: sink.Rejected, Err: tt.err})
		// The dead-letter writer is not running: the item waits in the
		// lanes' intake.
		tc.dlq.lanes.mu.Lock()
		queued := tc.dlq.lanes.intake
		tc.dlq.lanes.mu.Unlock()
		switch {
		case len(queued) != 1:
			t.Errorf("%v: %d records dead-lettered, want 1", tt.err, len(queued))
		case queued[0].code != tt.want:
			t.Errorf("%v: dead-letter code %q, want %q", tt.err, queued[0].code, tt.want)
		}
	}
}

// TestSetOffsetFailureNotReady: a partition whose reader cannot be
// positioned makes the consumer not ready, and is retried.
func TestSetOffsetFailureNotReady(t *testing.T) {
	tc := newTestConsumer(t, 1, nil)
	tc.topic.produce(0, 3)
	var mu sync.Mutex
	fail := true
	attempts := 0
	tried := make(chan struct{}, 100)
	tc.seams.newReader = func(_ string, id int) reader {
		return &fakeReader{topic: tc.topic, part: id, setOffsetErr: func() error {
			mu.Lock()
			defer mu.Unlock()
			attempts++
			tried <- struct{}{}
			if fail {
				return errors.New("fake: cannot set offset")
			}
			return nil
		}}
	}
	tc.run(t)
	tc.fc.start(t, 1, 0)
	<-tried
	// The member is in a generation, but the partition is stalled.
	deadline := time.Now().Add(10 * time.Second)
	for tc.stalled.Load() == 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if tc.Ready() {
		t.Fatal("Ready() = true while a partition's reader cannot be positioned")
	}
	mu.Lock()
	fail = false
	mu.Unlock()
	tc.fc.waitCommitted(t, 0, 3, 10*time.Second)
	if !tc.Ready() {
		t.Error("Ready() = false after the partition recovered")
	}
}

// TestRecordWeightCountsWhatItHolds: the byte cap counts the message with
// its headers, the mapped JSON and its copy in the request body.
func TestRecordWeightCountsWhatItHolds(t *testing.T) {
	tc := newTestConsumer(t, 1, nil)
	p := tc.newPartition("src", 0, 0)
	m := kafka.Message{Key: make([]byte, 10), Value: make([]byte, 100), Headers: []kafka.Header{{Key: "k", Value: make([]byte, 20)}}}
	json := make([]byte, 300)
	if got, min := p.weight(m, json), int64(10+100+1+20+2*300); got < min {
		t.Errorf("weight = %d, want at least %d (key, value, headers, JSON and its request copy)", got, min)
	}
}

func counterValue(c prometheus.Counter) float64 {
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		return -1
	}
	return m.GetCounter().GetValue()
}

// TestChunkClaimsReleased: records taken in chunks give back every slot
// and byte they took once they are all delivered, whatever the chunking.
func TestChunkClaimsReleased(t *testing.T) {
	for _, batch := range []int{1, 3, 64} {
		tc := newTestConsumer(t, 2, func(o *Options) {
			o.MaxInFlight, o.MaxInFlightPerPartition, o.MaxUncommitted = 20, 10, 40
			o.MaxInFlightBytes = 4000 // a chunk of a few records reaches it
		})
		tc.seams.newReader = func(_ string, id int) reader { return &fakeReader{topic: tc.topic, part: id, batch: batch} }
		tc.topic.produce(0, 150)
		tc.topic.produce(1, 150)
		stop := tc.run(t)
		tc.fc.start(t, 1, 0, 1)
		tc.fc.waitCommitted(t, 0, 150, 10*time.Second)
		tc.fc.waitCommitted(t, 1, 150, 10*time.Second)
		stop()
		tc.sink.wg.Wait() // the last outcomes are reported after their commit
		if !tc.bytes.TryAcquire(int64(tc.opts.MaxInFlightBytes)) {
			t.Errorf("batch %d: bytes of the byte cap still taken after every record finished", batch)
		}
		tc.slots.mu.Lock()
		free := tc.slots.free
		tc.slots.mu.Unlock()
		if free != int64(tc.opts.MaxInFlight) {
			t.Errorf("batch %d: %d of %d slots free after every record finished", batch, free, tc.opts.MaxInFlight)
		}
		if got := gaugeValue(tc.metrics.inFlight); got != 0 {
			t.Errorf("batch %d: records in flight = %v, want 0", batch, got)
		}
	}
}

// TestAckAllScatteredRuns: a chunk's records acknowledged in runs, as the
// sink reports a delivered batch, move the commit point to just past the
// last record done in order (the offset of the first one not done), and
// give back every slot and byte, whether a
// run's records sit side by side in the chunk or are scattered among other
// destinations' (more of them than AckAll takes at a time). The offsets
// have gaps, so that an acknowledgement of the wrong record shows.
func TestAckAllScatteredRuns(t *testing.T) {
	tc := newTestConsumer(t, 1, nil)
	p := tc.newPartition("src", 0, 0)
	msgs := make([]kafka.Message, 150)
	for i := range msgs {
		msgs[i] = kafka.Message{Topic: "src", Offset: int64(3 * i), Value: []byte(`{"type":"tour_start"}`)}
	}
	c := takeChunk(t, p, msgs)
	indices := func(from, to, step int) []int {
		var s []int
		for i := from; i < to; i += step {
			s = append(s, i)
		}
		return s
	}
	delivered := sink.Result{Outcome: sink.Delivered}
	for _, step := range []struct {
		seqs []int
		want int64
	}{
		{indices(51, 150, 2), 0},         // every other record from the 52nd: the first is not done
		{[]int{0}, 3 * 1},                // the first: up to the second
		{indices(1, 51, 1), 3 * 52},      // a run side by side, and the 52nd was done
		{indices(52, 150, 2), 3*149 + 1}, // the rest, scattered: past the last
	} {
		c.AckAll(step.seqs, delivered)
		if got := p.tr.committable(); got != step.want {
			t.Fatalf("after acknowledging %v: commit point %d, want %d", step.seqs, got, step.want)
		}
	}
	if !tc.bytes.TryAcquire(int64(tc.opts.MaxInFlightBytes)) {
		t.Error("bytes of the byte cap still taken after every record finished")
	}
	tc.slots.mu.Lock()
	free := tc.slots.free
	tc.slots.mu.Unlock()
	if free != int64(tc.opts.MaxInFlight) {
		t.Errorf("%d of %d slots free after every record finished", free, tc.opts.MaxInFlight)
	}
	if got := gaugeValue(tc.metrics.inFlight); got != 0 {
		t.Errorf("records in flight = %v, want 0", got)
	}
	if got := counterValue(tc.metrics.delivered); got != 150 {
		t.Errorf("delivered = %v, want 150", got)
	}
}

// TestChunkRefusedBySinkIsReadAgain: a chunk the sink refuses (fetching
// stopped while its queue was full) is dropped whole, and the partition,
// kept by the member, reads it again in the next generation: nothing is
// skipped and nothing is committed past it.
func TestChunkRefusedBySinkIsReadAgain(t *testing.T) {
	tc := newTestConsumer(t, 1, nil)
	tc.topic.produce(0, 12)
	refuse := newRefusingSink(tc.sink)
	tc.opts.Sink = refuse
	tc.run(t)
	g1 := tc.fc.start(t, 1, 0)
	// The first chunk (offsets 0-4) is taken; the second blocks in the
	// sink until the generation ends, and is refused.
	<-refuse.blocked
	tc.fc.waitCommitted(t, 0, 5, 10*time.Second)
	g1.end()
	<-g1.ended
	refuse.pass()
	tc.fc.start(t, 2, 0)
	tc.fc.waitCommitted(t, 0, 12, 10*time.Second)
	tc.sink.mu.Lock()
	defer tc.sink.mu.Unlock()
	for o := int64(0); o < 12; o++ {
		if n := tc.sink.byID[tc.idOf(t, 0, o)]; n != 1 {
			t.Errorf("offset %d enqueued %d times, want 1", o, n)
		}
	}
}

// TestChunkOwnsItsBytes: a chunk's messages do not point into the buffer
// the reader decoded them from (a whole Fetch response), and keep nil
// apart from empty.
func TestChunkOwnsItsBytes(t *testing.T) {
	buf := []byte("key0value0hkey1hv")
	msgs := []kafka.Message{
		{Offset: 1, Key: buf[0:4], Value: buf[4:10], Headers: []kafka.Header{{Key: "h", Value: buf[10:11]}}},
		{Offset: 2, Key: nil, Value: buf[11:11]},
		{Offset: 3, Key: buf[11:15], Value: nil, Headers: []kafka.Header{{Key: "x", Value: nil}, {Key: "y", Value: buf[15:17]}}},
	}
	got := ownBytes(msgs)
	for i := range buf {
		buf[i] = '#'
	}
	want := []kafka.Message{
		{Offset: 1, Key: []byte("key0"), Value: []byte("value0"), Headers: []kafka.Header{{Key: "h", Value: []byte("h")}}},
		{Offset: 2, Key: nil, Value: []byte{}},
		{Offset: 3, Key: []byte("key1"), Value: nil, Headers: []kafka.Header{{Key: "x", Value: nil}, {Key: "y", Value: []byte("hv")}}},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("chunk messages after the reader's buffer changed:\n got %+v\nwant %+v", got, want)
	}
	if got[1].Value == nil || got[2].Value != nil || got[1].Key != nil {
		t.Error("nil and empty keys or values not kept apart")
	}
	// An append to one field must not run into the next.
	_ = append(got[0].Key, 'X')
	if string(got[0].Value) != "value0" {
		t.Errorf("appending to a key overwrote the value: %q", got[0].Value)
	}
}

// TestHandedOnRecordsKeepTheirBytes: records handed on past the fetch that
// read them (dead letters here, waiting in the writer's queue) keep their
// values and headers while the partition reads its next batches: the fake
// reader writes over a batch's bytes when it fetches again, as batchReader
// reads its next answer into the same buffer.
func TestHandedOnRecordsKeepTheirBytes(t *testing.T) {
	// The dead letters never finish: shutdown need not wait long for them.
	tc := newTestConsumer(t, 1, func(o *Options) { o.ShutdownTimeout = 100 * time.Millisecond })
	const n = 4 * defaultFakeBatch
	value := func(i int) string { return fmt.Sprintf("not json %d", i) }
	header := func(i int) string { return fmt.Sprintf("h%d", i) }
	for i := range n {
		tc.topic.append(0, []byte(value(i)), kafka.Header{Key: "h", Value: []byte(header(i))})
	}
	tc.run(t)
	tc.fc.start(t, 1, 0)
	var queued []*dlqItem
	deadline := time.Now().Add(10 * time.Second)
	for {
		// The dead-letter writer is not running: the items wait in the
		// lanes' intake.
		tc.dlq.lanes.mu.Lock()
		queued = append(queued[:0], tc.dlq.lanes.intake...)
		tc.dlq.lanes.mu.Unlock()
		if len(queued) == n {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d records dead-lettered, want %d", len(queued), n)
		}
		time.Sleep(10 * time.Millisecond)
	}
	for i, it := range queued {
		m := it.msg
		if m.Offset != int64(i) || string(m.Value) != value(i) || len(m.Headers) != 1 || m.Headers[0].Key != "h" || string(m.Headers[0].Value) != header(i) {
			t.Errorf("dead letter %d: offset %d value %q headers %v, want offset %d value %q header h=%q", i, m.Offset, m.Value, m.Headers, i, value(i), header(i))
		}
	}
}

// TestSingleSourceCallsIntact: in single source a chunk's calls share
// arenas (roomFor, mapping.MapOnto); with records whose calls outgrow
// callRoom (a long userId counts twice: in the JSON and in the call's
// strings), so that arenas run out and are replaced mid-chunk, every
// message the sink got carries exactly its record's call, after all were
// mapped.
func TestSingleSourceCallsIntact(t *testing.T) {
	tc := newTestConsumer(t, 1, nil)
	want := map[string][]byte{}
	tc.topic.mu.Lock()
	for o := range int64(1000) {
		v, _ := json.Marshal(map[string]any{
			"type": "tour_start", "id": fmt.Sprintf("int-%d", o), "userId": strings.Repeat("u", 300), "tourId": o,
			"pageUrl": strings.Repeat("x", int(o*7919%4000)),
		})
		m := kafka.Message{Topic: tc.topic.name, Partition: 0, Offset: o, Value: v, Time: time.Unix(1700000000, 0)}
		call, err := mapping.Map(mapping.Record{Topic: m.Topic, Partition: m.Partition, Offset: m.Offset, Time: m.Time, Value: m.Value})
		if err != nil {
			t.Fatal(err)
		}
		want[call.MessageID] = call.JSON
		tc.topic.logs[0] = append(tc.topic.logs[0], m)
	}
	tc.topic.mu.Unlock()
	stop := tc.run(t)
	tc.fc.start(t, 1, 0)
	tc.fc.waitCommitted(t, 0, 1000, 10*time.Second)
	stop()
	tc.sink.mu.Lock()
	defer tc.sink.mu.Unlock()
	if len(tc.sink.got) != len(want) {
		t.Fatalf("sink got %d messages, want %d", len(tc.sink.got), len(want))
	}
	for _, m := range tc.sink.got {
		if w, ok := want[m.ID]; !ok || !bytes.Equal(m.JSON, w) || cap(m.JSON) != len(m.JSON) {
			t.Fatalf("message %s: JSON %.200s (cap %d)\nwant %.200s", m.ID, m.JSON, cap(m.JSON), w)
		}
	}
}

// TestRoomFor: an arena with room for the next call is kept; one without
// is replaced by a new one sized for the calls of the rest of the chunk.
func TestRoomFor(t *testing.T) {
	rest := []kafka.Message{{Value: make([]byte, 100)}, {Value: make([]byte, 50)}}
	fresh := roomFor(nil, rest)
	if len(fresh) != 0 || cap(fresh) != callMargin+150+2*callRoom {
		t.Fatalf("new arena: len %d cap %d, want 0 and %d", len(fresh), cap(fresh), callMargin+150+2*callRoom)
	}
	used := append(fresh, make([]byte, cap(fresh)-100-callMargin)...)
	if got := roomFor(used, rest); unsafe.SliceData(got) != unsafe.SliceData(used) || len(got) != len(used) {
		t.Fatal("an arena with room for the next call was replaced")
	}
	full := used[:len(used)+1]
	if got := roomFor(full, rest); unsafe.SliceData(got) == unsafe.SliceData(full) || len(got) != 0 {
		t.Fatal("an arena without room for the next call was kept")
	}
}
