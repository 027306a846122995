package integration

import (
	"context"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/produktly/produktly-segment/sink/segmenttest"
)

// TestCrashRecovery: SIGKILL mid-stream, twice, each time followed by a new
// process in the same group. The first crash hits a flowing stream: what was
// delivered and not yet committed arrives again, with the same messageId and
// the same JSON, so Segment drops the copy. The second hits while every
// Segment request hangs: the records they carry were fetched but never
// acknowledged, and must not have been committed. In the end every record
// has arrived and the group has committed to the end.
func TestCrashRecovery(t *testing.T) {
	t.Parallel()
	const n = 20000
	pl := newPipeline(t, 4)
	produce(t, pl.topic, records(unique("crash"), 0, n))
	good, _ := pl.mapSource()
	if len(good) != n {
		t.Fatalf("%d good source records, want %d", len(good), n)
	}

	// Small, slow requests: about 4000 records/s, so the kills land
	// mid-stream.
	pl.seg.SetLatency(20 * time.Millisecond)
	env := map[string]string{"SEGMENT_BATCH_SIZE": "20", "SEGMENT_CONCURRENCY": "4"}
	committed := func() map[int]int64 { return committedOffsets(t, pl.group, pl.topic, pl.partitions) }

	first := pl.start("first", env)
	waitFor(t, 60*time.Second, "a quarter of the records delivered", func() bool { return pl.seg.Distinct() >= n/4 }, nil)
	// Something committed, so the next process resumes mid-partition.
	waitFor(t, 30*time.Second, "a first commit", func() bool { return sum(committed()) > 0 }, nil)
	first.kill()
	t.Logf("first killed while flowing, %d delivered", pl.seg.Distinct())
	pl.checkCommitsAcknowledged(good)

	second := pl.start("second", env)
	waitFor(t, 60*time.Second, "half of the records delivered", func() bool { return pl.seg.Distinct() >= n/2 }, nil)
	// Every sender stuck in a request Segment does not answer, and the
	// commit ticker given time to (wrongly) move past their records.
	pl.seg.SetLatency(time.Minute)
	stalled := pl.seg.Requests()
	waitFor(t, 30*time.Second, "every sender stuck in a slow request", func() bool { return pl.seg.Requests() >= stalled+4 }, nil)
	stable := committed()
	waitFor(t, 30*time.Second, "commits to settle", func() bool {
		time.Sleep(time.Second) // five commit intervals
		now := committed()
		same := equalOffsets(now, stable)
		stable = now
		return same
	}, nil)
	second.kill()
	at := pl.seg.Distinct()
	t.Logf("second killed while Segment hung, %d delivered", at)
	pl.checkCommitsAcknowledged(good)
	if at >= n {
		t.Fatalf("all %d records were delivered before the second kill: the crashes were not mid-stream", n)
	}

	pl.seg.SetLatency(20 * time.Millisecond)
	pl.start("third", env)
	pl.waitDistinct(n, 120*time.Second)
	waitCommitted(t, pl.group, pl.topic, pl.partitions, 30*time.Second)
	dups := pl.checkDelivered(good)
	t.Logf("duplicates: %d (%d messages received for %d records)", dups, pl.seg.Count(), n)
	if d := pl.dlqCount(); d != 0 {
		t.Errorf("%d records dead-lettered, want 0", d)
	}
}

// TestRebalanceJoinLeave: two members share a 6-partition topic while
// records keep arriving; a third joins mid-stream and later one of the
// first two is stopped with SIGTERM (and exits 0). Every record arrives,
// duplicates only as exact copies, and the group commits to the end.
func TestRebalanceJoinLeave(t *testing.T) {
	t.Parallel()
	const n, perTick, tick = 30000, 100, 50 * time.Millisecond // 2000 records/s for 15 s
	pl := newPipeline(t, 6)
	run := unique("rebalance")

	// member-a is stopped while Segment is slower than its shutdown
	// timeout allows.
	a := pl.start("member-a", map[string]string{"SHUTDOWN_TIMEOUT": "3s"})
	b := pl.start("member-b", nil)
	a.waitReady(60 * time.Second)
	b.waitReady(60 * time.Second)

	// The producer: bounded and at a fixed rate, so the joins and leaves
	// below happen while records are arriving.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	type progress struct {
		sent int
		err  error
	}
	prog := make(chan progress, n/perTick+1) // never blocks the producer
	w := &kafka.Writer{
		Addr: kafka.TCP(brokers(t)...), Topic: pl.topic, Balancer: &kafka.Hash{},
		RequiredAcks: kafka.RequireAll, BatchSize: perTick, BatchTimeout: 5 * time.Millisecond,
	}
	done := make(chan struct{})
	t.Cleanup(func() {
		cancel()
		<-done
	})
	go func() {
		defer close(done)
		defer w.Close()
		defer close(prog)
		tk := time.NewTicker(tick)
		defer tk.Stop()
		for sent := 0; sent < n; sent += perTick {
			if err := w.WriteMessages(ctx, records(run, sent, perTick)...); err != nil {
				prog <- progress{sent, err}
				return
			}
			prog <- progress{sent + perTick, nil}
			select {
			case <-tk.C:
			case <-ctx.Done():
				return
			}
		}
	}()
	sent := 0
	produced := func(k int) {
		t.Helper()
		for sent < k {
			p, ok := <-prog
			if !ok {
				t.Fatalf("producer stopped after %d records", sent)
			}
			if p.err != nil {
				t.Fatalf("produce after %d records: %v", p.sent, p.err)
			}
			sent = p.sent
		}
	}

	// Segment turns slow just before each membership change, so the
	// members give up partitions with requests still in flight: only what
	// was acknowledged may be committed, the rest is read again by the
	// next owner.
	slow := func(d time.Duration) {
		t.Helper()
		pl.seg.SetLatency(d)
		before := pl.seg.Requests()
		waitFor(t, 30*time.Second, "requests stuck in the slow Segment", func() bool { return pl.seg.Requests() >= before+2 }, nil)
	}

	produced(n / 4)
	slow(20 * time.Second) // far longer than KAFKA_REVOKE_TIMEOUT
	c := pl.start("member-c", nil)
	c.waitReady(60 * time.Second)
	// The third member got a share: its generation has partitions.
	waitFor(t, 30*time.Second, "member-c to be assigned partitions", func() bool {
		return c.countLog(`"generation started"`, `"partitions":[`) > c.countLog(`"generation started"`, `"partitions":[]`)
	}, nil)
	pl.seg.SetLatency(0)

	produced(n * 3 / 5)
	slow(20 * time.Second) // far longer than member-a's SHUTDOWN_TIMEOUT
	a.term()
	a.mustExit(0, 3*time.Second+30*time.Second)
	pl.seg.SetLatency(0)
	produced(n)
	// member-b went through a generation for each change: start, the
	// join, the leave.
	waitFor(t, 30*time.Second, "member-b's third generation", func() bool { return b.countLog(`"generation started"`) >= 3 },
		func() string { return fmt.Sprintf("%d generations", b.countLog(`"generation started"`)) })
	t.Logf("producer done; generations: member-a %d, member-b %d, member-c %d",
		a.countLog(`"generation started"`), b.countLog(`"generation started"`), c.countLog(`"generation started"`))

	good, _ := pl.mapSource()
	if len(good) != n {
		t.Fatalf("%d good source records, want %d", len(good), n)
	}
	pl.waitDistinct(n, 120*time.Second)
	waitCommitted(t, pl.group, pl.topic, pl.partitions, 60*time.Second)
	dups := pl.checkDelivered(good)
	t.Logf("duplicates: %d (%d messages received for %d records)", dups, pl.seg.Count(), n)
	if d := pl.dlqCount(); d != 0 {
		t.Errorf("%d records dead-lettered, want 0", d)
	}
	for _, m := range []*proc{b, c} {
		if m.exited() {
			t.Errorf("%s exited: %v", m.name, m.state)
		}
	}
}

// TestCrashReplaysOnlyUnfinished: one batch Segment keeps refusing (503)
// holds its partition's commit point while everything after it is
// delivered. A SIGKILL then, and a new process in the group, must send
// again only the records that were never acknowledged: the commit's
// metadata names the acknowledged spans above the commit point, and the new
// owner skips them. Without it, every record after the stuck batch
// arrives twice.
func TestCrashReplaysOnlyUnfinished(t *testing.T) {
	t.Parallel()
	const n, batch = 4000, 20
	pl := newPipeline(t, 2)
	produce(t, pl.topic, records(unique("unfinished"), 0, n))
	good, _ := pl.mapSource()
	var stuck string
	for id, s := range good {
		if s.msg.Partition == 0 && s.msg.Offset == 100 {
			stuck = id
		}
	}
	if stuck == "" {
		t.Fatal("no record at 0/100")
	}
	pl.seg.FailMessages(http.StatusServiceUnavailable, func(m segmenttest.Received) bool { return m.MessageID == stuck })
	env := map[string]string{"SEGMENT_BATCH_SIZE": fmt.Sprint(batch)}

	first := pl.start("first", env)
	waitFor(t, 60*time.Second, "everything but the stuck batch delivered", func() bool { return pl.seg.Distinct() >= n-batch }, nil)
	waitFor(t, 30*time.Second, "the commits to name every delivered record", func() bool {
		c := committedAcked(t, pl.group, pl.topic, pl.partitions)
		var covered int64
		for _, a := range c {
			covered += max(a.Commit, 0)
			for _, s := range a.Spans {
				covered += s.To - s.From
			}
		}
		return covered >= int64(pl.seg.Distinct())
	}, func() string { return fmt.Sprint(committedAcked(t, pl.group, pl.topic, pl.partitions)) })
	first.kill()
	before := pl.seg.Count()
	pl.checkCommitsAcknowledged(good)
	if c := committedOffsets(t, pl.group, pl.topic, pl.partitions); c[0] > 100 {
		t.Fatalf("partition 0 committed past the stuck record: %v", c)
	}

	pl.seg.FailMessages(0, nil)
	pl.start("second", env)
	pl.waitDistinct(n, 60*time.Second)
	waitCommitted(t, pl.group, pl.topic, pl.partitions, 30*time.Second)
	dups := pl.checkDelivered(good)
	t.Logf("after the kill: %d messages received, %d of them duplicates; %d before", pl.seg.Count()-before, dups, before)
	// The stuck batch's records were never accepted, so they are no
	// duplicates; the others were committed as acknowledged before the
	// kill. Partition 0 holds about n/2 records after offset 100, which
	// all come again when the spans are ignored.
	if dups > batch {
		t.Errorf("%d duplicates after the restart, want at most %d", dups, batch)
	}
}
