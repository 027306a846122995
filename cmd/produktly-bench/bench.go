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
	name    string
	records int
	bytes   int64
	elapsed time.Duration
	cpu     time.Duration
	// used is the CPU of the whole machine, of this driver (its
	// Segment-compatible receiver) and of the contender from the
	// contender's start until the backlog was drained; not for every
	// scenario (used.ok).
	used     cpuClock
	peakRSS  int64 // bytes
	p50, p99 time.Duration
	note     string
}

func (r result) rate() float64 { return float64(r.records) / r.elapsed.Seconds() }
func (r result) mbps() float64 { return float64(r.bytes) / 1e6 / r.elapsed.Seconds() }

// perRecord is CPU time d spread over the run's records, in µs per record
// (numerically the same as CPU seconds per million records).
func (r result) perRecord(d time.Duration) float64 {
	return d.Seconds() / (float64(r.records) / 1e6)
}

// cpuPerRecord is the process's user + system CPU time per record, in µs.
func (r result) cpuPerRecord() float64 { return r.perRecord(r.cpu) }

const writeKey = "bench-write-key"

// backlog is the preloaded topic every contender drains.
type backlog struct {
	topic string
	bytes int64
	good  int
	// accounts are the integrations of accounts mode, written to file.
	accounts []benchAccount
	file     string
}

// contenders, in the order of the table. Each runs as its own process.
var contenders = []struct{ key, name string }{
	{"kafka-go", "kafka-go Reader + GroupID, FetchMessage + commit"},
	{"franz-go", "franz-go bare consumer group, poll + mark + autocommit"},
	{"baseline", "service at the baseline commit, single source"},
	{"service", "service at HEAD, single source"},
	{"accounts", "service at HEAD, accounts mode"},
	{"small", "service at HEAD, single source, accounts mode's request size"},
}

func bench(ctx context.Context, o options, log io.Writer) (report, error) {
	var rep report
	topic := fmt.Sprintf("bench-%d", time.Now().Unix())
	client := &kafka.Client{Addr: kafka.TCP(o.brokers...), Timeout: 30 * time.Second}
	if err := createTopics(ctx, client, o.partitions, topic, topic+".dlq", topic+".retry"); err != nil {
		return rep, err
	}
	fmt.Fprintf(log, "preloading %d records into %s (%d partitions, %d Zipf accounts)...\n", o.records, topic, o.partitions, o.accounts)
	start := time.Now()
	bytes, good, err := preload(ctx, o, topic)
	if err != nil {
		return rep, err
	}
	fmt.Fprintf(log, "preloaded %d records (%d good, %.0f MB) in %s\n", o.records, good, float64(bytes)/1e6, time.Since(start).Round(time.Millisecond))
	bl := backlog{topic: topic, bytes: bytes, good: good, accounts: benchAccounts(o.accounts)}
	if o.scenarios["accounts"] {
		bl.file = filepath.Join(o.logDir, "bench-integrations.json")
		if err := writeIntegrations(bl.file, bl.accounts); err != nil {
			return rep, err
		}
	}
	var active []string
	for _, c := range contenders {
		if o.scenarios[c.key] && (c.key != "baseline" || o.baseline != "") {
			active = append(active, c.key)
		}
	}
	if len(active) > 0 {
		// Warm the broker once (page cache, log segments, group
		// coordinator), untimed, so that whoever runs first does not pay.
		fmt.Fprintln(log, "warming the broker: one untimed kafka-go drain...")
		if _, err := runContender(ctx, o, client, bl, "kafka-go", "warm", log); err != nil {
			return rep, fmt.Errorf("warm-up: %w", err)
		}
	}
	rep.runs = map[string][]result{}
	for round := 0; round < o.runs; round++ {
		// Rotate the order each round: no contender always runs first.
		for i := range active {
			key := active[(i+round)%len(active)]
			r, err := runContender(ctx, o, client, bl, key, fmt.Sprintf("r%d", round+1), log)
			if err != nil {
				return rep, fmt.Errorf("%s run %d: %w", key, round+1, err)
			}
			rep.runs[key] = append(rep.runs[key], r)
			fmt.Fprintf(log, "run %d %s: %.0f records/s, %.2f CPU-µs/record, %d MB peak (%s)\n",
				round+1, key, r.rate(), r.cpuPerRecord(), r.peakRSS>>20, r.note)
		}
	}
	if o.profile != "" {
		// The single-source profile at o.profile, the accounts-mode and
		// small-request ones beside it (.accounts.pprof, .small.pprof).
		for _, key := range []string{"service", "accounts", "small"} {
			if !o.scenarios[key] {
				continue
			}
			path := o.profile
			if key != "service" {
				path = strings.TrimSuffix(o.profile, ".pprof") + "." + key + ".pprof"
			}
			fmt.Fprintf(log, "profiling %s on the same backlog...\n", key)
			if err := profileService(ctx, o, client, bl, key, path, log); err != nil {
				return rep, fmt.Errorf("profile %s: %w", key, err)
			}
		}
	}
	if o.scenarios["latency"] {
		srv := segmenttest.NewServer(writeKey, segmenttest.WithoutBodies(), segmenttest.WithCapacity(good))
		srv.SetLatency(o.latency)
		group := "bench-latency-" + topic
		cmd, err := serviceCmd(ctx, o, o.binary, topic, group, singleEnv(srv.URL()))
		if err != nil {
			srv.Close()
			return rep, err
		}
		r, err := drain(ctx, o, client, cmd, topic, group, filepath.Join(o.logDir, "bench-latency.log"))
		delivered := srv.Distinct()
		srv.Close()
		if err != nil {
			return rep, fmt.Errorf("latency: %w", err)
		}
		r.name, r.bytes = fmt.Sprintf("service, Segment adds %s per request", o.latency), bytes
		r.note = fmt.Sprintf("%d distinct delivered of %d good", delivered, good)
		rep.extra = append(rep.extra, r)
		fmt.Fprintf(log, "latency: %.0f records/s (%s)\n", r.rate(), r.note)
	}
	for _, key := range []string{"service", "accounts"} {
		if !o.scenarios["outage"] || (key == "accounts" && !o.scenarios["accounts"]) {
			continue
		}
		r, err := outage(ctx, o, client, bl, key, log)
		if err != nil {
			return rep, err
		}
		rep.extra = append(rep.extra, r)
	}
	if o.scenarios["live"] {
		r, err := live(ctx, o, client, log)
		if err != nil {
			return rep, fmt.Errorf("live: %w", err)
		}
		rep.extra = append(rep.extra, r)
	}
	return rep, nil
}

// runContender drains the backlog once with contender key, from a fresh
// consumer group, and returns its figures.
func runContender(ctx context.Context, o options, client *kafka.Client, bl backlog, key, run string, log io.Writer) (result, error) {
	group := "bench-" + key + "-" + run + "-" + bl.topic
	logPath := filepath.Join(o.logDir, "bench-"+key+"-"+run+".log")
	cmd, srv, err := contenderCmd(ctx, o, bl, key, group, nil)
	if err != nil {
		return result{}, err
	}
	r, err := drain(ctx, o, client, cmd, bl.topic, group, logPath)
	if srv != nil {
		r.note = fmt.Sprintf("%d distinct delivered of %d good, in %d requests", srv.Distinct(), bl.good, srv.Requests())
		srv.Close()
	}
	if err != nil {
		return result{}, err
	}
	r.name, r.bytes = key, bl.bytes
	return r, nil
}

// contenderCmd is the process of contender key consuming the backlog in
// group, and the Segment test server it sends to (nil for the bare
// consumers; the caller closes it). extra is added to a service's
// environment.
func contenderCmd(ctx context.Context, o options, bl backlog, key, group string, extra []string) (*exec.Cmd, *segmenttest.Server, error) {
	// The test server records the backlog's messages without growing
	// while the contender runs beside it.
	roomFor := segmenttest.WithCapacity(bl.good)
	switch key {
	case "kafka-go", "franz-go":
		self, err := os.Executable()
		if err != nil {
			return nil, nil, err
		}
		child := map[string]string{"kafka-go": "ceiling", "franz-go": "franz"}[key]
		return exec.CommandContext(ctx, self, child, "-brokers", strings.Join(o.brokers, ","), "-topic", bl.topic, "-group", group), nil, nil
	case "baseline", "service", "small":
		srv := segmenttest.NewServer(writeKey, segmenttest.WithoutBodies(), roomFor)
		bin := o.binary
		if key == "baseline" {
			bin = o.baseline
		}
		env := singleEnv(srv.URL())
		if key == "small" {
			// Single source in requests of accounts mode's size: what the
			// requests alone cost, without the accounts (docs/performance.md).
			env = append(env, fmt.Sprintf("SEGMENT_BATCH_SIZE=%d", o.smallBatch))
		}
		cmd, err := serviceCmd(ctx, o, bin, bl.topic, group, append(env, extra...))
		if err != nil {
			srv.Close()
			return nil, nil, err
		}
		return cmd, srv, nil
	case "accounts":
		keys := make([]string, len(bl.accounts))
		for i, a := range bl.accounts {
			keys[i] = a.writeKey
		}
		// One test server serves both regions' endpoints.
		srv := segmenttest.NewServer(keys[0], segmenttest.WithoutBodies(), roomFor, segmenttest.WithWriteKeys(keys...))
		cmd, err := serviceCmd(ctx, o, o.binary, bl.topic, group, append([]string{
			"INTEGRATIONS_FILE=" + bl.file,
			"SEGMENT_ENDPOINT=" + srv.URL(),
			"SEGMENT_EU_ENDPOINT=" + srv.URL(),
		}, extra...))
		if err != nil {
			srv.Close()
			return nil, nil, err
		}
		return cmd, srv, nil
	}
	return nil, nil, fmt.Errorf("unknown contender %q", key)
}

// statusError is a non-200 answer of the admin server.
type statusError struct{ url, status string }

func (e *statusError) Error() string { return e.url + ": " + e.status }

// saveURL writes the body of a GET of url to path.
func saveURL(url, path string) error {
	resp, err := http.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return &statusError{url: url, status: resp.Status}
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// profileService drains the backlog once more with contender key (a
// service at HEAD) and ADMIN_PPROF, and writes a CPU profile of the drain
// to path, and one of the live heap at its end beside it (.heap.pprof). The profile runs for o.profileFor from the moment the admin
// server answers; the drain must take at least that long to be covered
// whole, and any idle tail adds no samples.
func profileService(ctx context.Context, o options, client *kafka.Client, bl backlog, key, path string, log io.Writer) error {
	group := "bench-profile-" + key + "-" + bl.topic
	cmd, srv, err := contenderCmd(ctx, o, bl, key, group, []string{"ADMIN_PPROF=true"})
	if err != nil {
		return err
	}
	defer srv.Close()
	admin := envOf(cmd, "ADMIN_ADDR")
	logf, err := os.Create(filepath.Join(o.logDir, "bench-profile-"+key+".log"))
	if err != nil {
		return err
	}
	defer logf.Close()
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		return err
	}
	defer func() { _ = cmd.Process.Signal(syscall.SIGTERM); _ = cmd.Wait() }()
	url := fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", admin, int(o.profileFor.Seconds()))
	deadline := time.Now().Add(30 * time.Second)
	for {
		err := saveURL(url, path)
		if err == nil {
			break
		}
		var serr *statusError
		if errors.As(err, &serr) || time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("admin server never answered: %w", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	// The live heap at the end of the CPU profile, while the drain goes
	// on: what the in-flight records hold, beside the profile.
	heap := strings.TrimSuffix(path, ".pprof") + ".heap.pprof"
	if err := saveURL(fmt.Sprintf("http://%s/debug/pprof/heap?gc=1", admin), heap); err != nil {
		return err
	}
	up, err := consumer.CaughtUp(ctx, client, group, bl.topic, o.partitions)
	if err != nil {
		return err
	}
	if !up {
		fmt.Fprintf(log, "%s profile: the drain outlasted the %s profile; it covers only its start\n", key, o.profileFor)
	}
	fmt.Fprintf(log, "%s profile written to %s (%d distinct delivered of %d good)\n", key, path, srv.Distinct(), bl.good)
	return nil
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
	var accounts *zipf
	if o.accounts > 0 {
		accounts = newZipf(o.accounts, o.zipf)
	}
	gen := newRecordGen(1, o.badShare, accounts)
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

func singleEnv(endpoint string) []string {
	return []string{"SEGMENT_WRITE_KEY=" + writeKey, "SEGMENT_ENDPOINT=" + endpoint}
}

func serviceCmd(ctx context.Context, o options, binary, topic, group string, mode []string) (*exec.Cmd, error) {
	admin, err := freeAddr()
	if err != nil {
		return nil, err
	}
	cmd := exec.CommandContext(ctx, binary, "run")
	cmd.Env = append(os.Environ(),
		"KAFKA_BROKERS="+strings.Join(o.brokers, ","),
		"KAFKA_TOPIC="+topic,
		"KAFKA_GROUP_ID="+group,
		"ADMIN_ADDR="+admin,
		"LOG_LEVEL=info",
	)
	if o.concurrency > 0 {
		cmd.Env = append(cmd.Env, fmt.Sprintf("SEGMENT_CONCURRENCY=%d", o.concurrency))
	}
	if o.batchSize > 0 {
		cmd.Env = append(cmd.Env, fmt.Sprintf("SEGMENT_BATCH_SIZE=%d", o.batchSize))
	}
	// The mode's own settings last: of repeated names, exec keeps the last.
	cmd.Env = append(cmd.Env, mode...)
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
	clock0 := readCPUClock(0)
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return result{}, err
	}
	var peak int64
	var elapsed time.Duration
	var used cpuClock
	for {
		if up, err := consumer.CaughtUp(ctx, client, group, topic, o.partitions); err == nil && up {
			elapsed = time.Since(start)
			used = readCPUClock(cmd.Process.Pid).since(clock0)
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
		if time.Since(start) > o.drainTimeout {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
			return result{}, fmt.Errorf("offsets not all committed after %s (log %s)", o.drainTimeout, logPath)
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
		used:    used,
		peakRSS: peak,
	}, nil
}

// peakRSS reads the peak resident set (VmHWM) of a running process. The
// rusage of a child is no use for this: Linux carries the parent's peak
// over the fork into the child's maxrss.
func peakRSS(pid int) int64 { return procStatus(pid, "VmHWM:") }

// procStatus reads one memory field of /proc/<pid>/status ("VmHWM:",
// "VmRSS:"), in bytes; 0 when the process is gone.
func procStatus(pid int, field string) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, field); ok {
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
	cmd, err := serviceCmd(ctx, o, o.binary, topic, group, singleEnv(srv.URL()))
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
	gen := newRecordGen(2, 0, nil)
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
