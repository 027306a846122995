package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/produktly/produktly-segment/mapping"
	"github.com/produktly/produktly-segment/sink/segmenttest"
)

// writeKey is the Segment write key every test uses; the segmenttest server
// refuses any other.
const writeKey = "it-write-key-5d41402abc4b2a76"

// pipeline is one test's world: a source topic, a dead-letter topic, a
// consumer group and a Segment stand-in, and the environment the service
// processes get.
type pipeline struct {
	t          testing.TB
	topic      string
	partitions int
	dlq        string
	dlqParts   int
	group      string
	seg        *segmenttest.Server
	// env overrides the defaults of every process started afterwards.
	env map[string]string
}

// newPipeline creates the topics, the Segment stand-in and a group name.
func newPipeline(t testing.TB, partitions int) *pipeline {
	t.Helper()
	pl := &pipeline{
		t:          t,
		topic:      createTopic(t, partitions),
		partitions: partitions,
		dlqParts:   2,
		group:      unique("g-" + strings.ReplaceAll(t.Name(), "/", "-")),
		seg:        segmenttest.NewServer(writeKey),
		env:        map[string]string{},
	}
	pl.dlq = createTopic(t, pl.dlqParts)
	t.Cleanup(pl.seg.Close)
	return pl
}

// environ is the service's environment: short group timings so that
// rebalances take seconds, not the production default of half a minute.
func (pl *pipeline) environ(extra map[string]string) map[string]string {
	env := map[string]string{
		"KAFKA_BROKERS":     strings.Join(brokers(pl.t), ","),
		"KAFKA_TOPIC":       pl.topic,
		"KAFKA_GROUP_ID":    pl.group,
		"KAFKA_DLQ_TOPIC":   pl.dlq,
		"SEGMENT_WRITE_KEY": writeKey,
		"SEGMENT_ENDPOINT":  pl.seg.URL(),
	}
	return memberEnv(pl.t, env, pl.env, extra)
}

// memberEnv completes a member's environment with what every test member
// shares (a free admin port, JSON logs, short group timings), then applies
// the overrides in order.
func memberEnv(t testing.TB, env map[string]string, overrides ...map[string]string) map[string]string {
	for k, v := range map[string]string{
		"ADMIN_ADDR":               freeAddr(t),
		"LOG_FORMAT":               "json",
		"LOG_LEVEL":                "info",
		"KAFKA_SESSION_TIMEOUT":    "6s",
		"KAFKA_HEARTBEAT_INTERVAL": "1s",
		"KAFKA_REBALANCE_TIMEOUT":  "10s",
		"KAFKA_REVOKE_TIMEOUT":     "5s",
		"KAFKA_COMMIT_INTERVAL":    "200ms",
		"SHUTDOWN_TIMEOUT":         "10s",
	} {
		env[k] = v
	}
	for _, o := range overrides {
		for k, v := range o {
			env[k] = v
		}
	}
	return env
}

// start starts one member of the group.
func (pl *pipeline) start(name string, extra map[string]string) *proc {
	pl.t.Helper()
	return startProc(pl.t, name, pl.environ(extra), "run")
}

// sum adds offsets up; -1 (nothing committed) counts as 0.
func sum(offsets map[int]int64) int64 {
	var n int64
	for _, o := range offsets {
		n += max(o, 0)
	}
	return n
}

// dlqCount is how many records the dead-letter topic holds.
func (pl *pipeline) dlqCount() int64 { return sum(endOffsets(pl.t, pl.dlq, pl.dlqParts)) }

// waitFor polls cond until it holds, or fails the test after timeout with
// what it was waiting for and, from status, where things stand.
func waitFor(t testing.TB, timeout time.Duration, what string, cond func() bool, status func() string) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			s := ""
			if status != nil {
				s = ": " + status()
			}
			t.Fatalf("timed out after %s waiting for %s%s", timeout, what, s)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// waitDistinct waits until Segment holds n distinct messageIds. It fails at
// once when the group has committed every offset while fewer arrived: the
// missing records were committed without being delivered and are lost.
func (pl *pipeline) waitDistinct(n int, timeout time.Duration) {
	pl.t.Helper()
	deadline := time.Now().Add(timeout)
	for i := 0; ; i++ {
		if pl.seg.Distinct() >= n {
			return
		}
		if i%10 == 9 {
			// Committed first: if it equals the end, every record was
			// acknowledged before this read, so Distinct must show them.
			committed := committedOffsets(pl.t, pl.group, pl.topic, pl.partitions)
			end := endOffsets(pl.t, pl.topic, pl.partitions)
			if d := pl.seg.Distinct(); equalOffsets(committed, end) && d < n {
				pl.t.Fatalf("the group committed every offset (%v) but Segment holds %d of %d messages: %d records were committed without being delivered",
					committed, d, n, n-d)
			}
			if time.Now().After(deadline) {
				pl.t.Fatalf("timed out after %s waiting for %d distinct messages at Segment: distinct %d, count %d, requests %d, committed %v, end %v",
					timeout, n, pl.seg.Distinct(), pl.seg.Count(), pl.seg.Requests(), committed, end)
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// readTopic reads every record of topic, partition by partition, up to the
// end offsets of the moment it is called.
func readTopic(t testing.TB, topic string, partitions int) []kafka.Message {
	t.Helper()
	end := endOffsets(t, topic, partitions)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var out []kafka.Message
	for p := 0; p < partitions; p++ {
		if end[p] == 0 {
			continue
		}
		r := kafka.NewReader(kafka.ReaderConfig{
			Brokers: brokers(t), Topic: topic, Partition: p, MaxBytes: 8 << 20, MaxWait: 100 * time.Millisecond,
		})
		if err := r.SetOffset(kafka.FirstOffset); err != nil {
			r.Close()
			t.Fatalf("read %s/%d: %v", topic, p, err)
		}
		for {
			m, err := r.FetchMessage(ctx)
			if err != nil {
				r.Close()
				t.Fatalf("read %s/%d up to %d: %v", topic, p, end[p], err)
			}
			out = append(out, m)
			if m.Offset+1 >= end[p] {
				break
			}
		}
		r.Close()
	}
	return out
}

// coord is where a record sits in its topic.
type coord struct {
	partition int
	offset    int64
}

// source is a record of the source topic and the call the mapping makes
// of it at its coordinates.
type source struct {
	msg  kafka.Message
	call mapping.Call
}

// mapSource reads the source topic back and maps every record at its real
// coordinates, as the service must. It returns the good ones by messageId
// and the bad ones.
func (pl *pipeline) mapSource() (good map[string]source, bad []kafka.Message) {
	pl.t.Helper()
	good = map[string]source{}
	for _, m := range readTopic(pl.t, pl.topic, pl.partitions) {
		call, err := mapping.Map(mapping.Record{Topic: m.Topic, Partition: m.Partition, Offset: m.Offset, Time: m.Time, Value: m.Value})
		if err != nil {
			bad = append(bad, m)
			continue
		}
		if prev, dup := good[call.MessageID]; dup {
			pl.t.Fatalf("records at %d/%d and %d/%d map to the same messageId %s",
				prev.msg.Partition, prev.msg.Offset, m.Partition, m.Offset, call.MessageID)
		}
		good[call.MessageID] = source{msg: m, call: call}
	}
	return good, bad
}

// checkDelivered checks what Segment received against the source records:
// every messageId received belongs to a good record, every good record
// arrived, and every copy of a messageId carries exactly the JSON of its
// first copy (so Segment's de-duplication drops a true duplicate). It
// returns the number of duplicates.
func (pl *pipeline) checkDelivered(good map[string]source) int {
	pl.t.Helper()
	first := map[string][]byte{}
	dups, unknown, differ := 0, 0, 0
	for _, m := range pl.seg.Messages() {
		if _, ok := good[m.MessageID]; !ok {
			if unknown++; unknown <= 5 {
				pl.t.Errorf("Segment received messageId %s (%s) that no source record maps to: %s", m.MessageID, m.Event, m.Raw)
			}
			continue
		}
		f, seen := first[m.MessageID]
		if !seen {
			first[m.MessageID] = m.Raw
			continue
		}
		dups++
		if !bytes.Equal(f, m.Raw) {
			if differ++; differ <= 5 {
				pl.t.Errorf("duplicate of messageId %s differs from its first copy:\nfirst %s\nlater %s", m.MessageID, f, m.Raw)
			}
		}
	}
	if unknown > 0 || differ > 0 {
		pl.t.Errorf("%d messages with unknown messageIds, %d duplicates that differ from their first copy", unknown, differ)
	}
	var missing []string
	for id, s := range good {
		if _, ok := first[id]; !ok {
			missing = append(missing, fmt.Sprintf("%d/%d", s.msg.Partition, s.msg.Offset))
		}
	}
	if len(missing) > 0 {
		sort.Strings(missing)
		pl.t.Errorf("%d of %d good records never reached Segment, e.g. %v", len(missing), len(good), missing[:min(len(missing), 10)])
	}
	return dups
}

// checkCommitsAcknowledged checks that no committed offset passes a record
// Segment has not acknowledged: for each partition, the committed offset is
// at most the offset just past the longest run of delivered records from
// the start. Every source record must be good (none dead-lettered). It
// reports whether some partition is committed short of its end.
func (pl *pipeline) checkCommitsAcknowledged(good map[string]source) (behind bool) {
	pl.t.Helper()
	delivered := map[int]map[int64]bool{}
	for _, m := range pl.seg.Messages() {
		s, ok := good[m.MessageID]
		if !ok {
			pl.t.Fatalf("Segment received unknown messageId %s", m.MessageID)
		}
		if delivered[s.msg.Partition] == nil {
			delivered[s.msg.Partition] = map[int64]bool{}
		}
		delivered[s.msg.Partition][s.msg.Offset] = true
	}
	commits := committedAcked(pl.t, pl.group, pl.topic, pl.partitions)
	committed := map[int]int64{}
	end := endOffsets(pl.t, pl.topic, pl.partitions)
	for part := 0; part < pl.partitions; part++ {
		committed[part] = commits[part].Commit
		var contiguous int64
		for delivered[part][contiguous] {
			contiguous++
		}
		if committed[part] > contiguous {
			pl.t.Errorf("partition %d: committed %d, but offset %d was never acknowledged by Segment", part, committed[part], contiguous)
		}
		// The spans the commit says were acknowledged above it are
		// skipped by the next owner: each of their records must have
		// arrived.
		ahead := 0
		for _, sp := range commits[part].Spans {
			for o := sp.From; o < sp.To; o++ {
				if !delivered[part][o] {
					pl.t.Errorf("partition %d: the commit at %d says offset %d was acknowledged (span %d-%d), but Segment never received it",
						part, committed[part], o, sp.From, sp.To-1)
					break
				}
				ahead++
			}
		}
		if ahead > 0 {
			pl.t.Logf("partition %d: %d records acknowledged above the commit point in %d spans", part, ahead, len(commits[part].Spans))
		}
		if committed[part] < end[part] {
			behind = true
		}
		pl.t.Logf("partition %d: committed %d, delivered without a gap up to %d, end %d", part, committed[part], contiguous, end[part])
	}
	return behind
}

// header returns the value of the last header named key.
func header(m kafka.Message, key string) (string, bool) {
	v, ok := "", false
	for _, h := range m.Headers {
		if h.Key == key {
			v, ok = string(h.Value), true
		}
	}
	return v, ok
}

// records returns n good records, one event type after another, keyed by
// user, numbered from first; every other one carries an id. run makes the
// ids unique to the test.
func records(run string, first, n int) []kafka.Message {
	out := make([]kafka.Message, n)
	for i := range out {
		seq := first + i
		ev := events[seq%len(events)]
		user := fmt.Sprintf("user-%d", seq%97)
		v := map[string]any{
			"type":        ev.typ,
			"userId":      user,
			ev.idField:    fmt.Sprintf("%s_%d", ev.prop, seq%7),
			"timestamp":   time.Date(2026, 11, 29, 10, 0, 0, 0, time.UTC).Add(time.Duration(seq) * time.Millisecond).Format(time.RFC3339Nano),
			"companyId":   "acme-42",
			"seq":         seq,
			"test_run":    run,
			"page":        map[string]any{"path": "/reports", "title": "Reports"},
			"featureFlag": seq%2 == 0,
		}
		if seq%2 == 0 {
			v["id"] = fmt.Sprintf("int_%s_%d", run, seq)
		}
		addMetadata(v, ev.typ, seq)
		b, err := json.Marshal(v)
		if err != nil {
			panic(err)
		}
		out[i] = kafka.Message{
			Key:     []byte(user),
			Value:   b,
			Headers: []kafka.Header{{Key: "x-seq", Value: []byte(fmt.Sprint(seq))}},
		}
	}
	return out
}

// events is the contract's table: raw type, Segment event, the id field the
// event needs and its property name.
var events = []struct{ typ, event, idField, prop string }{
	{"tour_available", "Tour Available", "tourId", "tour_id"},
	{"tour_start", "Tour Start", "tourId", "tour_id"},
	{"tour_auto_start", "Tour Auto Start", "tourId", "tour_id"},
	{"tour_continue", "Tour Continue", "tourId", "tour_id"},
	{"tour_finish", "Tour Finish", "tourId", "tour_id"},
	{"tour_step", "Tour Step", "tourId", "tour_id"},
	{"checklist_step_completed", "Checklist Step Completed", "checklistId", "checklist_id"},
	{"checklist_finished", "Checklist Finished", "checklistId", "checklist_id"},
	{"smart_tip_available", "Smart Tip Available", "smartTipId", "smart_tip_id"},
	{"smart_tip_open", "Smart Tip Open", "smartTipId", "smart_tip_id"},
	{"announcement_shown", "Announcement Shown", "announcementId", "announcement_id"},
	{"announcement_action_clicked", "Announcement Action Clicked", "announcementId", "announcement_id"},
	{"announcement_closed", "Announcement Closed", "announcementId", "announcement_id"},
	{"nps_widget_shown", "Nps Widget Shown", "npsWidgetId", "nps_widget_id"},
}

// addMetadata gives the two events that require metadata a valid one.
func addMetadata(v map[string]any, typ string, seq int) {
	switch typ {
	case "tour_step":
		v["metadata"] = map[string]any{"stepIndex": seq % 5, "type": "next"}
	case "checklist_step_completed":
		v["metadata"] = map[string]any{"stepId": fmt.Sprintf("step_%d", seq%3)}
	}
}
