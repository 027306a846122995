package integrations

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/segmentio/kafka-go"
)

// topicBound is the contract's bound for a produced change to take effect.
const topicBound = time.Second

func TestTopicLoadAndFollow(t *testing.T) {
	bs := brokers(t)
	topic := createTopic(t, bs, 3)
	keys := []string{"wk-a-1", "wk-a-2", "wk-b-1", "wk-c-1", "wk-e-1", "wk-f-1", "wk-f-2", "wk-a-3", "wk-g-1", "wk-b-eu"}
	produce(t, bs, topic,
		rec("a", integ("wk-a-1", "us", true)),
		rec("b", integ("wk-b-1", "eu", true)),
		rec("c", integ("wk-c-1", "us", false)),
		rec("d", `not json`),
		rec("e", integ("wk-e-1", "us", true)),
		rec("f", integ("wk-f-1", "us", true)),
		rec("", integ("wk-g-1", "us", true)),  // no key: ignored
		rec("e", ""),                          // tombstone
		rec("f", integ("wk-f-2", "eu", true)), // last wins
		rec("a", integ("wk-a-2", "us", true)),
	)
	log, logs := debugLogger()
	reg := prometheus.NewRegistry()
	tb, err := NewTopic(TopicOptions{Brokers: bs, Topic: topic, Logger: log, Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	if tb.Ready() {
		t.Fatal("Ready before Run read anything")
	}
	ref := watchTopic(t, bs, topic, 3)
	runTable(t, tb)
	select {
	case <-tb.Loaded():
	case <-time.After(30 * time.Second):
		t.Fatalf("not loaded within 30 s:\n%s", logs)
	}
	for _, tc := range []struct {
		account, key string
		region       Region
		ok           bool
	}{
		{"a", "wk-a-2", RegionUS, true},
		{"b", "wk-b-1", RegionEU, true},
		{"c", "wk-c-1", RegionUS, false},
		{"d", "", "", false},
		{"e", "", "", false},
		{"f", "wk-f-2", RegionEU, true},
		{"", "", "", false},
	} {
		it, ok := tb.Lookup(tc.account)
		if ok != tc.ok || it.Region != tc.region || it.WriteKey.Reveal() != tc.key {
			t.Errorf("Lookup(%q) = %s %s %v, want %s %s %v", tc.account, it.WriteKey.Reveal(), it.Region, ok, tc.key, tc.region, tc.ok)
		}
	}
	if s := tb.Snapshot(); s.Len() != 5 || s.Count(StateActive) != 3 || s.Count(StateInactive) != 1 || s.Count(StateInvalid) != 1 {
		t.Errorf("loaded %v (%d accounts), want 3 active, 1 inactive, 1 invalid", s, s.Len())
	}
	if got := loadedGauge(tb, StateActive); got != 3 {
		t.Errorf("%s{state=active} = %v, want 3", MetricLoaded, got)
	}
	if errorsCounted(tb, reasonInvalid) != 1 || errorsCounted(tb, reasonRecord) != 1 {
		t.Errorf("errors: invalid %v, record %v; want 1, 1", errorsCounted(tb, reasonInvalid), errorsCounted(tb, reasonRecord))
	}
	if !strings.Contains(logs.String(), `"account":"d"`) {
		t.Errorf("the invalid integration of d is not logged:\n%s", logs)
	}

	// Live changes: each in force within the bound of its acknowledgement.
	for _, step := range []struct {
		name string
		m    kafka.Message
		done func() bool
	}{
		{"rotate a key", rec("a", integ("wk-a-3", "us", true)), func() bool { return keyOf(tb, "a") == "wk-a-3" }},
		{"change a region", rec("b", integ("wk-b-eu", "us", true)), func() bool { it, _ := tb.Lookup("b"); return it.Region == RegionUS }},
		{"activate", rec("c", integ("wk-c-1", "us", true)), func() bool { _, ok := tb.Lookup("c"); return ok }},
		{"deactivate", rec("f", integ("wk-f-2", "eu", false)), func() bool { _, ok := tb.Lookup("f"); return !ok && keyOf(tb, "f") == "wk-f-2" }},
		{"tombstone", rec("a", ""), func() bool { return tb.Snapshot().Len() == 4 && keyOf(tb, "a") == "" }},
		{"invalid value", rec("b", `{"writeKey":"wk-b-eu","region":"ap"}`), func() bool { _, ok := tb.Lookup("b"); return !ok }},
		{"new account", rec("g", integ("wk-g-1", "eu", true)), func() bool { _, ok := tb.Lookup("g"); return ok }},
	} {
		produce(t, bs, topic, step.m)
		acked := time.Now()
		took := waitFor(t, 30*time.Second, step.name, step.done)
		// The contract's bound is the table's own delay: counted from
		// when a plain reader of the topic sees the record, so that a
		// broker that stalls is not counted against the table.
		seen := ref.at(t, step.m, 30*time.Second)
		if lag := acked.Add(took).Sub(seen); lag > topicBound {
			t.Errorf("%s: in force %v after a plain reader saw it, over the contract's %v", step.name, lag.Round(time.Millisecond), topicBound)
		}
		t.Logf("%s: in force %v after the broker acknowledged it (a plain reader saw it after %v)", step.name,
			took.Round(time.Millisecond), seen.Sub(acked).Round(time.Millisecond))
	}
	if errorsCounted(tb, reasonInvalid) != 2 {
		t.Errorf("errors: invalid %v, want 2", errorsCounted(tb, reasonInvalid))
	}

	// A second replica reads all of it too: no consumer group shares the
	// partitions out.
	tb2, err := NewTopic(TopicOptions{Brokers: bs, Topic: topic, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	runTable(t, tb2)
	waitFor(t, 30*time.Second, "the second replica loaded", tb2.Ready)
	if a, b := tb.Snapshot(), tb2.Snapshot(); a.Len() != b.Len() || a.Count(StateActive) != b.Count(StateActive) {
		t.Errorf("two replicas of one topic: %v and %v", a, b)
	}
	for _, account := range []string{"b", "c", "d", "f", "g"} {
		x, _ := tb.Lookup(account)
		y, _ := tb2.Lookup(account)
		if !x.WriteKey.Equal(y.WriteKey) || x.Region != y.Region || x.Active != y.Active {
			t.Errorf("account %s differs between two replicas", account)
		}
	}
	noSecrets(t, keys, logs.String(), gatherText(t, reg))
}

// TestTopicMissing: a topic that does not exist is a clear log line and a
// table that is not ready; it is looked for again until it exists.
func TestTopicMissing(t *testing.T) {
	bs := brokers(t)
	log, logs := debugLogger()
	tb, err := NewTopic(TopicOptions{Brokers: bs, Topic: "integrations-test-absent-" + strings.ToLower(time.Now().Format("150405.000000")),
		Logger: log, RetryInterval: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	runTable(t, tb)
	waitFor(t, 30*time.Second, "the missing topic logged", func() bool {
		return strings.Contains(logs.String(), "integrations topic does not exist: not ready until it does")
	})
	if tb.Ready() {
		t.Fatal("Ready without a topic")
	}
	// Retried, and logged as an error once, not once per retry.
	waitFor(t, 30*time.Second, "three retries", func() bool {
		return strings.Count(logs.String(), "integrations topic: looking again") >= 3
	})
	if tb.Ready() {
		t.Fatal("Ready without a topic")
	}
	if n := strings.Count(logs.String(), `"level":"error"`); n != 1 {
		t.Errorf("the missing topic is logged as an error %d times, want once:\n%s", n, logs)
	}
}

// TestTopicCreatedLater: the table becomes ready once the missing topic
// exists and has been read.
func TestTopicCreatedLater(t *testing.T) {
	bs := brokers(t)
	topic := createTopic(t, bs, 1)
	// Delete it, start the table, create it again.
	client := &kafka.Client{Addr: kafka.TCP(bs...), Timeout: 30 * time.Second}
	if _, err := client.DeleteTopics(t.Context(), &kafka.DeleteTopicsRequest{Topics: []string{topic}}); err != nil {
		t.Fatal(err)
	}
	log, logs := debugLogger()
	tb, err := NewTopic(TopicOptions{Brokers: bs, Topic: topic, Logger: log, RetryInterval: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "the topic gone", func() bool {
		_, err := partitionBounds(t.Context(), client, topic)
		return errors.Is(err, kafka.UnknownTopicOrPartition)
	})
	runTable(t, tb)
	waitFor(t, 30*time.Second, "the missing topic logged", func() bool { return strings.Contains(logs.String(), "does not exist") })
	res, err := client.CreateTopics(t.Context(), &kafka.CreateTopicsRequest{Topics: []kafka.TopicConfig{{Topic: topic, NumPartitions: 2, ReplicationFactor: 1}}})
	if err != nil || res.Errors[topic] != nil {
		t.Fatalf("create: %v %v", err, res.Errors[topic])
	}
	waitFor(t, 30*time.Second, "ready once the topic exists", tb.Ready)
	produce(t, bs, topic, rec("x", integ("wk-x", "eu", true)))
	waitFor(t, 30*time.Second, "a record of the new topic", func() bool { _, ok := tb.Lookup("x"); return ok })
}

// TestTopicPartitionsAdded: records in a partition added while the table
// runs are read too.
func TestTopicPartitionsAdded(t *testing.T) {
	bs := brokers(t)
	topic := createTopic(t, bs, 1)
	produce(t, bs, topic, rec("a", integ("wk-a", "us", true)))
	log, logs := debugLogger()
	tb, err := NewTopic(TopicOptions{Brokers: bs, Topic: topic, Logger: log, MetadataInterval: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	runTable(t, tb)
	waitFor(t, 30*time.Second, "loaded", tb.Ready)
	client := &kafka.Client{Addr: kafka.TCP(bs...), Timeout: 30 * time.Second}
	res, err := client.CreatePartitions(t.Context(), &kafka.CreatePartitionsRequest{Topics: []kafka.TopicPartitionsConfig{{Name: topic, Count: 3}}})
	if err != nil || res.Errors[topic] != nil {
		t.Fatalf("add partitions: %v %v", err, res.Errors[topic])
	}
	waitFor(t, 30*time.Second, "the new partitions seen", func() bool { return strings.Contains(logs.String(), "partitions changed") })
	// Write straight to partition 2.
	w := &kafka.Writer{Addr: kafka.TCP(bs...), Topic: topic, Balancer: balancerFunc(func() int { return 2 }), RequiredAcks: kafka.RequireAll}
	defer w.Close()
	if err := w.WriteMessages(t.Context(), rec("z", integ("wk-z", "eu", true))); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "a record of a new partition", func() bool { _, ok := tb.Lookup("z"); return ok })
	if _, ok := tb.Lookup("a"); !ok {
		t.Error("the first partition's account was lost")
	}
}

type balancerFunc func() int

func (f balancerFunc) Balance(kafka.Message, ...int) int { return f() }
