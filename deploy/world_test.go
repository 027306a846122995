package deploy_test

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/produktly/produktly-segment/consumer"
	"github.com/produktly/produktly-segment/integrations"
	"github.com/produktly/produktly-segment/sink"
)

// repoFiles are the files besides the manifests that the checks read.
type repoFiles struct {
	dockerfile string
	deploying  string // docs/deploying.md
	operations string // docs/operations.md
	rules      []byte // deploy/prometheus/rules.yaml
	dashboard  []byte // deploy/grafana/produktly-segment.json
}

func readRepo() (*repoFiles, error) {
	read := func(rel string) ([]byte, error) { return os.ReadFile(filepath.Join(repoRoot, rel)) }
	var r repoFiles
	var errs []error
	for _, f := range []struct {
		rel string
		set func([]byte)
	}{
		{"Dockerfile", func(b []byte) { r.dockerfile = string(b) }},
		{"docs/deploying.md", func(b []byte) { r.deploying = string(b) }},
		{"docs/operations.md", func(b []byte) { r.operations = string(b) }},
		{"deploy/prometheus/rules.yaml", func(b []byte) { r.rules = b }},
		{"deploy/grafana/produktly-segment.json", func(b []byte) { r.dashboard = b }},
	} {
		b, err := read(f.rel)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		f.set(b)
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("%v", errs)
	}
	return &r, nil
}

// world is everything the checks compare the manifests with.
type world struct {
	bin  *binaryFacts
	repo *repoFiles
}

var (
	worldOnce sync.Once
	theWorld  *world
	worldErr  error
)

// getWorld asks the binary for its settings and metrics and reads the
// repository files, once per test binary.
func getWorld(t *testing.T) *world {
	t.Helper()
	bin := needBinary(t)
	worldOnce.Do(func() {
		theWorld, worldErr = newWorld(bin)
	})
	if worldErr != nil {
		t.Fatal(worldErr)
	}
	return theWorld
}

func newWorld(bin string) (*world, error) {
	help, err := runHelp(bin)
	if err != nil {
		return nil, err
	}
	settings, err := parseHelp(help)
	if err != nil {
		return nil, err
	}
	facts := &binaryFacts{settings: settings, metrics: map[string]bool{}}
	if err := registeredMetrics(facts.metrics); err != nil {
		return nil, err
	}
	if err := scrapedMetrics(bin, facts); err != nil {
		return nil, err
	}
	repo, err := readRepo()
	if err != nil {
		return nil, err
	}
	return &world{bin: facts, repo: repo}, nil
}

// recorder is a prometheus.Registerer that only notes metric names. Vectors
// without children do not show in /metrics until their first observation
// (committed_offset, consumer_lag, sink_requests_total…); their
// descriptors name them all.
type recorder struct{ names map[string]bool }

var fqName = regexp.MustCompile(`fqName: "([^"]+)"`)

func (r *recorder) Register(c prometheus.Collector) error {
	ch := make(chan *prometheus.Desc)
	go func() {
		c.Describe(ch)
		close(ch)
	}()
	for d := range ch {
		if m := fqName.FindStringSubmatch(d.String()); m != nil {
			r.names[m[1]] = true
		}
	}
	return nil
}

func (r *recorder) MustRegister(cs ...prometheus.Collector) {
	for _, c := range cs {
		_ = r.Register(c)
	}
}

func (r *recorder) Unregister(prometheus.Collector) bool { return true }

// registeredMetrics builds the consumer, the Segment sink and (as accounts
// mode does) an integrations table exactly as the binary does (nothing
// connects until Run) and notes the metric names they register.
func registeredMetrics(into map[string]bool) error {
	rec := &recorder{names: into}
	dir, err := os.MkdirTemp("", "deploy-metrics-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	file := filepath.Join(dir, "integrations.json")
	if err := os.WriteFile(file, []byte("{}"), 0o600); err != nil {
		return err
	}
	if _, err := integrations.NewFile(integrations.FileOptions{Path: file, Registerer: rec}); err != nil {
		return fmt.Errorf("integrations.NewFile: %w", err)
	}
	seg, err := sink.NewSegment(sink.Options{WriteKey: "metric-names", Registerer: rec})
	if err != nil {
		return fmt.Errorf("sink.NewSegment: %w", err)
	}
	if _, err := consumer.New(consumer.Options{Brokers: []string{"127.0.0.1:9"}, Sink: seg, Registerer: rec}); err != nil {
		return fmt.Errorf("consumer.New: %w", err)
	}
	if len(into) == 0 {
		return fmt.Errorf("the consumer and sink registered no metrics")
	}
	return nil
}

// scrapedMetrics starts the binary (against no Kafka), reads its /metrics
// and notes every family it exposes: this adds the Go runtime and process
// collectors main wires in.
func scrapedMetrics(bin string, facts *binaryFacts) error {
	svc, err := startService(bin, facts, map[string]string{})
	if err != nil {
		return err
	}
	defer svc.stop()
	resp, err := http.Get(svc.url + "/metrics")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		return fmt.Errorf("GET /metrics: %s\n%s", resp.Status, b)
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 0, 64*1024), 1<<20)
	for sc.Scan() {
		if f := strings.Fields(sc.Text()); len(f) >= 4 && f[0] == "#" && f[1] == "TYPE" {
			facts.metrics[f[2]] = true
		}
	}
	return sc.Err()
}

// metricRef finds the metric names a PromQL expression uses that the
// binary is responsible for. Names of other exporters (kube-state-metrics'
// kube_*, up) are not checked here.
var metricRef = regexp.MustCompile(`\b(?:produktly_segment|process|go)_[a-zA-Z0-9_]+\b`)

// unknownMetrics lists the names in expr the binary neither exposes nor
// registers. Histogram series carry _bucket, _sum and _count.
func (f *binaryFacts) unknownMetrics(expr string) []string {
	var out []string
	for _, name := range metricRef.FindAllString(expr, -1) {
		if f.metrics[name] {
			continue
		}
		base := name
		for _, suf := range []string{"_bucket", "_sum", "_count"} {
			base = strings.TrimSuffix(base, suf)
		}
		if base != name && f.metrics[base] {
			continue
		}
		out = append(out, name)
	}
	return out
}
