package consumer

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/produktly/produktly-segment/sink"
)

func TestAckedMetadataRoundTrip(t *testing.T) {
	for _, a := range []Acked{
		{Commit: 0, Spans: []Span{{1, 2}}},
		{Commit: 5, Spans: []Span{{6, 20}}},
		{Commit: 1 << 40, Spans: []Span{{1<<40 + 1, 1<<40 + 300}, {1<<40 + 301, 1<<40 + 302}, {1<<40 + 1000, 1<<40 + 5000}}},
	} {
		md := a.metadata(maxCommitMetadata)
		if !strings.HasPrefix(md, AckedPrefix) {
			t.Fatalf("%+v: metadata %q lacks the prefix", a, md)
		}
		got, err := ParseAcked(md)
		if err != nil {
			t.Fatalf("%+v: %v", a, err)
		}
		if !reflect.DeepEqual(got, a) {
			t.Errorf("round trip of %+v gave %+v", a, got)
		}
	}
}

func TestAckedMetadataEmpty(t *testing.T) {
	if md := (Acked{Commit: 7}).metadata(maxCommitMetadata); md != "" {
		t.Errorf("no spans: metadata %q, want empty", md)
	}
	if md := (Acked{Commit: -1, Spans: []Span{{1, 2}}}).metadata(maxCommitMetadata); md != "" {
		t.Errorf("no commit point: metadata %q, want empty", md)
	}
	for _, md := range []string{"", "written by kafka-consumer-groups", "produktly-acked/0:AA"} {
		if _, err := ParseAcked(md); !errors.Is(err, ErrNoAcked) {
			t.Errorf("ParseAcked(%q) = %v, want ErrNoAcked", md, err)
		}
	}
}

func TestAckedMetadataBad(t *testing.T) {
	for _, md := range []string{
		AckedPrefix + "!!!",  // not base64
		AckedPrefix,          // no commit offset
		AckedPrefix + "gA",   // truncated varint
		AckedPrefix + "BQEA", // a span of length 0
		AckedPrefix + "BQE",  // a gap without a length
	} {
		if _, err := ParseAcked(md); err == nil || errors.Is(err, ErrNoAcked) {
			t.Errorf("ParseAcked(%q) = %v, want a decoding error", md, err)
		}
	}
}

// TestAckedMetadataFits: spans that do not fit the limit are left out,
// the lowest kept, and what is written stays within it.
func TestAckedMetadataFits(t *testing.T) {
	a := Acked{Commit: 1000}
	for o := int64(1001); len(a.Spans) < 5000; o += 3 {
		a.Spans = append(a.Spans, Span{o, o + 2})
	}
	md := a.metadata(maxCommitMetadata)
	if len(md) > maxCommitMetadata {
		t.Fatalf("metadata is %d bytes, limit %d", len(md), maxCommitMetadata)
	}
	got, err := ParseAcked(md)
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Spans) < 1000 || len(got.Spans) >= len(a.Spans) {
		t.Fatalf("%d of %d spans kept in %d bytes", len(got.Spans), len(a.Spans), len(md))
	}
	if !reflect.DeepEqual(got.Spans, a.Spans[:len(got.Spans)]) {
		t.Error("the spans kept are not the lowest ones")
	}
	t.Logf("%d of %d spans in %d bytes", len(got.Spans), len(a.Spans), len(md))
}

func FuzzParseAcked(f *testing.F) {
	f.Add(Acked{Commit: 5, Spans: []Span{{6, 20}, {30, 31}}}.metadata(maxCommitMetadata))
	f.Add(AckedPrefix + "gICAgICAgICAAQ")
	f.Add("")
	f.Fuzz(func(t *testing.T, md string) {
		a, err := ParseAcked(md)
		if err != nil {
			return
		}
		prev := a.Commit
		for _, s := range a.Spans {
			if s.From < prev || s.To <= s.From || s.To >= maxOffset {
				t.Fatalf("%q decodes to spans out of order or empty: %+v", md, a)
			}
			prev = s.To
		}
		if len(a.Spans) == 0 {
			return
		}
		again, err := ParseAcked(a.metadata(1 << 20))
		if err != nil || !reflect.DeepEqual(again, a) {
			t.Fatalf("%q: re-encoding %+v gave %+v, %v", md, a, again, err)
		}
	})
}

func TestSkipper(t *testing.T) {
	s := skipper{spans: []Span{{3, 5}, {8, 9}}}
	var got []int64
	for _, o := range []int64{0, 2, 3, 4, 5, 7, 8, 9, 12} {
		if s.acked(o) {
			got = append(got, o)
		}
	}
	if want := []int64{3, 4, 8}; !reflect.DeepEqual(got, want) {
		t.Errorf("skipped %v, want %v", got, want)
	}
}

func TestTrackerAcked(t *testing.T) {
	tr := newTracker(10)
	tr.addRange([]int64{10, 11, 12, 14, 15, 16, 17})
	for _, o := range []int64{11, 12, 14, 16} {
		tr.ack(o)
	}
	tr.drop(15)
	got := tr.acked()
	want := Acked{Commit: 10, Spans: []Span{{11, 15}, {16, 17}}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("acked() = %+v, want %+v", got, want)
	}
	tr.ack(10)
	if got := tr.acked(); got.Commit != 15 || len(got.Spans) != 1 || got.Spans[0] != (Span{16, 17}) {
		t.Errorf("after the head finished: %+v", got)
	}
	tr.revoke()
	if got := tr.acked(); len(got.Spans) != 0 {
		t.Errorf("revoked tracker reports spans %+v", got.Spans)
	}
}

// TestRestartSkipsAcknowledged: one record that never finishes holds its
// partition's commit point while the records after it are acknowledged.
// Whoever reads the partition next starts at that commit point but sends
// only the unfinished record again: the commit's metadata says the others
// were acknowledged.
func TestRestartSkipsAcknowledged(t *testing.T) {
	tc := newTestConsumer(t, 1, func(o *Options) { o.RevokeTimeout = 200 * time.Millisecond })
	tc.topic.produce(0, 20)
	held := tc.idOf(t, 0, 5)
	tc.sink.hold = func(m sink.Message) bool { return m.ID == held }
	tc.run(t)
	g1 := tc.fc.start(t, 1, 0)
	tc.fc.waitCommitted(t, 0, 5, 10*time.Second)
	want := Acked{Commit: 5, Spans: []Span{{6, 20}}}
	deadline := time.Now().Add(10 * time.Second)
	for {
		got, err := ParseAcked(tc.fc.metadata(0))
		if err == nil && reflect.DeepEqual(got, want) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("commit metadata %q (%+v, %v), want %+v", tc.fc.metadata(0), got, err, want)
		}
		time.Sleep(10 * time.Millisecond)
	}
	// The partition moves away (its held record is abandoned) and comes
	// back with nothing carried: read again from offset 5.
	g1.end()
	<-g1.ended
	g2 := tc.fc.start(t, 2)
	tc.sink.waitFor(t, "the held record abandoned", 10*time.Second, func(s *fakeSink) bool { return s.canceled[held] })
	tc.sink.hold = nil
	g2.end()
	<-g2.ended
	tc.fc.start(t, 3, 0)
	tc.fc.waitCommitted(t, 0, 20, 10*time.Second)
	tc.sink.mu.Lock()
	defer tc.sink.mu.Unlock()
	for o := int64(0); o < 20; o++ {
		want := 1
		if o == 5 {
			want = 2
		}
		if n := tc.sink.byID[tc.idOf(t, 0, o)]; n != want {
			t.Errorf("record %d enqueued %d times, want %d", o, n, want)
		}
	}
	if n := counterValue(tc.metrics.skippedAcked); n != 14 {
		t.Errorf("skipped{reason=%q} = %v, want 14", SkipAcknowledgedBefore, n)
	}
	if md := tc.fc.metadata(0); md != "" {
		t.Errorf("metadata at the end %q, want none (nothing above the commit point)", md)
	}
}
