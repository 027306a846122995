package integration

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"golang.org/x/sync/errgroup"
)

// TestKafkaGoConsumerGroup proves that kafka-go's consumer group, with
// FetchMessage and explicit commits, works against this broker: every record
// is read by one of two members and the committed offsets, read back with an
// independent client, equal the end offsets.
func TestKafkaGoConsumerGroup(t *testing.T) {
	t.Parallel()
	bs := brokers(t)
	logBroker(t, bs)

	const partitions, records = 6, 3000
	topic := createTopic(t, partitions)
	group := unique("g-kafkago")

	msgs := make([]kafka.Message, records)
	for i := range msgs {
		msgs[i] = kafka.Message{
			Key:   []byte(fmt.Sprintf("user-%d", i%97)),
			Value: []byte(fmt.Sprintf(`{"n":%d}`, i)),
		}
	}
	produce(t, topic, msgs)
	want := endOffsets(t, topic, partitions)
	var total int64
	for _, o := range want {
		total += o
	}
	if total != records {
		t.Fatalf("end offsets sum to %d, want %d", total, records)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var (
		mu   sync.Mutex
		seen = map[string]int{} // value -> times read
		per  = map[int]int{}    // member -> records read
	)
	g, gctx := errgroup.WithContext(ctx)
	for member := 0; member < 2; member++ {
		r := kafka.NewReader(kafka.ReaderConfig{
			Brokers:           bs,
			GroupID:           group,
			Topic:             topic,
			StartOffset:       kafka.FirstOffset,
			HeartbeatInterval: time.Second,
			SessionTimeout:    10 * time.Second,
			RebalanceTimeout:  10 * time.Second,
		})
		g.Go(func() error {
			defer r.Close()
			for {
				mu.Lock()
				done := len(seen) == records
				mu.Unlock()
				if done {
					return nil
				}
				fctx, fcancel := context.WithTimeout(gctx, time.Second)
				m, err := r.FetchMessage(fctx)
				fcancel()
				if errors.Is(err, context.DeadlineExceeded) && gctx.Err() == nil {
					continue
				}
				// A fresh broker creates the offsets topic on the first
				// group request; until then the coordinator is unavailable.
				var kerr kafka.Error
				if errors.As(err, &kerr) && kerr.Temporary() && gctx.Err() == nil {
					time.Sleep(200 * time.Millisecond)
					continue
				}
				if err != nil {
					return fmt.Errorf("member %d fetch: %w", member, err)
				}
				mu.Lock()
				seen[string(m.Value)]++
				per[member]++
				mu.Unlock()
				if err := r.CommitMessages(gctx, m); err != nil {
					return fmt.Errorf("member %d commit: %w", member, err)
				}
			}
		})
	}
	if err := g.Wait(); err != nil {
		t.Fatal(err)
	}
	if len(seen) != records {
		t.Fatalf("read %d distinct records, want %d", len(seen), records)
	}
	t.Logf("member 0 read %d, member 1 read %d records", per[0], per[1])

	got := committedOffsets(t, group, topic, partitions)
	if !equalOffsets(got, want) {
		t.Fatalf("committed offsets = %v, want end offsets %v", got, want)
	}
}

// logBroker logs which broker the tests run against and what it speaks.
func logBroker(t testing.TB, bs []string) {
	t.Helper()
	client := &kafka.Client{Addr: kafka.TCP(bs...), Timeout: 10 * time.Second}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	res, err := client.ApiVersions(ctx, &kafka.ApiVersionsRequest{})
	if err != nil {
		t.Fatalf("api versions from %v: %v", bs, err)
	}
	var fetch, join int
	for _, k := range res.ApiKeys {
		switch k.ApiKey {
		case 1:
			fetch = k.MaxVersion
		case 11:
			join = k.MaxVersion
		}
	}
	t.Logf("broker: %s at %v (%d APIs; Fetch up to v%d, JoinGroup up to v%d)", env.desc, bs, len(res.ApiKeys), fetch, join)
}
