package mapping

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
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
	for _, dir := range []string{"records", "golden", "golden-accounts"} {
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

// accountValue is the i-th golden record as an accounts-mode producer
// sends it: with an accountId in front, a string for even i and an integer
// for odd i, so both forms are pinned.
func accountValue(i int, value []byte) []byte {
	account := `"acct-` + strconv.Itoa(1000+i) + `"`
	if i%2 == 1 {
		account = strconv.Itoa(1000 + i)
	}
	return append([]byte(`{"accountId":`+account+`,`), bytes.TrimPrefix(bytes.TrimSpace(value), []byte("{"))...)
}

// TestGoldenAccounts maps every golden record with an accountId in
// accounts mode and compares with testdata/golden-accounts (-update
// rewrites them). The same record mapped in single-source mode must give
// exactly the single-source golden: the account is never forwarded and
// does not move single-source message ids.
func TestGoldenAccounts(t *testing.T) {
	for i, v := range readRecords(t) {
		ev := catalogue[i]
		t.Run(ev.Type, func(t *testing.T) {
			r := goldenRecord(i, accountValue(i, v))
			c, err := MapAccount(r)
			if err != nil {
				t.Fatalf("MapAccount: %v", err)
			}
			if want := strings.Trim(strings.TrimPrefix(string(accountValue(i, nil)), `{"accountId":`), `",`); c.AccountID != want {
				t.Errorf("AccountID: got %q, want %q", c.AccountID, want)
			}
			got := append(c.JSON, '\n')
			path := filepath.Join("testdata", "golden-accounts", ev.Type+".json")
			if *update {
				if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(path, got, 0o644); err != nil {
					t.Fatal(err)
				}
			} else if want, err := os.ReadFile(path); err != nil {
				t.Fatalf("%v (run with -update to create it)", err)
			} else if !bytes.Equal(got, want) {
				t.Errorf("encoded call differs from %s\n got: %s\nwant: %s", path, got, want)
			}

			single, err := Map(r)
			if err != nil {
				t.Fatalf("Map: %v", err)
			}
			want, err := os.ReadFile(filepath.Join("testdata", "golden", ev.Type+".json"))
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(append(single.JSON, '\n'), want) {
				t.Errorf("single-source mode with an accountId differs from the golden\n got: %s\nwant: %s", single.JSON, want)
			}
			var rec struct{ ID string }
			if err := json.Unmarshal(v, &rec); err != nil {
				t.Fatal(err)
			}
			wantID := single.MessageID
			if rec.ID != "" {
				wantID = uuid.NewSHA1(namespace, []byte("account:"+c.AccountID+"/id:"+rec.ID)).String()
			}
			if c.MessageID != wantID {
				t.Errorf("messageId: got %s, want %s (id %q)", c.MessageID, wantID, rec.ID)
			}
		})
	}
}
