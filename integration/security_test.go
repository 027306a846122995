package integration

import (
	"crypto/tls"
	"crypto/x509"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/sasl/scram"
)

// These tests run the binary against the broker's SASL_SSL listener with
// SCRAM-SHA-512 (scripts/test.sh starts it and exports KAFKA_SCRAM_BROKERS,
// KAFKA_SCRAM_CA_FILE, KAFKA_SCRAM_USER and KAFKA_SCRAM_PASSWORD), with the
// right and with a wrong password, and check that no secret shows up in
// logs, metrics, help or errors.

// scramSetting is the SCRAM listener the environment names.
type scramSetting struct {
	addr, caFile, user, password string
}

// scramEnv returns the SCRAM listener's settings. Without them the test
// skips, except with CI=true, where it fails.
func scramEnv(t *testing.T) scramSetting {
	t.Helper()
	s := scramSetting{
		addr:     os.Getenv("KAFKA_SCRAM_BROKERS"),
		caFile:   os.Getenv("KAFKA_SCRAM_CA_FILE"),
		user:     os.Getenv("KAFKA_SCRAM_USER"),
		password: os.Getenv("KAFKA_SCRAM_PASSWORD"),
	}
	if s.addr == "" || s.caFile == "" || s.user == "" || s.password == "" {
		msg := "no SCRAM listener: set KAFKA_SCRAM_BROKERS, KAFKA_SCRAM_CA_FILE, KAFKA_SCRAM_USER and " +
			"KAFKA_SCRAM_PASSWORD, or run `make test` (scripts/test.sh starts Kafka with KAFKA_SCRAM=1)"
		if os.Getenv("CI") == "true" {
			t.Fatal("CI=true and " + msg)
		}
		t.Skip(msg)
	}
	return s
}

// conn is how the test reaches the SCRAM listener with password, through
// addr (the listener itself, or a proxy in front of it).
func (s scramSetting) conn(t *testing.T, addr, password string) kconn {
	t.Helper()
	pem, err := os.ReadFile(s.caFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		t.Fatalf("no certificate in %s", s.caFile)
	}
	tc := &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	mech, err := scram.Mechanism(scram.SHA512, s.user, password)
	if err != nil {
		t.Fatal(err)
	}
	return kconn{
		brokers:   []string{addr},
		transport: &kafka.Transport{TLS: tc, SASL: mech, DialTimeout: 10 * time.Second},
		dialer:    &kafka.Dialer{TLS: tc, SASLMechanism: mech, Timeout: 10 * time.Second, DualStack: true},
	}
}

// env is the service's Kafka security settings with password.
func (s scramSetting) env(password string) map[string]string {
	return map[string]string{
		"KAFKA_TLS":            "true",
		"KAFKA_TLS_CA_FILE":    s.caFile,
		"KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
		"KAFKA_SASL_USERNAME":  s.user,
		"KAFKA_SASL_PASSWORD":  password,
	}
}

// TestSCRAMEndToEnd runs two replicas (debug and info logs) over TLS with
// SCRAM-SHA-512 on good and bad records: every record is accounted for by
// the ledger, and neither the SASL password nor the write key appears in
// their logs or /metrics.
func TestSCRAMEndToEnd(t *testing.T) {
	t.Parallel()
	s := scramEnv(t)
	kc := s.conn(t, s.addr, s.password)
	l := newLedgerVia(t, kc, "scram", 3)
	env := s.env(s.password)
	env["LOG_LEVEL"] = "debug"
	f := newFleet(t, l, env)
	debug := f.start()
	f.env["LOG_LEVEL"] = "info"
	info := f.start()
	// Both members of the group over SCRAM before any record exists.
	f.waitReady(2 * time.Minute)

	tr := newTraffic(l, 0, 0, 0)
	run := unique("scram")
	var recs []genRecord
	for i := range 600 {
		if i%20 == 10 {
			recs = append(recs, badRecord(run, i, i/20))
		} else {
			recs = append(recs, goodRecord(run, i))
		}
	}
	tr.produceNow(recs...)
	_ = tr.w.Close()
	l.endFault()

	recovery := l.waitRecovered(2 * time.Minute)
	for _, r := range []*replica{debug, info} {
		code, body := r.p.get("/metrics")
		if code != http.StatusOK {
			t.Errorf("%s: /metrics = %d", r.name, code)
		}
		noSecret(t, r.name+" /metrics", body, s.password, faultWriteKey)
	}
	f.shutdown()
	l.account(f, recovery)
	for _, r := range []*replica{debug, info} {
		log := strings.Join(r.p.logLines(), "\n")
		noSecret(t, r.name+" log", log+r.p.stdout.String(), s.password, faultWriteKey)
		if r.p.countLog("generation started") == 0 {
			t.Errorf("%s never joined the group over SCRAM", r.name)
		}
	}
}

// TestSCRAMWrongPassword starts the service with a wrong password through
// a TCP proxy that counts connections to the SCRAM listener. For 15 s the
// service must stay up (no crash loop) and not ready, say in its log that
// authentication failed, and try at most once a second on average; it must
// then stop cleanly on SIGTERM. The figures are logged for
// docs/reliability.md.
func TestSCRAMWrongPassword(t *testing.T) {
	t.Parallel()
	s := scramEnv(t)
	l := newLedgerVia(t, s.conn(t, s.addr, s.password), "scram-wrong", 1)
	px := newCountingProxy(t, s.addr)
	wrong := "pw-WRONG-" + unique("x")
	env := s.env(wrong)
	env["LOG_LEVEL"] = "debug"
	// The replica talks to the proxy only; metadata would name the real
	// listener, but no request gets that far.
	env["KAFKA_BROKERS"] = px.addr()
	f := newFleet(t, l, env)
	r := f.start()

	const window = 15 * time.Second
	start := time.Now()
	ready, alive, polls := 0, 0, 0
	for time.Since(start) < window {
		if r.p.exited() {
			t.Fatalf("the service exited (%v) with a wrong password: an orchestrator would restart it in a loop", r.p.state)
		}
		polls++
		if code, _ := r.p.get("/readyz"); code == http.StatusOK {
			ready++
		}
		if code, _ := r.p.get("/healthz"); code == http.StatusOK {
			alive++
		}
		time.Sleep(500 * time.Millisecond)
	}
	elapsed := time.Since(start)
	conns := px.count()
	lines := len(r.p.logLines())
	authLines := 0
	for _, line := range r.p.logLines() {
		if strings.Contains(strings.ToLower(line), "authentication failed") {
			authLines++
		}
	}
	code, metrics := r.p.get("/metrics")
	if code != http.StatusOK {
		t.Errorf("/metrics = %d with a wrong password, want 200", code)
	}
	noSecret(t, "/metrics", metrics, wrong, faultWriteKey)
	f.shutdown()
	noSecret(t, "log", strings.Join(r.p.logLines(), "\n")+r.p.stdout.String(), wrong, faultWriteKey)

	perSec := func(n int) float64 { return float64(n) / elapsed.Seconds() }
	t.Logf("wrong password for %.1f s: %d connections to the SCRAM listener (%.2f/s), %d log lines (%.2f/s), "+
		"%d saying authentication failed; /readyz 200 in %d of %d polls, /healthz 200 in %d",
		elapsed.Seconds(), conns, perSec(conns), lines, perSec(lines), authLines, ready, polls, alive)
	if ready > 0 {
		t.Errorf("/readyz answered 200 %d times with a wrong password", ready)
	}
	if authLines == 0 {
		t.Errorf("no log line says authentication failed:\n%s", strings.Join(r.p.logLines(), "\n"))
	}
	if conns == 0 {
		t.Errorf("no connection reached the SCRAM listener: the test did not test authentication")
	}
	if perSec(conns) > 1 {
		t.Errorf("%d authentication attempts in %.1f s: a retry storm (want ≤ 1/s on average)", conns, elapsed.Seconds())
	}
	if perSec(lines) > 1 {
		t.Errorf("%d log lines in %.1f s (want ≤ 1/s on average)", lines, elapsed.Seconds())
	}
}

// TestSecretsNeverShownInCommands passes the write key and the SASL
// password both in the environment and as flags to --help, to a run that
// fails on its configuration, and to one that fails on a missing CA file:
// neither secret may appear in stdout or stderr.
func TestSecretsNeverShownInCommands(t *testing.T) {
	t.Parallel()
	const key, pw = "wk-SECRET-cmd-51c0ffee", "pw-SECRET-cmd-0b5e55ed"
	base := map[string]string{
		"KAFKA_BROKERS":        "127.0.0.1:1",
		"SEGMENT_WRITE_KEY":    key,
		"KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
		"KAFKA_SASL_USERNAME":  "svc",
		"KAFKA_SASL_PASSWORD":  pw,
		"ADMIN_ADDR":           "127.0.0.1:0",
	}
	with := func(k, v string) map[string]string {
		env := map[string]string{}
		for a, b := range base {
			env[a] = b
		}
		env[k] = v
		return env
	}
	flags := []string{"--segment-write-key=" + key, "--kafka-sasl-password", pw}
	for _, c := range []struct {
		name string
		env  map[string]string
		args []string
		code int
	}{
		{"help", base, []string{"--help"}, 0},
		{"run --help", base, append([]string{"run"}, append(flags, "--help")...), 0},
		{"dlq replay --help", base, []string{"dlq", "replay", "--help"}, 0},
		{"bad setting", with("SEGMENT_BATCH_SIZE", "lots"), append([]string{"run"}, flags...), 2},
		{"misspelt secret flag", base, []string{"run", "--kafka-sasl-pasword=" + pw, "--segment-write-key", key}, 2},
		{"missing CA file", with("KAFKA_TLS", "true"), append([]string{"run", "--kafka-tls-ca-file", filepath.Join(t.TempDir(), "none.pem")}, flags...), 2},
	} {
		stdout, stderr, code := runCmd(t, c.env, 30*time.Second, c.args...)
		if code != c.code {
			t.Errorf("%s: exit %d, want %d\nstderr: %s", c.name, code, c.code, stderr)
		}
		noSecret(t, c.name, stdout+stderr, key, pw)
	}
}

// noSecret fails the test if s shows any of secrets.
func noSecret(t *testing.T, what, s string, secrets ...string) {
	t.Helper()
	for _, secret := range secrets {
		if i := strings.Index(s, secret); i >= 0 {
			t.Errorf("%s shows a secret: …%s…", what, s[max(0, i-80):min(len(s), i+len(secret)+20)])
		}
	}
}

// countingProxy forwards TCP connections to a target and counts them.
type countingProxy struct {
	ln    net.Listener
	conns atomic.Int64
	wg    sync.WaitGroup
}

func newCountingProxy(t *testing.T, target string) *countingProxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &countingProxy{ln: ln}
	var mu sync.Mutex
	var open []net.Conn
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			p.conns.Add(1)
			up, err := net.DialTimeout("tcp", target, 5*time.Second)
			if err != nil {
				c.Close()
				continue
			}
			mu.Lock()
			open = append(open, c, up)
			mu.Unlock()
			p.wg.Add(2)
			go func() { defer p.wg.Done(); _, _ = io.Copy(up, c); up.Close() }()
			go func() { defer p.wg.Done(); _, _ = io.Copy(c, up); c.Close() }()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range open {
			c.Close()
		}
		mu.Unlock()
		p.wg.Wait()
	})
	return p
}

func (p *countingProxy) addr() string { return p.ln.Addr().String() }
func (p *countingProxy) count() int   { return int(p.conns.Load()) }
