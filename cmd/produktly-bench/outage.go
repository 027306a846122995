package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/produktly/produktly-segment/consumer"
)

// outage drains the backlog with contender key (the service at HEAD, in
// single-source or accounts mode) while every Segment request answers 503
// for o.outageFor, and samples the process's resident memory every second
// meanwhile: flat memory means the in-flight caps hold whatever the
// backlog. Then the outage ends, and the result's elapsed time is how long
// the service takes from there to commit every offset.
func outage(ctx context.Context, o options, client *kafka.Client, bl backlog, key string, log io.Writer) (result, error) {
	group := "bench-outage-" + key + "-" + bl.topic
	cmd, srv, err := contenderCmd(ctx, o, bl, key, group, nil)
	if err != nil {
		return result{}, err
	}
	defer srv.Close()
	srv.SetOutage(http.StatusServiceUnavailable)
	logf, err := os.Create(filepath.Join(o.logDir, "bench-outage-"+key+".log"))
	if err != nil {
		return result{}, err
	}
	defer logf.Close()
	cmd.Stdout, cmd.Stderr = logf, logf
	fmt.Fprintf(log, "outage %s: Segment answers 503 for %s...\n", key, o.outageFor)
	if err := cmd.Start(); err != nil {
		return result{}, err
	}
	stopped := false
	defer func() {
		if !stopped {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
	}()
	pid := cmd.Process.Pid
	var samples []int64 // VmRSS, once a second
	tick := time.NewTicker(time.Second)
	end := time.Now().Add(o.outageFor)
	for time.Now().Before(end) {
		select {
		case <-ctx.Done():
			tick.Stop()
			return result{}, ctx.Err()
		case <-tick.C:
			samples = append(samples, procStatus(pid, "VmRSS:"))
		}
	}
	tick.Stop()
	requests := srv.Requests()
	srv.ClearOutage()
	recovered := time.Now()
	for {
		// Caught up on the source topic is not delivered: in accounts
		// mode the accounts parked during the outage have records on the
		// retry topic still, delivered once their not-before time comes.
		if up, err := consumer.CaughtUp(ctx, client, group, bl.topic, o.partitions); err == nil && up && srv.Distinct() >= bl.good {
			break
		}
		if ctx.Err() != nil {
			return result{}, ctx.Err()
		}
		if time.Since(recovered) > o.drainTimeout {
			return result{}, fmt.Errorf("outage %s: %d of %d good records delivered, offsets committed or not, %s after the outage", key, srv.Distinct(), bl.good, o.drainTimeout)
		}
		time.Sleep(100 * time.Millisecond)
	}
	r := result{
		name:    fmt.Sprintf("outage, %s: Segment down for %s, then the rest of the backlog", key, o.outageFor),
		records: bl.good,
		bytes:   bl.bytes,
		elapsed: time.Since(recovered),
		peakRSS: procStatus(pid, "VmHWM:"),
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	stopped = true
	if err := cmd.Wait(); err != nil {
		return result{}, fmt.Errorf("outage %s: process exit: %w", key, err)
	}
	ru := cmd.ProcessState.SysUsage().(*syscall.Rusage)
	r.cpu = time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	r.note = fmt.Sprintf("resident memory during the outage by sixths: %s MB; %d requests refused; %d distinct delivered of %d good after it",
		sixths(samples), requests, srv.Distinct(), bl.good)
	fmt.Fprintf(log, "outage %s: %s\n", key, r.note)
	return r, nil
}

// sixths is the largest sample of each sixth of samples, in MB.
func sixths(samples []int64) string {
	if len(samples) == 0 {
		return "none"
	}
	var out []string
	for i := range 6 {
		lo, hi := i*len(samples)/6, (i+1)*len(samples)/6
		var m int64
		for _, s := range samples[lo:max(hi, lo+1)] {
			m = max(m, s)
		}
		out = append(out, fmt.Sprint(m>>20))
	}
	return strings.Join(out, " / ")
}
