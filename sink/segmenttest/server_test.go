package segmenttest_test

import (
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/produktly/produktly-segment/sink/segmenttest"
)

const key = "wk_test"

// msg is a valid track call.
func msg(id string) string {
	return fmt.Sprintf(`{"type":"track","event":"Tour Start","messageId":%q,"userId":"u-%s","properties":{"tour_id":"t1"}}`, id, id)
}

func body(msgs ...string) string {
	return `{"batch":[` + strings.Join(msgs, ",") + `],"sentAt":"2024-05-01T12:00:00.000Z"}`
}

// post sends a batch body and returns the status and answer, or the
// transport error.
func post(t *testing.T, c *http.Client, url, writeKey, b string, hdr ...string) (int, string, http.Header, error) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url+"/v1/batch", strings.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	if writeKey != "" {
		req.SetBasicAuth(writeKey, "")
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	if c == nil {
		c = &http.Client{Timeout: 5 * time.Second}
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, "", nil, err
	}
	defer resp.Body.Close()
	a, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(a), resp.Header, err
}

func newServer(t *testing.T, opts ...segmenttest.Option) *segmenttest.Server {
	s := segmenttest.NewServer(key, opts...)
	t.Cleanup(s.Close)
	return s
}

func TestAccepts(t *testing.T) {
	s := newServer(t)
	before := time.Now()
	status, answer, _, err := post(t, nil, s.URL(), key, body(msg("a"), msg("b")))
	if err != nil || status != 200 || answer != `{"success":true}` {
		t.Fatalf("got %d %q %v, want 200 {\"success\":true}", status, answer, err)
	}
	_, _, _, _ = post(t, nil, s.URL(), key, body(msg("a"))) // a duplicate
	got := s.Messages()
	if len(got) != 3 || s.Count() != 3 || s.Distinct() != 2 || s.Requests() != 2 {
		t.Fatalf("messages %d, Count %d, Distinct %d, Requests %d; want 3, 3, 2, 2", len(got), s.Count(), s.Distinct(), s.Requests())
	}
	m := got[1]
	if m.MessageID != "b" || m.Event != "Tour Start" || m.UserID != "u-b" || m.AnonymousID != "" || string(m.Raw) != msg("b") {
		t.Errorf("got %+v", m)
	}
	if m.At.Before(before) || m.At.After(time.Now()) {
		t.Errorf("At = %s, not the arrival time", m.At)
	}
	got[0].MessageID = "changed"
	if s.Messages()[0].MessageID != "a" {
		t.Error("Messages does not return a copy")
	}
}

func TestRefuses(t *testing.T) {
	big := strings.Repeat("x", 32000)
	many := make([]string, 2501)
	for i := range many {
		many[i] = msg(fmt.Sprint(i))
	}
	var huge []string
	for i := range 20 {
		huge = append(huge, fmt.Sprintf(`{"type":"track","event":"e","messageId":"%d","userId":"u","p":"%s"}`, i, strings.Repeat("y", 25000)))
	}
	for _, tc := range []struct {
		name   string
		method string
		path   string
		key    string
		body   string
		want   int
	}{
		{"GET", http.MethodGet, "/v1/batch", key, "", 405},
		{"other path", http.MethodPost, "/v1/track", key, body(msg("a")), 404},
		{"no auth", http.MethodPost, "/v1/batch", "", body(msg("a")), 401},
		{"wrong key", http.MethodPost, "/v1/batch", "nope", body(msg("a")), 401},
		{"bad JSON", http.MethodPost, "/v1/batch", key, `{"batch":[`, 400},
		{"no batch", http.MethodPost, "/v1/batch", key, `{"sentAt":"x"}`, 400},
		{"not an object", http.MethodPost, "/v1/batch", key, body(`[1]`), 400},
		{"body over 500 KB", http.MethodPost, "/v1/batch", key, body(huge...), 400},
		{"message over 32 KB", http.MethodPost, "/v1/batch", key, body(`{"type":"track","event":"e","messageId":"m","userId":"u","p":"` + big + `"}`), 400},
		{"2501 messages", http.MethodPost, "/v1/batch", key, body(many...), 400},
		{"no type", http.MethodPost, "/v1/batch", key, body(`{"event":"e","messageId":"m","userId":"u"}`), 400},
		{"track without event", http.MethodPost, "/v1/batch", key, body(`{"type":"track","messageId":"m","userId":"u"}`), 400},
		{"no messageId", http.MethodPost, "/v1/batch", key, body(`{"type":"track","event":"e","userId":"u"}`), 400},
		{"no identity", http.MethodPost, "/v1/batch", key, body(`{"type":"track","event":"e","messageId":"m"}`), 400},
		{"one bad among good", http.MethodPost, "/v1/batch", key, body(msg("a"), `{"type":"track"}`, msg("b")), 400},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newServer(t)
			req, _ := http.NewRequest(tc.method, s.URL()+tc.path, strings.NewReader(tc.body))
			if tc.key != "" {
				req.SetBasicAuth(tc.key, "")
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tc.want {
				t.Errorf("status %d, want %d", resp.StatusCode, tc.want)
			}
			if s.Count() != 0 || s.Requests() != 1 {
				t.Errorf("Count %d, Requests %d; want 0 and 1", s.Count(), s.Requests())
			}
		})
	}
}

// TestURLForNamesTheSender: a client posting to URLFor(name) has its
// messages recorded with Via name, one posting to URL with none, and a
// path under /via/ that is not one of URLFor's is refused like any other.
func TestURLForNamesTheSender(t *testing.T) {
	s := newServer(t)
	for _, tc := range []struct{ url, id string }{{s.URLFor("all-r2"), "a"}, {s.URL(), "b"}, {s.URLFor("all-r3"), "c"}} {
		if status, answer, _, err := post(t, nil, tc.url, key, body(msg(tc.id))); err != nil || status != 200 {
			t.Fatalf("%s: %d %q %v, want 200", tc.url, status, answer, err)
		}
	}
	got := s.Messages()
	want := map[string]string{"a": "all-r2", "b": "", "c": "all-r3"}
	if len(got) != len(want) {
		t.Fatalf("the server holds %d messages, want %d", len(got), len(want))
	}
	for _, m := range got {
		if m.Via != want[m.MessageID] {
			t.Errorf("message %s: Via %q, want %q", m.MessageID, m.Via, want[m.MessageID])
		}
	}
	for _, path := range []string{"/via//v1/batch", "/via/a/b/v1/batch", "/via/a/v1/track", "/via/a", "/v1/batch/via/a"} {
		req, _ := http.NewRequest(http.MethodPost, s.URL()+path, strings.NewReader(body(msg("x"))))
		req.SetBasicAuth(key, "")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusNotFound {
			t.Errorf("%s: status %d, want 404", path, resp.StatusCode)
		}
	}
	if s.Count() != len(want) {
		t.Errorf("Count %d after the refused paths, want %d", s.Count(), len(want))
	}
}

func TestGzip(t *testing.T) {
	s := newServer(t)
	var zb bytes.Buffer
	zw := gzip.NewWriter(&zb)
	_, _ = io.WriteString(zw, body(msg("z")))
	_ = zw.Close()
	if status, _, _, err := post(t, nil, s.URL(), key, zb.String(), "Content-Encoding", "gzip"); err != nil || status != 200 {
		t.Errorf("gzip body: %d %v, want 200", status, err)
	}
	if status, _, _, _ := post(t, nil, s.URL(), key, "not gzip", "Content-Encoding", "gzip"); status != 400 {
		t.Errorf("bad gzip: %d, want 400", status)
	}
	if s.Distinct() != 1 {
		t.Errorf("Distinct %d, want 1", s.Distinct())
	}
}

// A body that ends early is refused, in both modes, even when what did
// arrive reads as a whole batch: a gzip stream without its trailer, and a
// body whose reader reports io.ErrUnexpectedEOF (what net/http says of a
// body cut off before its Content-Length).
func TestCutOffBodiesAreRefused(t *testing.T) {
	var zb bytes.Buffer
	zw := gzip.NewWriter(&zb)
	_, _ = io.WriteString(zw, body(msg("z")))
	_ = zw.Close()
	noTrailer := zb.Bytes()[:zb.Len()-8]
	for _, mode := range []struct {
		name string
		opts []segmenttest.Option
	}{{"full", nil}, {"without bodies", []segmenttest.Option{segmenttest.WithoutBodies()}}} {
		t.Run(mode.name, func(t *testing.T) {
			s := newServer(t, mode.opts...)
			if status, answer, _, err := post(t, nil, s.URL(), key, string(noTrailer), "Content-Encoding", "gzip"); err != nil || status != 400 {
				t.Errorf("gzip without its trailer: %d %q %v, want 400", status, answer, err)
			}
			req := httptest.NewRequest(http.MethodPost, "/v1/batch", io.MultiReader(strings.NewReader(body(msg("c"))), cutReader{}))
			req.SetBasicAuth(key, "")
			rec := httptest.NewRecorder()
			s.Handler().ServeHTTP(rec, req)
			if rec.Code != 400 || !strings.Contains(rec.Body.String(), "reading body") {
				t.Errorf("cut-off body: %d %s, want 400 reading body", rec.Code, rec.Body)
			}
			if n := s.Distinct(); n != 0 {
				t.Errorf("Distinct %d after two cut-off bodies, want 0", n)
			}
		})
	}
}

// cutReader is the end of a body that was cut off.
type cutReader struct{}

func (cutReader) Read([]byte) (int, error) { return 0, io.ErrUnexpectedEOF }

func TestFailNextAndOutage(t *testing.T) {
	s := newServer(t)
	s.SetRetryAfter(1500 * time.Millisecond)
	s.FailNext(503, 429, 500)
	for i, want := range []struct {
		status     int
		retryAfter string
	}{{503, "2"}, {429, "2"}, {500, ""}, {200, ""}} {
		status, _, hdr, err := post(t, nil, s.URL(), key, body(msg(fmt.Sprint(i))))
		if err != nil || status != want.status || hdr.Get("Retry-After") != want.retryAfter {
			t.Errorf("request %d: %d Retry-After %q %v; want %d %q", i, status, hdr.Get("Retry-After"), err, want.status, want.retryAfter)
		}
	}
	s.SetOutage(502)
	for range 3 {
		if status, _, _, _ := post(t, nil, s.URL(), key, body(msg("o"))); status != 502 {
			t.Errorf("during outage: %d, want 502", status)
		}
	}
	s.ClearOutage()
	if status, _, _, _ := post(t, nil, s.URL(), key, body(msg("o"))); status != 200 {
		t.Errorf("after outage: %d, want 200", status)
	}
	if s.Count() != 2 || s.Requests() != 8 {
		t.Errorf("Count %d, Requests %d; want 2 and 8", s.Count(), s.Requests())
	}
}

func TestConnectionFaults(t *testing.T) {
	s := newServer(t)
	c := &http.Client{Timeout: 200 * time.Millisecond}

	s.DropConnections(2)
	for range 2 {
		if _, _, _, err := post(t, c, s.URL(), key, body(msg("d"))); err == nil {
			t.Error("dropped connection: got an answer")
		}
	}
	s.FailNext(segmenttest.Hang)
	begin := time.Now()
	if _, _, _, err := post(t, c, s.URL(), key, body(msg("h"))); err == nil || time.Since(begin) < 200*time.Millisecond {
		t.Errorf("hang: %v after %s, want a client timeout", err, time.Since(begin))
	}
	s.FailNext(segmenttest.Cut)
	if _, _, _, err := post(t, c, s.URL(), key, body(msg("c"))); err == nil {
		t.Error("cut response: got an answer")
	}
	if got := s.Messages(); len(got) != 1 || got[0].MessageID != "c" || !got[0].Cut {
		t.Errorf("after the faults the server holds %v, want only the cut batch, marked Cut", got)
	}
	s.SetLatency(100 * time.Millisecond)
	begin = time.Now()
	if status, _, _, err := post(t, nil, s.URL(), key, body(msg("l"))); err != nil || status != 200 || time.Since(begin) < 100*time.Millisecond {
		t.Errorf("latency: %d %v after %s", status, err, time.Since(begin))
	}
}

func TestCloseEndsHangingRequests(t *testing.T) {
	s := segmenttest.NewServer(key)
	s.SetOutage(segmenttest.Hang)
	errc := make(chan error, 1)
	go func() {
		_, _, _, err := post(t, &http.Client{}, s.URL(), key, body(msg("h")))
		errc <- err
	}()
	for s.Requests() == 0 {
		time.Sleep(time.Millisecond)
	}
	done := make(chan struct{})
	go func() { s.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(2 * time.Second):
		t.Fatal("Close hangs while a request hangs")
	}
	if err := <-errc; err == nil {
		t.Error("the hanging request got an answer")
	}
}

func TestFaultRate(t *testing.T) {
	run := func() (seq []string, faults int) {
		s := newServer(t)
		s.SetFaultRate(0.5, 42)
		// Long enough that a loaded machine does not pass a slow answer
		// off as a hang, short enough that the hangs stay cheap.
		c := &http.Client{Timeout: 400 * time.Millisecond}
		for i := range 120 {
			status, _, hdr, err := post(t, c, s.URL(), key, body(msg(fmt.Sprint(i))))
			var r string
			switch {
			case err != nil && errors.Is(err, errTimeout(err)):
				r = "hang"
			case err != nil:
				r = "cut"
			case status == 429 && hdr.Get("Retry-After") == "":
				t.Error("random 429 without Retry-After")
				r = "429"
			default:
				r = fmt.Sprint(status)
			}
			if r != "200" {
				faults++
			}
			seq = append(seq, r)
		}
		return seq, faults
	}
	seq, faults := run()
	if faults < 40 || faults > 80 {
		t.Errorf("%d of 120 requests faulted at rate 0.5", faults)
	}
	for _, kind := range []string{"500", "502", "503", "429", "hang", "cut"} {
		if !strings.Contains(strings.Join(seq, " "), kind) {
			t.Errorf("fault %s never drawn in %v", kind, seq)
		}
	}
	if again, _ := run(); strings.Join(again, " ") != strings.Join(seq, " ") {
		t.Error("the same seed drew different faults")
	}
}

// errTimeout returns err itself when it is a timeout, so errors.Is matches.
func errTimeout(err error) error {
	var te interface{ Timeout() bool }
	if errors.As(err, &te) && te.Timeout() {
		return err
	}
	return errors.New("not a timeout")
}

func TestRejectMessages(t *testing.T) {
	s := newServer(t)
	s.RejectMessages(func(m segmenttest.Received) bool { return m.MessageID == "bad" })
	if status, answer, _, _ := post(t, nil, s.URL(), key, body(msg("ok1"), msg("bad"))); status != 400 || !strings.Contains(answer, "bad") {
		t.Errorf("batch with a bad message: %d %s, want 400 naming it", status, answer)
	}
	if status, _, _, _ := post(t, nil, s.URL(), key, body(msg("ok1"), msg("ok2"))); status != 200 {
		t.Errorf("good batch: %d, want 200", status)
	}
	if s.Distinct() != 2 {
		t.Errorf("Distinct %d, want 2", s.Distinct())
	}
}

func TestWithoutBodies(t *testing.T) {
	s := newServer(t, segmenttest.WithoutBodies())
	_, _, _, _ = post(t, nil, s.URL(), key, body(msg("a")))
	got := s.Messages()
	if len(got) != 1 || got[0].Raw != nil || got[0].UserID != "" || got[0].MessageID != "a" || got[0].Event != "Tour Start" || got[0].At.IsZero() {
		t.Errorf("got %+v, want id, event and time only", got)
	}
}

// TestWithoutBodiesKeepsEveryForm: WithoutBodies keeps canonical UUIDs in
// its compact form and every other messageId as it came, and gives each
// back with its own event, write key and arrival, however the requests'
// readings are reused; RejectMessages sees every message of a batch.
func TestWithoutBodiesKeepsEveryForm(t *testing.T) {
	const (
		lower = "0b0e5d43-6f29-4c0e-9a55-00000000000a"
		upper = "0B0E5D43-6F29-4C0E-9A55-00000000000B"
	)
	finish := func(id string) string {
		return fmt.Sprintf(`{"type":"track","event":"Tour Finish","messageId":%q,"anonymousId":"a"}`, id)
	}
	s := newServer(t, segmenttest.WithoutBodies(), segmenttest.WithCapacity(2), segmenttest.WithWriteKeys("wk_b"))
	for _, b := range []struct{ key, body string }{
		{key, body(msg(lower), finish("plain-id"), msg(upper))},
		{"wk_b", body(finish(lower), msg("other"))}, // a duplicate of lower
		{"wk_b", body(msg("0b0e5d43-6f29-4c0e-9a55-00000000000c"))},
	} {
		if status, answer, _, err := post(t, nil, s.URL(), b.key, b.body); err != nil || status != 200 {
			t.Fatalf("%s: %d %s %v, want 200", b.body, status, answer, err)
		}
	}
	type kept struct{ id, event, key string }
	var got []kept
	for _, m := range s.Messages() {
		if m.At.IsZero() {
			t.Errorf("%s: no arrival time", m.MessageID)
		}
		got = append(got, kept{m.MessageID, m.Event, m.WriteKey})
	}
	sort.Slice(got, func(i, j int) bool { return got[i].id+got[i].key < got[j].id+got[j].key })
	want := []kept{
		{"0B0E5D43-6F29-4C0E-9A55-00000000000B", "Tour Start", key},
		{lower, "Tour Finish", "wk_b"},
		{lower, "Tour Start", key},
		{"0b0e5d43-6f29-4c0e-9a55-00000000000c", "Tour Start", "wk_b"},
		{"other", "Tour Start", "wk_b"},
		{"plain-id", "Tour Finish", key},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("kept %v,\nwant %v", got, want)
	}
	if s.Count() != 6 || s.Distinct() != 5 {
		t.Errorf("Count %d Distinct %d, want 6 and 5", s.Count(), s.Distinct())
	}

	var seen []string
	s.RejectMessages(func(m segmenttest.Received) bool {
		seen = append(seen, m.MessageID+" "+m.Event)
		return m.MessageID == "bad"
	})
	if status, _, _, _ := post(t, nil, s.URL(), key, body(msg(lower), finish("bad"))); status != 400 {
		t.Errorf("batch with a rejected message: %d, want 400", status)
	}
	if want := []string{lower + " Tour Start", "bad Tour Finish"}; !reflect.DeepEqual(seen, want) {
		t.Errorf("RejectMessages saw %q, want %q", seen, want)
	}
	if s.Count() != 6 {
		t.Errorf("Count %d after a rejected batch, want 6", s.Count())
	}
}

func TestHandlerAndListen(t *testing.T) {
	s := newServer(t)
	hs := httptest.NewServer(s.Handler())
	defer hs.Close()
	if status, _, _, err := post(t, nil, hs.URL, key, body(msg("m"))); err != nil || status != 200 || s.Count() != 1 {
		t.Errorf("through Handler: %d %v, Count %d", status, err, s.Count())
	}

	l, err := segmenttest.Listen(key, segmenttest.WithAddr("127.0.0.1:0"))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	addr := strings.TrimPrefix(l.URL(), "http://")
	if _, err := segmenttest.Listen(key, segmenttest.WithAddr(addr)); err == nil {
		t.Errorf("Listen on a port in use (%s): want an error", addr)
	}
}

// TestManyWriteKeys: one server serves several sources and records the key
// of every message; FailKey breaks one key and leaves the others alone.
func TestManyWriteKeys(t *testing.T) {
	for _, opts := range [][]segmenttest.Option{nil, {segmenttest.WithoutBodies()}} {
		s := newServer(t, append(opts, segmenttest.WithWriteKeys("wk_b"))...)
		s.AddWriteKey("wk_c")
		ids := map[string]string{"wk_test": "0b0e5d43-6f29-4c0e-9a55-000000000001", "wk_b": "0b0e5d43-6f29-4c0e-9a55-000000000002", "wk_c": "0b0e5d43-6f29-4c0e-9a55-000000000003"}
		for k, id := range ids {
			if status, answer, _, err := post(t, nil, s.URL(), k, body(msg(id))); err != nil || status != 200 {
				t.Fatalf("key %s: %d %s %v, want 200", k, status, answer, err)
			}
		}
		if status, _, _, _ := post(t, nil, s.URL(), "wk_unknown", body(msg("x"))); status != 401 {
			t.Errorf("unknown key: %d, want 401", status)
		}
		for k, id := range ids {
			got := s.MessagesFor(k)
			if len(got) != 1 || got[0].MessageID != id || got[0].WriteKey != k {
				t.Errorf("MessagesFor(%s) = %+v, want the one message %s", k, got, id)
			}
		}

		s.FailKey("wk_b", 429, 3*time.Second)
		status, _, hdr, _ := post(t, nil, s.URL(), "wk_b", body(msg("y")))
		if status != 429 || hdr.Get("Retry-After") != "3" {
			t.Errorf("failed key: %d Retry-After %q, want 429 and 3", status, hdr.Get("Retry-After"))
		}
		if status, _, _, _ := post(t, nil, s.URL(), "wk_c", body(msg("z"))); status != 200 {
			t.Errorf("other key while wk_b fails: %d, want 200", status)
		}
		s.ClearKey("wk_b")
		if status, _, _, _ := post(t, nil, s.URL(), "wk_b", body(msg("y"))); status != 200 {
			t.Errorf("wk_b after ClearKey: %d, want 200", status)
		}
		if n := s.RequestsFor("wk_b"); n != 3 {
			t.Errorf("RequestsFor(wk_b) = %d, want 3", n)
		}
	}
}

// TestSideBySide: a US and an EU server run at once, each with its own
// keys and messages.
func TestSideBySide(t *testing.T) {
	us := newServer(t)
	eu := segmenttest.NewServer("wk_eu")
	t.Cleanup(eu.Close)
	if us.URL() == eu.URL() {
		t.Fatal("both servers on one address")
	}
	if status, _, _, _ := post(t, nil, eu.URL(), "wk_eu", body(msg("e"))); status != 200 {
		t.Errorf("EU: %d", status)
	}
	if status, _, _, _ := post(t, nil, us.URL(), "wk_eu", body(msg("e"))); status != 401 {
		t.Errorf("EU key at the US server: %d, want 401", status)
	}
	if us.Count() != 0 || eu.Count() != 1 {
		t.Errorf("US has %d, EU %d messages; want 0 and 1", us.Count(), eu.Count())
	}
}

// TestLatencyPastClientTimeout: a request whose client gave up during the
// injected latency is not accepted afterwards. (net/http notices a client
// going away only once the handler has read the body, so the server reads
// it before it waits.)
func TestLatencyPastClientTimeout(t *testing.T) {
	s := newServer(t)
	s.SetLatency(time.Second)
	handled := make(chan struct{})
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer close(handled)
		defer func() { _ = recover() }() // http.ErrAbortHandler
		s.Handler().ServeHTTP(w, r)
	}))
	t.Cleanup(hs.Close)
	c := &http.Client{Timeout: 100 * time.Millisecond}
	if _, _, _, err := post(t, c, hs.URL, key, body(msg("late"))); err == nil {
		t.Fatal("request returned before the latency passed")
	}
	<-handled
	if n := s.Count(); n != 0 {
		t.Errorf("server accepted %d messages of a request its client gave up on", n)
	}
}
