package consumer

import (
	"fmt"
	"time"
)

// The defaults of Options, exported so that a caller that reads its
// settings from elsewhere (the service's environment and --help) states
// the same values.
const (
	DefaultTopic                   = "produktly.interactions"
	DefaultGroupID                 = "produktly-segment"
	DefaultMaxInFlight             = 50000
	DefaultMaxInFlightPerPartition = 10000
	DefaultMaxInFlightBytes        = 32 << 20
	DefaultFetchMaxBytes           = 1 << 20
	DefaultCommitInterval          = time.Second
	DefaultSessionTimeout          = 30 * time.Second
	DefaultHeartbeatInterval       = 3 * time.Second
	DefaultRebalanceTimeout        = 30 * time.Second
	DefaultRevokeTimeout           = 10 * time.Second
	DefaultShutdownTimeout         = 25 * time.Second
)

// OptionError reports an invalid Options setting. Field is the Options
// field at fault; Other, for a rule that relates two settings, names the
// other field. Callers that read settings from elsewhere (environment,
// flags) map the names to their own.
type OptionError struct {
	Field string
	Other string
	// Rule says what is wrong, with %s standing for Other when set.
	Rule string
}

func (e *OptionError) Error() string {
	return "consumer: " + e.Field + ": " + e.Explain(func(f string) string { return f })
}

// Explain states the rule with Other named by name(Other).
func (e *OptionError) Explain(name func(field string) string) string {
	if e.Other == "" {
		return e.Rule
	}
	return fmt.Sprintf(e.Rule, name(e.Other))
}

// WithDefaults returns o with every unset setting at its default: the one
// place the defaults (such as the dead-letter and retry topic names) are
// computed.
func (o Options) WithDefaults() Options {
	o.setDefaults()
	return o
}
