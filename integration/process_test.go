package integration

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// The tests run the real binary, built once per test run, as separate OS
// processes: what a deployment runs, with its own signal handling, exit
// codes and environment parsing.
var bin struct {
	once sync.Once
	dir  string
	path string
	out  []byte
	err  error
}

// binary returns the path of produktly-segment built from this module, or
// the binary INTEGRATION_BINARY names (to test a release build, or an older
// commit's behaviour).
func binary(t testing.TB) string {
	t.Helper()
	bin.once.Do(func() {
		if p := os.Getenv("INTEGRATION_BINARY"); p != "" {
			bin.path, bin.err = filepath.Abs(p)
			return
		}
		bin.dir, bin.err = os.MkdirTemp("", "produktly-segment-it-")
		if bin.err != nil {
			return
		}
		bin.path = filepath.Join(bin.dir, "produktly-segment")
		cmd := exec.Command("go", "build", "-o", bin.path, "./cmd/produktly-segment")
		cmd.Dir = ".." // the module root; go test runs in integration/
		bin.out, bin.err = cmd.CombinedOutput()
	})
	if bin.err != nil {
		t.Fatalf("go build ./cmd/produktly-segment: %v\n%s", bin.err, bin.out)
	}
	return bin.path
}

// removeBinary deletes the binary built by binary, if any.
func removeBinary() {
	if bin.dir != "" {
		_ = os.RemoveAll(bin.dir)
	}
}

// proc is one produktly-segment process. Its stderr (the JSON log) goes to
// a file in the test's temporary directory; the tail is copied into the test
// log when the test fails (or always, with INTEGRATION_LOGS=1). Cleanup kills it if it is still running.
type proc struct {
	t      testing.TB
	name   string
	cmd    *exec.Cmd
	admin  string        // base URL of the admin server, "" when none
	logf   string        // stderr file
	stdout *bytes.Buffer // the service prints nothing there; read after exit only

	done  chan struct{} // closed when the process has exited and was reaped
	state *os.ProcessState
}

// startProc starts the binary with args and exactly the environment env
// (plus PATH), and registers a cleanup that kills it and, when the test
// failed, shows the tail of its log.
func startProc(t testing.TB, name string, env map[string]string, args ...string) *proc {
	t.Helper()
	path := binary(t)
	dir := t.TempDir()
	logf := filepath.Join(dir, name+".stderr.log")
	f, err := os.Create(logf)
	if err != nil {
		t.Fatal(err)
	}
	p := &proc{t: t, name: name, logf: logf, stdout: &bytes.Buffer{}, done: make(chan struct{})}
	if a := env["ADMIN_ADDR"]; a != "" {
		p.admin = "http://" + a
	}
	p.cmd = exec.Command(path, args...)
	p.cmd.Env = environ(env)
	p.cmd.Stderr = f
	p.cmd.Stdout = p.stdout // read only after exit, when Wait has copied everything
	if err := p.cmd.Start(); err != nil {
		f.Close()
		t.Fatalf("start %s: %v", name, err)
	}
	go func() {
		_ = p.cmd.Wait()
		p.state = p.cmd.ProcessState
		f.Close()
		close(p.done)
	}()
	t.Cleanup(func() {
		if !p.exited() {
			_ = p.cmd.Process.Kill()
			<-p.done
		}
		if t.Failed() || os.Getenv("INTEGRATION_LOGS") != "" {
			p.dumpLog(200)
		}
	})
	return p
}

// environ turns env into a process environment: PATH plus env, sorted.
func environ(env map[string]string) []string {
	out := []string{"PATH=" + os.Getenv("PATH")}
	for k, v := range env {
		out = append(out, k+"="+v)
	}
	sort.Strings(out[1:])
	return out
}

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// startedLine is the log line the service writes once its SIGTERM/SIGINT
// handler is installed (runService in cmd/produktly-segment).
const startedLine = `"message":"starting"`

// waitStarted waits until the process has announced that it is up (its
// log shows startedLine or its admin server answers), or has exited.
// Before that, a SIGTERM meets the default action and kills the process
// with an empty log instead of starting its drain: on a loaded machine a
// process can take seconds to get there.
func (p *proc) waitStarted(timeout time.Duration) {
	p.t.Helper()
	deadline := time.Now().Add(timeout)
	for !p.exited() && p.countLog(startedLine) == 0 {
		if p.admin != "" {
			if code, _ := p.get("/healthz"); code != 0 {
				return
			}
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("%s: not started (no %s in its log) after %s", p.name, startedLine, timeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// signal sends sig unless the process has exited. SIGTERM and SIGINT wait
// until the process is up, so that they reach its handler; SIGKILL (a
// crash) goes at once.
func (p *proc) signal(sig syscall.Signal) {
	p.t.Helper()
	if sig != syscall.SIGKILL {
		p.waitStarted(2 * time.Minute)
	}
	if p.exited() {
		return
	}
	if err := p.cmd.Process.Signal(sig); err != nil && !errors.Is(err, os.ErrProcessDone) {
		p.t.Fatalf("%s: signal %v: %v", p.name, sig, err)
	}
}

// term sends SIGTERM: the service drains, commits and leaves the group.
func (p *proc) term() { p.signal(syscall.SIGTERM) }

// kill sends SIGKILL and waits until the process is gone: a crash.
func (p *proc) kill() {
	p.t.Helper()
	p.signal(syscall.SIGKILL)
	if _, ok := p.wait(30 * time.Second); !ok {
		p.t.Fatalf("%s: still running 30s after SIGKILL", p.name)
	}
}

// wait waits up to timeout for the process to exit and returns its exit
// code (-1 when a signal ended it) and whether it exited.
func (p *proc) wait(timeout time.Duration) (int, bool) {
	select {
	case <-p.done:
		return p.state.ExitCode(), true
	case <-time.After(timeout):
		return 0, false
	}
}

// mustExit waits for the process to exit with code want within timeout.
func (p *proc) mustExit(want int, timeout time.Duration) {
	p.t.Helper()
	code, ok := p.wait(timeout)
	if !ok {
		p.t.Fatalf("%s: still running %s later", p.name, timeout)
	}
	if code != want {
		p.t.Fatalf("%s: exit status %d (%v), want %d", p.name, code, p.state, want)
	}
}

// get fetches path from the admin server and returns the status code, or 0
// when it cannot be reached.
func (p *proc) get(path string) (int, string) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.admin+path, nil)
	if err != nil {
		return 0, ""
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, ""
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	return resp.StatusCode, string(b)
}

// waitReady polls /readyz until it answers 200: the process is a member of
// the group, fetching, and Segment takes its requests.
func (p *proc) waitReady(timeout time.Duration) {
	p.t.Helper()
	p.waitFor("/readyz", timeout)
}

// waitAlive polls /healthz until it answers 200: the process and its group
// loop run (while Segment is down it is alive but not ready).
func (p *proc) waitAlive(timeout time.Duration) {
	p.t.Helper()
	p.waitFor("/healthz", timeout)
}

func (p *proc) waitFor(path string, timeout time.Duration) {
	p.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		if code, _ := p.get(path); code == http.StatusOK {
			return
		}
		if p.exited() {
			p.t.Fatalf("%s exited (%v) before %s answered 200", p.name, p.state, path)
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("%s: %s not 200 after %s", p.name, path, timeout)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// metric returns the value of an unlabelled series from /metrics, or -1.
func (p *proc) metric(name string) float64 {
	code, body := p.get("/metrics")
	if code != http.StatusOK {
		return -1
	}
	return metricValue(body, name)
}

// metricValue is the value of the unlabelled series name in a /metrics
// body (Prometheus text format), or -1 when it is not there.
func metricValue(body, name string) float64 {
	for _, line := range strings.Split(body, "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err == nil {
				return f
			}
		}
	}
	return -1
}

// logLines returns the process's log so far.
func (p *proc) logLines() []string {
	b, err := os.ReadFile(p.logf)
	if err != nil {
		return nil
	}
	return strings.Split(strings.TrimRight(string(b), "\n"), "\n")
}

// countLog counts log lines containing every one of subs.
func (p *proc) countLog(subs ...string) int {
	n := 0
next:
	for _, l := range p.logLines() {
		for _, s := range subs {
			if !strings.Contains(l, s) {
				continue next
			}
		}
		n++
	}
	return n
}

// dumpLog copies the last n lines of the log into the test log.
func (p *proc) dumpLog(n int) {
	lines := p.logLines()
	skipped := 0
	if len(lines) > n {
		skipped, lines = len(lines)-n, lines[len(lines)-n:]
	}
	var b strings.Builder
	fmt.Fprintf(&b, "--- %s stderr (%d earlier lines omitted; state %v) ---\n", p.name, skipped, p.state)
	for _, l := range lines {
		b.WriteString(l)
		b.WriteByte('\n')
	}
	if p.stdout.Len() > 0 {
		fmt.Fprintf(&b, "--- %s stdout ---\n%s", p.name, p.stdout.String())
	}
	p.t.Log(b.String())
}

// runCmd runs a one-shot command of the binary (validate, dlq replay) to
// completion and returns its stdout, stderr and exit code.
func runCmd(t testing.TB, env map[string]string, timeout time.Duration, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary(t), args...)
	cmd.Env = environ(env)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	var exit *exec.ExitError
	switch {
	case ctx.Err() != nil:
		t.Fatalf("%v: still running after %s\nstdout:\n%s\nstderr:\n%s", args, timeout, out.String(), errb.String())
	case errors.As(err, &exit):
		code = exit.ExitCode()
	case err != nil:
		t.Fatalf("%v: %v", args, err)
	}
	return out.String(), errb.String(), code
}
