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
	b.SetBytes(size)
	b.ReportAllocs()
	defer reportCPU(b)()
	for i := 0; i < b.N; i++ {
		if _, _, err := MapInto(nil, recs[i%len(recs)]); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkMapAccountInto is BenchmarkMapInto in accounts mode.
func BenchmarkMapAccountInto(b *testing.B) {
	recs, size := benchRecords(b, true)
	b.SetBytes(size)
	b.ReportAllocs()
	defer reportCPU(b)()
	for i := 0; i < b.N; i++ {
		if _, _, err := MapAccountInto(nil, recs[i%len(recs)]); err != nil {
			b.Fatal(err)
		}
	}
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
