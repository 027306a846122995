package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/produktly/produktly-segment/mapping"
)

// runValidate maps newline-delimited raw records from a file or stdin and
// prints, per line, the Segment call or the error code and message. Exit
// status 1 if any record is bad, 2 if the input cannot be read.
func runValidate(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	in, name := stdin, "stdin"
	switch {
	case len(args) == 1 && (args[0] == "-h" || args[0] == "--help"):
		fmt.Fprintln(stdout, "usage: produktly-segment validate [FILE]\n\nReads newline-delimited raw Produktly records from FILE (or stdin) and prints,\nper line, the Segment track call it becomes or its error code and message.\nExit status 1 if any record is bad.")
		return 0
	case len(args) == 1 && args[0] != "-":
		f, err := os.Open(args[0])
		if err != nil {
			fmt.Fprintf(stderr, "produktly-segment validate: %v\n", err)
			return 2
		}
		defer f.Close()
		in, name = f, args[0]
	case len(args) > 1:
		fmt.Fprintln(stderr, "produktly-segment validate: at most one FILE")
		return 2
	}
	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 64*1024), 16<<20)
	// Records read here have no Kafka coordinates: the line number stands
	// in for the offset, so messageIds of records without an id are only
	// stable for this file.
	now := time.Now().UTC().Truncate(time.Millisecond)
	good, bad := 0, 0
	for line := 1; sc.Scan(); line++ {
		raw := sc.Bytes()
		if len(raw) == 0 {
			continue
		}
		call, err := mapping.Map(mapping.Record{Topic: name, Offset: int64(line), Time: now, Value: raw})
		var merr *mapping.Error
		switch {
		case errors.As(err, &merr):
			bad++
			fmt.Fprintf(stdout, "line %d: error %s: %s\n", line, merr.Code, merr.Error())
		case err != nil:
			bad++
			fmt.Fprintf(stdout, "line %d: error: %v\n", line, err)
		default:
			good++
			fmt.Fprintf(stdout, "line %d: ok %s\n", line, call.JSON)
		}
	}
	if err := sc.Err(); err != nil {
		fmt.Fprintf(stderr, "produktly-segment validate: reading %s: %v\n", name, err)
		return 2
	}
	fmt.Fprintf(stdout, "%d ok, %d bad\n", good, bad)
	if bad > 0 {
		return 1
	}
	return 0
}
