package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/produktly/produktly-segment/consumer"
	"github.com/produktly/produktly-segment/mapping"
	"github.com/produktly/produktly-segment/sink/segmenttest"
)

// result is one scenario's figures.
type result struct {
	name     string
	records  int
	bytes    int64
	elapsed  time.Duration
	cpu      time.Duration
	peakRSS  int64 // bytes
	p50, p99 time.Duration
	note     string
}

func (r result) rate() float64 { return float64(r.records) / r.elapsed.Seconds() }
func (r result) mbps() float64 { return float64(r.bytes) / 1e6 / r.elapsed.Seconds() }
func (r result) cpuPerMillion() float64 {
	return r.cpu.Seconds() / (float64(r.records) / 1e6)
}

const writeKey = "bench-write-key"

func bench(ctx context.Context, o options, log io.Writer) ([]result, error) {
	var results []result
	topic := fmt.Sprintf("bench-%d", time.Now().Unix())
	client := &kafka.Client{Addr: kafka.TCP(o.brokers...), Timeout: 30 * time.Second}
	if err := createTopics(ctx, client, o.partitions, topic, topic+".dlq"); err != nil {
		return nil, err
	}
	fmt.Fprintf(log, "preloading %d records into %s (%d partitions)...\n", o.records, topic, o.partitions)
	start := time.Now()
	bytes, good, err := preload(ctx, o, topic)
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(log, "preloaded %d records (%d good, %.0f MB) in %s\n", o.records, good, float64(bytes)/1e6, time.Since(start).Round(time.Millisecond))

	if o.scenarios["ceiling"] {
		self, err := os.Executable()
		if err != nil {
			return results, err
		}
		group := "bench-ceiling-" + topic
		cmd := exec.CommandContext(ctx, self, "ceiling", "-brokers", strings.Join(o.brokers, ","), "-topic", topic, "-group", group)
		r, err := drain(ctx, o, client, cmd, topic, group, filepath.Join(o.logDir, "bench-ceiling.log"))
		if err != nil {
			return results, fmt.Errorf("ceiling: %w", err)
		}
		r.name, r.bytes = "ceiling: kafka-go consumer group, fetch + commit", bytes
		results = append(results, r)
		fmt.Fprintf(log, "ceiling: %.0f records/s\n", r.rate())
	}
	for _, sc := range []struct {
		key     string
		name    string
		latency time.Duration
	}{
		{"service", "service, Segment answers at once", 0},
		{"latency", fmt.Sprintf("service, Segment adds %s per request", o.latency), o.latency},
	} {
		if !o.scenarios[sc.key] {
			continue
		}
		srv := segmenttest.NewServer(writeKey, segmenttest.WithoutBodies())
		srv.SetLatency(sc.latency)
		group := "bench-" + sc.key + "-" + topic
		cmd, err := serviceCmd(ctx, o, topic, group, srv.URL())
		if err != nil {
			srv.Close()
			return results, err
		}
		r, err := drain(ctx, o, client, cmd, topic, group, filepath.Join(o.logDir, "bench-"+sc.key+".log"))
		delivered := srv.Distinct()
		srv.Close()
		if err != nil {
			return results, fmt.Errorf("%s: %w", sc.key, err)
		}
		r.name, r.bytes = sc.name, bytes
		r.note = fmt.Sprintf("%d distinct delivered of %d good", delivered, good)
		results = append(results, r)
		fmt.Fprintf(log, "%s: %.0f records/s (%s)\n", sc.key, r.rate(), r.note)
	}
	if o.scenarios["live"] {
		r, err := live(ctx, o, client, log)
		if err != nil {
			return results, fmt.Errorf("live: %w", err)
		}
		results = append(results, r)
	}
	return results, nil
}

func createTopics(ctx context.Context, client *kafka.Client, partitions int, topics ...string) error {
	req := &kafka.CreateTopicsRequest{}
	for _, t := range topics {
		req.Topics = append(req.Topics, kafka.TopicConfig{Topic: t, NumPartitions: partitions, ReplicationFactor: 1})
	}
	res, err := client.CreateTopics(ctx, req)
	if err != nil {
		return fmt.Errorf("create topics: %w", err)
	}
	for t, err := range res.Errors {
		if err != nil {
			return fmt.Errorf("create topic %s: %w", t, err)
		}
	}
	time.Sleep(time.Second) // leaders elected
	return nil
}

// preload writes o.records records and returns their value bytes and how
// many are good.
func preload(ctx context.Context, o options, topic string) (int64, int, error) {
	w := &kafka.Writer{
		Addr: kafka.TCP(o.brokers...), Topic: topic, Balancer: &kafka.Hash{},
		RequiredAcks: kafka.RequireOne, BatchSize: 5000, BatchBytes: 4 << 20, BatchTimeout: 10 * time.Millisecond,
	}
	defer w.Close()
	gen := newRecordGen(1, o.badShare)
	var bytes int64
	good := 0
	batch := make([]kafka.Message, 0, 20000)
	now := time.Now()
	for i := 0; i < o.records; i++ {
		k, v, ok := gen.next(now)
		if ok {
			good++
		}
		bytes += int64(len(v))
		batch = append(batch, kafka.Message{Key: k, Value: v})
		if len(batch) == cap(batch) || i == o.records-1 {
			if err := w.WriteMessages(ctx, batch...); err != nil {
				return 0, 0, fmt.Errorf("preload: %w", err)
			}
			batch = batch[:0]
		}
	}
	return bytes, good, nil
}

func serviceCmd(ctx context.Context, o options, topic, group, endpoint string) (*exec.Cmd, error) {
	admin, err := freeAddr()
	if err != nil {
		return nil, err
	}
	cmd := exec.CommandContext(ctx, o.binary, "run")
	cmd.Env = append(os.Environ(),
		"KAFKA_BROKERS="+strings.Join(o.brokers, ","),
		"KAFKA_TOPIC="+topic,
		"KAFKA_GROUP_ID="+group,
		"SEGMENT_WRITE_KEY="+writeKey,
		"SEGMENT_ENDPOINT="+endpoint,
		"ADMIN_ADDR="+admin,
		"LOG_LEVEL=info",
	)
	if o.concurrency > 0 {
		cmd.Env = append(cmd.Env, fmt.Sprintf("SEGMENT_CONCURRENCY=%d", o.concurrency))
	}
	if o.batchSize > 0 {
		cmd.Env = append(cmd.Env, fmt.Sprintf("SEGMENT_BATCH_SIZE=%d", o.batchSize))
	}
	return cmd, nil
}

// drain starts cmd, waits until group has committed every offset of topic,
// stops it with SIGTERM and returns the elapsed time and its resource use.
func drain(ctx context.Context, o options, client *kafka.Client, cmd *exec.Cmd, topic, group, logPath string) (result, error) {
	ends, err := consumer.EndOffsets(ctx, client, topic, o.partitions)
	if err != nil {
		return result{}, err
	}
	total := 0
	for _, e := range ends {
		total += int(e)
	}
	logf, err := os.Create(logPath)
	if err != nil {
		return result{}, err
	}
	defer logf.Close()
	cmd.Stdout, cmd.Stderr = logf, logf
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return result{}, err
	}
	var peak int64
	var elapsed time.Duration
	for {
		if up, err := consumer.CaughtUp(ctx, client, group, topic, o.partitions); err == nil && up {
			elapsed = time.Since(start)
			break
		}
		if hwm := peakRSS(cmd.Process.Pid); hwm > peak {
			peak = hwm
		}
		if ctx.Err() != nil {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
			return result{}, ctx.Err()
		}
		time.Sleep(100 * time.Millisecond)
	}
	peak = max(peak, peakRSS(cmd.Process.Pid))
	_ = cmd.Process.Signal(syscall.SIGTERM)
	if err := cmd.Wait(); err != nil {
		return result{}, fmt.Errorf("process exit: %w (log %s)", err, logPath)
	}
	ru := cmd.ProcessState.SysUsage().(*syscall.Rusage)
	return result{
		records: total,
		elapsed: elapsed,
		cpu:     time.Duration(ru.Utime.Nano() + ru.Stime.Nano()),
		peakRSS: peak,
	}, nil
}

// peakRSS reads the peak resident set (VmHWM) of a running process. The
// rusage of a child is no use for this: Linux carries the parent's peak
// over the fork into the child's maxrss.
func peakRSS(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			var kb int64
			fmt.Sscan(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), &kb)
			return kb * 1024
		}
	}
	return 0
}

// live runs the service on a fresh topic, produces at o.liveRate for
// o.liveFor and measures latency from each record's timestamp to the
// moment the test server received it.
func live(ctx context.Context, o options, client *kafka.Client, log io.Writer) (result, error) {
	topic := fmt.Sprintf("bench-live-%d", time.Now().Unix())
	if err := createTopics(ctx, client, o.partitions, topic, topic+".dlq"); err != nil {
		return result{}, err
	}
	srv := segmenttest.NewServer(writeKey, segmenttest.WithoutBodies())
	defer srv.Close()
	group := "bench-live-" + topic
	cmd, err := serviceCmd(ctx, o, topic, group, srv.URL())
	if err != nil {
		return result{}, err
	}
	admin := envOf(cmd, "ADMIN_ADDR")
	logf, err := os.Create(filepath.Join(o.logDir, "bench-live.log"))
	if err != nil {
		return result{}, err
	}
	defer logf.Close()
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		return result{}, err
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	if err := waitReady(ctx, admin, 60*time.Second); err != nil {
		return result{}, err
	}
	time.Sleep(2 * time.Second) // partitions assigned and fetching

	fmt.Fprintf(log, "live: producing %d records/s for %s...\n", o.liveRate, o.liveFor)
	sent := map[string]time.Time{} // messageId -> record timestamp
	var mu sync.Mutex
	w := &kafka.Writer{
		Addr: kafka.TCP(o.brokers...), Topic: topic, Balancer: &kafka.Hash{},
		RequiredAcks: kafka.RequireOne, BatchSize: 1000, BatchTimeout: time.Millisecond,
	}
	defer w.Close()
	gen := newRecordGen(2, 0)
	tick := 10 * time.Millisecond
	per := max(o.liveRate*int(tick)/int(time.Second), 1)
	t := time.NewTicker(tick)
	deadline := time.Now().Add(o.liveFor)
	var (
		bytes  int64
		n      int
		writes sync.WaitGroup
		failed atomic.Int64
	)
	for time.Now().Before(deadline) {
		<-t.C
		now := time.Now()
		msgs := make([]kafka.Message, per)
		for i := range msgs {
			k, v, _ := gen.next(now)
			msgs[i] = kafka.Message{Key: k, Value: v, Time: now}
			bytes += int64(len(v))
			call, err := mapping.Map(mapping.Record{Value: v, Time: now})
			if err != nil {
				return result{}, fmt.Errorf("generated record does not map: %w", err)
			}
			mu.Lock()
			sent[call.MessageID] = now
			mu.Unlock()
		}
		n += per
		writes.Go(func() {
			if err := w.WriteMessages(ctx, msgs...); err != nil {
				failed.Add(int64(len(msgs)))
			}
		})
	}
	t.Stop()
	writes.Wait()
	if f := failed.Load(); f > 0 {
		return result{}, fmt.Errorf("%d live records could not be produced", f)
	}
	start := deadline.Add(-o.liveFor)
	for srv.Distinct() < n {
		if ctx.Err() != nil || time.Since(deadline) > 2*time.Minute {
			return result{}, fmt.Errorf("only %d of %d records arrived", srv.Distinct(), n)
		}
		time.Sleep(100 * time.Millisecond)
	}
	var lat []time.Duration
	seen := map[string]bool{}
	for _, m := range srv.Messages() {
		if at, ok := sent[m.MessageID]; ok && !seen[m.MessageID] {
			seen[m.MessageID] = true
			lat = append(lat, m.At.Sub(at))
		}
	}
	slices.Sort(lat)
	r := result{
		name: fmt.Sprintf("live: %d records/s produced for %s", o.liveRate, o.liveFor), records: n, bytes: bytes,
		elapsed: time.Since(start),
	}
	if len(lat) > 0 {
		r.p50, r.p99 = lat[len(lat)/2], lat[len(lat)*99/100]
	}
	r.peakRSS = peakRSS(cmd.Process.Pid)
	_ = cmd.Process.Signal(syscall.SIGTERM)
	if err := cmd.Wait(); err == nil {
		ru := cmd.ProcessState.SysUsage().(*syscall.Rusage)
		r.cpu = time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	fmt.Fprintf(log, "live: p50 %s p99 %s over %d records\n", r.p50, r.p99, len(lat))
	return r, nil
}

func envOf(cmd *exec.Cmd, key string) string {
	for _, e := range cmd.Env {
		if v, ok := strings.CutPrefix(e, key+"="); ok {
			return v
		}
	}
	return ""
}

func waitReady(ctx context.Context, admin string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		resp, err := http.Get("http://" + admin + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		time.Sleep(100 * time.Millisecond)
	}
	return errors.New("service not ready in time")
}

func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

func printTable(w io.Writer, o options, rs []result) {
	host, _ := os.Hostname()
	fmt.Fprintf(w, "\n%d records, %d partitions, %.1f%% bad; machine: %s, %d cores\n\n", o.records, o.partitions, o.badShare*100, host, numCPU())
	fmt.Fprintln(w, "| scenario | events/s | MB/s | CPU s per 1M events | peak RSS | p50 / p99 latency | ÷ ceiling |")
	fmt.Fprintln(w, "|---|---:|---:|---:|---:|---:|---:|")
	var ceiling float64
	for _, r := range rs {
		if strings.HasPrefix(r.name, "ceiling") {
			ceiling = r.rate()
		}
	}
	for _, r := range rs {
		ratio, lat := "", "n/a (backlog)"
		if ceiling > 0 && !strings.HasPrefix(r.name, "live") {
			ratio = fmt.Sprintf("%.0f%%", 100*r.rate()/ceiling)
		}
		if r.p99 > 0 {
			lat = fmt.Sprintf("%s / %s", r.p50.Round(time.Millisecond), r.p99.Round(time.Millisecond))
		}
		fmt.Fprintf(w, "| %s | %.0f | %.1f | %.2f | %d MB | %s | %s |\n",
			r.name, r.rate(), r.mbps(), r.cpuPerMillion(), r.peakRSS>>20, lat, ratio)
	}
}
