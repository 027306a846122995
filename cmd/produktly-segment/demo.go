package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/segmentio/kafka-go"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/produktly/produktly-segment/consumer"
	"github.com/produktly/produktly-segment/sink"
	"github.com/produktly/produktly-segment/sink/segmenttest"
)

// The demo's accounts: what Produktly accounts pasted under Integrations →
// Segment. The keys are made up; each stand-in accepts its own.
const (
	demoKeyUS  = "demo-key-acme-us"
	demoKeyEU  = "demo-key-globex-eu"
	demoKeyOff = "demo-key-initech-off"
)

var demoIntegrations = `{
  "acme":    {"writeKey": "` + demoKeyUS + `", "region": "us"},
  "globex":  {"writeKey": "` + demoKeyEU + `", "region": "eu"},
  "initech": {"writeKey": "` + demoKeyOff + `", "active": false}
}
`

// demoRecords is one raw record of every event type, in the spellings
// producers use, for the US and the EU account; records of the account
// that did not activate Segment; then records that break the contract.
var demoRecords = []struct{ key, value string }{
	{"u-1", `{"type":"tour_available","accountId":"acme","id":"evt-001","userId":"u-1","tourId":101,"timestamp":"2026-11-29T09:00:00Z","companyId":"acme"}`},
	{"u-1", `{"type":"tourStart","accountId":"acme","id":"evt-002","userId":"u-1","tourId":101,"timestamp":1795942801000}`},
	{"u-2", `{"type":"TourAutoStart","accountId":"acme","id":"evt-003","anonymousId":"6f1c1a52-6d0e-4a53-9d37-0b7b1c7c3a11","tour_id":"onboarding"}`},
	{"u-1", `{"type":"Tour Continue","accountId":"acme","id":"evt-004","userId":"u-1","tourId":101,"locale":"en-GB"}`},
	{"u-1", `{"type":"tour_step","accountId":"acme","id":"evt-005","userId":"u-1","tourId":101,"metadata":{"stepIndex":2,"type":"next"}}`},
	{"u-1", `{"type":"TOUR-FINISH","accountId":"acme","id":"evt-006","userId":"u-1","tourId":101}`},
	{"u-3", `{"type":"checklist_step_completed","account_id":"acme","id":"evt-007","userId":"u-3","checklistId":7,"metadata":{"stepId":"invite-team"}}`},
	{"g-3", `{"type":"checklist_finished","accountId":"globex","id":"evt-008","userId":"g-3","checklistId":7}`},
	{"g-4", `{"type":"smart_tip_available","accountId":"globex","id":"evt-009","userId":"g-4","smartTipId":"tip-9"}`},
	{"g-4", `{"type":"smart_tip_open","accountId":"globex","id":"evt-010","userId":"g-4","smartTipId":"tip-9"}`},
	{"g-5", `{"type":"announcement_shown","accountId":"globex","id":"evt-011","userId":"g-5","announcementId":33}`},
	{"g-5", `{"type":"announcement_action_clicked","accountId":"globex","id":"evt-012","userId":"g-5","announcementId":33,"action":"learn-more"}`},
	{"g-5", `{"type":"announcement_closed","accountId":"globex","id":"evt-013","userId":"g-5","announcementId":33}`},
	{"g-6", `{"type":"nps_widget_shown","accountId":"globex","userId":"g-6","anonymousId":"0b8e1f3e-1111-4c2b-8f5e-2a9d6c1e7f00","npsWidgetId":5}`},
	// The account that did not activate Segment, and one Produktly does
	// not know: skipped (committed, counted, not sent).
	{"i-1", `{"type":"tour_start","accountId":"initech","id":"evt-101","userId":"i-1","tourId":9}`},
	{"i-1", `{"type":"tour_finish","accountId":"initech","id":"evt-102","userId":"i-1","tourId":9}`},
	{"h-1", `{"type":"tour_start","accountId":"hooli","id":"evt-103","userId":"h-1","tourId":4}`},
	// Bad records: each is dead-lettered with its code, none blocks its partition.
	{"u-7", `{"type":"tour_start","accountId":"acme","userId":"u-7","tourId":`},
	{"u-7", `{"type":"tour_teleport","accountId":"acme","userId":"u-7","tourId":1}`},
	{"u-7", `{"type":"tour_start","accountId":"acme","userId":"u-7"}`},
	{"u-7", `{"type":"tour_step","accountId":"acme","userId":"u-7","tourId":1,"metadata":{"stepIndex":-1,"type":"next"}}`},
	{"u-7", `{"type":"tour_start","accountId":"acme","tourId":1}`},
	{"u-7", `{"type":"tour_start","accountId":"globex","userId":"u-7","tourId":1,"timestamp":"yesterday"}`},
	{"u-7", `{"type":"tour_start","accountId":"globex","userId":"u-7","tourId":1,"notes":"` + strings.Repeat("x", 40000) + `"}`},
	{"u-8", `{"type":"tour_start","userId":"u-8","tourId":1}`},
}

// demoGood and demoSkipped count demoRecords' kinds, for the headline.
const demoGood, demoSkipped = 14, 3

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

// demo runs the service in accounts mode: the integrations come from a
// file, the US and EU regions are two Segment stand-ins.
func demo(ctx context.Context, stdout, stderr io.Writer, verbose bool) error {
	const topic, group, partitions = "produktly.interactions", "produktly-segment-demo", 3
	const dlqTopic, retryTopic = topic + ".dlq", topic + ".retry"
	start := time.Now()
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(partitions, topic))
	if err != nil {
		return fmt.Errorf("in-process kafka: %w", err)
	}
	defer cluster.Close()
	brokers := cluster.ListenAddrs()
	// The dead-letter and retry topics take copies of the source's records
	// plus this service's headers, so they accept larger records, as
	// docs/operations.md asks of a real cluster.
	client := &kafka.Client{Addr: kafka.TCP(brokers...), Timeout: 5 * time.Second}
	larger := []kafka.ConfigEntry{{ConfigName: "max.message.bytes", ConfigValue: "2097152"}}
	res, err := client.CreateTopics(ctx, &kafka.CreateTopicsRequest{Topics: []kafka.TopicConfig{
		{Topic: dlqTopic, NumPartitions: partitions, ReplicationFactor: 1, ConfigEntries: larger},
		{Topic: retryTopic, NumPartitions: partitions, ReplicationFactor: 1, ConfigEntries: larger},
	}})
	if err == nil {
		for _, e := range res.Errors {
			err = errors.Join(err, e)
		}
	}
	if err != nil {
		return fmt.Errorf("in-process kafka: create topics: %w", err)
	}
	us := segmenttest.NewServer(demoKeyUS)
	defer us.Close()
	eu := segmenttest.NewServer(demoKeyEU)
	defer eu.Close()

	dir, err := os.MkdirTemp("", "produktly-segment-demo-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	file := filepath.Join(dir, "integrations.json")
	if err := os.WriteFile(file, []byte(demoIntegrations), 0o600); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "in-process Kafka at %s, topic %q (%d partitions)\n", strings.Join(brokers, ","), topic, partitions)
	fmt.Fprintf(stdout, "Segment stand-ins: US at %s, EU at %s\n", us.URL(), eu.URL())
	fmt.Fprintf(stdout, "accounts mode, INTEGRATIONS_FILE=%s:\n%s", file, indent(demoIntegrations))

	msgs := make([]kafka.Message, len(demoRecords))
	for i, r := range demoRecords {
		msgs[i] = kafka.Message{Key: []byte(r.key), Value: []byte(r.value)}
	}
	w := &kafka.Writer{Addr: kafka.TCP(brokers...), Topic: topic, Balancer: &kafka.Hash{}, RequiredAcks: kafka.RequireAll, BatchTimeout: time.Millisecond}
	if err := w.WriteMessages(ctx, msgs...); err != nil {
		return fmt.Errorf("produce sample records: %w", err)
	}
	_ = w.Close()
	fmt.Fprintf(stdout, "\nproduced %d raw records: %d good ones of acme and globex, %d of accounts without an active integration, %d that break the contract\n\n",
		len(msgs), demoGood, demoSkipped, len(msgs)-demoGood-demoSkipped)

	level := "error"
	if verbose {
		level = "info"
	}
	c := &config{
		Brokers: brokers, Topic: topic, GroupID: group, DLQTopic: dlqTopic, RetryTopic: retryTopic,
		IntegrationsFile: file, Endpoint: us.URL(), EUEndpoint: eu.URL(),
		AccountMaxRPS: sink.DefaultAccountMaxRPS, ParkAfter: sink.DefaultParkAfter,
		BatchSize: 100, FlushInterval: 20 * time.Millisecond,
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

	for _, st := range []struct {
		region string
		srv    *segmenttest.Server
	}{{"US", us}, {"EU", eu}} {
		printReceived(stdout, st.region, st.srv)
	}
	skipped := counterSum(svc.reg, "produktly_segment_records_skipped_total")
	fmt.Fprintf(stdout, "skipped %d records of accounts without an active integration (initech is not activated, hooli is unknown): committed, not sent\n", skipped)

	dead, err := readAll(ctx, brokers, dlqTopic, partitions)
	if err != nil {
		return fmt.Errorf("read dead-letter topic: %w", err)
	}
	fmt.Fprintf(stdout, "\ndead-letter topic %q holds %d records:\n", dlqTopic, len(dead))
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "  code\tsource\treason")
	for _, m := range dead {
		h := headers(m)
		fmt.Fprintf(tw, "  %s\t%s/%s@%s\t%s\n", h[consumer.HeaderErrorCode], h[consumer.HeaderSourceTopic],
			h[consumer.HeaderSourcePartition], h[consumer.HeaderSourceOffset], h[consumer.HeaderError])
	}
	_ = tw.Flush()
	delivered := us.Distinct() + eu.Distinct()
	fmt.Fprintf(stdout, "\nevery offset committed; %d delivered + %d skipped + %d dead-lettered = %d produced, in %.1fs\n",
		delivered, skipped, len(dead), len(msgs), time.Since(start).Seconds())
	if delivered+skipped+len(dead) != len(msgs) {
		return fmt.Errorf("accounting mismatch: %d delivered + %d skipped + %d dead-lettered != %d produced", delivered, skipped, len(dead), len(msgs))
	}
	return nil
}

// printReceived prints what one Segment stand-in received, with which key.
func printReceived(w io.Writer, region string, srv *segmenttest.Server) {
	received := srv.Messages()
	fmt.Fprintf(w, "Segment %s stand-in received %d track calls:\n", region, len(received))
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "  write key\tevent\tuser\tproperties\tmessageId")
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
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\n", m.WriteKey, m.Event, user, body.Properties, m.MessageID)
	}
	_ = tw.Flush()
	fmt.Fprintln(w)
}

// counterSum is the sum of a counter's series in reg.
func counterSum(reg prometheus.Gatherer, name string) int {
	mfs, err := reg.Gather()
	if err != nil {
		return 0
	}
	n := 0.0
	for _, mf := range mfs {
		if mf.GetName() == name {
			for _, m := range mf.GetMetric() {
				n += m.GetCounter().GetValue()
			}
		}
	}
	return int(n)
}

func indent(s string) string {
	var b strings.Builder
	for _, l := range strings.Split(strings.TrimRight(s, "\n"), "\n") {
		b.WriteString("  " + l + "\n")
	}
	return b.String()
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
