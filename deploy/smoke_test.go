package deploy_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"strings"
	"syscall"
	"time"
)

// service is the binary running against no Kafka: enough to serve the
// admin endpoints and to shut down.
type service struct {
	url    string
	cmd    *exec.Cmd
	stderr *bytes.Buffer
	done   chan error
}

// freePort returns a loopback port nothing listens on right now.
func freePort() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// startService runs `produktly-segment run` with exactly env (nothing from
// the test's own environment), plus: KAFKA_BROKERS pointing at a closed
// loopback port, ADMIN_ADDR on a free loopback port, and placeholders for
// required settings env lacks (SEGMENT_WRITE_KEY when it selects no mode). It
// returns once the admin server answers.
func startService(bin string, facts *binaryFacts, env map[string]string) (*service, error) {
	admin, err := freePort()
	if err != nil {
		return nil, err
	}
	broker, err := freePort()
	if err != nil {
		return nil, err
	}
	vars := map[string]string{}
	for k, v := range env {
		vars[k] = v
	}
	mode := false
	for _, s := range facts.settings {
		if s.required && vars[s.env] == "" {
			vars[s.env] = "smoke-test-placeholder"
		}
		mode = mode || (s.mode && vars[s.env] != "")
	}
	if !mode {
		vars["SEGMENT_WRITE_KEY"] = "smoke-test-placeholder" // single-source mode
	}
	vars["KAFKA_BROKERS"] = broker
	vars["ADMIN_ADDR"] = admin
	cmd := exec.Command(bin, "run")
	cmd.Env = []string{}
	for k, v := range vars {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	s := &service{url: "http://" + admin, cmd: cmd, stderr: &bytes.Buffer{}, done: make(chan error, 1)}
	cmd.Stderr = s.stderr
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	go func() { s.done <- cmd.Wait() }()
	deadline := time.Now().Add(15 * time.Second)
	for {
		select {
		case err := <-s.done:
			return nil, fmt.Errorf("run exited before serving the admin port: %v\n%s", err, s.stderr)
		default:
		}
		if c, err := net.DialTimeout("tcp", admin, 200*time.Millisecond); err == nil {
			c.Close()
			return s, nil
		}
		if time.Now().After(deadline) {
			_ = cmd.Process.Kill()
			<-s.done
			return nil, fmt.Errorf("admin server did not listen on %s within 15s\n%s", admin, s.stderr)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// stop sends SIGTERM, as the kubelet does, and waits up to grace for the
// exit; it kills the process after that.
func (s *service) stopWithin(grace time.Duration) error {
	if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		return err
	}
	select {
	case err := <-s.done:
		if err != nil {
			return fmt.Errorf("exit after SIGTERM: %v (want status 0)\n%s", err, s.stderr)
		}
		return nil
	case <-time.After(grace):
		_ = s.cmd.Process.Kill()
		<-s.done
		return fmt.Errorf("still running %v after SIGTERM: the kubelet would SIGKILL it", grace)
	}
}

func (s *service) stop() { _ = s.stopWithin(10 * time.Second) }

func (s *service) get(path string) (int, string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.url+path, nil)
	if err != nil {
		return 0, "", err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return resp.StatusCode, string(body), err
}

// checkSmoke runs the binary with the environment the manifests give the
// pod (secrets as placeholders, Kafka unreachable) and asks the probes'
// and the PodMonitor's paths the way the kubelet and Prometheus would: the
// binary must accept every setting, serve liveness 200, answer readiness
// (503 while it has not joined a group, never 404), serve metrics, and exit
// 0 on SIGTERM within terminationGracePeriodSeconds.
func checkSmoke(w *world, b *bundle) []error {
	d, c, err := b.app()
	if err != nil {
		return []error{err}
	}
	env, errs := b.containerEnv(c)
	vars := map[string]string{}
	for name, v := range env {
		switch {
		case v.known:
			vars[name] = v.value
		case v.secret != nil:
			vars[name] = "smoke-test-secret"
		}
	}
	bin := binPath
	s, err := startService(bin, w.bin, vars)
	if err != nil {
		return append(errs, fmt.Errorf("the binary does not start with the manifests' settings: %w", err))
	}
	grace := 30 * time.Second
	if g := d.Spec.Template.Spec.TerminationGracePeriodSeconds; g != nil {
		grace = time.Duration(*g) * time.Second
	}
	defer func() {
		if err := s.stopWithin(grace); err != nil {
			errs = append(errs, err)
		}
	}()
	// The admin server may answer before the consumer's first heartbeat,
	// so a 503 is retried for a few seconds, as the kubelet's
	// failureThreshold would; anything else counts at once.
	probe := func(kind, path string, ok func(int) bool) {
		deadline := time.Now().Add(5 * time.Second)
		code, body, err := s.get(path)
		for err == nil && !ok(code) && code == http.StatusServiceUnavailable && time.Now().Before(deadline) {
			time.Sleep(100 * time.Millisecond)
			code, body, err = s.get(path)
		}
		switch {
		case err != nil:
			errs = append(errs, fmt.Errorf("%s GET %s: %v", kind, path, err))
		case !ok(code):
			errs = append(errs, fmt.Errorf("%s GET %s: status %d %q", kind, path, code, strings.TrimSpace(body)))
		}
	}
	if p := c.LivenessProbe; p != nil && p.HTTPGet != nil {
		probe("liveness", p.HTTPGet.Path, func(c int) bool { return c == http.StatusOK })
	}
	if p := c.ReadinessProbe; p != nil && p.HTTPGet != nil {
		// Not ready without Kafka, but the path must exist.
		probe("readiness", p.HTTPGet.Path, func(c int) bool { return c == http.StatusOK || c == http.StatusServiceUnavailable })
	}
	paths := []string{metricsPath}
	for _, pm := range b.podMonitors {
		for _, e := range pm.Spec.PodMetricsEndpoints {
			if e.Path != "" {
				paths = append(paths, e.Path)
			}
		}
	}
	for _, p := range paths {
		code, body, err := s.get(p)
		if err == nil && (code != http.StatusOK || !strings.Contains(body, "produktly_segment_")) {
			err = fmt.Errorf("status %d, no produktly_segment_ metrics", code)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("metrics GET %s: %v", p, err))
		}
	}
	return errs
}
