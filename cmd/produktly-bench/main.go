// Command produktly-bench measures how fast one produktly-segment replica
// drains a backlog, side by side with the ceiling set by the Kafka client
// itself, against a real broker and the project's Segment-compatible test
// server on loopback.
//
//	produktly-bench -brokers 127.0.0.1:29092 -binary bin/produktly-segment
//
// Contenders, each its own process, each draining the same preloaded
// backlog from a fresh consumer group until every offset is committed,
// after one untimed warm-up drain, -runs times in rotating order:
//   - kafka-go: a plain kafka-go consumer group fetches every record and
//     commits; no mapping, no Segment;
//   - franz-go: the same with a bare franz-go consumer group;
//   - baseline: the service built from an earlier commit (-baseline),
//     single source, the test server acknowledging at once;
//   - service: the service at HEAD, single source;
//   - accounts: the service at HEAD in accounts mode (INTEGRATIONS_FILE of
//     -accounts active accounts, whose volumes in the backlog follow a
//     Zipf law).
//
// Each reports CPU-µs per record (user + system time of the process over
// the backlog's records) and events/s, as median and spread. Then, once:
//   - latency: the service with the test server adding latency to every
//     request;
//   - live: the service caught up, a producer at a fixed rate; latency from
//     the record's timestamp to Segment's receipt.
//
// It reports; it never fails on a figure.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime"
	"strings"
	"syscall"
	"time"
)

type options struct {
	brokers     []string
	binary      string
	records     int
	partitions  int
	badShare    float64
	latency     time.Duration
	liveRate    int
	liveFor     time.Duration
	scenarios   map[string]bool
	concurrency int
	batchSize   int
	smallBatch  int // SEGMENT_BATCH_SIZE of the small contender
	logDir      string
	runs        int
	accounts    int
	zipf        float64
	baseline    string
	baselineRev string
	profile     string
	profileFor  time.Duration
	// outageFor is how long Segment answers 503 in the outage scenario.
	outageFor time.Duration
	// drainTimeout bounds one drain: a contender that never commits every
	// offset fails the run instead of hanging it.
	drainTimeout time.Duration
}

func main() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) }

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 && args[0] == "ceiling" {
		return runCeilingChild(args[1:], stdout, stderr)
	}
	if len(args) > 0 && args[0] == "franz" {
		return runFranzChild(args[1:], stdout, stderr)
	}
	fs := flag.NewFlagSet("produktly-bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	brokers := fs.String("brokers", os.Getenv("KAFKA_BROKERS"), "Kafka bootstrap addresses (default $KAFKA_BROKERS)")
	o := options{}
	fs.StringVar(&o.binary, "binary", "bin/produktly-segment", "the produktly-segment binary to measure")
	fs.IntVar(&o.records, "records", 1_000_000, "records to preload")
	fs.IntVar(&o.partitions, "partitions", 12, "partitions of the benchmark topic")
	fs.Float64Var(&o.badShare, "bad", 0.001, "share of records that break the contract")
	fs.DurationVar(&o.latency, "latency", 50*time.Millisecond, "latency the test server adds in the latency scenario")
	fs.IntVar(&o.liveRate, "live-rate", 20000, "records/s the live scenario produces")
	fs.DurationVar(&o.liveFor, "live-for", 30*time.Second, "how long the live scenario produces")
	fs.IntVar(&o.concurrency, "segment-concurrency", 0, "SEGMENT_CONCURRENCY for the service (0: its default)")
	fs.IntVar(&o.batchSize, "segment-batch-size", 0, "SEGMENT_BATCH_SIZE for the service (0: its default)")
	fs.IntVar(&o.smallBatch, "small-batch", 20, "SEGMENT_BATCH_SIZE of the small contender: about the records per request of accounts mode at the defaults")
	fs.StringVar(&o.logDir, "log-dir", os.TempDir(), "where the service's logs go")
	fs.IntVar(&o.runs, "runs", 3, "timed runs of every contender (median and spread are reported)")
	fs.IntVar(&o.accounts, "accounts", 1000, "active accounts of the accounts-mode workload; the backlog's records carry their accountId")
	fs.Float64Var(&o.zipf, "zipf", 1, "exponent of the Zipf law of the accounts' record volumes")
	fs.StringVar(&o.baseline, "baseline", "", "a produktly-segment binary built from an earlier commit, run as the baseline contender (empty: not run)")
	fs.StringVar(&o.baselineRev, "baseline-rev", "baseline", "the commit -baseline was built from, for the table")
	fs.StringVar(&o.profile, "profile", "", "write a CPU profile of the service at HEAD, single source, draining the backlog, to this file (empty: none)")
	fs.DurationVar(&o.profileFor, "profile-for", 15*time.Second, "how long the CPU profile runs")
	fs.DurationVar(&o.outageFor, "outage-for", time.Minute, "how long Segment is down in the outage scenario")
	fs.DurationVar(&o.drainTimeout, "drain-timeout", 10*time.Minute, "longest one drain may take")
	only := fs.String("only", "kafka-go,franz-go,baseline,service,accounts,small,latency,outage,live", "contenders and scenarios to run")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *brokers == "" {
		fmt.Fprintln(stderr, "produktly-bench: -brokers or KAFKA_BROKERS is required")
		return 2
	}
	o.brokers = strings.Split(*brokers, ",")
	o.scenarios = map[string]bool{}
	for _, s := range strings.Split(*only, ",") {
		o.scenarios[strings.TrimSpace(s)] = true
	}
	if _, err := os.Stat(o.binary); err != nil {
		fmt.Fprintf(stderr, "produktly-bench: %v (build it first: make build)\n", err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if o.runs < 1 {
		fmt.Fprintln(stderr, "produktly-bench: -runs must be at least 1")
		return 2
	}
	if o.scenarios["small"] && o.smallBatch < 1 {
		fmt.Fprintln(stderr, "produktly-bench: the small contender needs -small-batch of at least 1")
		return 2
	}
	if o.scenarios["accounts"] && o.accounts < 1 {
		fmt.Fprintln(stderr, "produktly-bench: the accounts contender needs -accounts of at least 1")
		return 2
	}
	rep, err := bench(ctx, o, stderr)
	printReport(stdout, o, rep)
	if err != nil {
		fmt.Fprintf(stderr, "produktly-bench: %v\n", err)
		return 1
	}
	return 0
}

func numCPU() int { return runtime.NumCPU() }
