package consumer

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/segmentio/kafka-go"

	"github.com/produktly/produktly-segment/integrations"
	"github.com/produktly/produktly-segment/mapping"
	"github.com/produktly/produktly-segment/sink"
)

// Accounts mode (contract v2) on the fakes: routing by the integration in
// force at map time, skips, parking to the retry topic and the retry
// topic's records coming back.

// fakeIntegrations is a table the test changes.
type fakeIntegrations struct {
	mu sync.Mutex
	m  map[string]integrations.Integration
}

func (f *fakeIntegrations) Lookup(account string) (integrations.Integration, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	it, ok := f.m[account]
	return it, ok && it.Active && !it.WriteKey.IsZero()
}

func (f *fakeIntegrations) set(account, key string, region integrations.Region, active bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.m[account] = integrations.Integration{WriteKey: integrations.NewWriteKey(key), Region: region, Active: active}
}

// parkCall is one record handed to the fake retry writer.
type parkCall struct {
	m       kafka.Message
	account string
	cancel  <-chan struct{}
	done    func(error)
}

// fakeParker holds parks until the test completes them.
type fakeParker struct {
	mu      sync.Mutex
	calls   []parkCall
	changed chan struct{}
}

func newFakeParker() *fakeParker { return &fakeParker{changed: make(chan struct{})} }

func (f *fakeParker) park(m kafka.Message, account string, cancel <-chan struct{}, done func(error)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, parkCall{m: m, account: account, cancel: cancel, done: done})
	close(f.changed)
	f.changed = make(chan struct{})
}

// wait returns the n-th park (0-based) once it happened.
func (f *fakeParker) wait(t *testing.T, n int, timeout time.Duration) parkCall {
	t.Helper()
	deadline := time.After(timeout)
	for {
		f.mu.Lock()
		if len(f.calls) > n {
			c := f.calls[n]
			f.mu.Unlock()
			return c
		}
		changed := f.changed
		f.mu.Unlock()
		select {
		case <-changed:
		case <-deadline:
			t.Fatalf("park %d not reached within %s", n, timeout)
		}
	}
}

func newAccountsConsumer(t *testing.T, partitions int, tune func(*Options)) (*testConsumer, *fakeIntegrations) {
	t.Helper()
	table := &fakeIntegrations{m: map[string]integrations.Integration{}}
	tc := newTestConsumer(t, partitions, func(o *Options) {
		o.Integrations = table
		o.Endpoint = "http://us.test"
		o.EUEndpoint = "http://eu.test"
		if tune != nil {
			tune(o)
		}
	})
	if tc.parker == nil {
		t.Fatal("accounts mode without the fake retry writer")
	}
	return tc, table
}

// record is a good interaction of account (none when "") with id.
func record(account, id string) []byte {
	v := map[string]any{"type": "tour_available", "userId": "u1", "tourId": "tour-1", "timestamp": "2026-11-29T11:00:00Z"}
	if id != "" {
		v["id"] = id
	}
	if account != "" {
		v["accountId"] = account
	}
	b, _ := json.Marshal(v)
	return b
}

// append adds one record with value and headers to partition p.
func (t *fakeTopic) append(p int, value []byte, headers ...kafka.Header) int64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	o := int64(len(t.logs[p]))
	t.logs[p] = append(t.logs[p], kafka.Message{Topic: t.name, Partition: p, Offset: o, Value: value, Headers: headers, Time: time.Unix(1700000000, 0)})
	close(t.grew)
	t.grew = make(chan struct{})
	return o
}

func accountID(t *testing.T, m kafka.Message, topic string, partition int, offset int64) string {
	t.Helper()
	call, err := mapping.MapAccount(mapping.Record{Topic: topic, Partition: partition, Offset: offset, Time: m.Time, Value: m.Value})
	if err != nil {
		t.Fatal(err)
	}
	return call.MessageID
}

func (tc *testConsumer) messages() []sink.Message {
	tc.sink.mu.Lock()
	defer tc.sink.mu.Unlock()
	return append([]sink.Message(nil), tc.sink.got...)
}

// TestAccountsRouting: an active account's records go to its region's
// endpoint with its key; unknown and inactive accounts' records are
// skipped, committed and counted.
func TestAccountsRouting(t *testing.T) {
	tc, table := newAccountsConsumer(t, 1, nil)
	table.set("us-1", "key-us-1", integrations.RegionUS, true)
	table.set("eu-1", "key-eu-1", integrations.RegionEU, true)
	table.set("off-1", "key-off-1", integrations.RegionUS, false)
	for i, a := range []string{"us-1", "eu-1", "off-1", "nobody", "us-1", "42"} {
		tc.topic.append(0, record(a, "i-"+strconv.Itoa(i)))
	}
	tc.run(t)
	tc.fc.start(t, 1, 0)
	tc.fc.waitCommitted(t, 0, 6, 10*time.Second)
	want := map[string]sink.Destination{
		"us-1": {Account: "us-1", WriteKey: "key-us-1", Endpoint: "http://us.test"},
		"eu-1": {Account: "eu-1", WriteKey: "key-eu-1", Endpoint: "http://eu.test"},
	}
	got := tc.messages()
	if len(got) != 3 {
		t.Fatalf("sink got %d messages, want 3 (us-1 twice, eu-1)", len(got))
	}
	for _, m := range got {
		if w, ok := want[m.Destination.Account]; !ok || m.Destination != w {
			t.Errorf("message %s went to %v (key %q), want %v", m.ID, m.Destination, m.Destination.WriteKey, w)
		}
		if m.Retry {
			t.Errorf("message %s from the source topic has Retry set", m.ID)
		}
	}
	if got, want := counterValue(tc.metrics.skippedInactive), 3.0; got != want {
		t.Errorf("skipped{inactive_account} = %v, want %v", got, want)
	}
}

// TestAccountsMissingAccountDeadLetters: in accounts mode a record
// without accountId is a mapping error (missing_account), not a skip.
func TestAccountsMissingAccountDeadLetters(t *testing.T) {
	tc, _ := newAccountsConsumer(t, 1, nil)
	var mu sync.Mutex
	var codes []mapping.Code
	tc.seams.runDeadLetters = func(ctx context.Context) error {
		tc.dlq.lanes.run(ctx, func(_ context.Context, batch []*dlqItem) {
			for _, it := range batch {
				mu.Lock()
				codes = append(codes, it.code)
				mu.Unlock()
				it.done(true)
			}
		}, func(it *dlqItem) { it.done(false) })
		return nil
	}
	tc.topic.append(0, record("", "x"))
	tc.run(t)
	tc.fc.start(t, 1, 0)
	tc.fc.waitCommitted(t, 0, 1, 10*time.Second)
	mu.Lock()
	defer mu.Unlock()
	if len(codes) != 1 || codes[0] != mapping.CodeMissingAccount {
		t.Errorf("dead letters %v, want [missing_account]", codes)
	}
	if n := counterValue(tc.metrics.skippedInactive); n != 0 {
		t.Errorf("skipped = %v, want 0", n)
	}
}

// TestAccountsChangeTakesEffect: the integration in force is the one at
// map time: records mapped after a deactivation are skipped, after a key
// rotation or region change they carry the new destination.
func TestAccountsChangeTakesEffect(t *testing.T) {
	tc, table := newAccountsConsumer(t, 1, nil)
	table.set("a", "key-1", integrations.RegionUS, true)
	tc.topic.append(0, record("a", "1"))
	tc.run(t)
	tc.fc.start(t, 1, 0)
	tc.fc.waitCommitted(t, 0, 1, 10*time.Second)

	table.set("a", "key-2", integrations.RegionEU, true)
	tc.topic.append(0, record("a", "2"))
	tc.fc.waitCommitted(t, 0, 2, 10*time.Second)

	table.set("a", "key-2", integrations.RegionEU, false)
	tc.topic.append(0, record("a", "3"))
	tc.fc.waitCommitted(t, 0, 3, 10*time.Second)

	got := tc.messages()
	if len(got) != 2 {
		t.Fatalf("sink got %d messages, want 2 (the third record's account was deactivated)", len(got))
	}
	if d := got[0].Destination; d.WriteKey != "key-1" || d.Endpoint != "http://us.test" {
		t.Errorf("first record went to %v, want key-1 at the US endpoint", d)
	}
	if d := got[1].Destination; d.WriteKey != "key-2" || d.Endpoint != "http://eu.test" {
		t.Errorf("second record went to %v, want key-2 at the EU endpoint", d)
	}
	if n := counterValue(tc.metrics.skippedInactive); n != 1 {
		t.Errorf("skipped = %v, want 1", n)
	}
}

// TestAccountsParkCommitsAfterAck: a Parked outcome parks the record on
// behalf of its account; its offset commits only once the park is
// acknowledged.
func TestAccountsParkCommitsAfterAck(t *testing.T) {
	tc, table := newAccountsConsumer(t, 1, nil)
	table.set("a", "key-a", integrations.RegionUS, true)
	tc.topic.append(0, record("a", "1"))
	tc.sink.hold = func(sink.Message) bool { return true }
	tc.run(t)
	tc.fc.start(t, 1, 0)
	var id string
	tc.sink.waitFor(t, "the record enqueued", 10*time.Second, func(s *fakeSink) bool {
		if len(s.got) == 1 {
			id = s.got[0].ID
		}
		return len(s.got) == 1
	})
	tc.sink.complete(id, sink.Result{Outcome: sink.Parked, Err: fmt.Errorf("%w: 503", sink.ErrParked)})
	pc := tc.parker.wait(t, 0, 10*time.Second)
	if pc.account != "a" || pc.m.Offset != 0 || pc.m.Topic != "src" {
		t.Errorf("parked %s/%d account %q, want src/0 account a", pc.m.Topic, pc.m.Offset, pc.account)
	}
	// The park is not acknowledged: the tracker still holds the record.
	tc.fc.mu.Lock()
	_, committed := tc.fc.committed[0]
	tc.fc.mu.Unlock()
	if committed {
		t.Fatal("the source offset was committed before the park was acknowledged")
	}
	pc.done(nil)
	tc.fc.waitCommitted(t, 0, 1, 10*time.Second)
}

// TestAccountsParkTooLargeDeliversInPlace: a record the retry topic
// refuses as too large is delivered in place, with Retry set, and commits
// once delivered.
func TestAccountsParkTooLargeDeliversInPlace(t *testing.T) {
	tc, table := newAccountsConsumer(t, 1, nil)
	table.set("a", "key-a", integrations.RegionUS, true)
	tc.topic.append(0, record("a", "1"))
	tc.topic.append(0, record("a", "2"))
	tc.sink.hold = func(m sink.Message) bool { return !m.Retry } // the redelivery in place is delivered
	tc.run(t)
	tc.fc.start(t, 1, 0)
	var ids []string
	tc.sink.waitFor(t, "both records enqueued", 10*time.Second, func(s *fakeSink) bool {
		ids = ids[:0]
		for _, m := range s.got {
			ids = append(ids, m.ID)
		}
		return len(s.got) == 2
	})
	for _, id := range ids {
		tc.sink.complete(id, sink.Result{Outcome: sink.Parked, Err: sink.ErrParked})
	}
	p0, p1 := tc.parker.wait(t, 0, 10*time.Second), tc.parker.wait(t, 1, 10*time.Second)
	if p0.m.Offset > p1.m.Offset {
		p0, p1 = p1, p0
	}
	p1.done(fmt.Errorf("write: %w", ErrRecordTooLarge))
	tc.sink.waitFor(t, "the too-large record enqueued again with Retry", 10*time.Second, func(s *fakeSink) bool {
		return len(s.got) == 3 && s.got[2].Retry && s.got[2].ID == ids[1]
	})
	p0.done(nil)
	tc.fc.waitCommitted(t, 0, 2, 10*time.Second)
}

// TestAccountsParkAbandonedDrops: a park that ends with ErrParkAbandoned
// drops the record from the tracker (drain does not wait for it, the
// commit point never passes it) and frees its slot.
func TestAccountsParkAbandonedDrops(t *testing.T) {
	tc, _ := newAccountsConsumer(t, 1, nil)
	p := tc.newPartition("src", 0, 0)
	m := kafka.Message{Topic: "src", Partition: 0, Offset: 0, Value: record("a", "1")}
	h := takeOne(t, p, m)
	p.finish(m, h, sent{dst: sink.Destination{Account: "a"}}, sink.Result{Outcome: sink.Parked, Err: sink.ErrParked})
	pc := tc.parker.wait(t, 0, 10*time.Second)
	if got := p.tr.inFlight(); got != 1 {
		t.Fatalf("in flight while parking = %d, want 1", got)
	}
	pc.done(ErrParkAbandoned)
	if got := p.tr.inFlight(); got != 0 {
		t.Errorf("in flight after the park was abandoned = %d, want 0", got)
	}
	if got := p.tr.committable(); got > 0 {
		t.Errorf("commit point %d passed the abandoned record", got)
	}
	if got := gaugeValue(tc.metrics.inFlight); got != 0 {
		t.Errorf("records in flight = %v, want 0: the slot was not released", got)
	}
}

func gaugeValue(g prometheus.Gauge) float64 {
	var m dto.Metric
	if err := g.Write(&m); err != nil {
		return -1
	}
	return m.GetGauge().GetValue()
}

// TestAccountsRetryRecordHeld: a retry-topic record is held until its
// not-before time, then sent with Retry set and the messageId of its
// original coordinates; its retry-topic offset commits, it counts as
// redelivered, and a source partition is not held up meanwhile.
func TestAccountsRetryRecordHeld(t *testing.T) {
	tc, table := newAccountsConsumer(t, 1, nil)
	table.set("a", "key-a", integrations.RegionUS, true)
	notBefore := time.Now().Add(700 * time.Millisecond).UTC()
	value := record("a", "")
	tc.retryTopic.append(0, value,
		kafka.Header{Key: HeaderSourceTopic, Value: []byte("src")},
		kafka.Header{Key: HeaderSourcePartition, Value: []byte("0")},
		kafka.Header{Key: HeaderSourceOffset, Value: []byte("7")},
		kafka.Header{Key: HeaderRetryAccount, Value: []byte("a")},
		kafka.Header{Key: HeaderRetryAttempt, Value: []byte("1")},
		kafka.Header{Key: HeaderRetryNotBefore, Value: []byte(notBefore.Format(notBeforeLayout))},
	)
	tc.topic.append(0, record("a", "src-1"))
	tc.run(t)
	tc.fc.startTopics(t, 1, map[string][]int{"src": {0}, "src.retry": {0}})
	tc.fc.waitCommittedIn(t, "src.retry", 0, 1, 10*time.Second)
	tc.fc.waitCommitted(t, 0, 1, 10*time.Second)
	want := accountID(t, kafka.Message{Value: value, Time: time.Unix(1700000000, 0)}, "src", 0, 7)
	tc.sink.mu.Lock()
	defer tc.sink.mu.Unlock()
	var retried *sink.Message
	for i, m := range tc.sink.got {
		if m.Retry {
			retried = &tc.sink.got[i]
		}
	}
	if retried == nil {
		t.Fatal("the retry-topic record was not sent with Retry set")
	}
	if retried.ID != want {
		t.Errorf("messageId %s, want %s (that of its original coordinates src/0/7)", retried.ID, want)
	}
	// Not-before has millisecond precision.
	if at := tc.sink.at[retried.ID]; at.Before(notBefore.Truncate(time.Millisecond)) {
		t.Errorf("sent at %s, before its not-before time %s", at.Format(time.RFC3339Nano), notBefore.Format(time.RFC3339Nano))
	}
	if src := tc.sink.at[tc.sink.got[0].ID]; len(tc.sink.got) != 2 || tc.sink.got[0].Retry || !src.Before(notBefore) {
		t.Errorf("the source record was not sent before the retry record's not-before time (sent at %s)", src.Format(time.RFC3339Nano))
	}
	if got := counterValue(tc.metrics.redelivered); got != 1 {
		t.Errorf("redelivered = %v, want 1", got)
	}
}

// TestAccountsRetryHoldEndsOnShutdown: a record held far in the future
// does not hold up shutdown, and stays uncommitted.
func TestAccountsRetryHoldEndsOnShutdown(t *testing.T) {
	tc, table := newAccountsConsumer(t, 1, nil)
	table.set("a", "key-a", integrations.RegionUS, true)
	tc.retryTopic.append(0, record("a", "x"),
		kafka.Header{Key: HeaderRetryAccount, Value: []byte("a")},
		kafka.Header{Key: HeaderRetryAttempt, Value: []byte("3")},
		kafka.Header{Key: HeaderRetryNotBefore, Value: []byte(time.Now().Add(time.Hour).UTC().Format(notBeforeLayout))},
	)
	tc.topic.append(0, record("a", "y"))
	stop := tc.run(t)
	tc.fc.startTopics(t, 1, map[string][]int{"src": {0}, "src.retry": {0}})
	tc.fc.waitCommitted(t, 0, 1, 10*time.Second)
	done := make(chan struct{})
	go func() {
		stop()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(tc.opts.ShutdownTimeout + 10*time.Second):
		t.Fatal("shutdown waited for a held retry record")
	}
	tc.fc.mu.Lock()
	defer tc.fc.mu.Unlock()
	if o, ok := tc.fc.other["src.retry"][0]; ok && o > 0 {
		t.Errorf("retry topic committed %d, want nothing: its record was never sent", o)
	}
	for _, m := range tc.sink.got {
		if m.Retry {
			t.Error("the held record was sent")
		}
	}
}

// TestAccountsTopics: the group subscribes to the retry topic only in
// accounts mode, and the start-up check waits for it too.
func TestAccountsTopics(t *testing.T) {
	single := newTestConsumer(t, 1, nil)
	if got := single.topics(); len(got) != 1 || got[0] != "src" {
		t.Errorf("single-source topics %v, want [src]", got)
	}
	tc, _ := newAccountsConsumer(t, 1, nil)
	if got := tc.topics(); len(got) != 2 || got[0] != "src" || got[1] != "src.retry" {
		t.Errorf("accounts topics %v, want [src src.retry]", got)
	}
}

// TestAccountsRetryHoldStopsChunk: retry-topic records fetched together
// are taken up to the first one not due yet; the records after it wait
// with it, although due themselves, so the partition's offsets stay in
// order.
func TestAccountsRetryHoldStopsChunk(t *testing.T) {
	tc, table := newAccountsConsumer(t, 1, nil)
	table.set("a", "key-a", integrations.RegionUS, true)
	retry := func(id string, notBefore time.Time) {
		tc.retryTopic.append(0, record("a", id),
			kafka.Header{Key: HeaderRetryAccount, Value: []byte("a")},
			kafka.Header{Key: HeaderRetryAttempt, Value: []byte("1")},
			kafka.Header{Key: HeaderRetryNotBefore, Value: []byte(notBefore.UTC().Format(notBeforeLayout))},
		)
	}
	retry("due-0", time.Now().Add(-time.Minute))
	retry("held-1", time.Now().Add(time.Hour))
	retry("due-2", time.Now().Add(-time.Minute))
	stop := tc.run(t)
	tc.fc.startTopics(t, 1, map[string][]int{"src": {0}, "src.retry": {0}})
	tc.fc.waitCommittedIn(t, "src.retry", 0, 1, 10*time.Second)
	// Taken together with the first record, the third would have been
	// handed to the sink with it, before the first one's commit.
	tc.sink.mu.Lock()
	n := len(tc.sink.got)
	tc.sink.mu.Unlock()
	if n != 1 {
		t.Errorf("%d retry records sent, want only the first: the held second stops the third", n)
	}
	stop()
	tc.fc.mu.Lock()
	defer tc.fc.mu.Unlock()
	if o := tc.fc.other["src.retry"][0]; o != 1 {
		t.Errorf("retry topic committed %d, want 1", o)
	}
}
