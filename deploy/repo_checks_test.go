package deploy_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"reflect"
	"regexp"
	"strconv"
	"strings"
)

// equalJSON compares two values by their JSON encoding.
func equalJSON(a, b any) bool {
	ja, err1 := json.Marshal(a)
	jb, err2 := json.Marshal(b)
	if err1 != nil || err2 != nil {
		return false
	}
	var va, vb any
	_ = json.Unmarshal(ja, &va)
	_ = json.Unmarshal(jb, &vb)
	return reflect.DeepEqual(va, vb)
}

// checkDockerfile: the build is static, trimmed, stripped and stamped;
// the runtime image is minimal, non-root, and runs `run` on the admin port.
func checkDockerfile(w *world, r *repoFiles) []error {
	var errs []error
	fail := func(format string, a ...any) { errs = append(errs, fmt.Errorf("Dockerfile: "+format, a...)) }
	b, err := parseDockerBuild(r.dockerfile)
	if err != nil {
		return []error{err}
	}
	hasEnv := func(kv string) bool {
		for _, e := range b.env {
			if e == kv {
				return true
			}
		}
		return false
	}
	if !hasEnv("CGO_ENABLED=0") {
		fail("go build without CGO_ENABLED=0: the binary would need libc, which distroless/static lacks")
	}
	var ldflags string
	trimpath := false
	for i, a := range b.args {
		switch {
		case a == "-trimpath":
			trimpath = true
		case a == "-ldflags" && i+1 < len(b.args):
			ldflags = b.args[i+1]
		case strings.HasPrefix(a, "-ldflags="):
			ldflags = strings.TrimPrefix(a, "-ldflags=")
		}
	}
	if !trimpath {
		fail("go build without -trimpath")
	}
	fields := strings.Fields(ldflags)
	for _, f := range []string{"-s", "-w"} {
		if !contains(fields, f) {
			fail("-ldflags %q lacks %s", ldflags, f)
		}
	}
	if !strings.Contains(ldflags, "-X main.version="+testVersion) {
		fail("-ldflags %q does not set main.version from ${VERSION}", ldflags)
	}

	ins := expandFromArgs(dockerInstructions(r.dockerfile))
	var stages [][]string // instructions per stage
	for _, in := range ins {
		if strings.HasPrefix(in, "FROM ") {
			stages = append(stages, nil)
		}
		if len(stages) > 0 {
			stages[len(stages)-1] = append(stages[len(stages)-1], in)
		}
	}
	if len(stages) < 2 {
		return append(errs, errors.New("Dockerfile: want a builder stage and a runtime stage"))
	}
	if !strings.Contains(stages[0][0], "golang:") {
		fail("the builder stage is %q, want golang", stages[0][0])
	}
	final := stages[len(stages)-1]
	base := strings.Fields(final[0])[1]
	distroless := strings.HasPrefix(base, "gcr.io/distroless/static") && strings.HasSuffix(base, ":nonroot")
	if !distroless && base != "scratch" {
		fail("runtime image %q, want gcr.io/distroless/static-debian12:nonroot or scratch", base)
	}
	var user, entrypoint, cmd string
	var expose []string
	copied := false
	for _, in := range final {
		kw, rest, _ := strings.Cut(in, " ")
		switch strings.ToUpper(kw) {
		case "USER":
			user = strings.TrimSpace(rest)
		case "ENTRYPOINT":
			entrypoint = strings.TrimSpace(rest)
		case "CMD":
			cmd = strings.TrimSpace(rest)
		case "EXPOSE":
			expose = append(expose, strings.Fields(rest)...)
		case "COPY":
			copied = copied || (strings.Contains(rest, "--from=") && strings.HasSuffix(rest, " /produktly-segment"))
		}
	}
	uid, _, _ := strings.Cut(user, ":")
	if n, err := strconv.Atoi(uid); err != nil || n == 0 || n != nonRootUID {
		fail("runtime USER %q, want %d (numeric, so runAsNonRoot can verify it)", user, nonRootUID)
	}
	if !copied {
		fail("the runtime stage does not copy the binary to /produktly-segment")
	}
	if entrypoint != `["/produktly-segment"]` {
		fail(`ENTRYPOINT %s, want ["/produktly-segment"]`, entrypoint)
	}
	if cmd != `["run"]` {
		fail(`CMD %s, want ["run"]`, cmd)
	}
	_, port, err := net.SplitHostPort(w.bin.settings["ADMIN_ADDR"].def)
	if err != nil {
		return append(errs, fmt.Errorf("the binary's ADMIN_ADDR default: %v", err))
	}
	if len(expose) != 1 || strings.TrimSuffix(expose[0], "/tcp") != port {
		fail("EXPOSE %v, want only the admin port %s", expose, port)
	}
	if !regexp.MustCompile(`(?m)^ARG VERSION`).MatchString(r.dockerfile) {
		fail("no ARG VERSION")
	}
	return errs
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// heading finds the Markdown headings of a document.
var heading = regexp.MustCompile(`(?m)^#{2,4} +(.+?)\s*$`)

func headings(md string) map[string]bool {
	out := map[string]bool{}
	for _, m := range heading.FindAllStringSubmatch(md, -1) {
		out[strings.Trim(m[1], "` ")] = true
	}
	return out
}

// requiredSignals are what the alerts must watch (issue 7): each must
// appear in some alert's expression.
var requiredSignals = []struct{ what, expr string }{
	{"lag", "produktly_segment_consumer_lag"},
	{"dead-letter rate", "produktly_segment_records_dead_lettered_total"},
	{"Segment failures", `produktly_segment_sink_requests_total{status=~"5..`},
	{"Segment 429s", `produktly_segment_sink_requests_total{status="429"}`},
	{"no ready replicas", "kube_deployment_status_replicas_available"},
	{"commit errors", "produktly_segment_commit_errors_total"},
	{"Segment answering 400 to every call", "produktly_segment_sink_systemic_rejection"},
	{"a record stuck unacknowledged", "produktly_segment_oldest_unacked_seconds"},
}

// checkRulesFile: the rule file decodes strictly, uses only the binary's
// metric names, covers the required signals, and every alert has a
// severity, a summary and a runbook section in docs/operations.md.
func checkRulesFile(w *world, r *repoFiles) []error {
	var file RuleFile
	if err := strictYAML(r.rules, &file); err != nil {
		return []error{fmt.Errorf("deploy/prometheus/rules.yaml: %v", err)}
	}
	var errs []error
	fail := func(format string, a ...any) {
		errs = append(errs, fmt.Errorf("deploy/prometheus/rules.yaml: "+format, a...))
	}
	if len(file.Groups) == 0 {
		fail("no rule groups")
	}
	runbooks := headings(r.operations)
	seen := map[string]bool{}
	var exprs strings.Builder
	for _, g := range file.Groups {
		for _, rule := range g.Rules {
			exprs.WriteString(rule.Expr + "\n")
			if rule.Alert == "" {
				continue
			}
			if seen[rule.Alert] {
				fail("alert %s defined twice", rule.Alert)
			}
			seen[rule.Alert] = true
			if u := w.bin.unknownMetrics(rule.Expr); len(u) > 0 {
				fail("alert %s uses metrics the binary does not have: %v", rule.Alert, u)
			}
			if s := rule.Labels["severity"]; s != "warning" && s != "critical" {
				fail("alert %s: severity %q, want warning or critical", rule.Alert, s)
			}
			if rule.Annotations["summary"] == "" {
				fail("alert %s has no summary", rule.Alert)
			}
			if !strings.HasSuffix(rule.Annotations["runbook_url"], "docs/operations.md#"+strings.ToLower(rule.Alert)) {
				fail("alert %s: runbook_url %q must point at docs/operations.md#%s", rule.Alert, rule.Annotations["runbook_url"], strings.ToLower(rule.Alert))
			}
			if !runbooks[rule.Alert] {
				fail("alert %s has no runbook heading in docs/operations.md", rule.Alert)
			}
		}
	}
	for _, s := range requiredSignals {
		if !strings.Contains(exprs.String(), s.expr) {
			fail("no alert watches %s (%s)", s.what, s.expr)
		}
	}
	return errs
}

// dashboard is the part of a Grafana dashboard the checks read.
type dashboard struct {
	Title  string  `json:"title"`
	UID    string  `json:"uid"`
	Panels []panel `json:"panels"`
}

type panel struct {
	ID      int    `json:"id"`
	Type    string `json:"type"`
	Title   string `json:"title"`
	Targets []struct {
		Expr string `json:"expr"`
	} `json:"targets"`
	Panels []panel `json:"panels"` // collapsed rows
}

// checkDashboard: valid JSON, unique panel ids, every panel queries
// something, and every query uses only the binary's metric names.
func checkDashboard(w *world, r *repoFiles) []error {
	var d dashboard
	if err := json.Unmarshal(r.dashboard, &d); err != nil {
		return []error{fmt.Errorf("deploy/grafana/produktly-segment.json: %v", err)}
	}
	var errs []error
	fail := func(format string, a ...any) {
		errs = append(errs, fmt.Errorf("deploy/grafana/produktly-segment.json: "+format, a...))
	}
	if d.Title == "" || d.UID == "" {
		fail("no title or uid")
	}
	ids := map[int]bool{}
	var walk func([]panel)
	walk = func(ps []panel) {
		for _, p := range ps {
			if ids[p.ID] {
				fail("panel id %d used twice", p.ID)
			}
			ids[p.ID] = true
			walk(p.Panels)
			if p.Type == "row" {
				continue
			}
			if len(p.Targets) == 0 {
				fail("panel %q has no query", p.Title)
			}
			for _, t := range p.Targets {
				if strings.TrimSpace(t.Expr) == "" {
					fail("panel %q has an empty query", p.Title)
				}
				if u := w.bin.unknownMetrics(t.Expr); len(u) > 0 {
					fail("panel %q uses metrics the binary does not have: %v", p.Title, u)
				}
			}
		}
	}
	walk(d.Panels)
	if len(ids) == 0 {
		fail("no panels")
	}
	return errs
}

// checkDocs: docs/deploying.md has the commands an operator needs.
func checkDocs(_ *world, r *repoFiles) []error {
	var errs []error
	for _, s := range []string{
		"docker build",
		"create secret generic produktly-segment-credentials",
		"kubectl apply -k deploy/overlays/production",
		"kubectl apply -k deploy/overlays/dev",
		"produktly-segment dlq replay",
		"--dry-run",
		"components/hpa",
		"SHUTDOWN_TIMEOUT",
	} {
		if !strings.Contains(r.deploying, s) {
			errs = append(errs, fmt.Errorf("docs/deploying.md does not mention %q", s))
		}
	}
	if _, err := documentedPartitions(r); err != nil {
		errs = append(errs, err)
	}
	return errs
}

// expandFromArgs substitutes, in FROM instructions, the defaults of the
// ARGs declared before the first FROM (the Dockerfile takes its base images
// as build arguments), so the checks see the images a plain build uses.
func expandFromArgs(ins []string) []string {
	args := map[string]string{}
	expand := func(s string) string {
		return os.Expand(s, func(k string) string {
			if v, ok := args[k]; ok {
				return v
			}
			return "${" + k + "}"
		})
	}
	out := make([]string, 0, len(ins))
	seenFrom := false
	for _, in := range ins {
		kw, rest, _ := strings.Cut(in, " ")
		switch strings.ToUpper(kw) {
		case "ARG":
			if !seenFrom {
				if k, v, ok := strings.Cut(strings.TrimSpace(rest), "="); ok {
					args[k] = expand(v)
				}
			}
		case "FROM":
			seenFrom = true
			in = kw + " " + expand(rest)
		}
		out = append(out, in)
	}
	return out
}
