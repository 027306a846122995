package main

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/produktly/produktly-segment/sink"
	"github.com/produktly/produktly-segment/sink/segmenttest"
)

var modeVars = []string{"SEGMENT_WRITE_KEY", "INTEGRATIONS_TOPIC", "INTEGRATIONS_FILE"}

// TestModeRule: exactly one of the three mode settings; none, two or
// three is exit 2 with one line naming all three.
func TestModeRule(t *testing.T) {
	t.Parallel()
	file := filepath.Join(t.TempDir(), "integrations.json")
	if err := os.WriteFile(file, []byte(`{}`), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		set  map[string]string
	}{
		{"none", map[string]string{}},
		{"write key and topic", map[string]string{"SEGMENT_WRITE_KEY": secretWriteKey, "INTEGRATIONS_TOPIC": "integrations"}},
		{"write key and file", map[string]string{"SEGMENT_WRITE_KEY": secretWriteKey, "INTEGRATIONS_FILE": file}},
		{"topic and file", map[string]string{"INTEGRATIONS_TOPIC": "integrations", "INTEGRATIONS_FILE": file}},
		{"all three", map[string]string{"SEGMENT_WRITE_KEY": secretWriteKey, "INTEGRATIONS_TOPIC": "integrations", "INTEGRATIONS_FILE": file}},
		{"blank write key and nothing else", map[string]string{"SEGMENT_WRITE_KEY": " \n"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			env := map[string]string{"KAFKA_BROKERS": "127.0.0.1:1", "ADMIN_ADDR": "127.0.0.1:0"}
			for k, v := range tc.set {
				env[k] = v
			}
			out, errOut, code := exe(t, env, "", "run")
			if code != 2 {
				t.Errorf("exit status %d, want 2\nstderr: %s", code, errOut)
			}
			if out != "" {
				t.Errorf("stdout %q, want nothing", out)
			}
			lines := strings.Split(strings.TrimRight(errOut, "\n"), "\n")
			if len(lines) != 1 {
				t.Fatalf("stderr has %d lines, want 1: %q", len(lines), errOut)
			}
			for _, v := range modeVars {
				if !strings.Contains(lines[0], v) {
					t.Errorf("stderr %q does not name %s", lines[0], v)
				}
			}
			noSecrets(t, "the error", errOut)
		})
	}
}

// TestIntegrationsFileAtStartup: a file that does not parse, or is not
// there, is a configuration error at startup.
func TestIntegrationsFileAtStartup(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.json")
	if err := os.WriteFile(bad, []byte(`{"acct-1": {"writeKey": "`+secretWriteKey+`"`), 0o600); err != nil {
		t.Fatal(err)
	}
	for name, path := range map[string]string{"does not parse": bad, "missing": filepath.Join(dir, "nope.json")} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			env := map[string]string{"KAFKA_BROKERS": "127.0.0.1:1", "ADMIN_ADDR": "127.0.0.1:0", "INTEGRATIONS_FILE": path}
			_, errOut, code := exe(t, env, "", "run")
			if code != 2 {
				t.Errorf("exit status %d, want 2\nstderr: %s", code, errOut)
			}
			lines := strings.Split(strings.TrimRight(errOut, "\n"), "\n")
			if !strings.Contains(lines[len(lines)-1], "INTEGRATIONS_FILE") {
				t.Errorf("stderr %q, want a last line naming INTEGRATIONS_FILE", errOut)
			}
			noSecrets(t, "the error", errOut)
		})
	}
}

func getenv(env map[string]string) func(string) string {
	return func(k string) string { return env[k] }
}

// TestAccountsSettings: the accounts-mode settings, their defaults (from
// sink) and their checks.
func TestAccountsSettings(t *testing.T) {
	env := map[string]string{"KAFKA_BROKERS": "127.0.0.1:1", "INTEGRATIONS_TOPIC": "produktly.integrations"}
	c, err := parseConfig("run", nil, getenv(env), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if !c.accounts() || c.IntegrationsTopic != "produktly.integrations" || c.IntegrationsFile != "" {
		t.Errorf("mode: accounts %t, topic %q, file %q; want accounts mode from the topic", c.accounts(), c.IntegrationsTopic, c.IntegrationsFile)
	}
	if c.EUEndpoint != sink.DefaultEUEndpoint {
		t.Errorf("EUEndpoint = %q, want %q", c.EUEndpoint, sink.DefaultEUEndpoint)
	}
	if c.AccountMaxRPS != sink.DefaultAccountMaxRPS {
		t.Errorf("AccountMaxRPS = %v, want %v", c.AccountMaxRPS, sink.DefaultAccountMaxRPS)
	}
	if c.ParkAfter != sink.DefaultParkAfter {
		t.Errorf("ParkAfter = %s, want %s", c.ParkAfter, sink.DefaultParkAfter)
	}
	if c.AccountLinger != sink.DefaultAccountLinger {
		t.Errorf("AccountLinger = %s, want %s", c.AccountLinger, sink.DefaultAccountLinger)
	}
	if c.RetryTopic != "produktly.interactions.retry" {
		t.Errorf("RetryTopic = %q, want the source topic plus .retry", c.RetryTopic)
	}
	if got, want := parkAbove(c), 10000/2; got != want {
		t.Errorf("parkAbove = %d, want %d (half the per-partition in-flight cap)", got, want)
	}
	if got := lingerBytes(c); got != sink.DefaultLingerBytes {
		t.Errorf("lingerBytes = %d, want the sink's default %d at the default MAX_IN_FLIGHT_BYTES", got, sink.DefaultLingerBytes)
	}

	env["SEGMENT_EU_ENDPOINT"] = "https://eu.example/"
	env["SEGMENT_ACCOUNT_MAX_RPS"] = "12.5"
	env["ACCOUNT_PARK_AFTER"] = "2m"
	env["MAX_IN_FLIGHT_PER_PARTITION"] = "300"
	env["MAX_IN_FLIGHT_BYTES"] = "96MiB"
	c, err = parseConfig("run", nil, getenv(env), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := lingerBytes(c), 24<<20; got != want {
		t.Errorf("lingerBytes = %d at MAX_IN_FLIGHT_BYTES=96MiB, want %d (a quarter)", got, want)
	}
	if c.EUEndpoint != "https://eu.example" || c.AccountMaxRPS != 12.5 || c.ParkAfter != 2*time.Minute || parkAbove(c) != 150 {
		t.Errorf("got EUEndpoint %q, AccountMaxRPS %v, ParkAfter %s, parkAbove %d; want https://eu.example, 12.5, 2m0s, 150",
			c.EUEndpoint, c.AccountMaxRPS, c.ParkAfter, parkAbove(c))
	}

	for name, v := range map[string]string{
		"SEGMENT_EU_ENDPOINT":     "ftp://eu.example",
		"SEGMENT_ACCOUNT_MAX_RPS": "0",
		"ACCOUNT_PARK_AFTER":      "soon",
	} {
		bad := map[string]string{"KAFKA_BROKERS": "127.0.0.1:1", "INTEGRATIONS_TOPIC": "i", name: v}
		_, err := parseConfig("run", nil, getenv(bad), io.Discard)
		var ce *configError
		if !errors.As(err, &ce) || ce.Name != name {
			t.Errorf("%s=%q: error %v, want a configError naming %s", name, v, err, name)
		}
	}
}

// TestAccountsEndpoint: GET /accounts lists a failing account with its
// region, state and last error, and never its write key.
func TestAccountsEndpoint(t *testing.T) {
	const key = "wk-acct-SECRET-51c0"
	us := segmenttest.NewServer("unused", segmenttest.WithWriteKeys(key))
	defer us.Close()
	us.FailKey(key, http.StatusServiceUnavailable, 0)
	file := filepath.Join(t.TempDir(), "integrations.json")
	if err := os.WriteFile(file, []byte(`{"acct-7": {"writeKey": "`+key+`"}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"KAFKA_BROKERS": "127.0.0.1:1", "INTEGRATIONS_FILE": file, "SEGMENT_ENDPOINT": us.URL()}
	c, err := parseConfig("run", nil, getenv(env), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	svc, err := newService(c, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- svc.seg.Run(ctx) }()
	defer func() {
		cancel()
		<-done
	}()
	cancelMsg := make(chan struct{})
	defer close(cancelMsg)
	if err := svc.seg.Enqueue(ctx, sink.Message{
		ID: "m-1", JSON: []byte(`{"type":"track","event":"Tour Start","userId":"u","messageId":"m-1"}`), Cancel: cancelMsg,
		Destination: sink.Destination{Account: "acct-7", WriteKey: key, Endpoint: us.URL()},
		Done:        func(sink.Result) {},
	}); err != nil {
		t.Fatal(err)
	}
	h := svc.accountsHandler()
	var rep accountsReport
	var body string
	deadline := time.Now().Add(10 * time.Second)
	for {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", "/accounts", nil))
		body = rec.Body.String()
		if err := json.Unmarshal(rec.Body.Bytes(), &rep); err != nil {
			t.Fatalf("/accounts is not JSON: %v\n%s", err, body)
		}
		if len(rep.Accounts) > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("/accounts lists no account within 10s: %s", body)
		}
		time.Sleep(20 * time.Millisecond)
	}
	a := rep.Accounts[0]
	if a.Account != "acct-7" || a.Region != "us" || a.Endpoint != us.URL() || a.State != "failing" || a.Since.IsZero() || !strings.Contains(a.LastError, "503") {
		t.Errorf("/accounts = %s\nwant acct-7, us, failing, since set, last error naming 503", body)
	}
	if rep.Failing != 1 || rep.Parked != 0 {
		t.Errorf("failing %d, parked %d; want 1, 0", rep.Failing, rep.Parked)
	}
	if strings.Contains(body, key) {
		t.Errorf("/accounts shows the write key:\n%s", body)
	}
	if single := (&service{}).accountsHandler(); single != nil {
		t.Error("single-source mode serves /accounts")
	}
}

// TestDemo: the demo runs in accounts mode in one command: each stand-in
// receives its account's calls with its key, the inactive and unknown
// accounts' records are skipped, the bad ones dead-lettered, and the
// accounting adds up.
func TestDemo(t *testing.T) {
	t.Parallel()
	out, errOut, code := exe(t, map[string]string{}, "", "demo")
	if code != 0 {
		t.Fatalf("demo exit status %d\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
	_, rest, ok := strings.Cut(out, "Segment US stand-in received 7 track calls:")
	if !ok {
		t.Fatalf("no US section with 7 calls:\n%s", out)
	}
	usPart, euPart, ok := strings.Cut(rest, "Segment EU stand-in received 7 track calls:")
	if !ok {
		t.Fatalf("no EU section with 7 calls:\n%s", out)
	}
	euPart, tail, _ := strings.Cut(euPart, "skipped ")
	if n := strings.Count(usPart, demoKeyUS); n != 7 || strings.Contains(usPart, demoKeyEU) || strings.Contains(usPart, demoKeyOff) {
		t.Errorf("US stand-in section: %d calls with %s, want 7 and no other key:\n%s", n, demoKeyUS, usPart)
	}
	if n := strings.Count(euPart, demoKeyEU); n != 7 || strings.Contains(euPart, demoKeyUS) || strings.Contains(euPart, demoKeyOff) {
		t.Errorf("EU stand-in section: %d calls with %s, want 7 and no other key:\n%s", n, demoKeyEU, euPart)
	}
	for _, want := range []string{
		"3 records of accounts without an active integration",
		"holds 8 records",
		"missing_account",
		"14 delivered + 3 skipped + 8 dead-lettered = 25 produced",
	} {
		if !strings.Contains(tail, want) {
			t.Errorf("demo output lacks %q:\n%s", want, out)
		}
	}
}

// TestLingerBytesTinyCap: a MAX_IN_FLIGHT_BYTES under sink.LingerShare
// still gives the sink a share of it, not a zero that the sink reads as
// "unset" and replaces with its 8 MiB default, far over the cap.
func TestLingerBytesTinyCap(t *testing.T) {
	env := map[string]string{"KAFKA_BROKERS": "127.0.0.1:1", "INTEGRATIONS_TOPIC": "produktly.integrations", "MAX_IN_FLIGHT_BYTES": "3"}
	c, err := parseConfig("run", nil, getenv(env), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if got := lingerBytes(c); got < 1 || got > 3 {
		t.Errorf("lingerBytes = %d at MAX_IN_FLIGHT_BYTES=3, want 1..3 (0 is the sink's 8 MiB default)", got)
	}
}
