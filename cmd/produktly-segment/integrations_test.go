package main

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/produktly/produktly-segment/integrations"
	"github.com/rs/zerolog"
	"github.com/segmentio/kafka-go"
)

func TestIntegrationsBadInput(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "key")
	if err := os.WriteFile(keyFile, []byte(secretWriteKey+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	empty := filepath.Join(dir, "empty")
	if err := os.WriteFile(empty, []byte(" \n"), 0o600); err != nil {
		t.Fatal(err)
	}
	two := filepath.Join(dir, "two")
	if err := os.WriteFile(two, []byte(secretWriteKey+"\n"+secretWriteKey+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"KAFKA_BROKERS": "127.0.0.1:1", "INTEGRATIONS_TOPIC": "produktly.integrations"}
	for _, tc := range []struct {
		name string
		args []string
		env  map[string]string
		want string // in stderr
	}{
		{"no subcommand", nil, env, "a subcommand is required: put, deactivate or list"},
		{"unknown subcommand", []string{"remove", "42"}, env, `unknown subcommand "remove"`},
		{"put without account", []string{"put", "--write-key-file", keyFile}, env, "put: exactly one ACCOUNT is required"},
		{"put with two accounts", []string{"put", "1", "2", "--write-key-file", keyFile}, env, "put: exactly one ACCOUNT is required"},
		{"put without key file", []string{"put", "42"}, env, "put: --write-key-file is required"},
		{"key file missing", []string{"put", "42", "--write-key-file", filepath.Join(dir, "absent")}, env, "--write-key-file: open"},
		{"key file empty", []string{"put", "42", "--write-key-file", empty}, env, "must hold one write key and nothing else"},
		{"key file of two keys", []string{"put", "42", "--write-key-file", two}, env, "must hold one write key and nothing else"},
		{"unknown region", []string{"put", "42", "--write-key-file", keyFile, "--region", "ap"}, env, `--region: region must be "us" or "eu"`},
		{"region in upper case", []string{"put", "42", "--write-key-file", keyFile, "--region", "EU"}, env, `--region: region must be "us" or "eu"`},
		{"key on the command line", []string{"put", "42", "--write-key", secretWriteKey}, env, "flag provided but not defined: -write-key"},
		{"deactivate with a region", []string{"deactivate", "42", "--region", "eu"}, env, "deactivate: --write-key-file and --region are for put"},
		{"list with an argument", []string{"list", "42"}, env, `list takes no arguments`},
		{"no topic", []string{"list"}, map[string]string{"KAFKA_BROKERS": "127.0.0.1:1"}, "INTEGRATIONS_TOPIC (--topic): required"},
		{"no brokers", []string{"list"}, map[string]string{"INTEGRATIONS_TOPIC": "t"}, "KAFKA_BROKERS"},
		{"blank account", []string{"put", " ", "--write-key-file", keyFile}, env, "the account id must be non-empty"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			stdout, stderr, code := exe(t, tc.env, "", append([]string{"integrations"}, tc.args...)...)
			if code != 2 {
				t.Errorf("exit %d, want 2\nstderr: %s", code, stderr)
			}
			if !strings.Contains(stderr, tc.want) {
				t.Errorf("stderr %q\nlacks %q", stderr, tc.want)
			}
			noSecrets(t, "output", stdout+stderr)
		})
	}
	stdout, _, code := exe(t, env, "", "integrations", "--help")
	if code != 0 || !strings.Contains(stdout, "integrations put ACCOUNT --write-key-file FILE [--region us|eu]") {
		t.Errorf("--help: exit %d\n%s", code, stdout)
	}
}

// TestIntegrationsCommand runs put, deactivate and list against the broker
// named by KAFKA_BROKERS, and reads the topic back as the service does.
func TestIntegrationsCommand(t *testing.T) {
	b := os.Getenv("KAFKA_BROKERS")
	if b == "" {
		if os.Getenv("CI") == "true" {
			t.Fatal("CI=true and KAFKA_BROKERS is not set")
		}
		t.Skip("no Kafka broker: set KAFKA_BROKERS")
	}
	bs := strings.Split(b, ",")
	topic := "integrations-cmd-test-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	client := &kafka.Client{Addr: kafka.TCP(bs...), Timeout: 30 * time.Second}
	res, err := client.CreateTopics(t.Context(), &kafka.CreateTopicsRequest{Topics: []kafka.TopicConfig{{
		Topic: topic, NumPartitions: 3, ReplicationFactor: 1,
		ConfigEntries: []kafka.ConfigEntry{{ConfigName: "cleanup.policy", ConfigValue: "compact"}},
	}}})
	if err != nil || res.Errors[topic] != nil {
		t.Fatalf("create %s: %v %v", topic, err, res.Errors[topic])
	}
	t.Cleanup(func() { client.DeleteTopics(context.Background(), &kafka.DeleteTopicsRequest{Topics: []string{topic}}) })

	dir := t.TempDir()
	keys := map[string]string{"acct-us": secretWriteKey + "-us", "acct-eu": secretWriteKey + "-eu", "acct-off": secretWriteKey + "-off"}
	env := map[string]string{"KAFKA_BROKERS": b, "INTEGRATIONS_TOPIC": topic, "LOG_LEVEL": "debug"}
	run := func(want int, args ...string) string {
		t.Helper()
		stdout, stderr, code := exe(t, env, "", append([]string{"integrations"}, args...)...)
		if code != want {
			t.Fatalf("%v: exit %d, want %d\nstdout: %s\nstderr: %s", args, code, want, stdout, stderr)
		}
		for _, k := range keys {
			if strings.Contains(stdout+stderr, k) {
				t.Errorf("%v printed a write key:\n%s%s", args, stdout, stderr)
			}
		}
		return stdout + stderr
	}
	for account, key := range keys {
		f := filepath.Join(dir, account)
		if err := os.WriteFile(f, []byte(key+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		args := []string{"put", account, "--write-key-file", f}
		if account == "acct-eu" {
			args = append(args, "--region", "eu")
		}
		if out := run(0, args...); !strings.Contains(out, "put "+account+": region ") {
			t.Errorf("put: %s", out)
		}
	}
	if out := run(0, "deactivate", "acct-off"); !strings.Contains(out, "deactivated acct-off") {
		t.Errorf("deactivate: %s", out)
	}
	if out := run(2, "deactivate", "nobody"); !strings.Contains(out, `account "nobody": no integration for this account`) {
		t.Errorf("deactivate nobody: %s", out)
	}
	out := run(0, "list")
	var rows []string
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		rows = append(rows, strings.Join(strings.Fields(line), " "))
	}
	want := []string{
		"ACCOUNT REGION ACTIVE STATE PROBLEM",
		"acct-eu eu true active",
		"acct-off us false inactive",
		"acct-us us true active",
		"3 accounts in " + topic,
	}
	if strings.Join(rows, "\n") != strings.Join(want, "\n") {
		t.Errorf("list:\n got %q\nwant %q", rows, want)
	}

	// A topic that does not exist: a clear error, exit 1.
	env["INTEGRATIONS_TOPIC"] = topic + "-absent"
	for _, args := range [][]string{{"list"}, {"deactivate", "acct-us"}, {"put", "acct-us", "--write-key-file", filepath.Join(dir, "acct-us")}} {
		if out := run(1, args...); !strings.Contains(out, "integrations topic "+topic+"-absent: [3] Unknown Topic Or Partition") {
			t.Errorf("%v on a missing topic: %s", args, out)
		}
	}

	// The service's reading of what the command wrote.
	tb, err := integrations.NewTopic(integrations.TopicOptions{Brokers: bs, Topic: topic, Logger: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- tb.Run(ctx) }()
	defer func() { cancel(); <-done }()
	select {
	case <-tb.Loaded():
	case <-time.After(30 * time.Second):
		t.Fatal("the topic did not load")
	}
	for account, wantOK := range map[string]bool{"acct-us": true, "acct-eu": true, "acct-off": false} {
		it, ok := tb.Lookup(account)
		if ok != wantOK || it.WriteKey.Reveal() != keys[account] {
			t.Errorf("%s: ok %v (want %v), key matches %v", account, ok, wantOK, it.WriteKey.Reveal() == keys[account])
		}
	}
	if it, _ := tb.Lookup("acct-eu"); it.Region != integrations.RegionEU {
		t.Errorf("acct-eu: region %s", it.Region)
	}
}
