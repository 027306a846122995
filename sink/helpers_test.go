package sink_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
	analytics "github.com/segmentio/analytics-go/v3"

	"github.com/produktly/produktly-segment/sink"
	"github.com/produktly/produktly-segment/sink/segmenttest"
)

const testKey = "wk_test_secret_123"

// harness is a running sink talking to a segmenttest.Server over loopback.
type harness struct {
	t    *testing.T
	srv  *segmenttest.Server
	sink *sink.Segment
	reg  *prometheus.Registry
	logs *syncBuffer
	res  *results
	stop func() // cancels Run and waits for it
}

// start runs a sink against srv with options tuned for fast tests; tune
// changes them further.
func start(t *testing.T, srv *segmenttest.Server, endpoint string, tune func(*sink.Options)) *harness {
	t.Helper()
	h := &harness{t: t, srv: srv, reg: prometheus.NewRegistry(), logs: &syncBuffer{}, res: newResults(t)}
	o := sink.Options{
		Endpoint:      endpoint,
		WriteKey:      testKey,
		BatchSize:     100,
		FlushInterval: 10 * time.Millisecond,
		Concurrency:   4,
		Timeout:       2 * time.Second,
		MinBackoff:    5 * time.Millisecond,
		MaxBackoff:    50 * time.Millisecond,
		Logger:        zerolog.New(h.logs).Level(zerolog.DebugLevel),
		Registerer:    h.reg,
	}
	if tune != nil {
		tune(&o)
	}
	s, err := sink.NewSegment(o)
	if err != nil {
		t.Fatalf("NewSegment: %v", err)
	}
	h.sink = s
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	var once sync.Once
	h.stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("Run returned %v, want nil", err)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("Run did not return within 5s of cancel")
			}
		})
	}
	t.Cleanup(func() {
		h.stop()
		if strings.Contains(h.logs.String(), testKey) {
			t.Error("the write key appears in the logs")
		}
	})
	return h
}

// newServer starts a segmenttest.Server closed at cleanup.
func newServer(t *testing.T, opts ...segmenttest.Option) *segmenttest.Server {
	srv := segmenttest.NewServer(testKey, opts...)
	t.Cleanup(srv.Close)
	return srv
}

// track encodes a track call the way package mapping does: analytics-go's
// Track type, marshalled once.
func track(id string, pad int) []byte {
	b, err := json.Marshal(analytics.Track{
		Type:       "track",
		MessageId:  id,
		UserId:     "user-" + id,
		Event:      "Tour Start",
		Timestamp:  time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC),
		Properties: analytics.Properties{"tour_id": "t-1", "pad": strings.Repeat("x", pad)},
		Context:    &analytics.Context{Extra: map[string]any{"integration": map[string]any{"name": "Produktly", "version": "1.0.0"}}},
	})
	if err != nil {
		panic(err)
	}
	return b
}

// enqueue hands n messages named prefix-0... to the sink and returns their ids.
func (h *harness) enqueue(prefix string, n, pad int, cancel <-chan struct{}) []string {
	h.t.Helper()
	ids := make([]string, n)
	for i := range n {
		ids[i] = fmt.Sprintf("%s-%d", prefix, i)
		if err := h.sink.Enqueue(context.Background(), h.res.message(ids[i], track(ids[i], pad), cancel)); err != nil {
			h.t.Fatalf("Enqueue(%s): %v", ids[i], err)
		}
	}
	return ids
}

// results collects Done calls and fails the test on a second call for one id.
type results struct {
	t    *testing.T
	mu   sync.Mutex
	got  map[string]sink.Result
	cond chan struct{} // closed and replaced on every Done
}

func newResults(t *testing.T) *results {
	return &results{t: t, got: make(map[string]sink.Result), cond: make(chan struct{})}
}

func (r *results) message(id string, js []byte, cancel <-chan struct{}) sink.Message {
	return sink.Message{ID: id, JSON: js, Cancel: cancel, Done: func(res sink.Result) {
		r.mu.Lock()
		defer r.mu.Unlock()
		if prev, dup := r.got[id]; dup {
			r.t.Errorf("Done called twice for %s: %v then %v", id, prev, res)
		}
		r.got[id] = res
		close(r.cond)
		r.cond = make(chan struct{})
	}}
}

// wait blocks until n messages are finished, failing after timeout.
func (r *results) wait(n int, timeout time.Duration) map[string]sink.Result {
	r.t.Helper()
	deadline := time.After(timeout)
	for {
		r.mu.Lock()
		if len(r.got) >= n {
			out := make(map[string]sink.Result, len(r.got))
			for k, v := range r.got {
				out[k] = v
			}
			r.mu.Unlock()
			return out
		}
		c, have := r.cond, len(r.got)
		r.mu.Unlock()
		select {
		case <-c:
		case <-deadline:
			r.t.Fatalf("%d of %d messages finished after %s", have, n, timeout)
		}
	}
}

func (r *results) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.got)
}

// outcomes counts results by outcome.
func outcomes(got map[string]sink.Result) map[sink.Outcome]int {
	c := map[sink.Outcome]int{}
	for _, r := range got {
		c[r.Outcome]++
	}
	return c
}

// eventually polls cond until it holds or timeout passes.
func eventually(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// metric returns the value of a counter or the sample count of a histogram
// in reg whose name and labels match.
func metric(t *testing.T, reg *prometheus.Registry, name string, labels ...string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatalf("Gather: %v", err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			for i := 0; i+1 < len(labels); i += 2 {
				found := false
				for _, lp := range m.GetLabel() {
					if lp.GetName() == labels[i] && lp.GetValue() == labels[i+1] {
						found = true
					}
				}
				if !found {
					continue next
				}
			}
			if h := m.GetHistogram(); h != nil {
				return float64(h.GetSampleCount())
			}
			return m.GetCounter().GetValue() + m.GetGauge().GetValue()
		}
	}
	return 0
}

// request is one request as the recorder saw it.
type request struct {
	at     time.Time
	body   []byte
	status int
}

// recorder serves srv's handler on its own listener and keeps every request
// body, so tests can compare what was sent on each attempt.
type recorder struct {
	*httptest.Server
	mu   sync.Mutex
	reqs []request
}

func record(t *testing.T, srv *segmenttest.Server) *recorder {
	rec := &recorder{}
	rec.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		r.Body = io.NopCloser(bytes.NewReader(body))
		sw := &statusWriter{ResponseWriter: w}
		at := time.Now()
		srv.Handler().ServeHTTP(sw, r)
		rec.mu.Lock()
		rec.reqs = append(rec.reqs, request{at: at, body: body, status: sw.status})
		rec.mu.Unlock()
	}))
	t.Cleanup(rec.Close)
	return rec
}

func (r *recorder) requests() []request {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]request(nil), r.reqs...)
}

type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(p)
}

func (w *statusWriter) WriteHeader(code int) {
	w.status = code
	w.ResponseWriter.WriteHeader(code)
}

// Hijack lets segmenttest's Drop and Cut faults work through the recorder.
func (w *statusWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	return w.ResponseWriter.(http.Hijacker).Hijack()
}

// syncBuffer is a bytes.Buffer safe for concurrent log writes.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// batchOf decodes a request body into its message ids and sentAt.
func batchOf(t *testing.T, body []byte) (ids []string, sentAt time.Time) {
	t.Helper()
	var env struct {
		Batch []struct {
			MessageID string `json:"messageId"`
		} `json:"batch"`
		SentAt  time.Time `json:"sentAt"`
		Context struct {
			Library struct{ Name string } `json:"library"`
		} `json:"context"`
	}
	if err := json.Unmarshal(body, &env); err != nil {
		t.Fatalf("request body is not valid JSON: %v\n%.300s", err, body)
	}
	for _, m := range env.Batch {
		ids = append(ids, m.MessageID)
	}
	if env.Context.Library.Name != "produktly-segment" {
		t.Errorf("context.library.name = %q, want produktly-segment", env.Context.Library.Name)
	}
	return ids, env.SentAt
}
