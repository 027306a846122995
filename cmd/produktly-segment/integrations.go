package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/produktly/produktly-segment/integrations"
)

const integrationsUsage = `usage:
  produktly-segment integrations put ACCOUNT --write-key-file FILE [--region us|eu]
  produktly-segment integrations deactivate ACCOUNT
  produktly-segment integrations list

Publishes the Segment integrations of Produktly accounts to the compacted
integrations topic (INTEGRATIONS_TOPIC, or --topic) that the service reads in
accounts mode. put writes an active integration (the write key is read from
FILE, never from the command line); deactivate sets "active": false and keeps
the key; list reads the topic to its end and prints each account's region and
state, never a key. Connection settings (KAFKA_BROKERS, TLS, SASL) come from
the same environment variables as 'run'.

flags:
`

// runIntegrations handles `integrations put|deactivate|list`. Exit status:
// 0 done, 1 Kafka failed, 2 bad input.
func runIntegrations(args []string, stdout, stderr io.Writer) int {
	const name = "produktly-segment integrations"
	fail := func(code int, format string, a ...any) int {
		fmt.Fprintf(stderr, name+": "+format+"\n", a...)
		return code
	}
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	keyFile := fs.String("write-key-file", "", "put: file holding the write key (surrounding blanks are dropped)")
	region := fs.String("region", string(integrations.RegionUS), "put: the Segment region of the source, us or eu")
	topic := fs.String("topic", os.Getenv("INTEGRATIONS_TOPIC"), "the integrations topic (default: INTEGRATIONS_TOPIC)")
	timeout := fs.Duration("timeout", time.Minute, "give up after this long")
	// Flags may come before or after the positional arguments.
	var pos []string
	for rest := args; ; {
		if err := fs.Parse(rest); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				fmt.Fprint(stdout, integrationsUsage)
				fs.SetOutput(stdout)
				fs.PrintDefaults()
				return 0
			}
			return fail(2, "%v", err)
		}
		if fs.NArg() == 0 {
			break
		}
		pos, rest = append(pos, fs.Arg(0)), fs.Args()[1:]
	}
	if len(pos) == 0 {
		fmt.Fprint(stderr, name+": a subcommand is required: put, deactivate or list\n\n"+integrationsUsage)
		return 2
	}
	sub, pos := pos[0], pos[1:]
	want := map[string]int{"put": 1, "deactivate": 1, "list": 0}
	n, ok := want[sub]
	switch {
	case !ok:
		return fail(2, "unknown subcommand %q: put, deactivate or list", sub)
	case len(pos) != n && n == 1:
		return fail(2, "%s: exactly one ACCOUNT is required", sub)
	case len(pos) != n:
		return fail(2, "%s takes no arguments, not %q", sub, pos)
	case *topic == "":
		return fail(2, "INTEGRATIONS_TOPIC (--topic): required")
	}
	var it integrations.Integration
	if sub == "put" {
		r, err := integrations.ParseRegion(*region)
		if err != nil {
			return fail(2, "--region: %v", err)
		}
		if *keyFile == "" {
			return fail(2, "put: --write-key-file is required")
		}
		b, err := os.ReadFile(*keyFile)
		if err != nil {
			return fail(2, "--write-key-file: %v", err)
		}
		key := strings.TrimSpace(string(b))
		if key == "" || strings.ContainsAny(key, " \t\r\n") {
			return fail(2, "--write-key-file: %s must hold one write key and nothing else", *keyFile)
		}
		it = integrations.Integration{WriteKey: integrations.NewWriteKey(key), Region: r, Active: true}
	} else if *keyFile != "" || *region != string(integrations.RegionUS) {
		return fail(2, "%s: --write-key-file and --region are for put", sub)
	}

	c, err := parseConfig(name, nil, connectionEnv, stdout)
	if err != nil {
		return fail(2, "%v", err)
	}
	dialer, transport, err := kafkaConn(c)
	if err != nil {
		return fail(2, "%v", err)
	}
	p, err := integrations.NewPublisher(integrations.TopicOptions{
		Brokers: c.Brokers, Topic: *topic, Dialer: dialer, Transport: transport,
	})
	if err != nil {
		return fail(2, "%v", err)
	}
	defer p.Close()
	ctx, stop := signalContext(newLogger(stderr, c.LogLevel, c.LogFormat))
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()

	account := ""
	if len(pos) == 1 {
		account = pos[0]
	}
	var invalid *integrations.InvalidError
	switch sub {
	case "put":
		err = p.Put(ctx, account, it)
		if err == nil {
			fmt.Fprintf(stdout, "put %s: region %s, active, write key from %s\n", account, it.Region, *keyFile)
		}
	case "deactivate":
		err = p.Deactivate(ctx, account)
		if err == nil {
			fmt.Fprintf(stdout, "deactivated %s (its write key is kept)\n", account)
		}
	case "list":
		var list []integrations.Entry
		if list, err = p.List(ctx); err == nil {
			tw := tabwriter.NewWriter(stdout, 0, 8, 2, ' ', 0)
			fmt.Fprintln(tw, "ACCOUNT\tREGION\tACTIVE\tSTATE\tPROBLEM")
			for _, e := range list {
				region := string(e.Region)
				if region == "" {
					region = "-"
				}
				fmt.Fprintf(tw, "%s\t%s\t%v\t%s\t%s\n", e.Account, region, e.Active, e.State, e.Problem)
			}
			tw.Flush()
			fmt.Fprintf(stdout, "%d accounts in %s\n", len(list), *topic)
		}
	}
	switch {
	case err == nil:
		return 0
	case errors.Is(err, integrations.ErrUnknownAccount), errors.As(err, &invalid):
		return fail(2, "%s: %v", sub, err)
	}
	return fail(1, "%s: %v", sub, err)
}

// connectionEnv is the environment for the connection settings alone: the
// command publishes integrations and needs no Segment write key.
func connectionEnv(k string) string {
	switch k {
	case "SEGMENT_WRITE_KEY":
		return "unused"
	case "INTEGRATIONS_TOPIC", "INTEGRATIONS_FILE":
		return ""
	}
	return os.Getenv(k)
}
