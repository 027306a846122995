package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/produktly/produktly-segment/integrations"
	"github.com/produktly/produktly-segment/mapping"
	"github.com/produktly/produktly-segment/sink/segmenttest"
)

// accountsWorld is one accounts-mode test's world (contract v2): a source
// topic, its dead-letter and retry topics, a compacted integrations topic
// with a publisher, a consumer group, and two Segment stand-ins, one per
// region, that accept every write key the test publishes.
type accountsWorld struct {
	t            testing.TB
	topic        string
	partitions   int
	dlq          string
	retry        string
	retryParts   int
	integrations string
	group        string
	us, eu       *segmenttest.Server
	pub          *integrations.Publisher
	env          map[string]string

	mu   sync.Mutex
	keys map[string]bool // every write key ever published
}

// newAccountsWorld creates the topics, the publisher and both stand-ins.
func newAccountsWorld(t testing.TB, partitions int) *accountsWorld {
	t.Helper()
	w := &accountsWorld{
		t:            t,
		topic:        createTopic(t, partitions),
		partitions:   partitions,
		dlq:          createTopic(t, 2),
		retryParts:   partitions,
		integrations: createTopicWith(t, 1, kafka.ConfigEntry{ConfigName: "cleanup.policy", ConfigValue: "compact"}),
		group:        unique("g-" + strings.ReplaceAll(t.Name(), "/", "-")),
		us:           segmenttest.NewServer("it-unused-us-key"),
		eu:           segmenttest.NewServer("it-unused-eu-key"),
		env:          map[string]string{},
		keys:         map[string]bool{},
	}
	w.retry = createTopic(t, w.retryParts)
	t.Cleanup(w.us.Close)
	t.Cleanup(w.eu.Close)
	pub, err := integrations.NewPublisher(integrations.TopicOptions{Brokers: brokers(t), Topic: w.integrations})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pub.Close() })
	w.pub = pub
	return w
}

// environ is the service's environment in accounts mode, with the short
// group timings of the single-source tests.
func (w *accountsWorld) environ(extra map[string]string) map[string]string {
	env := map[string]string{
		"KAFKA_BROKERS":       strings.Join(brokers(w.t), ","),
		"KAFKA_TOPIC":         w.topic,
		"KAFKA_GROUP_ID":      w.group,
		"KAFKA_DLQ_TOPIC":     w.dlq,
		"KAFKA_RETRY_TOPIC":   w.retry,
		"INTEGRATIONS_TOPIC":  w.integrations,
		"SEGMENT_ENDPOINT":    w.us.URL(),
		"SEGMENT_EU_ENDPOINT": w.eu.URL(),
		"SEGMENT_TIMEOUT":     "2s",
	}
	return memberEnv(w.t, env, w.env, extra)
}

// start starts one member of the group.
func (w *accountsWorld) start(name string, extra map[string]string) *proc {
	w.t.Helper()
	return startProc(w.t, name, w.environ(extra), "run")
}

// server is the stand-in of a region.
func (w *accountsWorld) server(r integrations.Region) *segmenttest.Server {
	if r == integrations.RegionEU {
		return w.eu
	}
	return w.us
}

// put publishes an active integration and makes both stand-ins accept its
// key (so that a record sent to the wrong region is accepted there, and
// the test sees it rather than a 401 retried forever).
func (w *accountsWorld) put(account, key string, r integrations.Region) {
	w.t.Helper()
	w.accept(key)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := w.pub.Put(ctx, account, integrations.Integration{WriteKey: integrations.NewWriteKey(key), Region: r, Active: true}); err != nil {
		w.t.Fatalf("put integration of %s: %v", account, err)
	}
}

func (w *accountsWorld) accept(key string) {
	w.mu.Lock()
	w.keys[key] = true
	w.mu.Unlock()
	w.us.AddWriteKey(key)
	w.eu.AddWriteKey(key)
}

// deactivate sets the account's integration inactive.
func (w *accountsWorld) deactivate(account string) {
	w.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := w.pub.Deactivate(ctx, account); err != nil {
		w.t.Fatalf("deactivate %s: %v", account, err)
	}
}

// putRaw writes a raw record to the integrations topic (one partition):
// an invalid value, or a tombstone when value is nil.
func (w *accountsWorld) putRaw(account string, value []byte) {
	w.t.Helper()
	produce(w.t, w.integrations, []kafka.Message{{Key: []byte(account), Value: value}})
}

// secrets are every write key published so far.
func (w *accountsWorld) secrets() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := make([]string, 0, len(w.keys))
	for k := range w.keys {
		out = append(out, k)
	}
	return out
}

// acctRecord is one good record of account, numbered seq, with the
// producer's wall clock in producedAt (milliseconds) for latency.
type acctRecord struct {
	account  string
	seq      int
	produced time.Time
	msg      kafka.Message
	call     mapping.Call // what mapping.MapAccount makes of it
}

// newAcctRecord builds the record and its expected Segment call. Every
// record carries an id and a timestamp, so its messageId and JSON do not
// depend on where Kafka puts it (nor on a trip through the retry topic).
func newAcctRecord(t testing.TB, run, account string, seq int, now time.Time) acctRecord {
	t.Helper()
	ev := events[seq%len(events)]
	user := fmt.Sprintf("user-%s-%d", account, seq%13)
	v := map[string]any{
		"type":       ev.typ,
		"id":         fmt.Sprintf("%s-%d", run, seq),
		"accountId":  account,
		"userId":     user,
		ev.idField:   fmt.Sprintf("%s_%d", ev.prop, seq%7),
		"timestamp":  time.Date(2026, 11, 29, 10, 0, 0, 0, time.UTC).Add(time.Duration(seq) * time.Millisecond).Format(time.RFC3339Nano),
		"producedAt": now.UnixMilli(),
		"seq":        seq,
	}
	if n, err := strconv.Atoi(account); err == nil {
		v["accountId"] = n // integer account ids are read as their digits
	}
	addMetadata(v, ev.typ, seq)
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	call, err := mapping.MapAccount(mapping.Record{Topic: "any", Time: now, Value: b})
	if err != nil {
		t.Fatalf("mapping.MapAccount refuses a good record: %v: %s", err, b)
	}
	return acctRecord{account: account, seq: seq, produced: now, call: call,
		msg: kafka.Message{Key: []byte(user), Value: b}}
}

// acctFlow produces records of a set of accounts at a steady rate until
// stopped, and remembers every record it produced (acknowledged by Kafka).
type acctFlow struct {
	t    testing.TB
	w    *kafka.Writer
	run  string
	rate int // records per second over all accounts

	mu       sync.Mutex
	accounts []string
	recs     []acctRecord
	seq      int

	stopc chan struct{}
	done  chan struct{}
	err   error
}

func newAcctFlow(t testing.TB, topic string, rate int, accounts []string) *acctFlow {
	f := &acctFlow{
		t: t, run: unique("acct"), rate: rate, accounts: accounts,
		w: &kafka.Writer{
			Addr: kafka.TCP(brokers(t)...), Topic: topic, Balancer: &kafka.Hash{},
			RequiredAcks: kafka.RequireAll, BatchSize: 1000, BatchTimeout: 2 * time.Millisecond,
		},
		stopc: make(chan struct{}), done: make(chan struct{}),
	}
	t.Cleanup(func() { _ = f.w.Close() })
	return f
}

// batch makes n records, round robin over the accounts.
func (f *acctFlow) batch(n int) []acctRecord {
	f.mu.Lock()
	defer f.mu.Unlock()
	now := time.Now()
	out := make([]acctRecord, n)
	for i := range out {
		acct := f.accounts[f.seq%len(f.accounts)]
		out[i] = newAcctRecord(f.t, f.run, acct, f.seq, now)
		f.seq++
	}
	return out
}

// write produces recs and keeps them once Kafka acknowledged them.
func (f *acctFlow) write(recs []acctRecord) error {
	msgs := make([]kafka.Message, len(recs))
	for i, r := range recs {
		msgs[i] = r.msg
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := f.w.WriteMessages(ctx, msgs...); err != nil {
		return err
	}
	f.mu.Lock()
	f.recs = append(f.recs, recs...)
	f.mu.Unlock()
	return nil
}

// start produces every 50 ms until stop.
func (f *acctFlow) start() *acctFlow {
	go func() {
		defer close(f.done)
		const tick = 50 * time.Millisecond
		tk := time.NewTicker(tick)
		defer tk.Stop()
		carry := 0.0
		for {
			select {
			case <-f.stopc:
				return
			case <-tk.C:
			}
			carry += float64(f.rate) * tick.Seconds()
			n := int(carry)
			carry -= float64(n)
			if n == 0 {
				continue
			}
			if err := f.write(f.batch(n)); err != nil {
				f.err = err
				return
			}
		}
	}()
	return f
}

// stop ends the flow and returns every record produced.
func (f *acctFlow) stop() []acctRecord {
	f.t.Helper()
	close(f.stopc)
	<-f.done
	if f.err != nil {
		f.t.Fatalf("producer: %v", f.err)
	}
	return f.produced()
}

func (f *acctFlow) produced() []acctRecord {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]acctRecord(nil), f.recs...)
}

// arrivals indexes what both stand-ins received by messageId.
type arrivals map[string][]arrival

type arrival struct {
	region integrations.Region
	segmenttest.Received
}

func (w *accountsWorld) arrivals() arrivals {
	out := arrivals{}
	for _, r := range []integrations.Region{integrations.RegionUS, integrations.RegionEU} {
		for _, m := range w.server(r).Messages() {
			out[m.MessageID] = append(out[m.MessageID], arrival{region: r, Received: m})
		}
	}
	return out
}

// checkCopies fails the test for a messageId whose copies differ from its
// first copy, or that arrived at different sources, and returns the
// number of duplicates.
func (a arrivals) checkCopies(t testing.TB) int {
	t.Helper()
	dups, bad := 0, 0
	for id, cs := range a {
		for _, c := range cs[1:] {
			dups++
			if string(c.Raw) != string(cs[0].Raw) || c.WriteKey != cs[0].WriteKey || c.region != cs[0].region {
				if bad++; bad <= 5 {
					t.Errorf("messageId %s: a copy differs from the first (region %s then %s, same key %v):\nfirst %s\nlater %s",
						id, cs[0].region, c.region, c.WriteKey == cs[0].WriteKey, cs[0].Raw, c.Raw)
				}
			}
		}
	}
	return dups
}

// metricLabelled returns the value of the series name{labels} from
// /metrics (labels as Prometheus prints them, e.g. `reason="x"`), or -1.
func (p *proc) metricLabelled(name, labels string) float64 {
	code, body := p.get("/metrics")
	if code != http.StatusOK {
		return -1
	}
	prefix := name + "{" + labels + "} "
	for _, line := range strings.Split(body, "\n") {
		if v, ok := strings.CutPrefix(line, prefix); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err == nil {
				return f
			}
		}
	}
	return -1
}

// metricSum adds up every series of name on /metrics (0 when none).
func (p *proc) metricSum(name string) float64 {
	_, body := p.get("/metrics")
	var sum float64
	for _, line := range strings.Split(body, "\n") {
		rest, ok := strings.CutPrefix(line, name)
		if !ok || (rest != "" && rest[0] != ' ' && rest[0] != '{') {
			continue
		}
		fs := strings.Fields(rest[strings.LastIndexByte(rest, '}')+1:])
		if len(fs) == 0 {
			continue
		}
		if f, err := strconv.ParseFloat(fs[0], 64); err == nil {
			sum += f
		}
	}
	return sum
}

// Metric names of accounts mode the tests read.
const (
	metricSkipped      = "produktly_segment_records_skipped_total"
	metricParked       = "produktly_segment_records_parked_total"
	metricRedelivered  = "produktly_segment_records_redelivered_total"
	metricIntegErrors  = integrations.MetricErrors
	skippedInactive    = `reason="inactive_account"`
	integReasonFile    = `reason="unreadable_file"`
	integReasonInvalid = `reason="invalid_integration"`
)

func sortDurations(ds []time.Duration) { slices.Sort(ds) }

// createNamedTopic creates topic (which the test named itself) with
// partitions, and deletes it when the test ends.
func createNamedTopic(t testing.TB, topic string, partitions int) {
	t.Helper()
	client := &kafka.Client{Addr: kafka.TCP(brokers(t)...), Timeout: 30 * time.Second}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res, err := client.CreateTopics(ctx, &kafka.CreateTopicsRequest{Topics: []kafka.TopicConfig{{
		Topic: topic, NumPartitions: partitions, ReplicationFactor: 1,
		ConfigEntries: []kafka.ConfigEntry{{ConfigName: "cleanup.policy", ConfigValue: "compact"}},
	}}})
	if err == nil {
		err = res.Errors[topic]
	}
	if err != nil {
		t.Fatalf("create topic %s: %v", topic, err)
	}
	waitTopic(t, client, topic, partitions)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_, _ = client.DeleteTopics(ctx, &kafka.DeleteTopicsRequest{Topics: []string{topic}})
	})
}

// committedThrough reports whether committed reaches end on every
// partition; a partition that never held a record (end 0) counts as
// reached with nothing committed (-1). The retry topic's partitions
// often stay empty.
func committedThrough(committed, end map[int]int64) bool {
	for p, e := range end {
		if e > 0 && committed[p] < e {
			return false
		}
	}
	return true
}

// waitCommittedThrough is waitCommitted with committedThrough.
func waitCommittedThrough(t testing.TB, group, topic string, partitions int, timeout time.Duration) {
	t.Helper()
	waitCommittedBy(t, group, topic, partitions, timeout, committedThrough)
}
