package mapping

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

// BenchmarkMap maps a realistic mix: one record of each of the 14 events,
// 200–600 bytes each, taken from the golden inputs. One op is one record.
func BenchmarkMap(b *testing.B) {
	var recs []Record
	var size int
	for i, ev := range catalogue {
		v, err := os.ReadFile(filepath.Join("testdata", "records", ev.Type+".json"))
		if err != nil {
			b.Fatal(err)
		}
		size += len(v)
		recs = append(recs, Record{Topic: "produktly.interactions", Partition: 3, Offset: int64(1000 + i), Time: time.UnixMilli(1795950000000), Value: v})
	}
	b.SetBytes(int64(size / len(recs)))
	b.ReportAllocs()
	defer reportCPU(b)()
	for i := 0; i < b.N; i++ {
		if _, err := Map(recs[i%len(recs)]); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkMapAccount is BenchmarkMap in accounts mode: the same records,
// each with an accountId (a string or an integer).
func BenchmarkMapAccount(b *testing.B) {
	var recs []Record
	var size int
	for i, ev := range catalogue {
		v, err := os.ReadFile(filepath.Join("testdata", "records", ev.Type+".json"))
		if err != nil {
			b.Fatal(err)
		}
		v = accountValue(i, v)
		size += len(v)
		recs = append(recs, Record{Topic: "produktly.interactions", Partition: 3, Offset: int64(1000 + i), Time: time.UnixMilli(1795950000000), Value: v})
	}
	b.SetBytes(int64(size / len(recs)))
	b.ReportAllocs()
	defer reportCPU(b)()
	for i := 0; i < b.N; i++ {
		if _, err := MapAccount(recs[i%len(recs)]); err != nil {
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
