package consumer

import "fmt"

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
