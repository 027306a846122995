package integrations_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/produktly/produktly-segment/integrations"
	"github.com/rs/zerolog"
)

func ExampleNewFile() {
	dir, _ := os.MkdirTemp("", "integrations-example")
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "integrations.json")
	os.WriteFile(path, []byte(`{
	  "42":   {"writeKey": "wk-us-example", "region": "us"},
	  "1001": {"writeKey": "wk-eu-example", "region": "eu"},
	  "7":    {"writeKey": "wk-off-example", "active": false}
	}`), 0o600)

	table, err := integrations.NewFile(integrations.FileOptions{Path: path, Logger: zerolog.Nop()})
	if err != nil {
		fmt.Println("configuration error:", err)
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- table.Run(ctx) }() // follows the file until ctx ends
	defer func() { cancel(); <-done }()

	fmt.Println("ready:", table.Ready())
	for _, account := range []string{"42", "1001", "7", "999"} {
		it, ok := table.Lookup(account) // the per-record path: no lock, no allocation
		fmt.Printf("%s: send %v, region %q, key %v\n", account, ok, it.Region, it.WriteKey)
	}
	// Output:
	// ready: true
	// 42: send true, region "us", key [redacted]
	// 1001: send true, region "eu", key [redacted]
	// 7: send false, region "us", key [redacted]
	// 999: send false, region "", key [redacted]
}
