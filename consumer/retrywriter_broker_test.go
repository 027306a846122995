package consumer

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
	"github.com/segmentio/kafka-go"
)

// brokerTopics creates topics (partitions, configs) on the broker that
// KAFKA_BROKERS names, and removes them when the test ends; it skips the
// test without a broker.
func brokerTopics(t *testing.T, specs ...kafka.TopicConfig) []string {
	t.Helper()
	b := os.Getenv("KAFKA_BROKERS")
	if b == "" {
		t.Skip("no Kafka broker: set KAFKA_BROKERS=host:port")
	}
	client := &kafka.Client{Addr: kafka.TCP(strings.Split(b, ",")...), Timeout: 30 * time.Second}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var names []string
	for i := range specs {
		specs[i].Topic = fmt.Sprintf("t-consumer-%s-%d-%d", strings.ReplaceAll(t.Name(), "/", "."), time.Now().UnixNano(), i)
		specs[i].ReplicationFactor = 1
		names = append(names, specs[i].Topic)
	}
	res, err := client.CreateTopics(ctx, &kafka.CreateTopicsRequest{Topics: specs})
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range names {
		if res.Errors[n] != nil {
			t.Fatalf("create %s: %v", n, res.Errors[n])
		}
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_, _ = client.DeleteTopics(ctx, &kafka.DeleteTopicsRequest{Topics: names})
	})
	return names
}

// TestRetryWriterAgainstBroker parks records of three source partitions,
// one record already parked once, and one too large for the retry topic
// (whose max.message.bytes is set to 100,000), on a real broker. Every
// completion but the large one's is nil, and only after the copy is on the
// topic; the large one gets ErrRecordTooLarge; the copies carry their key,
// value, headers, retry headers and original coordinates, each source
// partition's in the order parked; the start-up check reports the retry
// topic's shortfall.
func TestRetryWriterAgainstBroker(t *testing.T) {
	topics := brokerTopics(t,
		kafka.TopicConfig{NumPartitions: 3},
		kafka.TopicConfig{NumPartitions: 2, ConfigEntries: []kafka.ConfigEntry{{ConfigName: "max.message.bytes", ConfigValue: "100000"}}},
	)
	src, retry := topics[0], topics[1]
	brokers := strings.Split(os.Getenv("KAFKA_BROKERS"), ",")
	reg := prometheus.NewRegistry()
	m, err := newMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	o := Options{Brokers: brokers, Topic: src, RetryTopic: retry}.WithDefaults()
	r := newRetryWriter(o, zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel), m)
	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan error, 1)
	go func() { ran <- r.run(ctx) }()
	defer func() {
		cancel()
		if err := <-ran; err != nil {
			t.Error(err)
		}
	}()

	type parked struct {
		src     kafka.Message
		attempt string
		topic   string
		part    int
		offset  int64
	}
	var (
		mu    sync.Mutex
		errs  = map[string]error{}
		wg    sync.WaitGroup
		want  []parked
		start = time.Now()
	)
	doPark := func(m kafka.Message, p parked) {
		id, _ := headerValue(m, "x-id")
		wg.Add(1)
		r.park(m, "acct-7", nil, func(err error) {
			mu.Lock()
			errs[id] = err
			mu.Unlock()
			wg.Done()
		})
		want = append(want, p)
	}
	for part := range 3 {
		for off := range 20 {
			m := kafka.Message{
				Topic: src, Partition: part, Offset: int64(off), Time: time.Date(2026, 11, 29, 10, 0, off, 0, time.UTC),
				Key:     []byte(fmt.Sprintf("user-%d", off%5)),
				Value:   []byte(fmt.Sprintf(`{"type":"tour_start","userId":"user-%d","tourId":"t-%d-%d"}`, off%5, part, off)),
				Headers: []kafka.Header{{Key: "x-id", Value: []byte(fmt.Sprintf("%d/%d", part, off))}},
			}
			doPark(m, parked{src: m, attempt: "1", topic: src, part: part, offset: int64(off)})
		}
	}
	// Consumed from the retry topic after a first park.
	again := kafka.Message{
		Topic: retry, Partition: 1, Offset: 3, Key: []byte("user-9"), Value: []byte(`{"again":true}`),
		Headers: []kafka.Header{
			{Key: "x-id", Value: []byte("again")},
			{Key: HeaderSourceTopic, Value: []byte(src)}, {Key: HeaderSourcePartition, Value: []byte("2")},
			{Key: HeaderSourceOffset, Value: []byte("999")},
			{Key: HeaderRetryAccount, Value: []byte("acct-7")}, {Key: HeaderRetryAttempt, Value: []byte("1")},
			{Key: HeaderRetryNotBefore, Value: []byte("2026-12-01T10:00:00.000Z")},
		},
	}
	doPark(again, parked{src: again, attempt: "2", topic: src, part: 2, offset: 999})
	big := kafka.Message{Topic: src, Partition: 0, Offset: 20, Key: []byte("user-big"), Value: bytes.Repeat([]byte("x"), 150_000),
		Headers: []kafka.Header{{Key: "x-id", Value: []byte("big")}}}
	doPark(big, parked{})
	want = want[:len(want)-1]

	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(2 * time.Minute):
		t.Fatal("not every park completed within 2 minutes")
	}
	for id, err := range errs {
		switch {
		case id == "big" && !errors.Is(err, ErrRecordTooLarge):
			t.Errorf("the 150 KB record's park completed with %v, want ErrRecordTooLarge", err)
		case id != "big" && err != nil:
			t.Errorf("park of %s completed with %v, want nil", id, err)
		}
	}
	if got := metricValue(reg, "produktly_segment_records_parked_total", "", ""); got != float64(len(want)) {
		t.Errorf("records_parked_total = %v, want %d", got, len(want))
	}

	// Read the retry topic back: every park acknowledged is there.
	client := &kafka.Client{Addr: kafka.TCP(brokers...), Timeout: 30 * time.Second}
	end := map[int]int64{}
	res, err := client.ListOffsets(context.Background(), &kafka.ListOffsetsRequest{Topics: map[string][]kafka.OffsetRequest{
		retry: {kafka.LastOffsetOf(0), kafka.LastOffsetOf(1)},
	}})
	if err != nil {
		t.Fatal(err)
	}
	for _, po := range res.Topics[retry] {
		end[po.Partition] = po.LastOffset
	}
	got := map[string]kafka.Message{}
	lastOffset := map[string]int64{} // per retry partition and source partition
	for p := range 2 {
		if end[p] == 0 {
			continue
		}
		rd := kafka.NewReader(kafka.ReaderConfig{Brokers: brokers, Topic: retry, Partition: p, MaxWait: 100 * time.Millisecond})
		rctx, rcancel := context.WithTimeout(context.Background(), time.Minute)
		for {
			m, err := rd.FetchMessage(rctx)
			if err != nil {
				t.Fatalf("read %s/%d: %v", retry, p, err)
			}
			id, _ := headerValue(m, "x-id")
			got[id] = m
			sp, _ := headerValue(m, HeaderSourcePartition)
			so, _ := strconv.ParseInt(must(headerValue(m, HeaderSourceOffset)), 10, 64)
			k := fmt.Sprintf("%d/%s", p, sp)
			if prev, ok := lastOffset[k]; ok && so < prev && id != "again" {
				t.Errorf("retry partition %d: source %s/%s offset %d after %d: not in the order parked", p, src, sp, so, prev)
			}
			if id != "again" {
				lastOffset[k] = so
			}
			if m.Offset+1 >= end[p] {
				break
			}
		}
		rcancel()
		_ = rd.Close()
	}
	if len(got) != len(want) {
		t.Errorf("retry topic holds %d records, want %d", len(got), len(want))
	}
	for _, w := range want {
		id, _ := headerValue(w.src, "x-id")
		m, ok := got[id]
		if !ok {
			t.Errorf("%s acknowledged but not on the retry topic", id)
			continue
		}
		if !bytes.Equal(m.Key, w.src.Key) || !bytes.Equal(m.Value, w.src.Value) || (!w.src.Time.IsZero() && !m.Time.Equal(w.src.Time)) {
			t.Errorf("%s: key %q value %q time %v, want the original's %q %q %v", id, m.Key, m.Value, m.Time, w.src.Key, w.src.Value, w.src.Time)
		}
		h := headerMap(m.Headers)
		for k, v := range map[string]string{
			"x-id": id, HeaderRetryAccount: "acct-7", HeaderRetryAttempt: w.attempt,
			HeaderSourceTopic: w.topic, HeaderSourcePartition: strconv.Itoa(w.part), HeaderSourceOffset: strconv.FormatInt(w.offset, 10),
		} {
			if h[k] != v {
				t.Errorf("%s: header %s = %q, want %q", id, k, h[k], v)
			}
		}
		nb, err := time.Parse(time.RFC3339, h[HeaderRetryNotBefore])
		lo, hi := retrySchedule.Range(0)
		if w.attempt == "2" {
			lo, hi = retrySchedule.Range(1)
		}
		if err != nil || nb.Before(start.Add(lo).Truncate(time.Millisecond)) || nb.After(time.Now().Add(hi)) {
			t.Errorf("%s: %s = %q (%v), want RFC 3339 in [park+%v, park+%v]", id, HeaderRetryNotBefore, h[HeaderRetryNotBefore], err, lo, hi)
		}
	}

	// The start-up check saw the retry topic's 100,000-byte limit.
	short := func() float64 {
		return metricValue(reg, "produktly_segment_topic_size_shortfall_bytes", "topic", retry)
	}
	wantShort := float64(1048588 + copyHeadroom - 100000)
	deadline := time.Now().Add(30 * time.Second)
	for short() != wantShort {
		if time.Now().After(deadline) {
			t.Fatalf("topic_size_shortfall_bytes{topic=%q} = %v, want %v", retry, short(), wantShort)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func must(v string, _ bool) string { return v }

// metricValue reads the value of the series name{label=value} (label ""
// for an unlabelled series) from reg, or -1 when reg has no such series.
func metricValue(reg prometheus.Gatherer, name, label, value string) float64 {
	mfs, err := reg.Gather()
	if err != nil {
		return -1
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			match := label == ""
			for _, lp := range m.GetLabel() {
				match = match || (lp.GetName() == label && lp.GetValue() == value)
			}
			if !match {
				continue
			}
			if c := m.GetCounter(); c != nil {
				return c.GetValue()
			}
			return m.GetGauge().GetValue()
		}
	}
	return -1
}
