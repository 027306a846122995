// Command produktly-bench measures how fast one produktly-segment replica
// drains a backlog, side by side with the ceiling set by the Kafka client
// itself, against a real broker and the project's Segment-compatible test
// server on loopback.
//
//	produktly-bench -brokers 127.0.0.1:29092 -binary bin/produktly-segment
//
// Scenarios, in one run on one preloaded topic:
//  1. ceiling: a plain kafka-go consumer group (separate process) fetches
//     every record and commits; no mapping, no Segment.
//  2. service: the real binary drains the backlog from a fresh group until
//     every offset is committed; the test server acknowledges at once.
//  3. service with the test server adding latency to every request.
//  4. live: the service caught up, a producer at a fixed rate; latency from
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
	logDir      string
}

func main() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) }

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 && args[0] == "ceiling" {
		return runCeilingChild(args[1:], stdout, stderr)
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
	fs.StringVar(&o.logDir, "log-dir", os.TempDir(), "where the service's logs go")
	only := fs.String("only", "ceiling,service,latency,live", "scenarios to run")
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
	results, err := bench(ctx, o, stderr)
	printTable(stdout, o, results)
	if err != nil {
		fmt.Fprintf(stderr, "produktly-bench: %v\n", err)
		return 1
	}
	return 0
}

func numCPU() int { return runtime.NumCPU() }
