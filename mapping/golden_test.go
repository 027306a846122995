package mapping

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite testdata/golden from the current mapping")

// goldenRecord is the Kafka record the golden test wraps around the raw
// value of the i-th catalogue event: fixed facts, so the goldens are stable.
func goldenRecord(i int, value []byte) Record {
	return Record{
		Topic:     "produktly.interactions",
		Partition: 3,
		Offset:    int64(1000 + i),
		Time:      time.Date(2026, 11, 29, 10, 0, 5, 250_000_000, time.UTC),
		Value:     value,
	}
}

// readRecords returns the raw golden input of every catalogue event.
func readRecords(t testing.TB) [][]byte {
	t.Helper()
	var values [][]byte
	for _, ev := range catalogue {
		v, err := os.ReadFile(filepath.Join("testdata", "records", ev.Type+".json"))
		if err != nil {
			t.Fatalf("every event needs a golden record: %v", err)
		}
		values = append(values, v)
	}
	return values
}

// TestGolden maps one realistic raw record per event (testdata/records) and
// compares the encoded call byte for byte with testdata/golden. Run
// `go test ./mapping -run TestGolden -update` to rewrite the goldens, then
// read the diff: it is the change users will see.
func TestGolden(t *testing.T) {
	for i, v := range readRecords(t) {
		ev := catalogue[i]
		t.Run(ev.Type, func(t *testing.T) {
			c, err := Map(goldenRecord(i, v))
			if err != nil {
				t.Fatalf("Map: %v", err)
			}
			if c.Event != ev.Name {
				t.Errorf("event: got %q, want %q", c.Event, ev.Name)
			}
			got := append(c.JSON, '\n')
			path := filepath.Join("testdata", "golden", ev.Type+".json")
			if *update {
				if err := os.WriteFile(path, got, 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run with -update to create it)", err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("encoded call differs from %s\n got: %s\nwant: %s", path, got, want)
			}
		})
	}
}

// TestGoldenFilesMatchCatalogue keeps testdata honest: no golden or record
// file without a catalogue event.
func TestGoldenFilesMatchCatalogue(t *testing.T) {
	for _, dir := range []string{"records", "golden"} {
		files, err := filepath.Glob(filepath.Join("testdata", dir, "*.json"))
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range files {
			typ := strings.TrimSuffix(filepath.Base(f), ".json")
			if lookup([]byte(typ)) == nil || lookup([]byte(typ)).Type != typ {
				t.Errorf("%s: no catalogue event %q", f, typ)
			}
		}
		if len(files) != len(catalogue) {
			t.Errorf("testdata/%s: got %d files, want one per event (%d)", dir, len(files), len(catalogue))
		}
	}
}
