package main

import (
	"flag"
	"strings"
)

// child is what a reference consumer child is told: where to read and as
// which group.
type child struct {
	brokers      []string
	topic, group string
}

// parseChild reads a reference child's flags; ok is false on bad usage.
func parseChild(name string, args []string) (child, bool) {
	fs := flag.NewFlagSet("produktly-bench "+name, flag.ContinueOnError)
	brokers := fs.String("brokers", "", "")
	topic := fs.String("topic", "", "")
	group := fs.String("group", "", "")
	if err := fs.Parse(args); err != nil {
		return child{}, false
	}
	return child{brokers: strings.Split(*brokers, ","), topic: *topic, group: *group}, true
}
