// Command produktly-segment carries Produktly interaction records from a
// Kafka topic to Segment's HTTP Tracking API.
//
//	produktly-segment [run]        the service (configured by environment)
//	produktly-segment demo         the pipeline in accounts mode on an in-process Kafka and two Segment stand-ins (US, EU)
//	produktly-segment validate [FILE]  map newline-delimited raw records, print each result
//	produktly-segment dlq replay   re-produce dead-lettered records to the source topic
//	produktly-segment integrations put|deactivate|list  publish accounts' Segment integrations
//	produktly-segment version
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"

	"github.com/rs/zerolog"
)

// defaultMemoryLimit is the Go heap's soft limit when GOMEMLIMIT is unset.
const defaultMemoryLimit = 160 << 20

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() { os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr)) }

const usage = `usage: produktly-segment <command> [flags]

commands:
  run              consume, map and deliver to Segment (the default; configured by environment)
  demo             run the real pipeline in accounts mode on an in-process Kafka and Segment stand-ins (US, EU), print what happened
  validate [FILE]  read newline-delimited raw records (FILE or stdin), print each Segment call or error
  dlq replay       re-produce dead-lettered records to the source topic (see dlq replay --help)
  integrations     put, deactivate or list accounts' Segment integrations (see integrations --help)
  version          print the version

run 'produktly-segment run --help' for the settings.
`

// run dispatches a subcommand and returns the process exit status: 0 ok,
// 1 failure, 2 bad usage or configuration.
func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	cmd := "run"
	if len(args) > 0 && (args[0] == "" || args[0][0] != '-') {
		cmd, args = args[0], args[1:]
	}
	switch cmd {
	case "run":
		return runService(args, stdout, stderr)
	case "demo":
		return runDemo(args, stdout, stderr)
	case "validate":
		return runValidate(args, stdin, stdout, stderr)
	case "dlq":
		return runDLQ(args, stdout, stderr)
	case "integrations":
		return runIntegrations(args, stdout, stderr)
	case "version":
		fmt.Fprintf(stdout, "produktly-segment %s\n", version)
		return 0
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return 0
	}
	fmt.Fprintf(stderr, "produktly-segment: unknown command %q\n%s", cmd, usage)
	return 2
}

func runService(args []string, stdout, stderr io.Writer) int {
	c, err := parseConfig("produktly-segment run", args, os.Getenv, stdout)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "produktly-segment: %v\n", err)
		return 2
	}
	log := newLogger(stderr, c.LogLevel, c.LogFormat)
	if os.Getenv("GOMEMLIMIT") == "" {
		// A soft heap limit keeps the resident set near the 200 MB the
		// service is sized for: with the default in-flight caps the live
		// heap stays near 100 MB, and without a limit the collector lets
		// the heap grow to twice that.
		debug.SetMemoryLimit(defaultMemoryLimit)
	}
	ctx, stop := signalContext(log)
	defer stop()
	svc, err := newService(c, log)
	if err != nil {
		fmt.Fprintf(stderr, "produktly-segment: %v\n", err)
		return 2
	}
	ev := log.Info().Str("version", version).Strs("brokers", c.Brokers).Str("topic", c.Topic).
		Str("group", c.GroupID).Str("dlq_topic", c.DLQTopic).Str("segment", c.Endpoint)
	if c.accounts() {
		ev = ev.Str("mode", "accounts").Str("retry_topic", c.RetryTopic).Str("segment_eu", c.EUEndpoint).
			Str("integrations_topic", c.IntegrationsTopic).Str("integrations_file", c.IntegrationsFile)
	} else {
		ev = ev.Str("mode", "single source")
	}
	ev.Msg("starting")
	if err := svc.run(ctx, c.AdminAddr, c.Pprof); err != nil {
		log.Error().Err(err).Msg("stopped")
		var cerr *configError
		if errors.As(err, &cerr) {
			fmt.Fprintf(stderr, "produktly-segment: %v\n", err)
			return 2
		}
		return 1
	}
	log.Info().Msg("stopped cleanly")
	return 0
}

// signalContext is cancelled by the first SIGTERM or SIGINT; a second one
// exits the process at once.
func signalContext(log zerolog.Logger) (context.Context, func()) {
	ctx, cancel := context.WithCancel(context.Background())
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	done := make(chan struct{})
	go func() {
		select {
		case s := <-sigs:
			log.Info().Str("signal", s.String()).Msg("shutting down: draining in-flight records")
			cancel()
		case <-done:
			return
		}
		select {
		case s := <-sigs:
			log.Warn().Str("signal", s.String()).Msg("second signal: exiting now, unacknowledged records stay uncommitted")
			os.Exit(1)
		case <-done:
		}
	}()
	return ctx, func() {
		signal.Stop(sigs)
		close(done)
		cancel()
	}
}

func newLogger(w io.Writer, level, format string) zerolog.Logger {
	if format == "console" {
		w = zerolog.ConsoleWriter{Out: w, TimeFormat: "15:04:05.000"}
	}
	lvl, err := zerolog.ParseLevel(level)
	if err != nil {
		lvl = zerolog.InfoLevel
	}
	return zerolog.New(w).Level(lvl).With().Timestamp().Logger()
}
