package mapping

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math/bits"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// BenchmarkMap maps a realistic mix: one record of each of the 14 events,
// 200–600 bytes each, taken from the golden inputs. One op is one record.
func BenchmarkMap(b *testing.B) {
	recs, size := benchRecords(b, false)
	benchMap(b, recs, size, func(r Record) error { _, err := Map(r); return err })
}

// BenchmarkMapAccount is BenchmarkMap in accounts mode: the same records,
// each with an accountId (a string or an integer).
func BenchmarkMapAccount(b *testing.B) {
	recs, size := benchRecords(b, true)
	benchMap(b, recs, size, func(r Record) error { _, err := MapAccount(r); return err })
}

// BenchmarkMapServiceMix maps records shaped like those the service
// benchmark (cmd/produktly-bench) produces: every event, ids as strings
// and numbers, epoch-millisecond timestamps, page context of 200–600
// bytes in all.
func BenchmarkMapServiceMix(b *testing.B) {
	recs, size := serviceMix(1000)
	benchMap(b, recs, size, func(r Record) error { _, err := Map(r); return err })
}

// BenchmarkMapIntoServiceMix is BenchmarkMapServiceMix through MapInto.
func BenchmarkMapIntoServiceMix(b *testing.B) {
	recs, size := serviceMix(1000)
	benchMap(b, recs, size, func(r Record) error { _, _, err := MapInto(nil, r); return err })
}

// serviceMix makes n records the way cmd/produktly-bench's record
// generator does (its good records), and their mean size.
func serviceMix(n int) ([]Record, int64) {
	rng := rand.New(rand.NewPCG(1, 2))
	idFields := map[string]string{"tour": "tourId", "checklist": "checklistId", "smart": "smartTipId", "announcement": "announcementId", "nps": "npsWidgetId"}
	agents := []string{
		"Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Safari/605.1.15",
		"Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36 Edg/131.0",
	}
	var recs []Record
	var size int
	at := time.UnixMilli(1795950000000)
	for i := range n {
		ev := catalogue[rng.IntN(len(catalogue))]
		idField := idFields[strings.SplitN(ev.Type, "_", 2)[0]]
		user := rng.IntN(50000)
		var sb strings.Builder
		fmt.Fprintf(&sb, `{"type":%q,"id":"evt-%d-%016x","userId":"user-%d"`, ev.Type, i, rng.Uint64(), user)
		if rng.IntN(4) == 0 {
			fmt.Fprintf(&sb, `,"anonymousId":"%08x-%04x-4%03x-8%03x-%012x"`, rng.Uint32(), rng.IntN(1<<16), rng.IntN(1<<12), rng.IntN(1<<12), rng.Uint64()&(1<<48-1))
		}
		if rng.IntN(2) == 0 {
			fmt.Fprintf(&sb, `,%q:%d`, idField, rng.IntN(100000))
		} else {
			fmt.Fprintf(&sb, `,%q:"%s-%d"`, idField, strings.ToLower(idField[:3]), rng.IntN(100000))
		}
		switch ev.Type {
		case "tour_step":
			fmt.Fprintf(&sb, `,"metadata":{"stepIndex":%d,"type":"next"}`, rng.IntN(12))
		case "checklist_step_completed":
			fmt.Fprintf(&sb, `,"metadata":{"stepId":"step-%d"}`, rng.IntN(12))
		}
		fmt.Fprintf(&sb, `,"timestamp":%d,"companyId":"company-%d","locale":"en-GB","appVersion":"4.%d.%d"`,
			at.UnixMilli(), rng.IntN(3000), rng.IntN(20), rng.IntN(50))
		fmt.Fprintf(&sb, `,"pageUrl":"https://app.example.com/%s","userAgent":"%s"`,
			strings.Repeat("workspace/projects/", 1+rng.IntN(6)), agents[rng.IntN(len(agents))][:40+rng.IntN(60)])
		if rng.IntN(3) == 0 {
			fmt.Fprintf(&sb, `,"plan":"%s","seats":%d`, []string{"free", "team", "enterprise"}[rng.IntN(3)], rng.IntN(500))
		}
		sb.WriteByte('}')
		size += sb.Len()
		recs = append(recs, Record{Topic: "produktly.interactions", Partition: 3, Offset: int64(i), Time: at, Value: []byte(sb.String())})
	}
	return recs, int64(size / n)
}

// benchMap maps recs (of mean size bytes) round robin with mapFn, one
// record per op, reporting allocations and CPU time per op.
func benchMap(b *testing.B, recs []Record, size int64, mapFn func(Record) error) {
	b.SetBytes(size)
	b.ReportAllocs()
	defer reportCPU(b)()
	for i := 0; i < b.N; i++ {
		if err := mapFn(recs[i%len(recs)]); err != nil {
			b.Fatal(err)
		}
	}
}

// reportCPU resets the timer and returns a function that reports the
// process's CPU time per op (cpu-ns/op: the mapping's, its garbage
// collection's and whatever else the test binary runs meanwhile), which
// a busy machine disturbs far less than the wall-clock ns/op.
func reportCPU(b *testing.B) func() {
	start, ok := processCPU()
	b.ResetTimer()
	return func() {
		end, _ := processCPU()
		if ok && b.N > 0 {
			b.ReportMetric(float64(end-start)/float64(b.N), "cpu-ns/op")
		}
	}
}

// benchRecords are BenchmarkMap's records, with an accountId when
// accounts is set, and their mean size.
func benchRecords(b testing.TB, accounts bool) ([]Record, int64) {
	var recs []Record
	var size int
	for i, ev := range catalogue {
		v, err := os.ReadFile(filepath.Join("testdata", "records", ev.Type+".json"))
		if err != nil {
			b.Fatal(err)
		}
		if accounts {
			v = accountValue(i, v)
		}
		size += len(v)
		recs = append(recs, Record{Topic: "produktly.interactions", Partition: 3, Offset: int64(1000 + i), Time: time.UnixMilli(1795950000000), Value: v})
	}
	return recs, int64(size / len(recs))
}

// BenchmarkMapInto is BenchmarkMap through MapInto as a consumer that
// sends only Call.JSON uses it: a fresh buffer per record (dst nil), no
// Properties.
func BenchmarkMapInto(b *testing.B) {
	recs, size := benchRecords(b, false)
	benchMap(b, recs, size, func(r Record) error { _, _, err := MapInto(nil, r); return err })
}

// BenchmarkMapAccountInto is BenchmarkMapInto in accounts mode.
func BenchmarkMapAccountInto(b *testing.B) {
	recs, size := benchRecords(b, true)
	benchMap(b, recs, size, func(r Record) error { _, _, err := MapAccountInto(nil, r); return err })
}

// BenchmarkMapIntoBatch maps into one buffer per 256 records, as a
// batch-oriented consumer would: the JSON allocation is shared.
func BenchmarkMapIntoBatch(b *testing.B) {
	recs, size := benchRecords(b, false)
	b.SetBytes(size)
	b.ReportAllocs()
	defer reportCPU(b)()
	var buf []byte
	for i := 0; i < b.N; i++ {
		if i%256 == 0 {
			buf = make([]byte, 0, 256*int(size)*2)
		}
		var err error
		if buf, _, err = MapInto(buf, recs[i%len(recs)]); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkMapFloor is a lower bound for BenchmarkMapIntoServiceMix: per
// record, only what any mapping of these records must do whatever its
// design. One pass over every byte of the value with the scanner's
// eight-byte classifier (specials: the least a validating scan can look
// at), the message id (the mapping's own appendMessageID), and one
// fresh buffer of the call's size with the value copied into it. It
// skips what the contract adds on top: the JSON structure, the members'
// names and roles, the rules, the timestamp and the encoding of each
// property. Before timing it checks that its message ids are the
// mapping's, and its buffers no larger than the mapping's calls. (Finding
// the id in each record is done then too, outside the timing.)
func BenchmarkMapFloor(b *testing.B) {
	recs, size := serviceMix(1000)
	ids := make([][]byte, len(recs))
	sizes := make([]int, len(recs))
	for i, r := range recs {
		_, call, err := MapInto(nil, r)
		if err != nil {
			b.Fatal(err)
		}
		at := bytes.Index(r.Value, []byte(`"id":"`)) + len(`"id":"`)
		ids[i] = r.Value[at : at+bytes.IndexByte(r.Value[at:], '"')]
		sizes[i] = len(call.JSON)
		if got, _ := floorMap(r.Value, ids[i], sizes[i]); string(got[len(msgHead):len(msgHead)+uuidLen]) != call.MessageID || len(got) > sizes[i] {
			b.Fatalf("record %d: floor wrote %q (%d bytes), the mapping's message id is %s (%d bytes)", i, got, len(got), call.MessageID, sizes[i])
		}
	}
	b.SetBytes(size)
	b.ReportAllocs()
	defer reportCPU(b)()
	written := 0 // the results are used, so no work is optimised away
	for i := 0; i < b.N; i++ {
		k := i % len(recs)
		out, special := floorMap(recs[k].Value, ids[k], sizes[k])
		written += len(out) + bits.OnesCount64(special)
	}
	if written < b.N {
		b.Fatalf("wrote %d bytes for %d records", written, b.N)
	}
}

// floorMap is BenchmarkMapFloor's work on one record: its message and the
// classifier's marks over the value (non-zero where a byte is not plain).
func floorMap(v, id []byte, size int) ([]byte, uint64) {
	var special uint64
	i := 0
	for ; i+8 <= len(v); i += 8 {
		special |= specials(binary.LittleEndian.Uint64(v[i:]))
	}
	for ; i < len(v); i++ {
		if !plain[v[i]] {
			special |= 1
		}
	}
	out := make([]byte, 0, size)
	out = append(out, msgHead...)
	out = appendMessageID(out, nil, id, nil) // with an id, the record is not read
	out = append(out, v...)
	return append(out, msgTail...), special
}
