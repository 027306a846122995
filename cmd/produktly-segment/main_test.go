package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// These tests run the built binary as a process: exit codes, what reaches
// stdout and stderr, and signal handling are part of the interface.

// testVersion is stamped into the test binary the way `make build` does.
const testVersion = "v0.0.0-test+5e1f"

var binPath string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "produktly-segment-cmd-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binPath = filepath.Join(dir, "produktly-segment")
	build := exec.Command("go", "build", "-ldflags", "-X main.version="+testVersion, "-o", binPath, ".")
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "go build: %v\n%s", err, out)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// Secret values that must never be printed.
const (
	secretWriteKey = "wk-SECRET-7d9f2c1e8b"
	secretPassword = "pw-SECRET-3a6b0e4f91"
)

// exe runs the binary with args, stdin and exactly env (plus PATH), and
// returns stdout, stderr and the exit code.
func exe(t *testing.T, env map[string]string, stdin string, args ...string) (string, string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, binPath, args...)
	cmd.Env = environ(env)
	cmd.Stdin = strings.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	var exit *exec.ExitError
	switch {
	case ctx.Err() != nil:
		t.Fatalf("%v: still running after 30s", args)
	case errors.As(err, &exit):
		return out.String(), errb.String(), exit.ExitCode()
	case err != nil:
		t.Fatalf("%v: %v", args, err)
	}
	return out.String(), errb.String(), 0
}

func environ(env map[string]string) []string {
	out := []string{"PATH=" + os.Getenv("PATH")}
	for k, v := range env {
		out = append(out, k+"="+v)
	}
	return out
}

// validEnv is a complete configuration; tests break one setting at a time.
func validEnv() map[string]string {
	return map[string]string{
		"KAFKA_BROKERS":     "127.0.0.1:1",
		"SEGMENT_WRITE_KEY": secretWriteKey,
		"ADMIN_ADDR":        "127.0.0.1:0",
	}
}

func noSecrets(t *testing.T, what, s string) {
	t.Helper()
	for _, secret := range []string{secretWriteKey, secretPassword} {
		if strings.Contains(s, secret) {
			t.Errorf("%s shows the secret %q:\n%s", what, secret, s)
		}
	}
}

func TestConfigErrors(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		set   map[string]string // "" deletes the variable
		args  []string
		names string // the one setting the error line must name
	}{
		{name: "missing brokers", set: map[string]string{"KAFKA_BROKERS": ""}, names: "KAFKA_BROKERS"},
		{name: "broker without port", set: map[string]string{"KAFKA_BROKERS": "localhost"}, names: "KAFKA_BROKERS"},
		{name: "missing write key", set: map[string]string{"SEGMENT_WRITE_KEY": ""}, names: "SEGMENT_WRITE_KEY"},
		{name: "blank write key", set: map[string]string{"SEGMENT_WRITE_KEY": "  \n"}, names: "SEGMENT_WRITE_KEY"},
		{name: "batch size not a number", set: map[string]string{"SEGMENT_BATCH_SIZE": "lots"}, names: "SEGMENT_BATCH_SIZE"},
		{name: "batch size zero", set: map[string]string{"SEGMENT_BATCH_SIZE": "0"}, names: "SEGMENT_BATCH_SIZE"},
		{name: "batch size over Segment's limit", set: map[string]string{"SEGMENT_BATCH_SIZE": "2501"}, names: "SEGMENT_BATCH_SIZE"},
		{name: "batch size flag", args: []string{"--segment-batch-size=-5"}, names: "SEGMENT_BATCH_SIZE"},
		{name: "endpoint not http", set: map[string]string{"SEGMENT_ENDPOINT": "ftp://api.segment.io"}, names: "SEGMENT_ENDPOINT"},
		{name: "duration", set: map[string]string{"KAFKA_COMMIT_INTERVAL": "often"}, names: "KAFKA_COMMIT_INTERVAL"},
		{name: "revoke not under rebalance", set: map[string]string{"KAFKA_REVOKE_TIMEOUT": "30s", "KAFKA_REBALANCE_TIMEOUT": "30s"}, names: "KAFKA_REVOKE_TIMEOUT"},
		{name: "dlq is the source", set: map[string]string{"KAFKA_TOPIC": "a", "KAFKA_DLQ_TOPIC": "a"}, names: "KAFKA_DLQ_TOPIC"},
		{name: "dlq is the default of another topic", set: map[string]string{"KAFKA_TOPIC": "a", "KAFKA_DLQ_TOPIC": "a.retry"}, names: "KAFKA_RETRY_TOPIC"},
		{name: "retry is the source", set: map[string]string{"KAFKA_TOPIC": "a", "KAFKA_RETRY_TOPIC": "a"}, names: "KAFKA_RETRY_TOPIC"},
		{name: "per-partition cap over the total", set: map[string]string{"MAX_IN_FLIGHT": "10", "MAX_IN_FLIGHT_PER_PARTITION": "11"}, names: "MAX_IN_FLIGHT_PER_PARTITION"},
		{name: "heartbeat not under session", set: map[string]string{"KAFKA_HEARTBEAT_INTERVAL": "30s", "KAFKA_SESSION_TIMEOUT": "30s"}, names: "KAFKA_HEARTBEAT_INTERVAL"},
		{name: "unknown sasl mechanism", set: map[string]string{"KAFKA_SASL_MECHANISM": "GSSAPI", "KAFKA_SASL_PASSWORD": secretPassword}, names: "KAFKA_SASL_MECHANISM"},
		{name: "sasl password without user", set: map[string]string{"KAFKA_SASL_MECHANISM": "SCRAM-SHA-512", "KAFKA_SASL_PASSWORD": secretPassword}, names: "KAFKA_SASL_USERNAME"},
		{name: "secret given as a flag next to a bad one", args: []string{"--segment-write-key=" + secretWriteKey, "--kafka-sasl-password", secretPassword, "--log-level=loud"}, names: "LOG_LEVEL"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			env := validEnv()
			for k, v := range tc.set {
				if v == "" {
					delete(env, k)
				} else {
					env[k] = v
				}
			}
			out, errOut, code := exe(t, env, "", append([]string{"run"}, tc.args...)...)
			if code != 2 {
				t.Errorf("exit status %d, want 2\nstderr: %s", code, errOut)
			}
			if out != "" {
				t.Errorf("stdout %q, want nothing", out)
			}
			lines := strings.Split(strings.TrimRight(errOut, "\n"), "\n")
			if len(lines) != 1 || !strings.Contains(lines[0], tc.names) {
				t.Errorf("stderr %q, want one line naming %s", errOut, tc.names)
			}
			for k := range tc.set {
				if k != tc.names && strings.Contains(errOut, k+" ") {
					t.Errorf("stderr %q names %s, not only %s", errOut, k, tc.names)
				}
			}
			noSecrets(t, "the error", errOut)
		})
	}
}

func TestHelpShowsNoSecrets(t *testing.T) {
	t.Parallel()
	env := validEnv()
	env["KAFKA_SASL_MECHANISM"] = "PLAIN"
	env["KAFKA_SASL_USERNAME"] = "svc-produktly"
	env["KAFKA_SASL_PASSWORD"] = secretPassword
	for _, args := range [][]string{{"--help"}, {"run", "--help"}, {"run", "-h"}, {"dlq", "replay", "--help"}} {
		out, errOut, code := exe(t, env, "", args...)
		if code != 0 {
			t.Errorf("%v: exit status %d, want 0\n%s", args, code, errOut)
		}
		if !strings.Contains(out, "usage") {
			t.Errorf("%v: stdout %q has no usage", args, out)
		}
		noSecrets(t, fmt.Sprint(args), out+errOut)
	}
	out, _, _ := exe(t, env, "", "run", "--help")
	for _, name := range []string{"KAFKA_BROKERS", "SEGMENT_WRITE_KEY", "KAFKA_SASL_PASSWORD", "SEGMENT_BATCH_SIZE", "SHUTDOWN_TIMEOUT"} {
		if !strings.Contains(out, name) {
			t.Errorf("run --help does not list %s", name)
		}
	}
}

// TestRunLogsNoSecrets runs the service for a few seconds against a broker
// that is not there, with debug logs and SASL configured, then stops it
// with SIGTERM: it exits 0 and its log never shows a secret.
func TestRunLogsNoSecrets(t *testing.T) {
	t.Parallel()
	env := validEnv()
	env["LOG_LEVEL"] = "debug"
	env["KAFKA_SASL_MECHANISM"] = "SCRAM-SHA-256"
	env["KAFKA_SASL_USERNAME"] = "svc-produktly"
	env["KAFKA_SASL_PASSWORD"] = secretPassword
	env["SEGMENT_ENDPOINT"] = "http://127.0.0.1:1"
	cmd := exec.Command(binPath, "run")
	cmd.Env = environ(env)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-done
	})
	select {
	case err := <-done:
		t.Fatalf("exited before SIGTERM: %v\n%s", err, errb.String())
	case <-time.After(3 * time.Second):
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		done <- err // for the cleanup
		if err != nil {
			t.Errorf("exit after SIGTERM: %v, want status 0\n%s", err, errb.String())
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("still running 20s after SIGTERM\n%s", errb.String())
	}
	log := errb.String()
	if !strings.Contains(log, "127.0.0.1:1") || !strings.Contains(log, "stopped") {
		t.Errorf("the log does not show the run (broker address, stop):\n%s", log)
	}
	noSecrets(t, "the log", out.String()+log)
}

func TestValidate(t *testing.T) {
	t.Parallel()
	good := `{"type":"tour_start","userId":"user-1","tourId":"tour_a","timestamp":"2026-11-29T10:00:00Z"}`
	bad := `{"type":"tour_start","userId":"user-1"}`
	out, errOut, code := exe(t, nil, good+"\n\n"+bad+"\nnot json\n", "validate")
	if code != 1 {
		t.Errorf("validate with bad records: exit status %d, want 1\n%s", code, errOut)
	}
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	want := []string{"line 1: ok {", "line 3: error missing_property", "line 4: error invalid_json", "1 ok, 2 bad"}
	if len(lines) != len(want) {
		t.Fatalf("validate printed %d lines, want %d:\n%s", len(lines), len(want), out)
	}
	for i, w := range want {
		if !strings.HasPrefix(lines[i], w) {
			t.Errorf("line %d = %q, want it to start with %q", i+1, lines[i], w)
		}
	}
	if !strings.Contains(lines[0], `"event":"Tour Start"`) {
		t.Errorf("ok line %q does not show the Segment call", lines[0])
	}

	f := filepath.Join(t.TempDir(), "records.ndjson")
	if err := os.WriteFile(f, []byte(good+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	out, errOut, code = exe(t, nil, "", "validate", f)
	if code != 0 || !strings.Contains(out, "1 ok, 0 bad") {
		t.Errorf("validate FILE with good records: exit %d, stdout %q, stderr %q; want 0 and 1 ok", code, out, errOut)
	}
	if _, _, code := exe(t, nil, "", "validate", filepath.Join(t.TempDir(), "missing")); code != 2 {
		t.Errorf("validate of a missing file: exit %d, want 2", code)
	}
}

func TestVersion(t *testing.T) {
	t.Parallel()
	out, _, code := exe(t, nil, "", "version")
	if code != 0 || strings.TrimSpace(out) != "produktly-segment "+testVersion {
		t.Errorf("version: exit %d, stdout %q; want 0 and %q", code, out, "produktly-segment "+testVersion)
	}
	if _, errOut, code := exe(t, nil, "", "frobnicate"); code != 2 || !strings.Contains(errOut, "frobnicate") {
		t.Errorf("unknown command: exit %d, stderr %q; want 2 naming it", code, errOut)
	}
}
