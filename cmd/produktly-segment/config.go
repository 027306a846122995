package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/produktly/produktly-segment/consumer"
	"github.com/produktly/produktly-segment/sink"
)

// config is every setting of `produktly-segment run`. Each is read from an
// environment variable and may be overridden by a flag of the same name in
// kebab case (KAFKA_BROKERS → --kafka-brokers). Flags and environment are
// read here and nowhere else.
type config struct {
	Brokers       []string
	Topic         string
	GroupID       string
	DLQTopic      string
	RetryTopic    string
	SASLMechanism string
	SASLUsername  string
	SASLPassword  string
	TLS           bool
	TLSCAFile     string
	TLSCertFile   string
	TLSKeyFile    string

	// Mode: exactly one of WriteKey (single source), IntegrationsTopic
	// or IntegrationsFile (accounts mode, contract v2).
	WriteKey          string
	IntegrationsTopic string
	IntegrationsFile  string
	// Accounts mode: the EU region's endpoint (Endpoint is the US one),
	// the requests per second per account, how long an account may
	// keep failing before its records are parked, and how long a partial
	// batch may linger (sink.Options.Linger).
	EUEndpoint    string
	AccountMaxRPS float64
	ParkAfter     time.Duration
	AccountLinger time.Duration

	Endpoint         string
	BatchSize        int
	FlushInterval    time.Duration
	Concurrency      int
	SegmentTimeout   time.Duration
	MaxInFlight      int
	MaxInFlightPart  int
	MaxInFlightBytes int

	SessionTimeout    time.Duration
	HeartbeatInterval time.Duration
	RebalanceTimeout  time.Duration
	RevokeTimeout     time.Duration
	CommitInterval    time.Duration

	AdminAddr       string
	Pprof           bool
	ShutdownTimeout time.Duration
	LogLevel        string
	LogFormat       string
}

// setting describes one variable: its name, default, help, and how it is
// stored. Secret settings never show their value in --help or errors.
type setting struct {
	env      string
	def      string
	help     string
	required bool
	secret   bool
	set      func(c *config, v string) error
	// option is the consumer.Options field the setting feeds, so that the
	// consumer's checks of its options name the variable.
	option string
}

func settings() []setting {
	return []setting{
		{env: "KAFKA_BROKERS", option: "Brokers", required: true, help: "comma-separated Kafka bootstrap addresses (host:port)",
			set: func(c *config, v string) error { return parseBrokers(&c.Brokers, v) }},
		{env: "KAFKA_TOPIC", option: "Topic", def: consumer.DefaultTopic, help: "source topic of raw Produktly records",
			set: str(func(c *config) *string { return &c.Topic })},
		{env: "KAFKA_GROUP_ID", option: "GroupID", def: consumer.DefaultGroupID, help: "consumer group id",
			set: str(func(c *config) *string { return &c.GroupID })},
		{env: "KAFKA_DLQ_TOPIC", option: "DeadLetterTopic", help: "dead-letter topic (default: the source topic plus .dlq)",
			set: str(func(c *config) *string { return &c.DLQTopic })},
		{env: "KAFKA_RETRY_TOPIC", option: "RetryTopic", help: "retry topic of parked accounts' records (default: the source topic plus .retry)",
			set: str(func(c *config) *string { return &c.RetryTopic })},
		{env: "KAFKA_SASL_MECHANISM", help: "SASL mechanism: PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512 (default: none)",
			set: func(c *config, v string) error {
				switch strings.ToUpper(v) {
				case "", "PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512":
					c.SASLMechanism = strings.ToUpper(v)
					return nil
				}
				return fmt.Errorf("must be PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512, not %q", v)
			}},
		{env: "KAFKA_SASL_USERNAME", help: "SASL user name",
			set: str(func(c *config) *string { return &c.SASLUsername })},
		{env: "KAFKA_SASL_PASSWORD", secret: true, help: "SASL password",
			set: str(func(c *config) *string { return &c.SASLPassword })},
		{env: "KAFKA_TLS", def: "false", help: "connect to Kafka over TLS",
			set: func(c *config, v string) error { return parseBool(&c.TLS, v) }},
		{env: "KAFKA_TLS_CA_FILE", help: "PEM file of CA certificates to trust (default: the system pool)",
			set: str(func(c *config) *string { return &c.TLSCAFile })},
		{env: "KAFKA_TLS_CERT_FILE", help: "PEM client certificate for mutual TLS",
			set: str(func(c *config) *string { return &c.TLSCertFile })},
		{env: "KAFKA_TLS_KEY_FILE", help: "PEM client key for mutual TLS",
			set: str(func(c *config) *string { return &c.TLSKeyFile })},
		{env: "SEGMENT_WRITE_KEY", secret: true, help: "single-source mode: the Segment source write key every record goes to (" + modeRule + ")",
			set: str(func(c *config) *string { return &c.WriteKey })},
		{env: "INTEGRATIONS_TOPIC", help: "accounts mode: compacted topic of the accounts' Segment integrations (" + modeRule + ")",
			set: str(func(c *config) *string { return &c.IntegrationsTopic })},
		{env: "INTEGRATIONS_FILE", help: "accounts mode: JSON file of the accounts' Segment integrations, re-read when it changes (" + modeRule + ")",
			set: str(func(c *config) *string { return &c.IntegrationsFile })},
		{env: "SEGMENT_ENDPOINT", def: sink.DefaultEndpoint, help: "Segment HTTP Tracking API base URL (accounts mode: of the US region)",
			set: endpoint(func(c *config) *string { return &c.Endpoint })},
		{env: "SEGMENT_EU_ENDPOINT", def: sink.DefaultEUEndpoint, help: "accounts mode: Segment HTTP Tracking API base URL of the EU region",
			set: endpoint(func(c *config) *string { return &c.EUEndpoint })},
		{env: "SEGMENT_ACCOUNT_MAX_RPS", def: strconv.Itoa(sink.DefaultAccountMaxRPS), help: "accounts mode: Segment requests per second per account, per replica",
			set: func(c *config, v string) error {
				n, err := strconv.ParseFloat(v, 64)
				if err != nil || !(n > 0) || n > 10000 {
					return fmt.Errorf("must be a number above 0 and at most 10000, not %q", v)
				}
				c.AccountMaxRPS = n
				return nil
			}},
		{env: "SEGMENT_ACCOUNT_LINGER", def: sink.DefaultAccountLinger.String(), help: "accounts mode: longest wait of a partial batch for more records while they keep coming (at least SEGMENT_FLUSH_INTERVAL; fewer, larger requests against latency)",
			set: dur(func(c *config) *time.Duration { return &c.AccountLinger })},
		{env: "ACCOUNT_PARK_AFTER", def: sink.DefaultParkAfter.String(), help: "accounts mode: how long an account's deliveries may keep failing before its records are parked to the retry topic",
			set: dur(func(c *config) *time.Duration { return &c.ParkAfter })},
		{env: "SEGMENT_BATCH_SIZE", def: strconv.Itoa(sink.DefaultBatchSize), help: fmt.Sprintf("messages per Segment request (1-%d)", sink.MaxBatchSize),
			set: intIn(func(c *config) *int { return &c.BatchSize }, 1, sink.MaxBatchSize)},
		{env: "SEGMENT_FLUSH_INTERVAL", def: sink.DefaultFlushInterval.String(), help: "longest wait before a partial batch is sent",
			set: dur(func(c *config) *time.Duration { return &c.FlushInterval })},
		{env: "SEGMENT_CONCURRENCY", def: strconv.Itoa(sink.DefaultConcurrency), help: "Segment requests in flight at once",
			set: intIn(func(c *config) *int { return &c.Concurrency }, 1, 1000)},
		{env: "SEGMENT_TIMEOUT", def: sink.DefaultTimeout.String(), help: "timeout of one Segment request",
			set: dur(func(c *config) *time.Duration { return &c.SegmentTimeout })},
		{env: "MAX_IN_FLIGHT", option: "MaxInFlight", def: strconv.Itoa(consumer.DefaultMaxInFlight), help: "records fetched and not yet acknowledged, all partitions",
			set: intIn(func(c *config) *int { return &c.MaxInFlight }, 1, 10_000_000)},
		{env: "MAX_IN_FLIGHT_PER_PARTITION", option: "MaxInFlightPerPartition", def: strconv.Itoa(consumer.DefaultMaxInFlightPerPartition), help: "records fetched and not yet acknowledged, per partition",
			set: intIn(func(c *config) *int { return &c.MaxInFlightPart }, 1, 10_000_000)},
		{env: "MAX_IN_FLIGHT_BYTES", option: "MaxInFlightBytes", def: formatBytes(consumer.DefaultMaxInFlightBytes), help: "key and value bytes of the records in flight (e.g. 32MiB, 64MiB)",
			set: func(c *config, v string) error { return parseBytes(&c.MaxInFlightBytes, v) }},
		{env: "KAFKA_SESSION_TIMEOUT", option: "SessionTimeout", def: consumer.DefaultSessionTimeout.String(), help: "group session timeout: how long a silent member keeps its partitions",
			set: dur(func(c *config) *time.Duration { return &c.SessionTimeout })},
		{env: "KAFKA_HEARTBEAT_INTERVAL", option: "HeartbeatInterval", def: consumer.DefaultHeartbeatInterval.String(), help: "group heartbeat interval",
			set: dur(func(c *config) *time.Duration { return &c.HeartbeatInterval })},
		{env: "KAFKA_REBALANCE_TIMEOUT", option: "RebalanceTimeout", def: consumer.DefaultRebalanceTimeout.String(), help: "how long the group waits for members to rejoin in a rebalance",
			set: dur(func(c *config) *time.Duration { return &c.RebalanceTimeout })},
		{env: "KAFKA_REVOKE_TIMEOUT", option: "RevokeTimeout", def: consumer.DefaultRevokeTimeout.String(), help: "time in-flight records of a revoked partition get before they are abandoned (< rebalance timeout)",
			set: dur(func(c *config) *time.Duration { return &c.RevokeTimeout })},
		{env: "KAFKA_COMMIT_INTERVAL", option: "CommitInterval", def: consumer.DefaultCommitInterval.String(), help: "how often acknowledged offsets are committed",
			set: dur(func(c *config) *time.Duration { return &c.CommitInterval })},
		{env: "ADMIN_ADDR", def: ":8080", help: "listen address of /healthz, /readyz, /metrics and, in accounts mode, /accounts",
			set: func(c *config, v string) error {
				if _, _, err := net.SplitHostPort(v); err != nil {
					return fmt.Errorf("must be host:port, not %q", v)
				}
				c.AdminAddr = v
				return nil
			}},
		{env: "ADMIN_PPROF", def: "false", help: "serve Go runtime profiles under /debug/pprof/ on the admin server",
			set: func(c *config, v string) error { return parseBool(&c.Pprof, v) }},
		{env: "SHUTDOWN_TIMEOUT", option: "ShutdownTimeout", def: consumer.DefaultShutdownTimeout.String(), help: "time in-flight records get to be acknowledged on SIGTERM",
			set: dur(func(c *config) *time.Duration { return &c.ShutdownTimeout })},
		{env: "LOG_LEVEL", def: "info", help: "debug, info, warn or error",
			set: oneOf(func(c *config) *string { return &c.LogLevel }, "debug", "info", "warn", "error")},
		{env: "LOG_FORMAT", def: "json", help: "json or console",
			set: oneOf(func(c *config) *string { return &c.LogFormat }, "json", "console")},
	}
}

// envNames returns the names of every environment variable `run` reads.
func envNames() []string {
	var names []string
	for _, s := range settings() {
		names = append(names, s.env)
	}
	sort.Strings(names)
	return names
}

func flagName(env string) string { return strings.ToLower(strings.ReplaceAll(env, "_", "-")) }

// configError names the setting that is missing or invalid.
type configError struct {
	Name string // the environment variable
	Err  error
}

func (e *configError) Error() string {
	return fmt.Sprintf("%s (--%s): %v", e.Name, flagName(e.Name), e.Err)
}

// parseConfig reads the settings from args and the environment given by
// getenv. It returns flag.ErrHelp after printing help for -h/--help.
func parseConfig(name string, args []string, getenv func(string) string, out io.Writer) (*config, error) {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	ss := settings()
	flagged := map[string]*string{}
	for _, s := range ss {
		flagged[s.env] = fs.String(flagName(s.env), "", s.help)
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			printHelp(out, name, ss)
		}
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })

	c := &config{}
	for _, s := range ss {
		v := getenv(s.env)
		if given[flagName(s.env)] {
			v = *flagged[s.env]
		}
		// Surrounding blanks are never meant (a key pasted with a
		// newline); a blank secret is as good as none.
		v = strings.TrimSpace(v)
		ok := v != ""
		if !ok || v == "" {
			if s.required {
				return nil, &configError{Name: s.env, Err: errors.New("required")}
			}
			v = s.def
		}
		if err := s.set(c, v); err != nil {
			if s.secret {
				err = errors.New("invalid value")
			}
			return nil, &configError{Name: s.env, Err: err}
		}
	}
	if c.SASLMechanism != "" && (c.SASLUsername == "" || c.SASLPassword == "") {
		name := "KAFKA_SASL_USERNAME"
		if c.SASLUsername != "" {
			name = "KAFKA_SASL_PASSWORD"
		}
		return nil, &configError{Name: name, Err: fmt.Errorf("required with KAFKA_SASL_MECHANISM=%s", c.SASLMechanism)}
	}
	if err := checkMode(c); err != nil {
		return nil, err
	}
	if (c.TLSCertFile == "") != (c.TLSKeyFile == "") {
		return nil, &configError{Name: "KAFKA_TLS_KEY_FILE", Err: errors.New("KAFKA_TLS_CERT_FILE and KAFKA_TLS_KEY_FILE go together")}
	}
	// The consumer owns its defaults and the checks across its settings.
	o := consumerOptions(c)
	if err := o.Validate(); err != nil {
		return nil, optionError(ss, err)
	}
	o = o.WithDefaults()
	c.DLQTopic, c.RetryTopic = o.DeadLetterTopic, o.RetryTopic
	return c, nil
}

// consumerOptions is the consumer's share of the settings; the caller adds
// the connections, sink, logger and registry.
func consumerOptions(c *config) consumer.Options {
	return consumer.Options{
		Brokers:                 c.Brokers,
		Topic:                   c.Topic,
		GroupID:                 c.GroupID,
		DeadLetterTopic:         c.DLQTopic,
		RetryTopic:              c.RetryTopic,
		MaxInFlight:             c.MaxInFlight,
		MaxInFlightPerPartition: c.MaxInFlightPart,
		MaxInFlightBytes:        c.MaxInFlightBytes,
		ShutdownTimeout:         c.ShutdownTimeout,
		SessionTimeout:          c.SessionTimeout,
		HeartbeatInterval:       c.HeartbeatInterval,
		RebalanceTimeout:        c.RebalanceTimeout,
		RevokeTimeout:           c.RevokeTimeout,
		CommitInterval:          c.CommitInterval,
	}
}

// optionError names the variables of a consumer option error.
func optionError(ss []setting, err error) error {
	var oe *consumer.OptionError
	if !errors.As(err, &oe) {
		return err
	}
	env := func(field string) string {
		for _, s := range ss {
			if s.option == field {
				return s.env
			}
		}
		return field
	}
	return &configError{Name: env(oe.Field), Err: errors.New(oe.Explain(env))}
}

func printHelp(w io.Writer, name string, ss []setting) {
	fmt.Fprintf(w, "usage: %s [flags]\n\nEvery setting is an environment variable; a flag of the same name in kebab case overrides it.\n\n", name)
	for _, s := range ss {
		note := ""
		switch {
		case s.required && s.secret:
			note = " (required, secret)"
		case s.required:
			note = " (required)"
		case s.secret:
			note = " (secret)"
		case s.def != "":
			note = " (default " + s.def + ")"
		}
		fmt.Fprintf(w, "  --%-28s %-28s %s%s\n", flagName(s.env), s.env, s.help, note)
	}
}

// modeRule is the rule between the three settings that select the mode.
const modeRule = "exactly one of SEGMENT_WRITE_KEY, INTEGRATIONS_TOPIC, INTEGRATIONS_FILE"

// modeError reports that not exactly one of the three mode settings is
// set: one line naming all three (contract v2, "Modes").
type modeError struct {
	Set []string // the ones that are set (none, two or three)
}

func (e *modeError) Error() string {
	set := "none is"
	if len(e.Set) > 0 {
		set = strings.Join(e.Set, " and ") + " are"
	}
	return "set " + modeRule + " (" + set + " set)"
}

// checkMode applies the mode rule.
func checkMode(c *config) error {
	var set []string
	for _, s := range []struct {
		env string
		v   string
	}{{"SEGMENT_WRITE_KEY", c.WriteKey}, {"INTEGRATIONS_TOPIC", c.IntegrationsTopic}, {"INTEGRATIONS_FILE", c.IntegrationsFile}} {
		if s.v != "" {
			set = append(set, s.env)
		}
	}
	if len(set) != 1 {
		return &modeError{Set: set}
	}
	return nil
}

// accounts reports whether c selects accounts mode.
func (c *config) accounts() bool { return c.WriteKey == "" }

func endpoint(field func(*config) *string) func(*config, string) error {
	return func(c *config, v string) error {
		u, err := url.Parse(v)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fmt.Errorf("must be an http(s) URL, not %q", v)
		}
		*field(c) = strings.TrimRight(v, "/")
		return nil
	}
}

func str(field func(*config) *string) func(*config, string) error {
	return func(c *config, v string) error { *field(c) = v; return nil }
}

func dur(field func(*config) *time.Duration) func(*config, string) error {
	return func(c *config, v string) error {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			return fmt.Errorf("must be a positive duration such as 10s, not %q", v)
		}
		*field(c) = d
		return nil
	}
}

func intIn(field func(*config) *int, lo, hi int) func(*config, string) error {
	return func(c *config, v string) error {
		n, err := strconv.Atoi(v)
		if err != nil || n < lo || n > hi {
			return fmt.Errorf("must be an integer from %d to %d, not %q", lo, hi, v)
		}
		*field(c) = n
		return nil
	}
}

func oneOf(field func(*config) *string, allowed ...string) func(*config, string) error {
	return func(c *config, v string) error {
		for _, a := range allowed {
			if strings.EqualFold(v, a) {
				*field(c) = a
				return nil
			}
		}
		return fmt.Errorf("must be one of %s, not %q", strings.Join(allowed, ", "), v)
	}
}

func parseBool(dst *bool, v string) error {
	b, err := strconv.ParseBool(v)
	if err != nil {
		return fmt.Errorf("must be true or false, not %q", v)
	}
	*dst = b
	return nil
}

func parseBrokers(dst *[]string, v string) error {
	var out []string
	for _, b := range strings.Split(v, ",") {
		b = strings.TrimSpace(b)
		if b == "" {
			continue
		}
		if _, _, err := net.SplitHostPort(b); err != nil {
			return fmt.Errorf("%q is not host:port", b)
		}
		out = append(out, b)
	}
	if len(out) == 0 {
		return errors.New("no broker address")
	}
	*dst = out
	return nil
}

// parseBytes reads a size such as 1048576, 512KiB or 32MiB.
// byteUnits are the suffixes of sizes, largest first.
func byteUnits() []struct {
	suffix string
	mult   int
} {
	return []struct {
		suffix string
		mult   int
	}{{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}}
}

// formatBytes writes n the way parseBytes reads it, in the largest unit
// that divides it.
func formatBytes(n int) string {
	for _, u := range byteUnits() {
		if n%u.mult == 0 {
			return strconv.Itoa(n/u.mult) + u.suffix
		}
	}
	return strconv.Itoa(n)
}

func parseBytes(dst *int, v string) error {
	mult, num := 1, v
	for _, u := range byteUnits() {
		if n, ok := strings.CutSuffix(v, u.suffix); ok {
			mult, num = u.mult, n
			break
		}
	}
	n, err := strconv.Atoi(strings.TrimSpace(num))
	if err != nil || n < 1 || n > (1<<40)/mult {
		return fmt.Errorf("must be a size such as 32MiB, not %q", v)
	}
	*dst = n * mult
	return nil
}
