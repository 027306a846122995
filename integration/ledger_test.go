package integration

import (
	"bytes"
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/produktly/produktly-segment/consumer"
	"github.com/produktly/produktly-segment/integrations"
	"github.com/produktly/produktly-segment/mapping"
	"github.com/produktly/produktly-segment/sink/segmenttest"
)

// The ledger accounts for every record a fault scenario produces: which
// were acknowledged by Kafka, what each must become (a Segment call with a
// known messageId and JSON, or a dead letter with a known code), and at the
// end what Segment, the dead-letter topic and the group's committed offsets
// show. Every scenario checks the same rules through ledger.account:
//
//   - every acknowledged record is in the source topic (none lost by Kafka);
//   - the distinct messageIds at Segment are exactly the good records;
//   - every copy of a messageId carries the JSON the mapping makes of it;
//   - every bad record is in the dead-letter topic with its expected code
//     and source headers (copies allowed), and no good record is there;
//   - the committed offsets equal the end offsets.
//
// Records carry their ledger id in the x-fault-id header (the dead-letter
// copy keeps it) and, when they are JSON, in their "id" field, so the
// messageId is mapping.Map's id-derived one and known before producing.

// faultIDHeader carries a record's ledger id.
const faultIDHeader = "x-fault-id"

// faultWriteKey is the write key of the scenarios' Segment stand-ins.
const faultWriteKey = "wk-faults-1f9c8e22d07b"

// rejectPrefix marks the userId of records Segment refuses with 400.
const rejectPrefix = "segment-rejects-"

// expect is what one produced record must become.
type expect struct {
	good  bool
	msgID string       // good: the Segment messageId
	sum   [32]byte     // good: sha256 of the exact Segment message JSON
	code  mapping.Code // bad: the dead-letter code
	kind  string       // what kind of record it is, for messages
	// account is the record's account in accounts mode, else "".
	account string
}

// ledger is one scenario's accounting.
type ledger struct {
	t          testing.TB
	name       string
	topic      string
	partitions int
	dlq        string
	dlqParts   int
	group      string
	seg        *segmenttest.Server
	kc         kconn        // how the test itself talks to Kafka
	cw         *commitWatch // nil until watch

	// Accounts mode (newAccountsLedger), else zero: the integrations
	// topic, the retry topic, and each account's write key (every account
	// is a US one, served by seg).
	integ      string
	retry      string
	retryParts int
	keys       map[string]string
	accounts   []string

	mu       sync.Mutex
	want     map[string]expect        // by ledger id: records acknowledged by Kafka
	coords   map[int]map[int64]string // partition -> offset -> ledger id, from the producer
	byMsgID  map[string]string        // good messageId -> ledger id
	goodN    int
	badN     int
	byCode   map[mapping.Code]int
	bytes    int64
	writeErr int // producer attempts that failed and were retried

	started  time.Time
	faultEnd time.Time
	notes    []string
	// killed: when each SIGKILLed replica was killed, by the name its
	// Segment endpoint carries (fleet.environ: segmenttest's URLFor).
	killed map[string]time.Time
}

// newLedger creates the scenario's topics, group and Segment stand-in on
// the brokers of KAFKA_BROKERS.
func newLedger(t testing.TB, name string, partitions int) *ledger {
	t.Helper()
	return newLedgerVia(t, plainConn(t), name, partitions)
}

// newLedgerVia is newLedger on the brokers kc reaches.
func newLedgerVia(t testing.TB, kc kconn, name string, partitions int) *ledger {
	t.Helper()
	l := buildLedger(t, kc, name, partitions)
	l.watch()
	return l
}

// buildLedger is newLedgerVia without the commit watch.
func buildLedger(t testing.TB, kc kconn, name string, partitions int) *ledger {
	t.Helper()
	l := &ledger{
		t:          t,
		kc:         kc,
		name:       name,
		topic:      kc.createTopic(t, "t-faults-"+name, partitions),
		partitions: partitions,
		dlqParts:   2,
		group:      unique("g-faults-" + name),
		seg:        segmenttest.NewServer(faultWriteKey),
		want:       map[string]expect{},
		byMsgID:    map[string]string{},
		byCode:     map[mapping.Code]int{},
		coords:     map[int]map[int64]string{},
		started:    time.Now(),
	}
	l.dlq = kc.createTopic(t, "t-faults-"+name+"-dlq", l.dlqParts)
	l.seg.RejectMessages(func(m segmenttest.Received) bool { return strings.HasPrefix(m.UserID, rejectPrefix) })
	t.Cleanup(l.seg.Close)
	return l
}

// newAccountsLedger is newLedger in accounts mode (contract v2): n
// accounts with integrations on a compacted integrations topic, each with
// its own write key (all US sources, served by seg), and a retry topic.
// Records carry an accountId (round robin over the accounts); a good
// record's copy must arrive with its account's key, and a commit may pass
// a good record that is in the retry topic (parked) rather than at Segment.
func newAccountsLedger(t testing.TB, name string, partitions, n int) *ledger {
	t.Helper()
	kc := plainConn(t)
	l := buildLedger(t, kc, name, partitions)
	l.retryParts = partitions
	l.retry = kc.createTopic(t, "t-faults-"+name+"-retry", l.retryParts)
	l.integ = kc.createTopic(t, "t-faults-"+name+"-integrations", 1, kafka.ConfigEntry{ConfigName: "cleanup.policy", ConfigValue: "compact"})
	o := integrations.TopicOptions{Brokers: kc.brokers, Topic: l.integ, Dialer: kc.dialer}
	if kc.transport != nil {
		o.Transport = kc.transport
	}
	pub, err := integrations.NewPublisher(o)
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	l.keys = map[string]string{}
	run := unique("wk")
	for i := range n {
		a := fmt.Sprintf("acct-%02d", i)
		key := fmt.Sprintf("wk-faults-%02d-%s", i, run)
		l.seg.AddWriteKey(key)
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		err := pub.Put(ctx, a, integrations.Integration{WriteKey: integrations.NewWriteKey(key), Region: integrations.RegionUS, Active: true})
		cancel()
		if err != nil {
			t.Fatalf("put integration of %s: %v", a, err)
		}
		l.keys[a] = key
		l.accounts = append(l.accounts, a)
	}
	l.watch()
	return l
}

// note adds a line to the scenario's report (what faults were injected).
// kill records that replica name was SIGKILLed now.
func (l *ledger) kill(name string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.killed == nil {
		l.killed = map[string]time.Time{}
	}
	l.killed[name] = time.Now()
}

func (l *ledger) note(format string, args ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	s := fmt.Sprintf(format, args...)
	l.notes = append(l.notes, fmt.Sprintf("%6.1fs %s", time.Since(l.started).Seconds(), s))
	l.t.Logf("%s: %s", l.name, s)
}

// expectOf works out, with the mapping itself, what a record must become,
// and checks it against what the generator intended: a disagreement is a
// mapping bug (or a generator bug) and fails the test.
func (l *ledger) expectOf(r genRecord) expect {
	mapper := mapping.Map
	if l.integ != "" {
		mapper = mapping.MapAccount
	}
	call, err := mapper(mapping.Record{Topic: l.topic, Time: time.Now(), Value: r.value})
	e := expect{kind: r.kind, account: r.account}
	if err == nil && r.code != mapping.CodeRejected && r.code != "" {
		l.t.Errorf("%s: mapping.Map accepts a %s record the contract says is %s: %s", l.name, r.kind, r.code, trimValue(r.value))
	}
	switch {
	case r.code == "":
		if err != nil {
			l.t.Errorf("%s: mapping.Map refuses a good %s record: %v: %s", l.name, r.kind, err, trimValue(r.value))
		}
		e.good = true
		e.msgID = call.MessageID
		e.sum = sha256.Sum256(call.JSON)
	case r.code == mapping.CodeRejected:
		if err != nil {
			l.t.Errorf("%s: mapping.Map refuses the record Segment is to reject: %v", l.name, err)
		}
		e.code = mapping.CodeRejected
	default:
		var merr *mapping.Error
		if err != nil && (!errors.As(err, &merr) || merr.Code != r.code) {
			l.t.Errorf("%s: mapping.Map gives %v for a %s record, the contract says %s", l.name, err, r.kind, r.code)
		}
		e.code = r.code
	}
	return e
}

// acked records that Kafka acknowledged these records (all in-sync
// replicas). Only acknowledged records are counted as produced.
func (l *ledger) acked(recs []genRecord, exps []expect) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for i, r := range recs {
		if _, dup := l.want[r.id]; dup {
			continue
		}
		e := exps[i]
		l.want[r.id] = e
		l.bytes += int64(len(r.value))
		if e.good {
			l.goodN++
			l.byMsgID[e.msgID] = r.id
		} else {
			l.badN++
			l.byCode[e.code]++
		}
	}
}

func (l *ledger) counts() (good, bad int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.goodN, l.badN
}

// endFault marks the moment the scenario's faults ended (and its producers
// stopped): recovery is measured from here.
func (l *ledger) endFault() {
	l.mu.Lock()
	l.faultEnd = time.Now()
	l.mu.Unlock()
}

// waitRecovered waits until every acknowledged record is delivered or
// dead-lettered and the committed offsets reach the end offsets, and
// returns how long that took from the end of the faults. It fails the test
// after within.
func (l *ledger) waitRecovered(within time.Duration) time.Duration {
	l.t.Helper()
	good, bad := l.counts()
	deadline := time.Now().Add(within)
	for {
		ok, status := l.complete(good, bad)
		if ok {
			return time.Since(l.faultEnd)
		}
		if time.Now().After(deadline) {
			l.t.Fatalf("%s: not recovered %s after the faults ended: %s", l.name, within, status)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// complete reports whether the pipeline has caught up with good and bad
// acknowledged records, and where it stands.
func (l *ledger) complete(good, bad int) (bool, string) {
	distinct := l.seg.Distinct()
	dlqEnd, err := l.kc.listEnd(l.dlq, l.dlqParts)
	if err != nil {
		return false, err.Error()
	}
	end, err := l.kc.listEnd(l.topic, l.partitions)
	if err != nil {
		return false, err.Error()
	}
	committed, err := l.kc.listCommitted(l.group, l.topic, l.partitions)
	if err != nil {
		return false, err.Error()
	}
	status := fmt.Sprintf("Segment holds %d of %d good records (%d copies), dead-letter topic %d copies for %d bad, committed %v, end %v",
		distinct, good, l.seg.Count(), offsetSum(dlqEnd), bad, committed, end)
	if distinct < good || offsetSum(dlqEnd) < int64(bad) || !equalOffsets(committed, end) {
		return false, status
	}
	if l.retry != "" {
		rEnd, err := l.kc.listEnd(l.retry, l.retryParts)
		if err != nil {
			return false, err.Error()
		}
		rCommitted, err := l.kc.listCommitted(l.group, l.retry, l.retryParts)
		if err != nil {
			return false, err.Error()
		}
		if !committedThrough(rCommitted, rEnd) {
			return false, fmt.Sprintf("%s; retry topic committed %v, end %v", status, rCommitted, rEnd)
		}
	}
	// Counts suffice; check that every bad record is really there (copies
	// of one record could make up for another's absence).
	dead, err := l.kc.readAll(l.dlq, l.dlqParts)
	if err != nil {
		return false, err.Error()
	}
	seen := map[string]bool{}
	for _, m := range dead {
		if id, ok := faultHeader(m, faultIDHeader); ok {
			seen[id] = true
		}
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	for id, e := range l.want {
		if !e.good && !seen[id] {
			return false, status + "; " + id + " not dead-lettered yet"
		}
	}
	return true, status
}

// ledgerReport is one scenario's published figures.
type ledgerReport struct {
	Scenario   string
	Profile    string
	Seconds    float64
	Produced   int
	Good       int
	Bad        int
	InKafka    int64
	Delivered  int
	Copies     int
	Duplicates int
	DupPercent float64
	// CutDuplicates are the duplicates that follow a copy whose answer
	// the test server cut off (its Cut fault): the sink cannot know the
	// batch arrived and sends it again, by design. The rest are replays:
	// records read again from Kafka after a restart or rebalance.
	CutDuplicates int
	ReplayPercent float64
	// KillReplays are the replays whose copy before came from a replica
	// SIGKILLed after sending it: what it delivered since its last commit,
	// which no consumer can keep from being read again. The other replays
	// followed a rebalance, a graceful exit or a refused commit, and are
	// what sticky assignment and the drain's commits keep down
	// (MoveReplayPercent).
	KillReplays       int
	MoveReplayPercent float64
	DeadLettered      int
	DLQCopies         int
	Lost              int
	CommittedEnd      bool
	PeakMB            float64
	Replicas          string
	RecoverySec       float64
	Requests          int
	ProducerErrs      int
	Codes             string
	CommitChecks      int
	Violations        int
	Unverified        int
}

// account reads back everything and checks the ledger's rules, then prints
// the figures and appends them to $FAULT_LEDGER_OUT. It runs after the
// replicas stopped.
func (l *ledger) account(f *fleet, recovery time.Duration) ledgerReport {
	l.t.Helper()
	t := l.t
	l.cw.stop()
	l.mu.Lock()
	defer l.mu.Unlock()
	rep := ledgerReport{
		Scenario: l.name, Profile: cmp.Or(profile.name, "suite"), Seconds: time.Since(l.started).Seconds(),
		Produced: len(l.want), Good: l.goodN, Bad: l.badN, RecoverySec: recovery.Seconds(),
		Requests: l.seg.Requests(), ProducerErrs: l.writeErr,
		CommitChecks: l.cw.checks, Violations: l.cw.violations, Unverified: l.cw.unknown,
	}

	// The source topic: every acknowledged record is there, nothing else.
	src, err := l.kc.readAll(l.topic, l.partitions)
	if err != nil {
		t.Fatalf("%s: read back the source topic: %v", l.name, err)
	}
	rep.InKafka = int64(len(src))
	where := map[string][]at{}
	for _, m := range src {
		id, _ := faultHeader(m, faultIDHeader)
		if _, ok := l.want[id]; !ok {
			// Written although no write of it was acknowledged: the
			// producer retries until one is, so this means a producer
			// gave up, which already failed the test.
			t.Errorf("%s: %d/%d has id %q that Kafka never acknowledged", l.name, m.Partition, m.Offset, id)
			continue
		}
		where[id] = append(where[id], at{m.Partition, m.Offset})
	}
	lostKafka := 0
	for id := range l.want {
		if len(where[id]) == 0 {
			lostKafka++
			if lostKafka <= 10 {
				t.Errorf("%s: record %s was acknowledged by Kafka but is not in the source topic", l.name, id)
			}
		}
	}

	// Segment: exactly the good records, every copy as the mapping made it.
	cc := newCopyCounter(l.started, l.killed)
	for _, m := range l.seg.Messages() {
		rep.Copies++
		id, ok := l.byMsgID[m.MessageID]
		if !ok {
			t.Errorf("%s: Segment received messageId %s that no acknowledged good record maps to: %s", l.name, m.MessageID, trimValue(m.Raw))
			continue
		}
		if sha256.Sum256(m.Raw) != l.want[id].sum {
			t.Errorf("%s: the copy of %s (messageId %s) differs from the JSON the mapping makes: %s", l.name, id, m.MessageID, trimValue(m.Raw))
		}
		if a := l.want[id].account; l.keys != nil && m.WriteKey != l.keys[a] {
			t.Errorf("%s: %s of account %s arrived with the write key of another source", l.name, id, a)
		}
		cc.add(m)
	}
	rep.Delivered, rep.Duplicates, rep.CutDuplicates, rep.KillReplays = len(cc.prev), cc.dups, cc.cutDups, cc.killReplays
	dupAt := cc.replaysAt

	// The dead-letter topic: every bad record with its code; no good one.
	dead, err := l.kc.readAll(l.dlq, l.dlqParts)
	if err != nil {
		t.Fatalf("%s: read back the dead-letter topic: %v", l.name, err)
	}
	rep.DLQCopies = len(dead)
	dlqSeen := map[string]bool{}
	for _, m := range dead {
		id, _ := faultHeader(m, faultIDHeader)
		e, ok := l.want[id]
		switch {
		case !ok:
			t.Errorf("%s: dead-letter copy with unknown id %q", l.name, id)
			continue
		case e.good:
			t.Errorf("%s: good record %s (%s) was dead-lettered: %s=%q", l.name, id, e.kind,
				consumer.HeaderError, headerOr(m, consumer.HeaderError))
			continue
		}
		if got := headerOr(m, consumer.HeaderErrorCode); got != string(e.code) {
			t.Errorf("%s: %s (%s) dead-lettered with code %q, want %q (%s)", l.name, id, e.kind, got, e.code, headerOr(m, consumer.HeaderError))
		}
		if got := headerOr(m, consumer.HeaderSourceTopic); got != l.topic {
			t.Errorf("%s: %s: %s = %q, want %q", l.name, id, consumer.HeaderSourceTopic, got, l.topic)
		}
		p, _ := strconv.Atoi(headerOr(m, consumer.HeaderSourcePartition))
		o, _ := strconv.ParseInt(headerOr(m, consumer.HeaderSourceOffset), 10, 64)
		found := false
		for _, c := range where[id] {
			found = found || (c == at{p, o})
		}
		if !found {
			t.Errorf("%s: %s: dead-letter source %d/%d is not where the record is (%v)", l.name, id, p, o, where[id])
		}
		dlqSeen[id] = true
	}
	rep.DeadLettered = len(dlqSeen)

	var missing []string
	for id, e := range l.want {
		switch {
		case e.good && !cc.delivered(e.msgID), !e.good && !dlqSeen[id]:
			rep.Lost++
			missing = append(missing, fmt.Sprintf("%s (%s)", id, e.kind))
		}
	}
	rep.Lost += lostKafka
	if len(missing) > 0 {
		sort.Strings(missing)
		t.Errorf("%s: %d records neither delivered nor dead-lettered, e.g. %v", l.name, len(missing), missing[:min(10, len(missing))])
	}
	if rep.Delivered != l.goodN {
		t.Errorf("%s: %d distinct messageIds at Segment, want the %d good records produced", l.name, rep.Delivered, l.goodN)
	}
	if rep.DeadLettered != l.badN {
		t.Errorf("%s: %d bad records dead-lettered, want %d", l.name, rep.DeadLettered, l.badN)
	}

	end, err := l.kc.listEnd(l.topic, l.partitions)
	if err != nil {
		t.Fatal(err)
	}
	committed, err := l.kc.listCommitted(l.group, l.topic, l.partitions)
	if err != nil {
		t.Fatal(err)
	}
	rep.CommittedEnd = equalOffsets(committed, end)
	if !rep.CommittedEnd {
		t.Errorf("%s: committed offsets %v, want the end offsets %v", l.name, committed, end)
	}

	if rep.Delivered > 0 {
		rep.DupPercent = 100 * float64(rep.Duplicates) / float64(rep.Delivered)
		rep.ReplayPercent = 100 * float64(rep.Duplicates-rep.CutDuplicates) / float64(rep.Delivered)
		rep.MoveReplayPercent = 100 * float64(rep.Duplicates-rep.CutDuplicates-rep.KillReplays) / float64(rep.Delivered)
	}
	var codes []string
	for _, c := range mapping.Codes() {
		if n := l.byCode[c]; n > 0 {
			codes = append(codes, fmt.Sprintf("%s %d", c, n))
		}
	}
	rep.Codes = strings.Join(codes, ", ")
	if f != nil {
		rep.PeakMB, rep.Replicas = f.peaks()
	}
	if len(dupAt) > 0 {
		buckets := make([]int, 0, len(dupAt))
		for b := range dupAt {
			buckets = append(buckets, b)
		}
		sort.Ints(buckets)
		parts := make([]string, len(buckets))
		for i, b := range buckets {
			parts[i] = fmt.Sprintf("%d–%ds: %d", 5*b, 5*b+5, dupAt[b])
		}
		l.notes = append(l.notes, "replays by arrival at Segment: "+strings.Join(parts, ", "))
	}
	l.publish(rep)
	return rep
}

// copyCounter tells the copies Segment received apart, in arrival order:
// a further copy of a messageId is a duplicate; one that follows a copy
// whose answer was cut off is a resend (cutDups), any other a replay from
// Kafka, and a replay whose copy before came from a replica SIGKILLed
// after sending it is one of killReplays.
type copyCounter struct {
	started time.Time
	killed  map[string]time.Time // SIGKILLed replicas by their URLFor name
	prev    map[string]segmenttest.Received
	cut     map[string]int // cut-off copies not yet followed by another copy

	dups, cutDups, killReplays int
	replaysAt                  map[int]int // replays by arrival, 5 s buckets from started
}

func newCopyCounter(started time.Time, killed map[string]time.Time) *copyCounter {
	return &copyCounter{started: started, killed: killed, prev: map[string]segmenttest.Received{}, cut: map[string]int{}, replaysAt: map[int]int{}}
}

// delivered reports whether a copy of messageId id arrived.
func (c *copyCounter) delivered(id string) bool {
	_, ok := c.prev[id]
	return ok
}

func (c *copyCounter) add(m segmenttest.Received) {
	if p, seen := c.prev[m.MessageID]; seen {
		c.dups++
		if c.cut[m.MessageID] > 0 {
			c.cut[m.MessageID]--
			c.cutDups++
		} else {
			c.replaysAt[int(m.At.Sub(c.started)/(5*time.Second))]++
			if k, ok := c.killed[p.Via]; ok && p.Via != "" && k.After(p.At) {
				c.killReplays++
			}
		}
	}
	if m.Cut {
		c.cut[m.MessageID]++
	}
	c.prev[m.MessageID] = segmenttest.Received{Via: m.Via, At: m.At}
}

// publish logs the report and appends it to $FAULT_LEDGER_OUT.
func (l *ledger) publish(r ledgerReport) {
	var b strings.Builder
	fmt.Fprintf(&b, "ledger %s (%s profile, %.0f s):\n", r.Scenario, r.Profile, r.Seconds)
	fmt.Fprintf(&b, "  produced (acked)   %d: %d good, %d bad (%s); %d records in Kafka, %.1f MB; %d producer retries\n",
		r.Produced, r.Good, r.Bad, r.Codes, r.InKafka, float64(l.bytes)/1e6, r.ProducerErrs)
	fmt.Fprintf(&b, "  delivered          %d distinct of %d good (%d copies, %d duplicates = %.2f%%, all identical)\n",
		r.Delivered, r.Good, r.Copies, r.Duplicates, r.DupPercent)
	fmt.Fprintf(&b, "  duplicates         %d resent after an answer cut off, %d replayed from Kafka = %.2f%%\n",
		r.CutDuplicates, r.Duplicates-r.CutDuplicates, r.ReplayPercent)
	fmt.Fprintf(&b, "  replays            %d behind a SIGKILLed replica, %d after moves without a kill = %.2f%%\n",
		r.KillReplays, r.Duplicates-r.CutDuplicates-r.KillReplays, r.MoveReplayPercent)
	fmt.Fprintf(&b, "  dead-lettered      %d of %d bad (%d copies)\n", r.DeadLettered, r.Bad, r.DLQCopies)
	fmt.Fprintf(&b, "  lost               %d\n", r.Lost)
	fmt.Fprintf(&b, "  committed == end   %v\n", r.CommittedEnd)
	fmt.Fprintf(&b, "  commits checked    %d moves of a committed offset, %d past an unacknowledged record (%d offsets not checkable)\n",
		r.CommitChecks, r.Violations, r.Unverified)
	fmt.Fprintf(&b, "  peak memory        %.1f MB max (VmHWM: %s)\n", r.PeakMB, r.Replicas)
	fmt.Fprintf(&b, "  recovery           %.1f s after the faults ended\n", r.RecoverySec)
	fmt.Fprintf(&b, "  Segment requests   %d\n", r.Requests)
	for _, n := range l.notes {
		fmt.Fprintf(&b, "  fault %s\n", n)
	}
	l.t.Log(b.String())
	reports.Lock()
	reports.list = append(reports.list, r)
	reports.Unlock()
}

// reports are the figures of every scenario of this test binary's run.
var reports struct {
	sync.Mutex
	list []ledgerReport
}

// ledgerTable renders the reports as a markdown table, in the order the
// scenarios finished.
func ledgerTable() string {
	reports.Lock()
	defer reports.Unlock()
	var b strings.Builder
	b.WriteString("| scenario | produced (good + bad) | delivered distinct | duplicates | of which replays | of those, without a SIGKILL | dead-lettered (copies) | lost | committed = end | commits checked (early) | peak RSS per replica (MB) | recovery |\n")
	b.WriteString("|---|---|---|---|---|---|---|---|---|---|---|---|\n")
	for _, r := range reports.list {
		fmt.Fprintf(&b, "| %s | %d (%d + %d) | %d | %d (%.2f%%) | %d (%.2f%%) | %d (%.2f%%) | %d (%d) | %d | %v | %d (%d) | %.0f max (%s) | %.1f s |\n",
			r.Scenario, r.Produced, r.Good, r.Bad, r.Delivered, r.Duplicates, r.DupPercent, r.Duplicates-r.CutDuplicates, r.ReplayPercent,
			r.Duplicates-r.CutDuplicates-r.KillReplays, r.MoveReplayPercent, r.DeadLettered, r.DLQCopies,
			r.Lost, r.CommittedEnd, r.CommitChecks, r.Violations, r.PeakMB, r.Replicas, r.RecoverySec)
	}
	return b.String()
}

// writeLedgerTable appends the table to $FAULT_LEDGER_OUT, if set.
func writeLedgerTable(t testing.TB) {
	table := ledgerTable()
	t.Log("ledger of this run:\n" + table)
	path := os.Getenv("FAULT_LEDGER_OUT")
	if path == "" {
		return
	}
	f, err := os.OpenFile(path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		t.Errorf("FAULT_LEDGER_OUT: %v", err)
		return
	}
	defer f.Close()
	if _, err := f.WriteString(table); err != nil {
		t.Errorf("FAULT_LEDGER_OUT: %v", err)
	}
}

// faultHeader returns the value of the last header named key.
func faultHeader(m kafka.Message, key string) (string, bool) {
	v, ok := "", false
	for _, h := range m.Headers {
		if h.Key == key {
			v, ok = string(h.Value), true
		}
	}
	return v, ok
}

func headerOr(m kafka.Message, key string) string {
	v, _ := faultHeader(m, key)
	return v
}

// offsetSum adds offsets up; -1 (nothing committed) counts as 0.
func offsetSum(offsets map[int]int64) int64 {
	var n int64
	for _, o := range offsets {
		n += max(o, 0)
	}
	return n
}

// at is where a record sits in its topic.
type at struct {
	partition int
	offset    int64
}

func trimValue(b []byte) string {
	if len(b) > 160 {
		return fmt.Sprintf("%q… (%d bytes)", b[:160], len(b))
	}
	return fmt.Sprintf("%q", b)
}

// kconn is how the test itself reaches Kafka: the brokers and, for the
// SCRAM listener, a transport and dialer with TLS and SASL. The helpers
// return errors and retry for a while instead of failing the test at once:
// during a broker fault a request can land on the dead node.
type kconn struct {
	brokers   []string
	transport *kafka.Transport // nil: kafka.DefaultTransport
	dialer    *kafka.Dialer    // nil: kafka.DefaultDialer
}

// plainConn reaches the brokers of KAFKA_BROKERS without TLS or SASL.
func plainConn(t testing.TB) kconn { return kconn{brokers: brokers(t)} }

func (kc kconn) client() *kafka.Client {
	c := &kafka.Client{Addr: kafka.TCP(kc.brokers...), Timeout: 10 * time.Second}
	if kc.transport != nil {
		c.Transport = kc.transport
	}
	return c
}

// writer returns a producer to topic with acks from all in-sync replicas.
func (kc kconn) writer(topic string) *kafka.Writer {
	w := &kafka.Writer{
		Addr:         kafka.TCP(kc.brokers...),
		Topic:        topic,
		Balancer:     &kafka.Hash{},
		RequiredAcks: kafka.RequireAll,
		MaxAttempts:  3,
		BatchSize:    1000,
		BatchBytes:   1040000, // under the broker's 1048588-byte batch limit
		BatchTimeout: 2 * time.Millisecond,
		WriteTimeout: 10 * time.Second,
	}
	if kc.transport != nil {
		w.Transport = kc.transport
	}
	return w
}

// createTopic creates a topic named after prefix (replicated three times
// on a 3-node cluster) and deletes it when the test ends.
func (kc kconn) createTopic(t testing.TB, prefix string, partitions int, configs ...kafka.ConfigEntry) string {
	t.Helper()
	topic := unique(prefix)
	rf := 1
	if len(kc.brokers) >= 3 {
		rf = 3
	}
	client := kc.client()
	_, err := retrying("create topic "+topic, func(ctx context.Context) (struct{}, error) {
		res, err := client.CreateTopics(ctx, &kafka.CreateTopicsRequest{Topics: []kafka.TopicConfig{{
			Topic: topic, NumPartitions: partitions, ReplicationFactor: rf, ConfigEntries: configs,
		}}})
		if err != nil {
			return struct{}{}, err
		}
		if err := res.Errors[topic]; err != nil && !errors.Is(err, kafka.TopicAlreadyExists) {
			return struct{}{}, err
		}
		return struct{}{}, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_, _ = client.DeleteTopics(ctx, &kafka.DeleteTopicsRequest{Topics: []string{topic}})
	})
	// Every partition has a leader and answers ListOffsets.
	if _, err := kc.listEnd(topic, partitions); err != nil {
		t.Fatal(err)
	}
	return topic
}

func retrying[T any](what string, f func(ctx context.Context) (T, error)) (T, error) {
	var zero T
	var err error
	for attempt := 0; attempt < 30; attempt++ {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		var v T
		v, err = f(ctx)
		cancel()
		if err == nil {
			return v, nil
		}
		time.Sleep(time.Second)
	}
	return zero, fmt.Errorf("%s: %w", what, err)
}

// listEnd returns the end offset of every partition of topic.
func (kc kconn) listEnd(topic string, partitions int) (map[int]int64, error) {
	client := kc.client()
	return retrying("list offsets of "+topic, func(ctx context.Context) (map[int]int64, error) {
		return consumer.EndOffsets(ctx, client, topic, partitions)
	})
}

// listCommitted returns the group's committed offsets (-1: none).
func (kc kconn) listCommitted(group, topic string, partitions int) (map[int]int64, error) {
	client := kc.client()
	return retrying("committed offsets of "+group, func(ctx context.Context) (map[int]int64, error) {
		return consumer.CommittedOffsets(ctx, client, group, topic, partitions)
	})
}

// readAll reads every record of topic up to its end offsets of now.
func (kc kconn) readAll(topic string, partitions int) ([]kafka.Message, error) {
	end, err := kc.listEnd(topic, partitions)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var out []kafka.Message
	for p := 0; p < partitions; p++ {
		if end[p] == 0 {
			continue
		}
		r := kafka.NewReader(kafka.ReaderConfig{
			Brokers: kc.brokers, Dialer: kc.dialer, Topic: topic, Partition: p, MaxBytes: 8 << 20, MaxWait: 100 * time.Millisecond,
		})
		if err := r.SetOffset(kafka.FirstOffset); err != nil {
			r.Close()
			return nil, err
		}
		for {
			m, err := r.FetchMessage(ctx)
			if err != nil {
				r.Close()
				return nil, fmt.Errorf("read %s/%d up to %d: %w", topic, p, end[p], err)
			}
			out = append(out, m)
			if m.Offset+1 >= end[p] {
				break
			}
		}
		r.Close()
	}
	return out, nil
}

// genRecord is one record a generator made, before it is produced.
type genRecord struct {
	id    string
	key   []byte
	value []byte
	kind  string
	code  mapping.Code // "" for a good record
	// account is the record's accountId in accounts mode, else "".
	account string
}

func (r genRecord) message() kafka.Message {
	return kafka.Message{Key: r.key, Value: r.value, Headers: []kafka.Header{{Key: faultIDHeader, Value: []byte(r.id)}}}
}

// goodRecord is a realistic good record of the seq-th event type.
func goodRecord(run string, seq int) genRecord { return goodRecordOf(run, seq, "") }

// goodRecordOf is goodRecord of an account (accounts mode); account ""
// leaves accountId out.
func goodRecordOf(run string, seq int, account string) genRecord {
	ev := faultEvents[seq%len(faultEvents)]
	id := fmt.Sprintf("%s-%d", run, seq)
	user := fmt.Sprintf("user-%d", seq%211)
	v := map[string]any{
		"type":      ev.typ,
		"id":        id,
		"userId":    user,
		ev.idField:  fmt.Sprintf("%s_%d", ev.prop, seq%7),
		"timestamp": time.Date(2026, 11, 29, 10, 0, 0, 0, time.UTC).Add(time.Duration(seq) * time.Millisecond).Format(time.RFC3339Nano),
		"companyId": "acme-42",
		"seq":       seq,
		"page":      map[string]any{"path": "/reports", "title": "Reports"},
	}
	if account != "" {
		v["accountId"] = account
	}
	addMetadata(v, ev.typ, seq)
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return genRecord{id: id, key: []byte(user), value: b, kind: ev.typ, account: account}
}

// faultEvents are the contract's 14 events: raw type, the id field each
// needs and its property name.
var faultEvents = []struct{ typ, idField, prop string }{
	{"tour_available", "tourId", "tour_id"},
	{"tour_start", "tourId", "tour_id"},
	{"tour_auto_start", "tourId", "tour_id"},
	{"tour_continue", "tourId", "tour_id"},
	{"tour_finish", "tourId", "tour_id"},
	{"tour_step", "tourId", "tour_id"},
	{"checklist_step_completed", "checklistId", "checklist_id"},
	{"checklist_finished", "checklistId", "checklist_id"},
	{"smart_tip_available", "smartTipId", "smart_tip_id"},
	{"smart_tip_open", "smartTipId", "smart_tip_id"},
	{"announcement_shown", "announcementId", "announcement_id"},
	{"announcement_action_clicked", "announcementId", "announcement_id"},
	{"announcement_closed", "announcementId", "announcement_id"},
	{"nps_widget_shown", "npsWidgetId", "nps_widget_id"},
}

// badKinds are the poison records, one or more per contract code. Each
// takes the record's id and returns its value.
var badKinds = []struct {
	kind  string
	code  mapping.Code
	value func(id string) []byte
}{
	{"truncated json", mapping.CodeInvalidJSON, func(id string) []byte {
		return []byte(`{"type":"tour_start","id":"` + id + `","userId":"u-1","tourId":`)
	}},
	{"not utf-8", mapping.CodeInvalidJSON, func(id string) []byte {
		return []byte("\xff\xfe{\"type\":\"tour_start\",\"id\":\"" + id + "\"}")
	}},
	{"invalid utf-8 in a string", mapping.CodeInvalidJSON, func(id string) []byte {
		return []byte(`{"type":"tour_start","id":"` + id + "\",\"userId\":\"u-\xc3\x28\",\"tourId\":\"t\"}")
	}},
	{"not json", mapping.CodeInvalidJSON, func(id string) []byte { return []byte("tour_start by " + id) }},
	{"deeply nested", mapping.CodeInvalidJSON, func(id string) []byte {
		return []byte(`{"type":"tour_start","id":"` + id + `","userId":"u-1","tourId":"t","n":` +
			strings.Repeat(`{"a":`, 5000) + "1" + strings.Repeat("}", 5000) + "}")
	}},
	{"array", mapping.CodeInvalidJSON, func(id string) []byte { return []byte(`[{"id":"` + id + `"}]`) }},
	{"unknown event", mapping.CodeUnknownEvent, func(id string) []byte {
		return []byte(`{"type":"tour_exploded","id":"` + id + `","userId":"u-1","tourId":"t"}`)
	}},
	{"missing property", mapping.CodeMissingProperty, func(id string) []byte {
		return []byte(`{"type":"tour_step","id":"` + id + `","userId":"u-1","metadata":{"stepIndex":1,"type":"next"}}`)
	}},
	{"invalid property", mapping.CodeInvalidProperty, func(id string) []byte {
		return []byte(`{"type":"tour_step","id":"` + id + `","userId":"u-1","tourId":"t","metadata":{"stepIndex":-1,"type":"next"}}`)
	}},
	{"duplicate keys", mapping.CodeInvalidProperty, func(id string) []byte {
		return []byte(`{"type":"tour_start","id":"` + id + `","userId":"u-1","tourId":"t1","tourId":"t2"}`)
	}},
	{"missing identity", mapping.CodeMissingIdentity, func(id string) []byte {
		return []byte(`{"type":"tour_start","id":"` + id + `","tourId":"t"}`)
	}},
	{"invalid timestamp", mapping.CodeInvalidTimestamp, func(id string) []byte {
		return []byte(`{"type":"tour_start","id":"` + id + `","userId":"u-1","tourId":"t","timestamp":"yesterday at noon"}`)
	}},
	{"huge string", mapping.CodeTooLarge, func(id string) []byte {
		return []byte(`{"type":"tour_start","id":"` + id + `","userId":"u-1","tourId":"t","notes":"` + strings.Repeat("lorem ipsum ", 5000) + `"}`)
	}},
	{"rejected by segment", mapping.CodeRejected, func(id string) []byte {
		return []byte(`{"type":"tour_start","id":"` + id + `","userId":"` + rejectPrefix + id + `","tourId":"t","timestamp":"2026-11-29T10:00:00Z"}`)
	}},
}

// badRecord is the n-th poison record.
func badRecord(run string, seq, n int) genRecord {
	k := badKinds[n%len(badKinds)]
	id := fmt.Sprintf("%s-%d", run, seq)
	return genRecord{id: id, key: []byte(fmt.Sprintf("user-%d", seq%211)), value: k.value(id), kind: k.kind, code: k.code}
}

// bigRecord is a too_large record of about size bytes: near the broker's
// 1 MB message limit, far over Segment's 32 KB.
func bigRecord(run string, seq, size int, key string) genRecord {
	id := fmt.Sprintf("%s-%d", run, seq)
	head := `{"type":"tour_start","id":"` + id + `","userId":"u-big","tourId":"t","blob":"`
	pad := max(size-len(head)-2, 0)
	v := make([]byte, 0, size)
	v = append(v, head...)
	v = append(v, bytes.Repeat([]byte("x"), pad)...)
	v = append(v, `"}`...)
	return genRecord{id: id, key: []byte(key), value: v, kind: fmt.Sprintf("%d KB value", size/1000), code: mapping.CodeTooLarge}
}
