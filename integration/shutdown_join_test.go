package integration

import (
	"context"
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
