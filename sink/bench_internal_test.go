package sink

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"

	analytics "github.com/segmentio/analytics-go/v3"
)

// BenchmarkEncodeBatch builds the body of a 500-message batch the way the
// batcher does: list each pre-encoded message, seal (write them into a
// pooled body), stamp sentAt. Compare BenchmarkMarshalBatchAnalyticsGo.
func BenchmarkEncodeBatch(b *testing.B) {
	s := &Segment{o: Options{BatchSize: 500, BatchBytes: MaxBatchBytes}}
	msgs := benchMessages(500)
	var size int
	b.ReportAllocs()
	for b.Loop() {
		bt := s.newBatch(nil, 0)
		for _, m := range msgs {
			if !bt.fits(m, s.o.BatchBytes) {
				b.Fatal("batch overflow")
			}
			bt.add(m)
		}
		s.seal(bt)
		stamp(bt.buf, time.Now())
		size = len(bt.buf)
		s.release(bt)
	}
	b.SetBytes(int64(size))
}

// BenchmarkMarshalBatchAnalyticsGo is what analytics-go does per batch:
// json.Marshal of a struct whose messages implement json.Marshaler with
// their pre-encoded bytes, which encoding/json still scans and compacts.
func BenchmarkMarshalBatchAnalyticsGo(b *testing.B) {
	msgs := benchMessages(500)
	raw := make([]json.RawMessage, len(msgs))
	for i, m := range msgs {
		raw[i] = m.JSON
	}
	b.ReportAllocs()
	for b.Loop() {
		body, err := json.Marshal(struct {
			Batch  []json.RawMessage `json:"batch"`
			SentAt time.Time         `json:"sentAt"`
		}{raw, time.Now()})
		if err != nil {
			b.Fatal(err)
		}
		b.SetBytes(int64(len(body)))
	}
}

// benchMessages encodes n track calls shaped like mapping's output.
func benchMessages(n int) []Message {
	msgs := make([]Message, n)
	for i := range msgs {
		id := fmt.Sprintf("3f1c2b9e-8d4a-4b7e-9c1d-%012d", i)
		js, err := json.Marshal(analytics.Track{
			Type:        "track",
			MessageId:   id,
			UserId:      fmt.Sprintf("user-%d", i),
			AnonymousId: "a1b2c3d4-e5f6-4711-8899-aabbccddeeff",
			Event:       "Tour Step",
			Timestamp:   time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC),
			Properties: analytics.Properties{
				"tour_id":    "tour-4711",
				"metadata":   map[string]any{"stepIndex": 3, "type": "next"},
				"company_id": "acme",
				"locale":     "en-US",
			},
			Context: &analytics.Context{Extra: map[string]any{"integration": map[string]any{"name": "Produktly", "version": "1.0.0"}}},
		})
		if err != nil {
			panic(err)
		}
		msgs[i] = Message{ID: id, JSON: js, Done: func(Result) {}}
	}
	return msgs
}

// BenchmarkLookup is the dispatcher's per-message cost of finding a
// message's destination among 1000, with messages coming in runs of 20
// per account (the cached last destination) or each from another account
// (a map lookup of the three strings).
func BenchmarkLookup(b *testing.B) {
	s, err := NewSegment(Options{Accounts: true})
	if err != nil {
		b.Fatal(err)
	}
	keys := make([]Destination, 1000)
	for i := range keys {
		keys[i] = Destination{Account: fmt.Sprint(i), WriteKey: fmt.Sprintf("wk_%032d", i), Endpoint: DefaultEndpoint}
		s.lookup(keys[i])
	}
	for _, run := range []int{20, 1} {
		b.Run(fmt.Sprintf("runs of %d", run), func(b *testing.B) {
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				if s.lookup(keys[(i/run)%len(keys)]) == nil {
					b.Fatal("no destination")
				}
				i++
			}
		})
	}
}
