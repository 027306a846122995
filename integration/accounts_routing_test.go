package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/produktly/produktly-segment/consumer"
	"github.com/produktly/produktly-segment/integrations"
	"github.com/produktly/produktly-segment/mapping"
	"github.com/produktly/produktly-segment/sink/segmenttest"
)

// routeAccount is one account of the routing test and what the service
// must do with its records.
type routeAccount struct {
	id     string
	key    string
	region integrations.Region
	active bool
	// numeric: its records carry accountId as a JSON integer.
	numeric bool
}

// TestAccountsRouting runs the binary in accounts mode against an
// integrations topic of 50 accounts (30 US, 15 EU, 5 inactive) published
// with integrations.Publisher, plus records of unknown accounts and
// records without accountId: every record lands at its region's endpoint
// with its account's key, or is skipped, or is dead-lettered
// (missing_account), and the committed offsets reach the end offsets. No
// write key appears in the logs (at debug level), /metrics or /accounts.
func TestAccountsRouting(t *testing.T) {
	const partitions, perAccount = 4, 6
	pl := newPipeline(t, partitions)
	retryTopic := createTopic(t, 2)
	itopic := createTopicWith(t, 1, kafka.ConfigEntry{ConfigName: "cleanup.policy", ConfigValue: "compact"})
	run := unique("acct")

	var accounts []routeAccount
	add := func(n int, kind string, region integrations.Region, active bool) {
		for i := range n {
			id := fmt.Sprintf("acct-%s-%02d", kind, i)
			numeric := kind == "us" && i == 0
			if numeric {
				id = "4242"
			}
			accounts = append(accounts, routeAccount{id: id, key: "wk-" + id + "-" + run, region: region, active: active, numeric: numeric})
		}
	}
	add(30, "us", integrations.RegionUS, true)
	add(15, "eu", integrations.RegionEU, true)
	add(5, "off", integrations.RegionUS, false)
	var usKeys, euKeys []string
	for _, a := range accounts {
		if a.region == integrations.RegionEU {
			euKeys = append(euKeys, a.key)
		} else {
			usKeys = append(usKeys, a.key)
		}
	}
	// Each region's stand-in accepts the keys of that region only: a
	// record sent to the wrong region is refused (and would not arrive).
	us := segmenttest.NewServer(usKeys[0], segmenttest.WithWriteKeys(usKeys[1:]...))
	eu := segmenttest.NewServer(euKeys[0], segmenttest.WithWriteKeys(euKeys[1:]...))
	t.Cleanup(us.Close)
	t.Cleanup(eu.Close)

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	pub, err := integrations.NewPublisher(integrations.TopicOptions{Brokers: brokers(t), Topic: itopic})
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	for i, a := range accounts {
		// Two of the inactive accounts are published active, then
		// deactivated (the operator's path); the others inactive at once.
		active := a.active || i%5 < 2
		it := integrations.Integration{WriteKey: integrations.NewWriteKey(a.key), Region: a.region, Active: active}
		if err := pub.Put(ctx, a.id, it); err != nil {
			t.Fatalf("put %s: %v", a.id, err)
		}
		if active && !a.active {
			if err := pub.Deactivate(ctx, a.id); err != nil {
				t.Fatalf("deactivate %s: %v", a.id, err)
			}
		}
	}

	// The records: perAccount per account, then unknown accounts, then
	// records without accountId.
	var msgs []kafka.Message
	withAccount := func(m kafka.Message, account any) kafka.Message {
		var v map[string]any
		if err := json.Unmarshal(m.Value, &v); err != nil {
			t.Fatal(err)
		}
		if account != nil {
			v["accountId"] = account
		}
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		m.Value = b
		return m
	}
	seq := 0
	for _, a := range accounts {
		var id any = a.id
		if a.numeric {
			id = 4242
		}
		for _, m := range records(run, seq, perAccount) {
			msgs = append(msgs, withAccount(m, id))
		}
		seq += perAccount
	}
	const unknown, missing = 12, 7
	for i, m := range records(run, seq, unknown) {
		msgs = append(msgs, withAccount(m, fmt.Sprintf("ghost-%d", i)))
	}
	seq += unknown
	for _, m := range records(run, seq, missing) {
		msgs = append(msgs, withAccount(m, nil))
	}
	produce(t, pl.topic, msgs)

	p := pl.start("accounts", map[string]string{
		"SEGMENT_WRITE_KEY":   "",
		"INTEGRATIONS_TOPIC":  itopic,
		"KAFKA_RETRY_TOPIC":   retryTopic,
		"SEGMENT_ENDPOINT":    us.URL(),
		"SEGMENT_EU_ENDPOINT": eu.URL(),
		"LOG_LEVEL":           "debug",
	})
	p.waitReady(time.Minute)
	waitCommitted(t, pl.group, pl.topic, partitions, 2*time.Minute)

	// What the service must have done, record by record, from the source
	// topic read back at its real coordinates.
	byID := map[string]routeAccount{}
	for _, a := range accounts {
		byID[a.id] = a
	}
	wantAt := map[string]string{} // messageId → write key
	wantUS, wantEU, wantSkipped, wantDead := map[string]bool{}, map[string]bool{}, 0, 0
	for _, m := range readTopic(t, pl.topic, partitions) {
		call, err := mapping.MapAccount(mapping.Record{Topic: m.Topic, Partition: m.Partition, Offset: m.Offset, Time: m.Time, Value: m.Value})
		if err != nil {
			if !strings.Contains(err.Error(), string(mapping.CodeMissingAccount)) {
				t.Fatalf("record %d/%d: %v, want only missing_account errors", m.Partition, m.Offset, err)
			}
			wantDead++
			continue
		}
		a, ok := byID[call.AccountID]
		if !ok || !a.active {
			wantSkipped++
			continue
		}
		wantAt[call.MessageID] = a.key
		if a.region == integrations.RegionEU {
			wantEU[call.MessageID] = true
		} else {
			wantUS[call.MessageID] = true
		}
	}
	if wantDead != missing || wantSkipped != unknown+5*perAccount || len(wantUS) != 30*perAccount || len(wantEU) != 15*perAccount {
		t.Fatalf("test setup: %d dead, %d skipped, %d US, %d EU", wantDead, wantSkipped, len(wantUS), len(wantEU))
	}

	// Committed = end means every record was acknowledged: delivered,
	// skipped or dead-lettered. Check each went where it should.
	for region, st := range map[string]struct {
		srv  *segmenttest.Server
		want map[string]bool
	}{"US": {us, wantUS}, "EU": {eu, wantEU}} {
		got := map[string]bool{}
		for _, m := range st.srv.Messages() {
			key, ok := wantAt[m.MessageID]
			switch {
			case !ok:
				t.Errorf("%s stand-in received messageId %s that no active account's record maps to", region, m.MessageID)
			case !st.want[m.MessageID]:
				t.Errorf("%s stand-in received messageId %s of the other region", region, m.MessageID)
			case m.WriteKey != key:
				t.Errorf("%s stand-in received messageId %s with another account's key", region, m.MessageID)
			}
			got[m.MessageID] = true
		}
		if len(got) != len(st.want) {
			t.Errorf("%s stand-in received %d distinct calls, want %d", region, len(got), len(st.want))
		}
	}
	skippedMetric := `produktly_segment_records_skipped_total{reason="` + consumer.SkipInactiveAccount + `"}`
	if got := p.metric(skippedMetric); got != float64(wantSkipped) {
		t.Errorf("%s = %v, want %d", skippedMetric, got, wantSkipped)
	}
	dead := readTopic(t, pl.dlq, pl.dlqParts)
	if len(dead) != wantDead {
		t.Errorf("dead-letter topic holds %d records, want %d", len(dead), wantDead)
	}
	for _, m := range dead {
		if code, _ := header(m, consumer.HeaderErrorCode); code != string(mapping.CodeMissingAccount) {
			t.Errorf("dead letter %s/%s with code %q, want missing_account", headerOr(m, consumer.HeaderSourcePartition), headerOr(m, consumer.HeaderSourceOffset), code)
		}
	}
	if n := sum(endOffsets(t, retryTopic, 2)); n != 0 {
		t.Errorf("retry topic holds %d records; no account failed", n)
	}

	// No write key anywhere the service shows itself.
	_, metrics := p.get("/metrics")
	code, accountsBody := p.get("/accounts")
	if code != http.StatusOK {
		t.Errorf("GET /accounts = %d, want 200", code)
	}
	p.term()
	p.mustExit(0, 30*time.Second)
	logs := strings.Join(p.logLines(), "\n")
	for _, a := range accounts {
		for what, s := range map[string]string{"the log": logs, "/metrics": metrics, "/accounts": accountsBody} {
			if strings.Contains(s, a.key) {
				t.Errorf("%s shows the write key of %s", what, a.id)
			}
		}
	}
	t.Logf("%d records: %d US, %d EU, %d skipped, %d dead-lettered", len(msgs), len(wantUS), len(wantEU), wantSkipped, wantDead)
}

// TestAccountsParkAndRecover: one account's key fails (503) while two
// others flow: its records are parked to the retry topic, the source
// partitions commit to their end, and once the key recovers every parked
// record arrives (from the retry topic, whose offsets then commit too).
func TestAccountsParkAndRecover(t *testing.T) {
	const partitions, perAccount, retryParts = 2, 20, 2
	pl := newPipeline(t, partitions)
	retryTopic := createTopic(t, retryParts)
	itopic := createTopicWith(t, 1, kafka.ConfigEntry{ConfigName: "cleanup.policy", ConfigValue: "compact"})
	run := unique("park")
	ids := []string{"ok-1", "ok-2", "bad"}
	keys := map[string]string{}
	for _, id := range ids {
		keys[id] = "wk-" + id + "-" + run
	}
	srv := segmenttest.NewServer(keys["ok-1"], segmenttest.WithWriteKeys(keys["ok-2"], keys["bad"]))
	t.Cleanup(srv.Close)
	srv.FailKey(keys["bad"], http.StatusServiceUnavailable, 0)

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	pub, err := integrations.NewPublisher(integrations.TopicOptions{Brokers: brokers(t), Topic: itopic})
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	for _, id := range ids {
		if err := pub.Put(ctx, id, integrations.Integration{WriteKey: integrations.NewWriteKey(keys[id]), Region: integrations.RegionUS, Active: true}); err != nil {
			t.Fatal(err)
		}
	}
	var msgs []kafka.Message
	for i, id := range ids {
		for _, m := range records(run, i*perAccount, perAccount) {
			var v map[string]any
			_ = json.Unmarshal(m.Value, &v)
			v["accountId"] = id
			m.Value, _ = json.Marshal(v)
			msgs = append(msgs, m)
		}
	}
	produce(t, pl.topic, msgs)

	p := pl.start("park", map[string]string{
		"SEGMENT_WRITE_KEY":  "",
		"INTEGRATIONS_TOPIC": itopic,
		"KAFKA_RETRY_TOPIC":  retryTopic,
		"ACCOUNT_PARK_AFTER": "1s",
		"SEGMENT_ENDPOINT":   srv.URL(),
	})
	p.waitReady(time.Minute)
	// The failing account's records are parked, so the source commits to
	// its end while its key still fails.
	waitCommitted(t, pl.group, pl.topic, partitions, 90*time.Second)
	if n := sum(endOffsets(t, retryTopic, retryParts)); n < perAccount {
		t.Fatalf("retry topic holds %d records, want at least the failing account's %d", n, perAccount)
	}
	if got := len(srv.MessagesFor(keys["bad"])); got != 0 {
		t.Fatalf("the failing key has %d accepted messages, want 0", got)
	}
	// One failing (parked) account does not take the replica out of
	// service, and /accounts lists it.
	if code, body := p.get("/readyz"); code != http.StatusOK {
		t.Errorf("/readyz = %d %q while one account is parked, want 200", code, body)
	}
	if code, body := p.get("/accounts"); code != http.StatusOK || !strings.Contains(body, `"account": "bad"`) || strings.Contains(body, keys["bad"]) {
		t.Errorf("/accounts = %d:\n%s\nwant 200 listing account bad, without its key", code, body)
	}
	for _, id := range []string{"ok-1", "ok-2"} {
		distinct := map[string]bool{}
		for _, m := range srv.MessagesFor(keys[id]) {
			distinct[m.MessageID] = true
		}
		if len(distinct) != perAccount {
			t.Errorf("healthy account %s: %d distinct calls delivered while the other failed, want %d", id, len(distinct), perAccount)
		}
	}
	if p.metric("produktly_segment_records_parked_total") < perAccount {
		t.Errorf("records_parked_total = %v, want at least %d", p.metric("produktly_segment_records_parked_total"), perAccount)
	}

	srv.ClearKey(keys["bad"])
	waitFor(t, 90*time.Second, "every parked record delivered after recovery", func() bool {
		distinct := map[string]bool{}
		for _, m := range srv.MessagesFor(keys["bad"]) {
			distinct[m.MessageID] = true
		}
		return len(distinct) == perAccount
	}, func() string {
		return fmt.Sprintf("%d accepted for the recovered key, retry topic end %v", len(srv.MessagesFor(keys["bad"])), endOffsets(t, retryTopic, retryParts))
	})
	waitCommitted(t, pl.group, retryTopic, retryParts, 60*time.Second)
	if got := p.metric("produktly_segment_records_redelivered_total"); got < perAccount {
		t.Errorf("records_redelivered_total = %v, want at least %d", got, perAccount)
	}
	// The redelivered calls are those of the source records (same
	// messageId), as the contract says.
	good := map[string]bool{}
	for _, m := range readTopic(t, pl.topic, partitions) {
		call, err := mapping.MapAccount(mapping.Record{Topic: m.Topic, Partition: m.Partition, Offset: m.Offset, Time: m.Time, Value: m.Value})
		if err != nil {
			t.Fatal(err)
		}
		good[call.MessageID] = true
	}
	for _, m := range srv.MessagesFor(keys["bad"]) {
		if !good[m.MessageID] {
			t.Errorf("redelivered messageId %s is not that of a source record", m.MessageID)
		}
	}
	p.term()
	p.mustExit(0, 30*time.Second)
}
