package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
)

// TestShutdownWhileJoining: SIGKILL a replica, start a new one on the same
// group and send it SIGTERM while its JoinGroup is pending (the coordinator
// waits out the dead member's session). Everything is committed, nothing is
// in flight: the new replica must leave promptly with exit 0, not when the
// coordinator answers.
func TestShutdownWhileJoining(t *testing.T) {
	pl := newPipeline(t, 4)
	// A long session, so the JoinGroup stays pending far longer than the
	// prompt exit the test waits for.
	slow := map[string]string{
		"KAFKA_SESSION_TIMEOUT":   "45s",
		"KAFKA_REBALANCE_TIMEOUT": "45s",
	}
	run := unique("join")
	produce(t, pl.topic, records(run, 0, 200))
	a := pl.start("a", slow)
	a.waitReady(2 * time.Minute)
	pl.waitDistinct(200, 2*time.Minute)
	waitCommitted(t, pl.group, pl.topic, pl.partitions, time.Minute)
	a.kill()

	b := pl.start("b", slow)
	b.waitAlive(time.Minute)
	// The coordinator holds b's JoinGroup until a's session expires: the
	// group is rebalancing with b not yet in a generation.
	client := &kafka.Client{Addr: kafka.TCP(brokers(t)...), Timeout: 10 * time.Second}
	waitFor(t, 30*time.Second, "the group to wait for its dead member", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		resp, err := client.DescribeGroups(ctx, &kafka.DescribeGroupsRequest{GroupIDs: []string{pl.group}})
		return err == nil && len(resp.Groups) == 1 && resp.Groups[0].GroupState == "PreparingRebalance"
	}, nil)
	if code, _ := b.get("/readyz"); code == 200 {
		t.Fatal("b is ready although its JoinGroup should be pending")
	}
	termAt := time.Now()
	b.term()
	// Well inside the 45 s the coordinator would hold the JoinGroup, and
	// inside a Kubernetes grace period.
	b.mustExit(0, 15*time.Second)
	t.Logf("b exited %s after SIGTERM", time.Since(termAt).Round(100*time.Millisecond))
	if b.countLog("left the consumer group") != 1 {
		t.Error(`b did not log "left the consumer group"`)
	}
}

// TestShutdownDoesNotRejoin: a rebalance that ends the generation while a
// member drains for shutdown must not make it join the group again. The new
// member's first generation then holds every partition; had the draining
// member rejoined, it would have been given half of them first.
func TestShutdownDoesNotRejoin(t *testing.T) {
	pl := newPipeline(t, 4)
	// The session outlasts the drain, so the coordinator waits for the
	// draining member to rejoin rather than expiring it.
	env := map[string]string{"SHUTDOWN_TIMEOUT": "10s", "KAFKA_SESSION_TIMEOUT": "30s", "KAFKA_REBALANCE_TIMEOUT": "30s", "KAFKA_REVOKE_TIMEOUT": "5s"}
	run := unique("rejoin")
	produce(t, pl.topic, records(run, 0, 100))
	a := pl.start("a", env)
	a.waitReady(2 * time.Minute)
	pl.waitDistinct(100, 2*time.Minute)
	// Segment down: records stay in flight, so a's drain lasts its timeout.
	pl.seg.SetOutage(http.StatusServiceUnavailable)
	produce(t, pl.topic, records(run, 100, 100))
	waitFor(t, time.Minute, "records in flight at a", func() bool { return a.metric("produktly_segment_records_in_flight") > 0 }, nil)
	a.term()
	waitFor(t, time.Minute, "a draining", func() bool { return a.countLog("generation ending: draining", `"shutdown":true`) > 0 }, nil)
	b := pl.start("b", env)
	a.mustExit(0, time.Minute)
	pl.seg.ClearOutage()
	waitFor(t, time.Minute, "b's first generation", func() bool { return b.countLog("generation started") > 0 }, nil)
	for _, l := range b.logLines() {
		if !strings.Contains(l, "generation started") {
			continue
		}
		var entry struct {
			Partitions []int `json:"partitions"`
		}
		if err := json.Unmarshal([]byte(l), &entry); err != nil {
			t.Fatalf("log line %q: %v", l, err)
		}
		if len(entry.Partitions) != pl.partitions {
			t.Errorf("b's first generation has partitions %v, want all %d: the draining member rejoined the group", entry.Partitions, pl.partitions)
		}
		break
	}
	if n := a.countLog("generation started"); n != 1 {
		t.Errorf("a started %d generations, want 1", n)
	}
	pl.waitDistinct(200, 2*time.Minute)
}

// TestRollingRestartReplaysOnlyMoved restarts 3 replicas one after the
// other (SIGTERM, wait for the exit, start its replacement) while records
// arrive and Segment answers more slowly than KAFKA_REVOKE_TIMEOUT, so every
// rebalance finds records in flight. A partition that stays with its member
// keeps them (the log's "kept"); duplicates may only come from partitions
// that changed owner.
func TestRollingRestartReplaysOnlyMoved(t *testing.T) {
	pl := newPipeline(t, 6)
	run := unique("rolling")
	env := map[string]string{"KAFKA_REVOKE_TIMEOUT": "2s", "SHUTDOWN_TIMEOUT": "10s"}
	procs := []*proc{pl.start("r1", env), pl.start("r2", env), pl.start("r3", env)}
	for _, p := range procs {
		p.waitReady(2 * time.Minute)
	}
	ctx, cancel := context.WithCancel(context.Background())
	produced := make(chan int, 1)
	go func() {
		n := 0
		defer func() { produced <- n }()
		w := &kafka.Writer{Addr: kafka.TCP(brokers(t)...), Topic: pl.topic, Balancer: &kafka.RoundRobin{}, RequiredAcks: kafka.RequireAll, BatchTimeout: 5 * time.Millisecond}
		defer w.Close()
		tk := time.NewTicker(100 * time.Millisecond)
		defer tk.Stop()
		for {
			if err := w.WriteMessages(ctx, records(run, n, 30)...); err != nil {
				return
			}
			n += 30
			select {
			case <-ctx.Done():
				return
			case <-tk.C:
			}
		}
	}()
	// Slower than the revoke timeout, faster than the shutdown timeout:
	// the leaver drains everything; the others' drains time out.
	pl.seg.SetLatency(4 * time.Second)
	all := append([]*proc(nil), procs...)
	for i := range procs {
		procs[i].term()
		procs[i].mustExit(0, time.Minute)
		procs[i] = pl.start(fmt.Sprintf("r%d'", i+1), env)
		all = append(all, procs[i])
		procs[i].waitReady(2 * time.Minute)
	}
	cancel()
	n := <-produced
	pl.seg.SetLatency(0)
	good, _ := pl.mapSource()
	pl.waitDistinct(len(good), 2*time.Minute)
	waitCommitted(t, pl.group, pl.topic, pl.partitions, time.Minute)

	// Owners per generation, from every process's log.
	type genLine struct {
		Generation int32  `json:"generation"`
		Partitions []int  `json:"partitions"`
		Kept       []int  `json:"kept"`
		Message    string `json:"message"`
	}
	owner := map[int32]map[int]string{}
	for _, p := range all {
		var prev []int
		for _, l := range p.logLines() {
			var g genLine
			if json.Unmarshal([]byte(l), &g) != nil || g.Message != "generation started" {
				continue
			}
			if owner[g.Generation] == nil {
				owner[g.Generation] = map[int]string{}
			}
			for _, id := range g.Partitions {
				owner[g.Generation][id] = p.name
			}
			// A partition that stays with its member keeps its records.
			for _, id := range g.Partitions {
				if slices.Contains(prev, id) && !slices.Contains(g.Kept, id) {
					t.Errorf("%s generation %d: partition %d stayed but was not kept (kept %v)", p.name, g.Generation, id, g.Kept)
				}
			}
			prev = g.Partitions
		}
	}
	gens := make([]int32, 0, len(owner))
	for g := range owner {
		gens = append(gens, g)
	}
	slices.Sort(gens)
	moves := map[int]int{}
	for i := 1; i < len(gens); i++ {
		for id, o := range owner[gens[i]] {
			if before, ok := owner[gens[i-1]][id]; ok && before != o {
				moves[id]++
			}
		}
	}
	dups := map[int]int{}
	seen := map[string]bool{}
	for _, m := range pl.seg.Messages() {
		if seen[m.MessageID] {
			dups[good[m.MessageID].msg.Partition]++
		}
		seen[m.MessageID] = true
	}
	total := 0
	for id := range pl.partitions {
		total += dups[id]
		if dups[id] > 0 && moves[id] == 0 {
			t.Errorf("partition %d never changed owner but has %d duplicates", id, dups[id])
		}
	}
	t.Logf("%d records, %d duplicates (%.2f%%); per partition: moves %v, duplicates %v; %d generations",
		n, total, 100*float64(total)/float64(max(n, 1)), moves, dups, len(gens))
}
