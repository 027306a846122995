package segmenttest_test

import (
	"bytes"
	"crypto/sha1"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/google/uuid"

	"github.com/produktly/produktly-segment/sink/segmenttest"
)

// BenchmarkWithoutBodies is what the benchmark server (WithoutBodies)
// spends per message of the service's requests, outside net/http: reading
// a body of 500 messages shaped like the mapping's (about 550 bytes each,
// every messageId new), checking it and recording each message. One op is
// one message. The bench (cmd/produktly-bench) runs this server on the
// same cores as the service, so what it spends, the service cannot.
func BenchmarkWithoutBodies(b *testing.B) {
	const perRequest = 500
	n := (b.N + perRequest - 1) / perRequest
	// Room for every message, as the bench makes it (WithCapacity).
	srv := segmenttest.NewServer(key, segmenttest.WithoutBodies(), segmenttest.WithCapacity(n*perRequest))
	defer srv.Close()
	h := srv.Handler()
	var ns = uuid.MustParse("3cb87268-174b-5295-bc79-ee14a9373ac5")
	bodyOf := func(first int) []byte {
		var buf bytes.Buffer
		buf.WriteString(`{"batch":[`)
		for i := range perRequest {
			if i > 0 {
				buf.WriteByte(',')
			}
			id := uuid.NewHash(sha1.New(), ns, fmt.Appendf(nil, "id:evt-%d", first+i), 5)
			fmt.Fprintf(&buf, `{"type":"track","messageId":"%s","userId":"user-%d","event":"Tour Step","timestamp":"2026-12-07T15:04:05.123Z",`+
				`"properties":{"tour_id":%d,"metadata":{"stepIndex":3,"type":"next"},"company_id":"company-1234","locale":"en-GB","app_version":"4.12.7",`+
				`"page_url":"https://app.example.com/workspace/projects/workspace/projects/workspace/projects/","user_agent":"Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0","plan":"team","seats":42},`+
				`"context":{"integration":{"name":"Produktly","version":"1.0.0"}}}`, id, i%50000, i)
		}
		buf.WriteString(`],"sentAt":"2026-12-07T15:04:05.456Z"}`)
		return buf.Bytes()
	}
	// Bodies made before timing: every message a new id, as in a drain.
	bodies := make([][]byte, n)
	size := 0
	for i := range bodies {
		bodies[i] = bodyOf(i * perRequest)
		size += len(bodies[i])
	}
	b.SetBytes(int64(size / max(1, n*perRequest)))
	b.ReportAllocs()
	b.ResetTimer()
	for _, body := range bodies {
		req := httptest.NewRequest(http.MethodPost, "/v1/batch", bytes.NewReader(body))
		req.SetBasicAuth(key, "")
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != http.StatusOK {
			b.Fatalf("status %d: %s", rec.Code, rec.Body)
		}
	}
	b.StopTimer()
	if got, want := srv.Distinct(), n*perRequest; got != want {
		b.Fatalf("%d distinct messages recorded, want %d", got, want)
	}
}
