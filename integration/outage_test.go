package integration

import (
	"fmt"
	"net/http"
	"testing"
	"time"
)

// TestSegmentOutage: while Segment answers 503 nothing is committed, nothing
// is dead-lettered and the service stays alive; once Segment is back every
// record arrives and the group commits up to the end.
func TestSegmentOutage(t *testing.T) {
	t.Parallel()
	const n = 2000
	pl := newPipeline(t, 4)
	pl.seg.SetOutage(http.StatusServiceUnavailable)
	produce(t, pl.topic, records(unique("outage"), 0, n))

	p := pl.start("member", nil)
	// Segment is down from the start, so the service is alive but never
	// ready until it recovers.
	p.waitAlive(60 * time.Second)
	// The outage window only means something once the service is trying.
	waitFor(t, 30*time.Second, "requests to the failing Segment", func() bool { return pl.seg.Requests() >= 3 }, nil)
	before := pl.seg.Requests()

	window := time.Now().Add(8 * time.Second)
	for time.Now().Before(window) {
		for part, o := range committedOffsets(t, pl.group, pl.topic, pl.partitions) {
			if o > 0 {
				t.Fatalf("partition %d committed up to %d while Segment answered 503 to everything", part, o)
			}
		}
		if d := pl.dlqCount(); d != 0 {
			t.Fatalf("%d records dead-lettered during a Segment outage", d)
		}
		// A transport error (code 0) on a loaded machine is retried, as a
		// kubelet's probe would be; an answer other than 200 is not.
		code, body := p.get("/healthz")
		for try := 0; code == 0 && try < 3; try++ {
			code, body = p.get("/healthz")
		}
		if code != http.StatusOK {
			t.Fatalf("/healthz = %d %q during the outage, want 200", code, body)
		}
		if code, _ := p.get("/readyz"); code == http.StatusOK {
			t.Fatal("/readyz = 200 while Segment answers 503 to everything, want not ready")
		}
		if p.exited() {
			t.Fatalf("the service exited during the outage: %v", p.state)
		}
		time.Sleep(250 * time.Millisecond)
	}
	if pl.seg.Count() != 0 {
		t.Fatalf("Segment accepted %d messages during the outage", pl.seg.Count())
	}
	t.Logf("%d requests refused during the 8 s window", pl.seg.Requests()-before)

	pl.seg.ClearOutage()
	good, _ := pl.mapSource()
	if len(good) != n {
		t.Fatalf("%d good source records, want %d", len(good), n)
	}
	// Backoff grows to 30 s during the outage: allow for a full cycle.
	pl.waitDistinct(n, 90*time.Second)
	waitCommitted(t, pl.group, pl.topic, pl.partitions, 30*time.Second)
	t.Logf("duplicates: %d", pl.checkDelivered(good))
	if d := pl.dlqCount(); d != 0 {
		t.Errorf("%d records dead-lettered, want 0", d)
	}
}

// TestShutdownDuringOutage: SIGTERM while Segment is down. The service must
// exit 0 within its shutdown timeout (plus a margin), having committed
// nothing that Segment did not acknowledge; a restart with Segment healthy
// delivers the rest.
func TestShutdownDuringOutage(t *testing.T) {
	t.Parallel()
	const first, second = 3000, 3000
	pl := newPipeline(t, 4)
	run := unique("shutdown")
	// Slow and small requests keep the first records in flight long
	// enough to have some delivered and some not when Segment fails.
	pl.seg.SetLatency(20 * time.Millisecond)
	env := map[string]string{"SHUTDOWN_TIMEOUT": "5s", "SEGMENT_BATCH_SIZE": "20", "SEGMENT_CONCURRENCY": "2"}

	produce(t, pl.topic, records(run, 0, first))
	p := pl.start("member", env)
	waitFor(t, 60*time.Second, "some deliveries", func() bool { return pl.seg.Count() >= 300 }, nil)
	pl.seg.SetOutage(http.StatusServiceUnavailable)
	produce(t, pl.topic, records(run, first, second))
	// Stop it while records are in flight and being retried.
	reqs := pl.seg.Requests()
	waitFor(t, 30*time.Second, "retries against the failing Segment", func() bool { return pl.seg.Requests() >= reqs+2 }, nil)
	waitFor(t, 30*time.Second, "records in flight",
		func() bool { return p.metric("produktly_segment_records_in_flight") >= 50 },
		func() string { return fmt.Sprintf("in flight %v", p.metric("produktly_segment_records_in_flight")) })

	stopped := time.Now()
	p.term()
	// Draining: no longer ready (a load balancer or Kubernetes stops
	// counting it), still alive until it exits.
	waitFor(t, 5*time.Second, "/readyz 503 while draining", func() bool {
		code, _ := p.get("/readyz")
		return code == http.StatusServiceUnavailable || p.exited()
	}, nil)
	if p.exited() {
		t.Errorf("exited before /readyz was seen answering 503 while draining")
	}
	p.mustExit(0, 5*time.Second+10*time.Second)
	t.Logf("exited %s after SIGTERM", time.Since(stopped).Round(time.Millisecond))

	good, bad := pl.mapSource()
	if len(bad) != 0 || len(good) != first+second {
		t.Fatalf("source holds %d good and %d bad records, want %d good", len(good), len(bad), first+second)
	}
	behind := pl.checkCommitsAcknowledged(good)
	if !behind {
		t.Fatalf("every partition was committed to its end before SIGTERM: the test did not shut down during an outage")
	}
	if pl.seg.Distinct() >= first+second {
		t.Fatalf("all records were delivered before the shutdown")
	}

	// Restart with Segment healthy: everything arrives.
	pl.seg.ClearOutage()
	pl.seg.SetLatency(0)
	pl.start("restarted", nil)
	pl.waitDistinct(first+second, 90*time.Second)
	waitCommitted(t, pl.group, pl.topic, pl.partitions, 30*time.Second)
	t.Logf("duplicates: %d", pl.checkDelivered(good))
	if d := pl.dlqCount(); d != 0 {
		t.Errorf("%d records dead-lettered, want 0", d)
	}
}
