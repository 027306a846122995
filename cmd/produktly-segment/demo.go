package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/produktly/produktly-segment/consumer"
	"github.com/produktly/produktly-segment/sink/segmenttest"
)

// demoRecords is one raw record of every event type, in the spellings
// producers use, then records that break the contract.
var demoRecords = []struct{ key, value string }{
	{"u-1", `{"type":"tour_available","id":"evt-001","userId":"u-1","tourId":101,"timestamp":"2026-11-29T09:00:00Z","companyId":"acme"}`},
	{"u-1", `{"type":"tourStart","id":"evt-002","userId":"u-1","tourId":101,"timestamp":1795942801000}`},
	{"u-2", `{"type":"TourAutoStart","id":"evt-003","anonymousId":"6f1c1a52-6d0e-4a53-9d37-0b7b1c7c3a11","tour_id":"onboarding"}`},
	{"u-1", `{"type":"Tour Continue","id":"evt-004","userId":"u-1","tourId":101,"locale":"en-GB"}`},
	{"u-1", `{"type":"tour_step","id":"evt-005","userId":"u-1","tourId":101,"metadata":{"stepIndex":2,"type":"next"}}`},
	{"u-1", `{"type":"TOUR-FINISH","id":"evt-006","userId":"u-1","tourId":101}`},
	{"u-3", `{"type":"checklist_step_completed","id":"evt-007","userId":"u-3","checklistId":7,"metadata":{"stepId":"invite-team"}}`},
	{"u-3", `{"type":"checklist_finished","id":"evt-008","userId":"u-3","checklistId":7}`},
	{"u-4", `{"type":"smart_tip_available","id":"evt-009","userId":"u-4","smartTipId":"tip-9"}`},
	{"u-4", `{"type":"smart_tip_open","id":"evt-010","userId":"u-4","smartTipId":"tip-9"}`},
	{"u-5", `{"type":"announcement_shown","id":"evt-011","userId":"u-5","announcementId":33}`},
	{"u-5", `{"type":"announcement_action_clicked","id":"evt-012","userId":"u-5","announcementId":33,"action":"learn-more"}`},
	{"u-5", `{"type":"announcement_closed","id":"evt-013","userId":"u-5","announcementId":33}`},
	{"u-6", `{"type":"nps_widget_shown","userId":"u-6","anonymousId":"0b8e1f3e-1111-4c2b-8f5e-2a9d6c1e7f00","npsWidgetId":5}`},
	// Bad records: each is dead-lettered with its code, none blocks its partition.
	{"u-7", `{"type":"tour_start","userId":"u-7","tourId":`},
	{"u-7", `{"type":"tour_teleport","userId":"u-7","tourId":1}`},
	{"u-7", `{"type":"tour_start","userId":"u-7"}`},
	{"u-7", `{"type":"tour_step","userId":"u-7","tourId":1,"metadata":{"stepIndex":-1,"type":"next"}}`},
	{"u-7", `{"type":"tour_start","tourId":1}`},
	{"u-7", `{"type":"tour_start","userId":"u-7","tourId":1,"timestamp":"yesterday"}`},
	{"u-7", `{"type":"tour_start","userId":"u-7","tourId":1,"notes":"` + strings.Repeat("x", 40000) + `"}`},
}

// runDemo runs the real pipeline (consumer group, mapping, Segment sink,
// dead-letter writer) against an in-process Kafka and the project's Segment
// stand-in, then prints what Segment received and what was dead-lettered.
func runDemo(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("produktly-segment demo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	verbose := fs.Bool("verbose", false, "show the service's logs")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	ctx, stop := signalContext(newLogger(stderr, "warn", "console"))
	defer stop()
	if err := demo(ctx, stdout, stderr, *verbose); err != nil {
		fmt.Fprintf(stderr, "produktly-segment demo: %v\n", err)
		return 1
	}
	return 0
}

func demo(ctx context.Context, stdout, stderr io.Writer, verbose bool) error {
	const topic, dlqTopic, group, writeKey, partitions = "produktly.interactions", "produktly.interactions.dlq", "produktly-segment-demo", "demo-write-key", 3
	start := time.Now()
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(partitions, topic, dlqTopic))
	if err != nil {
		return fmt.Errorf("in-process kafka: %w", err)
	}
	defer cluster.Close()
	brokers := cluster.ListenAddrs()
	segment := segmenttest.NewServer(writeKey)
	defer segment.Close()
	fmt.Fprintf(stdout, "in-process Kafka at %s, topic %q (%d partitions); Segment stand-in at %s\n",
		strings.Join(brokers, ","), topic, partitions, segment.URL())

	msgs := make([]kafka.Message, len(demoRecords))
	for i, r := range demoRecords {
		msgs[i] = kafka.Message{Key: []byte(r.key), Value: []byte(r.value)}
	}
	w := &kafka.Writer{Addr: kafka.TCP(brokers...), Topic: topic, Balancer: &kafka.Hash{}, RequiredAcks: kafka.RequireAll, BatchTimeout: time.Millisecond}
	if err := w.WriteMessages(ctx, msgs...); err != nil {
		return fmt.Errorf("produce sample records: %w", err)
	}
	_ = w.Close()
	fmt.Fprintf(stdout, "produced %d raw records (%d good, %d bad)\n\n", len(msgs), 14, len(msgs)-14)

	level := "error"
	if verbose {
		level = "info"
	}
	c := &config{
		Brokers: brokers, Topic: topic, GroupID: group, DLQTopic: dlqTopic,
		WriteKey: writeKey, Endpoint: segment.URL(), BatchSize: 100, FlushInterval: 20 * time.Millisecond,
		Concurrency: 4, SegmentTimeout: 5 * time.Second, MaxInFlight: 1000, MaxInFlightPart: 500, MaxInFlightBytes: 8 << 20,
		ShutdownTimeout: 5 * time.Second, SessionTimeout: 10 * time.Second, HeartbeatInterval: time.Second,
		RebalanceTimeout: 10 * time.Second, RevokeTimeout: 5 * time.Second, CommitInterval: 200 * time.Millisecond,
	}
	svc, err := newService(c, newLogger(stderr, level, "console"))
	if err != nil {
		return err
	}
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- svc.run(runCtx, "", false) }()

	client := &kafka.Client{Addr: kafka.TCP(brokers...), Timeout: 5 * time.Second}
	deadline := time.Now().Add(30 * time.Second)
	for {
		if up, err := consumer.CaughtUp(ctx, client, group, topic, partitions); err == nil && up {
			break
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			cancel()
			<-done
			return errors.New("the pipeline did not commit every record within 30s")
		}
		time.Sleep(100 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		return err
	}

	fmt.Fprintf(stdout, "Segment received %d track calls:\n", segment.Count())
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "  event\tuser\tproperties\tmessageId")
	received := segment.Messages()
	sort.Slice(received, func(i, j int) bool { return received[i].Event < received[j].Event })
	for _, m := range received {
		var body struct {
			Properties json.RawMessage `json:"properties"`
		}
		_ = json.Unmarshal(m.Raw, &body)
		user := m.UserID
		if user == "" {
			user = "anon:" + m.AnonymousID[:8]
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\n", m.Event, user, body.Properties, m.MessageID)
	}
	_ = tw.Flush()

	dead, err := readAll(ctx, brokers, dlqTopic, partitions)
	if err != nil {
		return fmt.Errorf("read dead-letter topic: %w", err)
	}
	fmt.Fprintf(stdout, "\ndead-letter topic %q holds %d records:\n", dlqTopic, len(dead))
	tw = tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "  code\tsource\treason")
	for _, m := range dead {
		h := headers(m)
		fmt.Fprintf(tw, "  %s\t%s/%s@%s\t%s\n", h[consumer.HeaderErrorCode], h[consumer.HeaderSourceTopic],
			h[consumer.HeaderSourcePartition], h[consumer.HeaderSourceOffset], h[consumer.HeaderError])
	}
	_ = tw.Flush()
	fmt.Fprintf(stdout, "\nevery offset committed; %d delivered + %d dead-lettered = %d produced, in %.1fs\n",
		segment.Distinct(), len(dead), len(msgs), time.Since(start).Seconds())
	if segment.Distinct()+len(dead) != len(msgs) {
		return fmt.Errorf("accounting mismatch: %d delivered + %d dead-lettered != %d produced", segment.Distinct(), len(dead), len(msgs))
	}
	return nil
}

// readAll reads every record currently in topic.
func readAll(ctx context.Context, brokers []string, topic string, partitions int) ([]kafka.Message, error) {
	var out []kafka.Message
	client := &kafka.Client{Addr: kafka.TCP(brokers...), Timeout: 5 * time.Second}
	for p := 0; p < partitions; p++ {
		res, err := client.ListOffsets(ctx, &kafka.ListOffsetsRequest{Topics: map[string][]kafka.OffsetRequest{topic: {kafka.LastOffsetOf(p)}}})
		if err != nil {
			return nil, err
		}
		end := res.Topics[topic][0].LastOffset
		if end == 0 {
			continue
		}
		r := kafka.NewReader(kafka.ReaderConfig{Brokers: brokers, Topic: topic, Partition: p, MaxWait: 100 * time.Millisecond})
		for {
			rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			m, err := r.ReadMessage(rctx)
			cancel()
			if err != nil {
				_ = r.Close()
				return nil, err
			}
			out = append(out, m)
			if m.Offset+1 >= end {
				break
			}
		}
		_ = r.Close()
	}
	return out, nil
}

func headers(m kafka.Message) map[string]string {
	h := make(map[string]string, len(m.Headers))
	for _, x := range m.Headers {
		h[x.Key] = string(x.Value)
	}
	return h
}
