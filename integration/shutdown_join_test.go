package integration

import (
	"context"
	"encoding/json"
	"net/http"
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
