package integration

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
)

// The fault suite drives the real binary as separate processes against the
// real broker (a 3-node cluster where broker faults are involved) and the
// segmenttest server, injects faults, and accounts for every record with
// the ledger. It runs only when FAULT_PROFILE names a profile:
//
//	scripts/faults.sh short   # CI: a few minutes
//	scripts/faults.sh long    # the published figures (docs/reliability.md)

// faultProfile sets the length and intensity of every scenario.
type faultProfile struct {
	name       string
	rate       int           // records per second each scenario produces
	window     time.Duration // how long faults and traffic last in one scenario
	outage     time.Duration // the Segment outage scenario's outage
	kills      int           // SIGKILLs in the crash scenario
	brokerDown time.Duration // how long a killed broker stays down
	brokerRuns int           // kill/restart cycles in the broker scenario
	allWindow  time.Duration // the all-at-once scenario's window
	allOutage  time.Duration // and its Segment outage
	accountOff time.Duration // how long one account's source fails in the accounts scenario
	recover    time.Duration // a scenario must recover within this
}

var profiles = map[string]faultProfile{
	"short": {name: "short", rate: 150, window: 25 * time.Second, outage: 15 * time.Second, kills: 3,
		brokerDown: 12 * time.Second, brokerRuns: 1, allWindow: 50 * time.Second, allOutage: 10 * time.Second,
		accountOff: 60 * time.Second, recover: 3 * time.Minute},
	"long": {name: "long", rate: 300, window: 4 * time.Minute, outage: 10 * time.Minute, kills: 12,
		brokerDown: 45 * time.Second, brokerRuns: 3, allWindow: 6 * time.Minute, allOutage: 90 * time.Second,
		accountOff: 5 * time.Minute, recover: 10 * time.Minute},
}

// profile is the profile of this run; set by faultsEnabled.
var profile faultProfile

// faultsEnabled skips the test unless FAULT_PROFILE names a profile.
func faultsEnabled(t *testing.T) {
	t.Helper()
	name := os.Getenv("FAULT_PROFILE")
	if name == "" {
		t.Skip("fault suite: set FAULT_PROFILE=short or long, or run `scripts/faults.sh short` " +
			"(starts a 3-node Kafka cluster, runs the scenarios, stops the cluster)")
	}
	p, ok := profiles[name]
	if !ok {
		t.Fatalf("FAULT_PROFILE=%q: want short or long", name)
	}
	profile = p
	brokers(t)
}

// faultRand is the scenario's random source; FAULT_SEED repeats a run.
func faultRand(t testing.TB) *rand.Rand {
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("FAULT_SEED"); s != "" {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("FAULT_SEED=%q: %v", s, err)
		}
		seed = v
	}
	t.Logf("FAULT_SEED=%d", seed)
	return rand.New(rand.NewPCG(seed, seed^0x5deece66d))
}

// sleepUntil sleeps until at.
func sleepUntil(at time.Time) { time.Sleep(time.Until(at)) }

// replica is one produktly-segment process of a fleet.
type replica struct {
	name  string
	p     *proc
	hwmKB atomic.Int64 // VmHWM sampled from /proc while it runs
}

// peakKB is the replica's peak resident set: VmHWM sampled every 200 ms
// while it ran and once more before every signal. The rusage Maxrss of an
// exited child is no use here: on Linux it starts from the RSS of the
// parent it was forked from (the test binary), which it inherits across
// exec.
func (r *replica) peakKB() int64 { return r.hwmKB.Load() }

func (r *replica) sample() {
	if r.p.exited() {
		return
	}
	if kb := vmHWM(r.p.cmd.Process.Pid); kb > r.hwmKB.Load() {
		r.hwmKB.Store(kb)
	}
}

// vmHWM reads the peak resident set size of pid in kB, 0 if unknown.
func vmHWM(pid int) int64 {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if v, ok := strings.CutPrefix(s.Text(), "VmHWM:"); ok {
			n, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return n
		}
	}
	return 0
}

// fleet is the replicas of one scenario's consumer group.
type fleet struct {
	t   *testing.T
	l   *ledger
	env map[string]string

	mu   sync.Mutex
	all  []*replica
	live []*replica
	seq  int
	stop chan struct{}
	done chan struct{}
}

// newFleet samples the memory of its replicas until the test ends.
func newFleet(t *testing.T, l *ledger, env map[string]string) *fleet {
	f := &fleet{t: t, l: l, env: env, stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(f.done)
		tick := time.NewTicker(200 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-f.stop:
				return
			case <-tick.C:
				f.mu.Lock()
				rs := append([]*replica(nil), f.live...)
				f.mu.Unlock()
				for _, r := range rs {
					r.sample()
				}
			}
		}
	}()
	t.Cleanup(func() {
		close(f.stop)
		<-f.done
	})
	return f
}

// environ is replica name's environment: short group timings so
// rebalances take seconds, and a short Segment timeout so hung requests
// are retried. Its Segment endpoints name it (URLFor), so that the ledger
// can tell which replica sent each copy.
func (f *fleet) environ(name string) map[string]string {
	env := map[string]string{
		"KAFKA_BROKERS":            strings.Join(f.l.kc.brokers, ","),
		"KAFKA_TOPIC":              f.l.topic,
		"KAFKA_GROUP_ID":           f.l.group,
		"KAFKA_DLQ_TOPIC":          f.l.dlq,
		"SEGMENT_WRITE_KEY":        faultWriteKey,
		"SEGMENT_ENDPOINT":         f.l.seg.URLFor(name),
		"SEGMENT_TIMEOUT":          "2s",
		"ADMIN_ADDR":               freeAddr(f.t),
		"LOG_LEVEL":                "info",
		"KAFKA_SESSION_TIMEOUT":    "6s",
		"KAFKA_HEARTBEAT_INTERVAL": "1s",
		"KAFKA_REBALANCE_TIMEOUT":  "10s",
		"KAFKA_REVOKE_TIMEOUT":     "5s",
		"KAFKA_COMMIT_INTERVAL":    "500ms",
		"SHUTDOWN_TIMEOUT":         "10s",
	}
	if f.l.integ != "" {
		// Accounts mode: INTEGRATIONS_TOPIC instead of SEGMENT_WRITE_KEY
		// (exactly one of them may be set).
		delete(env, "SEGMENT_WRITE_KEY")
		env["INTEGRATIONS_TOPIC"] = f.l.integ
		env["KAFKA_RETRY_TOPIC"] = f.l.retry
		env["SEGMENT_EU_ENDPOINT"] = f.l.seg.URLFor(name)
	}
	for k, v := range f.env {
		env[k] = v
	}
	return env
}

// start starts one more replica.
func (f *fleet) start() *replica {
	f.t.Helper()
	f.mu.Lock()
	f.seq++
	name := fmt.Sprintf("%s-r%d", f.l.name, f.seq)
	f.mu.Unlock()
	r := &replica{name: name, p: startProc(f.t, name, f.environ(name), "run")}
	f.mu.Lock()
	f.all = append(f.all, r)
	f.live = append(f.live, r)
	f.mu.Unlock()
	return r
}

func (f *fleet) remove(r *replica) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for i, x := range f.live {
		if x == r {
			f.live = append(f.live[:i], f.live[i+1:]...)
			return
		}
	}
}

func (f *fleet) size() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.live)
}

// pick returns a random live replica.
func (f *fleet) pick(rng *rand.Rand) *replica {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.live[rng.IntN(len(f.live))]
}

// crash SIGKILLs r: no drain, no commit, no leaving the group.
func (f *fleet) crash(r *replica) {
	f.t.Helper()
	// A replica started a moment ago may not have been sampled yet.
	for i := 0; i < 20 && r.hwmKB.Load() == 0; i++ {
		r.sample()
		time.Sleep(25 * time.Millisecond)
	}
	r.sample()
	r.p.kill()
	f.l.kill(r.name)
	f.remove(r)
	f.l.note("SIGKILL %s", r.name)
}

// stop sends SIGTERM to r, which must drain, commit, leave the group and
// exit 0 within its shutdown timeout plus a margin.
func (f *fleet) terminate(rs ...*replica) {
	f.t.Helper()
	for _, r := range rs {
		r.sample()
		r.p.term()
	}
	for _, r := range rs {
		r.p.mustExit(0, 60*time.Second)
		f.remove(r)
	}
	names := make([]string, len(rs))
	for i, r := range rs {
		names[i] = r.name
	}
	f.l.note("SIGTERM %s: exit 0", strings.Join(names, ", "))
}

// waitReady waits until every live replica answers /readyz 200.
func (f *fleet) waitReady(timeout time.Duration) {
	f.t.Helper()
	f.mu.Lock()
	rs := append([]*replica(nil), f.live...)
	f.mu.Unlock()
	for _, r := range rs {
		r.p.waitReady(timeout)
	}
}

// shutdown stops every live replica with SIGTERM (exit 0 required) and
// checks that no replica's log shows a panic. With FAULT_LOG_DIR set, the
// replicas' logs are copied there.
func (f *fleet) shutdown() {
	f.t.Helper()
	f.mu.Lock()
	rs := append([]*replica(nil), f.live...)
	f.mu.Unlock()
	if len(rs) > 0 {
		f.terminate(rs...)
	}
	dir := os.Getenv("FAULT_LOG_DIR")
	for _, r := range f.all {
		if dir != "" {
			if b, err := os.ReadFile(r.p.logf); err == nil {
				_ = os.WriteFile(filepath.Join(dir, r.name+".log"), b, 0o644)
			}
		}
		if n := r.p.countLog("panic"); n > 0 {
			f.t.Errorf("%s: %d log lines mention a panic", r.name, n)
		}
		if n := r.p.countLog("fatal error"); n > 0 {
			f.t.Errorf("%s: %d log lines show a fatal runtime error", r.name, n)
		}
	}
}

// peaks returns the largest peak RSS in MB and every replica's.
func (f *fleet) peaks() (float64, string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var top int64
	parts := make([]string, 0, len(f.all))
	for _, r := range f.all {
		kb := r.peakKB()
		top = max(top, kb)
		parts = append(parts, fmt.Sprintf("%s %.1f", strings.TrimPrefix(r.name, f.l.name+"-"), float64(kb)/1024))
	}
	return float64(top) / 1024, strings.Join(parts, ", ")
}

// traffic produces records at a steady rate until stopped, the way a
// careful producer does: acks from all in-sync replicas, and every record
// whose write failed is written again until it is acknowledged. Only
// acknowledged records go into the ledger.
//
// Records are queued per partition (by key, like kafka.Hash) and each
// partition has its own writer loop, so a partition whose leader is down
// holds back only its own records, as a buffering producer does; the others
// keep flowing.
type traffic struct {
	l      *ledger
	w      *kafka.Writer
	rate   int
	poison int           // every poison-th record is bad (0: none)
	big    time.Duration // a ~900 KB too_large record this often (0: none)
	run    string
	hash   kafka.Hash
	parts  []int

	seq    atomic.Int64
	nbad   atomic.Int64
	queues []chan []genRecord // per partition
	stopc  chan struct{}
	done   sync.WaitGroup
	failed atomic.Pointer[error]
}

// newTraffic returns a producer for l's topic; start it with start.
func newTraffic(l *ledger, rate, poison int, big time.Duration) *traffic {
	w := l.kc.writer(l.topic)
	// Records carry the partition the producer chose for them.
	w.Balancer = kafka.BalancerFunc(func(m kafka.Message, _ ...int) int { return m.Partition })
	w.Completion = func(msgs []kafka.Message, err error) {
		if err == nil {
			l.placed(msgs)
		}
	}
	tr := &traffic{
		l: l, rate: rate, poison: poison, big: big, run: unique("rec"),
		w:     w,
		stopc: make(chan struct{}),
	}
	for p := range l.partitions {
		tr.parts = append(tr.parts, p)
	}
	return tr
}

// message is r as a Kafka message, with the partition its key hashes to.
func (tr *traffic) message(r genRecord) kafka.Message {
	m := r.message()
	m.Partition = tr.hash.Balance(m, tr.parts...)
	return m
}

// start produces until stop.
func (tr *traffic) start() *traffic {
	tr.queues = make([]chan []genRecord, len(tr.parts))
	for p := range tr.queues {
		// Room for minutes of backlog while a partition's leader is down.
		tr.queues[p] = make(chan []genRecord, 100000)
		tr.done.Add(1)
		go func() {
			defer tr.done.Done()
			for recs := range tr.queues[p] {
				if tr.failed.Load() != nil {
					continue // drain
				}
				if err := tr.write(recs); err != nil {
					tr.failed.Store(&err)
				}
			}
		}()
	}
	tr.done.Add(1)
	go func() {
		defer tr.done.Done()
		defer func() {
			for _, q := range tr.queues {
				close(q)
			}
		}()
		const tick = 100 * time.Millisecond
		t := time.NewTicker(tick)
		defer t.Stop()
		lastBig := time.Now()
		carry := 0.0
		for {
			select {
			case <-tr.stopc:
				return
			case <-t.C:
			}
			carry += float64(tr.rate) * tick.Seconds()
			n := int(carry)
			carry -= float64(n)
			recs := make([]genRecord, 0, n+1)
			for range n {
				recs = append(recs, tr.next())
			}
			if tr.big > 0 && time.Since(lastBig) >= tr.big {
				lastBig = time.Now()
				seq := int(tr.seq.Add(1))
				recs = append(recs, bigRecord(tr.run, seq, 900_000, "big-"+strconv.Itoa(seq%3)))
			}
			byPart := make([][]genRecord, len(tr.parts))
			for _, r := range recs {
				p := tr.message(r).Partition
				byPart[p] = append(byPart[p], r)
			}
			for p, rs := range byPart {
				if len(rs) > 0 {
					tr.queues[p] <- rs
				}
			}
		}
	}()
	return tr
}

func (tr *traffic) next() genRecord {
	seq := int(tr.seq.Add(1))
	if tr.poison > 0 && seq%tr.poison == tr.poison/2 {
		return badRecord(tr.run, seq, int(tr.nbad.Add(1)-1))
	}
	if as := tr.l.accounts; len(as) > 0 {
		return goodRecordOf(tr.run, seq, as[seq%len(as)])
	}
	return goodRecord(tr.run, seq)
}

// write writes recs and retries the ones that failed until all are
// acknowledged, for up to five minutes.
func (tr *traffic) write(recs []genRecord) error {
	if len(recs) == 0 {
		return nil
	}
	exps := make([]expect, len(recs))
	for i, r := range recs {
		exps[i] = tr.l.expectOf(r)
	}
	deadline := time.Now().Add(5 * time.Minute)
	backoff := 100 * time.Millisecond
	for len(recs) > 0 {
		msgs := make([]kafka.Message, len(recs))
		for i, r := range recs {
			msgs[i] = tr.message(r)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		err := tr.w.WriteMessages(ctx, msgs...)
		cancel()
		if err == nil {
			tr.l.acked(recs, exps)
			return nil
		}
		var werrs kafka.WriteErrors
		var okR, failR []genRecord
		var okE, failE []expect
		if errors.As(err, &werrs) && len(werrs) == len(recs) {
			for i, e := range werrs {
				if e == nil {
					okR, okE = append(okR, recs[i]), append(okE, exps[i])
				} else {
					failR, failE = append(failR, recs[i]), append(failE, exps[i])
				}
			}
		} else {
			failR, failE = recs, exps
		}
		tr.l.acked(okR, okE)
		tr.l.mu.Lock()
		tr.l.writeErr++
		tr.l.mu.Unlock()
		recs, exps = failR, failE
		if time.Now().After(deadline) {
			return fmt.Errorf("%d records not acknowledged by Kafka after 5 minutes of retries: %w", len(recs), err)
		}
		time.Sleep(backoff)
		backoff = min(2*backoff, 2*time.Second)
	}
	return nil
}

// produceNow writes recs at once (a burst), retrying like the traffic.
func (tr *traffic) produceNow(recs ...genRecord) {
	tr.l.t.Helper()
	if err := tr.write(recs); err != nil {
		tr.l.t.Fatal(err)
	}
}

// stop stops producing once every queued record is acknowledged.
func (tr *traffic) stop() {
	tr.l.t.Helper()
	close(tr.stopc)
	tr.done.Wait()
	_ = tr.w.Close()
	if p := tr.failed.Load(); p != nil {
		tr.l.t.Fatalf("%s: producer: %v", tr.l.name, *p)
	}
}

// brokerNode is one node of the 3-node cluster: containers TestMain
// started (KAFKA_CLUSTER_NODES=3), or the jar cluster of
// `scripts/kafka.sh up cluster` on a machine without Docker.
type brokerNode int

// jarClusterBrokers are the fixed addresses of scripts/kafka.sh's cluster.
var jarClusterBrokers = []string{"127.0.0.1:31092", "127.0.0.1:32092", "127.0.0.1:33092"}

// clusterNodes returns the nodes of the cluster, or skips the test when
// the brokers are neither a 3-node container cluster nor scripts/kafka.sh's.
func clusterNodes(t *testing.T) []brokerNode {
	t.Helper()
	if kc := env.kafka; kc != nil {
		if len(kc.nodes) != 3 {
			t.Skipf("broker faults need the 3-node cluster (KAFKA_CLUSTER_NODES=3), not %d container(s)", len(kc.nodes))
		}
		return []brokerNode{1, 2, 3}
	}
	got := append([]string(nil), brokers(t)...)
	sort.Strings(got)
	if strings.Join(got, ",") != strings.Join(jarClusterBrokers, ",") {
		t.Skipf("broker faults need the 3-node cluster of containers (KAFKA_CLUSTER_NODES=3) or of `scripts/kafka.sh up cluster` (KAFKA_BROKERS=%s), not %v",
			strings.Join(jarClusterBrokers, ","), got)
	}
	return []brokerNode{1, 2, 3}
}

// kafkaScript runs scripts/kafka.sh with args.
func kafkaScript(t *testing.T, args ...string) {
	t.Helper()
	script, err := filepath.Abs(filepath.Join("..", "scripts", "kafka.sh"))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, script, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("kafka.sh %v: %v\n%s", args, err, out)
	}
}

// kill SIGKILLs the node: a container kill, or the jar broker's process.
func (n brokerNode) kill(t *testing.T, l *ledger) {
	t.Helper()
	if kc := env.kafka; kc != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		if err := kc.kill(ctx, int(n)); err != nil {
			t.Fatal(err)
		}
		l.note("SIGKILL broker %d (container kill)", n)
		return
	}
	kafkaScript(t, "kill", strconv.Itoa(int(n)), "cluster")
	l.note("SIGKILL broker %d", n)
}

// start starts the node again with its storage and waits for its port.
func (n brokerNode) start(t *testing.T, l *ledger) {
	t.Helper()
	if err := n.restart(l); err != nil {
		t.Fatal(err)
	}
}

// restart is start for any goroutine: it returns what went wrong.
func (n brokerNode) restart(l *ledger) error {
	if kc := env.kafka; kc != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
		defer cancel()
		if err := kc.start(ctx, int(n)); err != nil {
			return err
		}
		l.note("broker %d restarted (container start, port open)", n)
		return nil
	}
	script, err := filepath.Abs(filepath.Join("..", "scripts", "kafka.sh"))
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if out, err := exec.CommandContext(ctx, script, "start", strconv.Itoa(int(n)), "cluster").CombinedOutput(); err != nil {
		return fmt.Errorf("kafka.sh start %d cluster: %v\n%s", n, err, out)
	}
	l.note("broker %d restarted (port open)", n)
	return nil
}
