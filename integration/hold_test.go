package integration

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
	"testing"
	"time"
)

// TestHoldKafka lends the Kafka container TestMain started to other test
// processes. scripts/test.sh runs it in the background in containers mode,
// so that the broker tests of every package (consumer, integrations, cmd,
// and this one) run against one single node through KAFKA_BROKERS. It
// writes the variables to KAFKA_HOLD_FILE and returns once that file is
// removed; TestMain then removes the container. Without KAFKA_HOLD_FILE it
// skips.
func TestHoldKafka(t *testing.T) {
	path := os.Getenv("KAFKA_HOLD_FILE")
	if path == "" {
		t.Skip("KAFKA_HOLD_FILE is not set: nothing to hold")
	}
	if env.kafka == nil {
		t.Fatalf("no Kafka container to hold (KAFKA_BROKERS=%q, %s)", os.Getenv("KAFKA_BROKERS"), env.skip)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "KAFKA_BROKERS=%s\nKAFKA_BROKER_DESC=%s\n", strings.Join(env.brokers, ","), env.desc)
	for _, k := range []string{"KAFKA_SCRAM_BROKERS", "KAFKA_SCRAM_CA_FILE", "KAFKA_SCRAM_USER", "KAFKA_SCRAM_PASSWORD"} {
		if v := os.Getenv(k); v != "" {
			fmt.Fprintf(&b, "%s=%s\n", k, v)
		}
	}
	// Written whole, then renamed: the reader never sees half of it.
	if err := os.WriteFile(path+".tmp", []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(path+".tmp", path); err != nil {
		t.Fatal(err)
	}
	t.Logf("holding %s at %s until %s is removed", env.desc, strings.Join(env.brokers, ","), path)
	for {
		if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
			return
		}
		time.Sleep(500 * time.Millisecond)
	}
}
