package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/produktly/produktly-segment/integrations"
)

// The file the accounts contender runs with holds every account, active,
// in the region benchAccounts gives it, as the service parses it.
func TestWriteIntegrationsIsAValidFile(t *testing.T) {
	accounts := benchAccounts(30)
	path := filepath.Join(t.TempDir(), "integrations.json")
	if err := writeIntegrations(path, accounts); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(b, &raw); err != nil {
		t.Fatal(err)
	}
	if len(raw) != len(accounts) {
		t.Fatalf("%d accounts in the file, want %d", len(raw), len(accounts))
	}
	eu := 0
	for _, a := range accounts {
		it, err := integrations.Parse(a.id, raw[a.id])
		if err != nil {
			t.Fatalf("account %s: %v", a.id, err)
		}
		if !it.Active || string(it.Region) != a.region {
			t.Errorf("account %s: active %v region %q, want active in %q", a.id, it.Active, it.Region, a.region)
		}
		if it.Region == integrations.RegionEU {
			eu++
		}
	}
	if eu != 10 {
		t.Errorf("%d EU accounts of 30, want 10", eu)
	}
}
