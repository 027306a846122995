package integration

import (
	"math/rand/v2"
	"net/http"
	"sort"
	"testing"
	"time"

	"github.com/produktly/produktly-segment/consumer"
	"github.com/produktly/produktly-segment/sink/segmenttest"
)

// TestFaults runs every fault scenario on its own (the ones that leave the
// brokers alone in parallel, each with its own topics, group and Segment),
// then the broker faults, then everything at once. Each ends with the
// ledger: every acknowledged record delivered or dead-lettered with its
// code, nothing lost, committed offsets at the end offsets.
func TestFaults(t *testing.T) {
	faultsEnabled(t)
	t.Logf("profile %+v, brokers %v", profile, brokers(t))
	binary(t) // build once, before the clocks start
	t.Cleanup(func() { writeLedgerTable(t) })
	t.Run("isolated", func(t *testing.T) {
		t.Run("flaky", func(t *testing.T) { t.Parallel(); faultFlaky(t) })
		t.Run("outage", func(t *testing.T) { t.Parallel(); faultOutage(t) })
		t.Run("crash", func(t *testing.T) { t.Parallel(); faultCrash(t) })
		t.Run("scaling", func(t *testing.T) { t.Parallel(); faultScaling(t) })
		t.Run("poison", func(t *testing.T) { t.Parallel(); faultPoison(t) })
		t.Run("oneaccount", func(t *testing.T) { t.Parallel(); faultOneAccount(t) })
	})
	t.Run("broker", faultBroker)
	t.Run("all", faultAll)
}

// scenario is one run: its ledger, replicas, producer and random source.
type scenario struct {
	t     *testing.T
	l     *ledger
	f     *fleet
	tr    *traffic
	rng   *rand.Rand
	start time.Time
}

func newScenario(t *testing.T, name string, env map[string]string) *scenario {
	l := newLedger(t, name, 6)
	return &scenario{t: t, l: l, f: newFleet(t, l, env), rng: faultRand(t)}
}

// run starts n replicas, waits until they are ready, and starts producing.
func (s *scenario) run(n, poison int, big time.Duration) {
	s.t.Helper()
	for range n {
		s.f.start()
	}
	s.f.waitReady(2 * time.Minute)
	s.tr = newTraffic(s.l, profile.rate, poison, big).start()
	s.start = time.Now()
}

// at sleeps until d after the traffic started.
func (s *scenario) at(d time.Duration) { sleepUntil(s.start.Add(d)) }

// finish stops the producer (the faults have just been cleared), waits for
// recovery, stops the replicas with SIGTERM and accounts for every record.
func (s *scenario) finish() ledgerReport {
	s.t.Helper()
	return s.finishWithin(profile.recover)
}

// finishWithin is finish with its own recovery limit.
func (s *scenario) finishWithin(limit time.Duration) ledgerReport {
	s.t.Helper()
	s.tr.stop()
	s.l.endFault()
	recovery := s.l.waitRecovered(limit)
	s.f.shutdown()
	return s.l.account(s.f, recovery)
}

// faultFlaky: 30% of Segment requests fail (500, 502, 503, 429 with
// Retry-After, a hang past the 2 s client timeout, a response cut off after
// Segment accepted the batch), for the whole window.
func faultFlaky(t *testing.T) {
	s := newScenario(t, "flaky", nil)
	s.run(2, 0, 0)
	s.l.seg.SetFaultRate(0.3, s.rng.Int64())
	s.l.note("Segment: 30%% of requests fail (500/502/503/429+Retry-After/hang/cut) for %s", profile.window)
	s.at(profile.window)
	s.l.seg.SetFaultRate(0, 0)
	s.l.note("Segment healthy")
	s.finish()
}

// faultOutage: Segment is down (503 for the first half, then connections
// closed without an answer) while the producers keep writing.
func faultOutage(t *testing.T) {
	s := newScenario(t, "outage", nil)
	s.run(1, 0, 0)
	s.at(5 * time.Second)
	s.l.seg.SetOutage(http.StatusServiceUnavailable)
	s.l.note("Segment outage begins: 503 to every request")
	delivered := s.l.seg.Count()
	s.at(5*time.Second + profile.outage/2)
	s.l.seg.SetOutage(segmenttest.Drop)
	s.l.note("outage continues: connections closed without an answer")
	s.at(5*time.Second + profile.outage)
	if n := s.l.seg.Count() - delivered; n > 2*1000 {
		t.Errorf("Segment accepted %d messages during its outage", n)
	}
	s.l.seg.ClearOutage()
	s.l.note("Segment back after %s", profile.outage)
	s.finish()
}

// faultCrash: three replicas; one of them, at random, is SIGKILLed at
// random moments and restarted a moment later.
func faultCrash(t *testing.T) {
	s := newScenario(t, "crash", nil)
	s.run(3, 0, 0)
	times := make([]time.Duration, profile.kills)
	for i := range times {
		times[i] = profile.window/10 + time.Duration(s.rng.Int64N(int64(profile.window*7/10)))
	}
	sort.Slice(times, func(i, j int) bool { return times[i] < times[j] })
	for _, d := range times {
		s.at(d)
		s.f.crash(s.f.pick(s.rng))
		time.Sleep(500*time.Millisecond + time.Duration(s.rng.Int64N(int64(2500*time.Millisecond))))
		r := s.f.start()
		s.l.note("started %s", r.name)
	}
	s.at(profile.window)
	s.finish()
}

// faultScaling: 1 → 3 → 1 replicas while traffic flows, scaling down by
// SIGTERM (exit 0 required); the long profile repeats the cycle.
func faultScaling(t *testing.T) {
	s := newScenario(t, "scaling", nil)
	s.run(1, 0, 0)
	cycles := max(1, int(profile.window/(90*time.Second)))
	cycle := profile.window / time.Duration(cycles)
	for c := range cycles {
		base := time.Duration(c) * cycle
		s.at(base + cycle/3)
		a, b := s.f.start(), s.f.start()
		s.l.note("scaled 1 → 3 (%s, %s)", a.name, b.name)
		s.at(base + 2*cycle/3)
		s.f.terminate(a, b)
		s.l.note("scaled 3 → 1")
	}
	s.at(profile.window)
	s.finish()
}

// faultPoison: every 10th record breaks the contract, cycling through
// every dead-letter code (Segment rejects one kind with 400); a ~900 KB
// record now and then, and once three of them back to back on one key.
func faultPoison(t *testing.T) {
	s := newScenario(t, "poison", nil)
	bigEvery := 5 * time.Second
	if profile.name == "long" {
		bigEvery = 20 * time.Second
	}
	s.run(1, 10, bigEvery)
	s.l.note("every 10th record bad (%d kinds, all codes); a 900 KB record every %s", len(badKinds), bigEvery)
	s.at(profile.window / 2)
	s.bigBurst()
	s.at(profile.window)
	s.finish()
}

// bigBurst produces three ~900 KB records with one key, back to back: they
// reach the dead-letter writer together.
func (s *scenario) bigBurst() {
	s.t.Helper()
	run := unique("burst")
	s.tr.produceNow(bigRecord(run, 1, 900_000, "big-burst"), bigRecord(run, 2, 900_000, "big-burst"), bigRecord(run, 3, 900_000, "big-burst"))
	s.l.note("three 900 KB records back to back on one key")
}

// faultBroker: a broker of the three is SIGKILLed while traffic flows and
// restarted after a while; the long profile does it to each node in turn.
// While it is down a third replica joins and is stopped with SIGTERM.
func faultBroker(t *testing.T) {
	nodes := clusterNodes(t)
	s := newScenario(t, "broker", nil)
	down := map[brokerNode]bool{}
	t.Cleanup(func() {
		for n, d := range down {
			if d {
				n.start(t, s.l)
			}
		}
	})
	s.run(2, 0, 0)
	order := append([]brokerNode(nil), nodes...)
	s.rng.Shuffle(len(order), func(i, j int) { order[i], order[j] = order[j], order[i] })
	for i := range profile.brokerRuns {
		n := order[i%len(order)]
		time.Sleep(5 * time.Second)
		n.kill(t, s.l)
		down[n] = true
		killed := time.Now()
		// A member joins and leaves (SIGTERM, exit 0) while the broker
		// is down: joining, draining and leaving the group must not hang
		// on the dead node.
		sleepUntil(killed.Add(profile.brokerDown / 4))
		extra := s.f.start()
		s.l.note("started %s while broker %d is down", extra.name, n)
		sleepUntil(killed.Add(profile.brokerDown * 3 / 5))
		s.f.terminate(extra)
		sleepUntil(killed.Add(profile.brokerDown))
		n.start(t, s.l)
		down[n] = false
	}
	s.finish() // the faults end when the last broker's port is open again
}

// faultAll: everything at once. Flaky Segment and poison records for the
// whole window; scaling 1 → 3, a broker killed and restarted, replicas
// SIGKILLed and restarted, a Segment outage, scaling back 3 → 1.
func faultAll(t *testing.T) {
	brokerFaults := len(brokers(t)) == 3
	if !brokerFaults {
		t.Log("not the 3-node cluster: running everything but the broker fault")
	}
	var nodes []brokerNode
	if brokerFaults {
		nodes = clusterNodes(t)
	}
	s := newScenario(t, "all", nil)
	down := map[brokerNode]bool{}
	// The killed broker is restarted in the background: a restart takes
	// 5–20 s on a busy machine, and the schedule (the outage's end, the
	// burst, the crash and the scale-down) must not slip behind it.
	var restarted chan error
	t.Cleanup(func() {
		if restarted != nil {
			<-restarted
			return
		}
		for n, d := range down {
			if d {
				n.start(t, s.l)
			}
		}
	})
	w := profile.allWindow
	bigEvery := 10 * time.Second
	if profile.name == "long" {
		bigEvery = 30 * time.Second
	}
	s.run(1, 20, bigEvery)
	s.l.seg.SetFaultRate(0.3, s.rng.Int64())
	s.l.note("Segment 30%% faults and every 20th record bad, whole window of %s", w)

	s.at(w * 10 / 100)
	a, b := s.f.start(), s.f.start()
	s.l.note("scaled 1 → 3 (%s, %s)", a.name, b.name)
	var n brokerNode
	if brokerFaults {
		s.at(w * 20 / 100)
		n = nodes[s.rng.IntN(len(nodes))]
		n.kill(t, s.l)
		down[n] = true
	}
	s.at(w * 30 / 100)
	s.f.crash(s.f.pick(s.rng))
	time.Sleep(time.Second)
	s.l.note("started %s", s.f.start().name)
	s.at(w * 35 / 100)
	s.l.seg.SetOutage(http.StatusServiceUnavailable)
	s.l.note("Segment outage for %s", profile.allOutage)
	if brokerFaults {
		s.at(w * 45 / 100)
		restarted = make(chan error, 1)
		go func() { restarted <- n.restart(s.l) }()
	}
	s.at(w*35/100 + profile.allOutage)
	s.l.seg.ClearOutage()
	s.l.note("Segment outage over (random faults continue)")
	s.at(w * 50 / 100)
	s.bigBurst()
	s.at(w * 60 / 100)
	s.f.crash(s.f.pick(s.rng))
	time.Sleep(2 * time.Second)
	s.l.note("started %s", s.f.start().name)
	s.at(w * 75 / 100)
	for s.f.size() > 1 {
		s.f.terminate(s.f.pick(s.rng))
	}
	s.l.note("scaled 3 → 1")
	s.at(w)
	s.l.seg.SetFaultRate(0, 0)
	s.l.note("Segment healthy")
	if restarted != nil {
		err := <-restarted
		restarted = nil
		if err != nil {
			t.Fatal(err)
		}
		down[n] = false
	}
	s.finish()
}

// faultOneAccount (accounts mode, contract v2): 50 accounts with their own
// write keys; one account's source answers 503 for profile.accountOff
// while the others flow, so it is parked after ACCOUNT_PARK_AFTER (10 s)
// and its records go through the retry topic. While records are parked a
// replica is SIGKILLed and restarted. Besides the ledger's rules, every
// copy arrives with its own account's key, a commit may pass a record
// only once it is delivered or parked, the retry topic's offsets are
// committed to its end, and no healthy account's record is parked.
func faultOneAccount(t *testing.T) {
	l := newAccountsLedger(t, "oneaccount", 6, 50)
	s := &scenario{t: t, l: l, f: newFleet(t, l, map[string]string{"ACCOUNT_PARK_AFTER": "10s"}), rng: faultRand(t)}
	failing := l.accounts[s.rng.IntN(len(l.accounts))]
	s.run(2, 0, 0)
	s.at(10 * time.Second)
	l.seg.FailKey(l.keys[failing], http.StatusServiceUnavailable, 0)
	l.note("account %s: its source answers 503 for %s (49 others healthy)", failing, profile.accountOff)
	failStart := time.Now()
	// SIGKILL a replica once records are parked, half-way through.
	waitFor(t, profile.accountOff, "records in the retry topic", func() bool {
		end, err := l.kc.listEnd(l.retry, l.retryParts)
		return err == nil && offsetSum(end) > 0
	}, nil)
	l.note("records of %s in the retry topic %.1f s after its failure began", failing, time.Since(failStart).Seconds())
	sleepUntil(failStart.Add(profile.accountOff / 2))
	s.f.crash(s.f.pick(s.rng))
	time.Sleep(time.Second + time.Duration(s.rng.Int64N(int64(2*time.Second))))
	l.note("started %s", s.f.start().name)
	sleepUntil(failStart.Add(profile.accountOff))
	l.seg.ClearKey(l.keys[failing])
	l.note("account %s healthy again", failing)
	s.at(10*time.Second + profile.accountOff + 10*time.Second)
	// A record parked late in a long failure waits out its current delay
	// (doubling per attempt, at most 10 minutes) before it comes back.
	s.finishWithin(profile.recover + 10*time.Minute)

	parked := map[string]int{}
	copies, err := l.kc.readAll(l.retry, l.retryParts)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range copies {
		parked[headerOr(m, consumer.HeaderRetryAccount)]++
	}
	for a, n := range parked {
		if a != failing {
			t.Errorf("oneaccount: %d records of the healthy account %s were parked", n, a)
		}
	}
	if parked[failing] == 0 {
		t.Errorf("oneaccount: no record of %s in the retry topic", failing)
	}
	t.Logf("oneaccount: %d retry-topic copies of %s", parked[failing], failing)
}
