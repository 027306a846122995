package integrations

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
)

// DefaultFileInterval is how often NewFile's table looks at its file. The
// contract wants a change effective within 5 seconds.
const DefaultFileInterval = time.Second

// FileOptions configure a table read from INTEGRATIONS_FILE.
type FileOptions struct {
	// Path of the JSON file: one object mapping account id → integration
	// object. Required. A symlink is followed on every poll, so a
	// Kubernetes Secret's ..data swap is seen.
	Path string
	// Interval between polls of the file's identity (device, inode, size,
	// modification time). Default DefaultFileInterval.
	Interval time.Duration
	// Logger for invalid integrations and unreadable files. Default: none.
	Logger zerolog.Logger
	// Registerer for the table's metrics. Default nil: not registered.
	Registerer prometheus.Registerer
}

// Validate reports a missing path or a negative interval.
func (o *FileOptions) Validate() error {
	if o.Path == "" {
		return errors.New("integrations: FileOptions.Path is required")
	}
	if o.Interval < 0 {
		return errors.New("integrations: FileOptions.Interval must not be negative")
	}
	return nil
}

// FileError reports an integrations file that cannot be read or is not one
// JSON object. It never carries the file's content.
type FileError struct {
	Path string
	Err  error
}

func (e *FileError) Error() string { return "integrations file " + e.Path + ": " + e.Err.Error() }
func (e *FileError) Unwrap() error { return e.Err }

// NewFile loads the file and returns its table, Ready at once. A file that
// cannot be read or does not parse is a *FileError (a configuration error
// at startup); an invalid integration in it is not an error: that account
// is inactive, logged and counted. Run then polls the file: a change takes
// effect within Interval; a file that stops parsing keeps the previous
// table, and is logged and counted (reason "unreadable_file").
func NewFile(o FileOptions) (*Table, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	if o.Interval == 0 {
		o.Interval = DefaultFileInterval
	}
	t, err := newTable(o.Logger, o.Registerer)
	if err != nil {
		return nil, err
	}
	f := &fileSource{t: t, o: o, rep: reporter{log: o.Logger, m: t.m}}
	if err := f.load(); err != nil {
		return nil, err
	}
	t.markReady()
	t.run = f.run
	return t, nil
}

type fileSource struct {
	t   *Table
	o   FileOptions
	rep reporter

	info    os.FileInfo // of the content last read
	sum     [sha256.Size]byte
	lastErr string // the last stat failure reported, so a missing file is reported once
}

// load reads and publishes the file if its content changed.
func (f *fileSource) load() error {
	info, err := os.Stat(f.o.Path)
	if err != nil {
		return &FileError{Path: f.o.Path, Err: err}
	}
	data, err := os.ReadFile(f.o.Path)
	if err != nil {
		return &FileError{Path: f.o.Path, Err: err}
	}
	f.info = info
	sum := sha256.Sum256(data)
	if sum == f.sum {
		return nil // touched, or swapped for the same content
	}
	m, err := parseFile(data, &f.rep)
	if err != nil {
		return &FileError{Path: f.o.Path, Err: err}
	}
	f.sum = sum
	f.t.publish(m)
	f.o.Logger.Info().Str("path", f.o.Path).Int("accounts", len(m)).
		Int("active", f.t.Snapshot().Count(StateActive)).Msg("integrations loaded from file")
	return nil
}

// parseFile reads the file's object. Invalid integrations are reported and
// stored as invalid; a file that is not one JSON object is an error.
func parseFile(data []byte, rep *reporter) (map[string]Integration, error) {
	defer rep.flush()
	if v := bytes.TrimSpace(data); len(v) == 0 || v[0] != '{' {
		return nil, errors.New("not a JSON object mapping account id to integration")
	}
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(data, &raw); err != nil {
		var se *json.SyntaxError
		if errors.As(err, &se) {
			// The message would quote a character of the file: say where.
			return nil, fmt.Errorf("not valid JSON (at byte %d)", se.Offset)
		}
		return nil, errors.New("not a JSON object mapping account id to integration")
	}
	m := make(map[string]Integration, len(raw))
	for account, v := range raw {
		it, err := Parse(account, v)
		if err != nil {
			rep.invalid(err)
		}
		m[account] = it
	}
	return m, nil
}

func (f *fileSource) run(ctx context.Context) error {
	tick := time.NewTicker(f.o.Interval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
		info, err := os.Stat(f.o.Path)
		if err != nil {
			// Gone or unreachable: keep the previous table; log and count
			// once per distinct failure, not once per poll.
			if msg := err.Error(); msg != f.lastErr {
				f.lastErr = msg
				f.fail(&FileError{Path: f.o.Path, Err: err})
			}
			continue
		}
		f.lastErr = ""
		if sameFile(f.info, info) {
			continue
		}
		// A new content (load records its identity even when it does not
		// parse, so a broken file is reported once, not once per poll).
		if err := f.load(); err != nil {
			f.fail(err)
		}
	}
}

// fail reports a file that could not be loaded; the previous table stays.
func (f *fileSource) fail(err error) {
	f.t.m.errors.WithLabelValues(reasonFile).Inc()
	f.o.Logger.Error().Err(err).Str("path", f.o.Path).
		Msg("integrations file unreadable: keeping the previous integrations")
}

// sameFile reports whether b is the file a was: same device and inode
// (a Secret's symlink swap changes them), size and modification time.
func sameFile(a, b os.FileInfo) bool {
	return a != nil && b != nil && os.SameFile(a, b) && a.Size() == b.Size() && a.ModTime().Equal(b.ModTime())
}
