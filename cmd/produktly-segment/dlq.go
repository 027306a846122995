package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/produktly/produktly-segment/consumer"
	"github.com/produktly/produktly-segment/mapping"
)

const dlqUsage = `usage: produktly-segment dlq replay [flags]

Reads the dead-letter topic from its first offset to its end offsets at the
start, keeps the records that match the filters, and re-produces each to its
source topic with its original key, value, timestamp and headers (acks from
all in-sync replicas). A record goes back to its source partition, beside the
other records of its key and in their order (with --to, or where that
partition no longer exists: murmur2 of the key, as Java producers partition).
A replayed record keeps the messageId of the original, so replaying the same
record twice never creates two Segment events. Dead letters written without
their value (header produktly-omitted) are counted and skipped.
Connection settings (KAFKA_BROKERS, KAFKA_TOPIC, KAFKA_DLQ_TOPIC, TLS, SASL)
come from the same environment variables as 'run'.

flags:
`

// runDLQ handles `dlq replay`.
func runDLQ(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] != "replay" {
		fmt.Fprint(stderr, "produktly-segment dlq: the only subcommand is replay\n\n"+dlqUsage)
		return 2
	}
	fs := flag.NewFlagSet("produktly-segment dlq replay", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	codes := fs.String("code", "", "replay only these error codes (comma-separated), e.g. rejected,invalid_property")
	since := fs.String("since", "", "replay only records at or after this time (RFC 3339)")
	until := fs.String("until", "", "replay only records before this time (RFC 3339)")
	to := fs.String("to", "", "target topic (default: each record's source topic)")
	dry := fs.Bool("dry-run", false, "count what would be replayed, write nothing")
	if err := fs.Parse(args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprint(stdout, dlqUsage)
			fs.SetOutput(stdout)
			fs.PrintDefaults()
			return 0
		}
		fmt.Fprintf(stderr, "produktly-segment dlq replay: %v\n", err)
		return 2
	}
	// Only connection settings are needed; the write key is not.
	getenv := func(k string) string {
		if k == "SEGMENT_WRITE_KEY" {
			return "unused"
		}
		return os.Getenv(k)
	}
	c, err := parseConfig("produktly-segment dlq replay", nil, getenv, stdout)
	if err != nil {
		fmt.Fprintf(stderr, "produktly-segment dlq replay: %v\n", err)
		return 2
	}
	o := consumer.ReplayOptions{Brokers: c.Brokers, DeadLetterTopic: c.DLQTopic, Topic: *to, DryRun: *dry}
	for _, code := range strings.Split(*codes, ",") {
		if code = strings.TrimSpace(code); code == "" {
			continue
		}
		if !slices.Contains(mapping.Codes(), mapping.Code(code)) {
			fmt.Fprintf(stderr, "produktly-segment dlq replay: --code: %q is not an error code (%v)\n", code, mapping.Codes())
			return 2
		}
		o.Codes = append(o.Codes, code)
	}
	for _, t := range []struct {
		flag string
		dst  *time.Time
	}{{*since, &o.Since}, {*until, &o.Until}} {
		if t.flag == "" {
			continue
		}
		v, err := time.Parse(time.RFC3339, t.flag)
		if err != nil {
			fmt.Fprintf(stderr, "produktly-segment dlq replay: --since/--until must be RFC 3339, not %q\n", t.flag)
			return 2
		}
		*t.dst = v
	}
	dialer, transport, err := kafkaConn(c)
	if err != nil {
		fmt.Fprintf(stderr, "produktly-segment dlq replay: %v\n", err)
		return 2
	}
	o.Dialer, o.Transport = dialer, transport
	ctx, stop := signalContext(newLogger(stderr, c.LogLevel, c.LogFormat))
	defer stop()
	st, err := consumer.Replay(ctx, o)
	verb, n := "replayed", st.Replayed
	if *dry {
		verb, n = "would replay", st.Matched-st.Incomplete
	}
	keys := make([]string, 0, len(st.ByCode))
	for k := range st.ByCode {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	fmt.Fprintf(stdout, "scanned %d dead-lettered records from %s; %d matched; %s %d\n", st.Scanned, c.DLQTopic, st.Matched, verb, n)
	for _, k := range keys {
		fmt.Fprintf(stdout, "  %-18s %d\n", k, st.ByCode[k])
	}
	if st.Incomplete > 0 {
		fmt.Fprintf(stdout, "skipped %d dead letters written without their value (%s); the whole records are on the source topic at their %s/-partition/-offset\n",
			st.Incomplete, consumer.HeaderOmitted, consumer.HeaderSourceTopic)
	}
	if err != nil {
		fmt.Fprintf(stderr, "produktly-segment dlq replay: %v\n", err)
		return 1
	}
	return 0
}
