package integrations

import (
	"bytes"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/rs/zerolog"
)

// logBuffer collects log lines written from any goroutine.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// debugLogger logs everything, debug included, so secrets tests see all.
func debugLogger() (zerolog.Logger, *logBuffer) {
	b := &logBuffer{}
	return zerolog.New(b).Level(zerolog.TraceLevel), b
}

// waitFor polls cond until it holds or the deadline passes, and returns how
// long it took.
func waitFor(t testing.TB, within time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > within {
			t.Fatalf("%s: not within %v", what, within)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return time.Since(start)
}

// errorsCounted reads the errors counter of reason.
func errorsCounted(tb *Table, reason string) float64 {
	var m dto.Metric
	if err := tb.m.errors.WithLabelValues(reason).Write(&m); err != nil {
		panic(err)
	}
	return m.GetCounter().GetValue()
}

// loadedGauge reads the loaded gauge of state.
func loadedGauge(tb *Table, st State) float64 {
	var m dto.Metric
	if err := tb.m.byState.WithLabelValues(string(st)).Write(&m); err != nil {
		panic(err)
	}
	return m.GetGauge().GetValue()
}

// noSecrets fails if any of the keys is in any of the texts.
func noSecrets(t testing.TB, keys []string, texts ...string) {
	t.Helper()
	for _, k := range keys {
		for _, s := range texts {
			if strings.Contains(s, k) {
				t.Errorf("write key %q appears in %.300q", k, s)
			}
		}
	}
}

// gatherText renders every metric of reg in the text format.
func gatherText(t testing.TB, reg *prometheus.Registry) string {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for _, mf := range mfs {
		b.WriteString(mf.String())
		b.WriteByte('\n')
	}
	return b.String()
}

func sprint(v any) string { return fmt.Sprintf("%v %+v %s", v, v, v) }
