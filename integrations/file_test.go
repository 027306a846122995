package integrations

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
)

// fileBound is the contract's bound for a changed file to take effect.
const fileBound = 5 * time.Second

const threeAccounts = `{
  "acct-us": {"writeKey": "wk-us-111", "region": "us"},
  "acct-eu": {"writeKey": "wk-eu-222", "region": "eu"},
  "acct-off": {"writeKey": "wk-off-333", "active": false},
  "acct-bad": {"writeKey": "wk-bad-444", "region": "mars"}
}`

var threeKeys = []string{"wk-us-111", "wk-eu-222", "wk-off-333", "wk-bad-444"}

// runTable runs tb until the test ends and waits for Run to return.
func runTable(t *testing.T, tb *Table) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := tb.Run(ctx); err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	t.Cleanup(func() { cancel(); wg.Wait() })
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	// Written aside and renamed, as editors and config tools do, so a poll
	// never reads half a file.
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

func keyOf(tb *Table, account string) string {
	it, _ := tb.Lookup(account)
	return it.WriteKey.Reveal()
}

func TestFileLoad(t *testing.T) {
	path := filepath.Join(t.TempDir(), "integrations.json")
	writeFile(t, path, threeAccounts)
	log, logs := debugLogger()
	reg := prometheus.NewRegistry()
	tb, err := NewFile(FileOptions{Path: path, Logger: log, Registerer: reg})
	if err != nil {
		t.Fatalf("NewFile: %v", err)
	}
	if !tb.Ready() {
		t.Error("a loaded file is not Ready")
	}
	select {
	case <-tb.Loaded():
	default:
		t.Error("Loaded is not closed")
	}
	for _, tc := range []struct {
		account string
		ok      bool
		region  Region
	}{{"acct-us", true, RegionUS}, {"acct-eu", true, RegionEU}, {"acct-off", false, RegionUS}, {"acct-bad", false, ""}, {"nobody", false, ""}} {
		if it, ok := tb.Lookup(tc.account); ok != tc.ok || it.Region != tc.region {
			t.Errorf("Lookup(%s) = %v, %v; want %v, %v", tc.account, it.Region, ok, tc.region, tc.ok)
		}
	}
	for st, want := range map[State]float64{StateActive: 2, StateInactive: 1, StateInvalid: 1} {
		if got := loadedGauge(tb, st); got != want {
			t.Errorf("%s{state=%q} = %v, want %v", MetricLoaded, st, got, want)
		}
	}
	if got := errorsCounted(tb, reasonInvalid); got != 1 {
		t.Errorf("%s{reason=%q} = %v, want 1", MetricErrors, reasonInvalid, got)
	}
	if !strings.Contains(logs.String(), `"account":"acct-bad"`) || !strings.Contains(logs.String(), `region must be \"us\" or \"eu\"`) {
		t.Errorf("the invalid integration is not logged with its account and problem:\n%s", logs)
	}
	noSecrets(t, threeKeys, logs.String(), gatherText(t, reg))
}

func TestFileStartupErrors(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct{ name, content string }{
		{"not JSON", `acct-us: wk-us-111`},
		{"truncated", `{"acct-us": {"writeKey": "wk-us-111"`},
		{"an array", `[{"writeKey": "wk-us-111"}]`},
		{"a string", `"wk-us-111"`},
		{"empty", ``},
		{"bad value", `{"acct-us": {"writeKey": wk-us-111}}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(dir, strings.ReplaceAll(tc.name, " ", "_")+".json")
			writeFile(t, path, tc.content)
			_, err := NewFile(FileOptions{Path: path, Logger: zerolog.Nop()})
			var fe *FileError
			if !errors.As(err, &fe) || fe.Path != path {
				t.Fatalf("NewFile: got %v, want a *FileError for %s", err, path)
			}
			noSecrets(t, []string{"wk-us-111", "wk-", "acct-us"}, err.Error())
		})
	}
	_, err := NewFile(FileOptions{Path: filepath.Join(dir, "absent.json")})
	var fe *FileError
	if !errors.As(err, &fe) || !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a missing file: got %v, want a *FileError wrapping os.ErrNotExist", err)
	}
	if _, err := NewFile(FileOptions{}); err == nil {
		t.Error("no path: no error")
	}
}

// TestFileChanges: an edited file takes effect, accounts come and go, and a
// file that stops parsing keeps the previous table and is reported once.
func TestFileChanges(t *testing.T) {
	path := filepath.Join(t.TempDir(), "integrations.json")
	writeFile(t, path, threeAccounts)
	log, logs := debugLogger()
	tb, err := NewFile(FileOptions{Path: path, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	runTable(t, tb)

	// Rotate a key, change a region, deactivate, add, remove.
	writeFile(t, path, `{"acct-us": {"writeKey": "wk-us-555", "region": "eu"}, "acct-eu": {"writeKey": "wk-eu-222", "active": false}, "acct-new": {"writeKey": "wk-new-666"}}`)
	took := waitFor(t, fileBound, "the edited file in force", func() bool { return keyOf(tb, "acct-us") == "wk-us-555" })
	t.Logf("edited file in force after %v", took)
	if it, ok := tb.Lookup("acct-us"); !ok || it.Region != RegionEU {
		t.Errorf("acct-us: region %v, ok %v; want eu, true", it.Region, ok)
	}
	if _, ok := tb.Lookup("acct-eu"); ok {
		t.Error("acct-eu was deactivated")
	}
	if _, ok := tb.Lookup("acct-new"); !ok {
		t.Error("acct-new was added")
	}
	if _, ok := tb.Lookup("acct-off"); ok || tb.Snapshot().Len() != 3 {
		t.Errorf("acct-off was removed: table of %d", tb.Snapshot().Len())
	}

	// In place, not renamed: same inode, new size and time.
	if err := os.WriteFile(path, []byte(`{"acct-us": {"writeKey": "wk-us-777"}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	waitFor(t, fileBound, "the file rewritten in place in force", func() bool { return keyOf(tb, "acct-us") == "wk-us-777" })

	// A file that stops parsing: the previous table stays; logged and
	// counted once however many polls see it.
	before := errorsCounted(tb, reasonFile)
	writeFile(t, path, `{"acct-us": {"writeKey": "wk-us-888"`)
	waitFor(t, fileBound, "the unparsable file reported", func() bool { return errorsCounted(tb, reasonFile) == before+1 })
	if got := keyOf(tb, "acct-us"); got != "wk-us-777" {
		t.Errorf("after a bad file: key %q, want the previous wk-us-777", got)
	}
	// Removed: reported once too, the table stays.
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	waitFor(t, fileBound, "the removed file reported", func() bool { return errorsCounted(tb, reasonFile) == before+2 })
	// Back and good: in force, and the counter moved only twice for the
	// many polls that saw the broken and the missing file.
	writeFile(t, path, `{"acct-us": {"writeKey": "wk-us-999"}}`)
	waitFor(t, fileBound, "the fixed file in force", func() bool { return keyOf(tb, "acct-us") == "wk-us-999" })
	if got := errorsCounted(tb, reasonFile); got != before+2 {
		t.Errorf("%s{reason=%q} = %v, want %v", MetricErrors, reasonFile, got, before+2)
	}
	if !strings.Contains(logs.String(), "keeping the previous integrations") {
		t.Errorf("the bad file is not logged:\n%s", logs)
	}
	noSecrets(t, append(threeKeys, "wk-us-555", "wk-new-666", "wk-us-777", "wk-us-888", "wk-us-999"), logs.String())
}

// TestFileSecretSwap mounts the file as the kubelet mounts a Secret:
//
//	dir/integrations.json → ..data/integrations.json
//	dir/..data → ..2026_12_01_10_00_00.000000001
//
// and updates it the kubelet's way: a new timestamped directory, a new
// ..data symlink renamed over the old one (atomic), the old directory
// removed. The file's own path and symlink never change.
func TestFileSecretSwap(t *testing.T) {
	dir := t.TempDir()
	version := func(name, content string) {
		if err := os.Mkdir(filepath.Join(dir, name), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name, "integrations.json"), []byte(content), 0o400); err != nil {
			t.Fatal(err)
		}
	}
	swap := func(name string) {
		tmp := filepath.Join(dir, "..data_tmp")
		if err := os.Symlink(name, tmp); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, filepath.Join(dir, "..data")); err != nil {
			t.Fatal(err)
		}
	}
	version("..2026_12_01_10_00_00.000000001", threeAccounts)
	if err := os.Symlink("..2026_12_01_10_00_00.000000001", filepath.Join(dir, "..data")); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "integrations.json")
	if err := os.Symlink(filepath.Join("..data", "integrations.json"), path); err != nil {
		t.Fatal(err)
	}
	log, logs := debugLogger()
	tb, err := NewFile(FileOptions{Path: path, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	runTable(t, tb)
	if got := keyOf(tb, "acct-us"); got != "wk-us-111" {
		t.Fatalf("through the symlinks: key %q", got)
	}

	for i, content := range []string{
		`{"acct-us": {"writeKey": "wk-us-rotated", "region": "eu"}}`,
		`{"acct-us": {"writeKey": "wk-us-again"}}`,
	} {
		prev, _ := os.Readlink(filepath.Join(dir, "..data"))
		name := "..2026_12_01_10_0" + string(rune('1'+i)) + "_00.000000001"
		version(name, content)
		swap(name)
		if err := os.RemoveAll(filepath.Join(dir, prev)); err != nil {
			t.Fatal(err)
		}
		want := []string{"wk-us-rotated", "wk-us-again"}[i]
		took := waitFor(t, fileBound, "the swapped Secret in force", func() bool { return keyOf(tb, "acct-us") == want })
		t.Logf("swap %d in force after %v", i+1, took)
	}
	if tb.Snapshot().Len() != 1 {
		t.Errorf("table of %d accounts, want 1", tb.Snapshot().Len())
	}
	if errorsCounted(tb, reasonFile) != 0 {
		t.Errorf("the swaps were reported as errors:\n%s", logs)
	}
	noSecrets(t, append(threeKeys, "wk-us-rotated", "wk-us-again"), logs.String())
}
