package integration

import (
	"bytes"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/produktly/produktly-segment/integrations"
)

// The contract's bound for a change on the integrations topic is 1 s
// (INTEGRATIONS_TOPIC) and 5 s for the file (INTEGRATIONS_FILE). The tests
// check records produced after bound + changeSlack, the slack being for a
// loaded 2-core machine that runs the broker, the service and the test.
const (
	topicBound  = time.Second
	fileBound   = 5 * time.Second
	changeSlack = 2 * time.Second
)

// dest is where a record must go: a region's stand-in with a write key,
// or nowhere (skipped).
type dest struct {
	skip   bool
	region integrations.Region
	key    string
}

func (d dest) String() string {
	if d.skip {
		return "skipped"
	}
	return fmt.Sprintf("%s with key …%s", d.region, d.key[max(0, len(d.key)-6):])
}

// matches reports whether the copies of one record went to d.
func (d dest) matches(cs []arrival) bool {
	if d.skip {
		return len(cs) == 0
	}
	if len(cs) == 0 {
		return false
	}
	for _, c := range cs {
		if c.region != d.region || c.WriteKey != d.key {
			return false
		}
	}
	return true
}

func where(cs []arrival) string {
	if len(cs) == 0 {
		return "nowhere"
	}
	return dest{region: cs[0].region, key: cs[0].WriteKey}.String()
}

// TestAccountsLiveChanges: while records of six accounts flow at a steady
// rate through one replica, one account is activated, one deactivated, one
// has its write key rotated and one (an integer account id) moves from US
// to EU, all on the integrations topic. Every record produced more than
// the contract's 1 s (plus 2 s of slack) after the changes were
// acknowledged by Kafka goes where the new integration says; records
// produced earlier go to the old or the new destination (the integration
// in force is the one known when the record is mapped); the two unchanged
// accounts lose nothing.
func TestAccountsLiveChanges(t *testing.T) {
	t.Parallel()
	w := newAccountsWorld(t, 3)
	run := unique("k")
	key := func(name string) string { return "wk-live-" + name + "-" + run }
	const (
		steadyUS, steadyEU = "acct-steady-us", "acct-steady-eu"
		activate, deact    = "acct-activate", "acct-deactivate"
		rotate, move       = "acct-rotate", "4242"
	)
	us, eu := integrations.RegionUS, integrations.RegionEU
	old := map[string]dest{
		steadyUS: {region: us, key: key("steady-us")},
		steadyEU: {region: eu, key: key("steady-eu")},
		activate: {skip: true},
		deact:    {region: us, key: key("deact")},
		rotate:   {region: us, key: key("rotate-old")},
		move:     {region: us, key: key("move")},
	}
	now := map[string]dest{
		steadyUS: old[steadyUS], steadyEU: old[steadyEU],
		activate: {region: us, key: key("activate")},
		deact:    {skip: true},
		rotate:   {region: us, key: key("rotate-new")},
		move:     {region: eu, key: key("move")},
	}
	for acct, d := range old {
		if !d.skip {
			w.put(acct, d.key, d.region)
		}
	}
	w.accept(key("activate"))
	w.accept(key("rotate-new"))

	p := w.start("live", nil)
	p.waitReady(90 * time.Second)
	accounts := []string{steadyUS, steadyEU, activate, deact, rotate, move}
	flow := newAcctFlow(t, w.topic, 120, accounts).start()

	// The old integrations are demonstrably in force before the changes.
	waitFor(t, 60*time.Second, "records of every active account at their old destination", func() bool {
		for _, a := range []string{steadyUS, steadyEU, deact, rotate, move} {
			if len(w.server(old[a].region).MessagesFor(old[a].key)) < 10 {
				return false
			}
		}
		return true
	}, func() string { return fmt.Sprintf("US %d, EU %d messages", w.us.Count(), w.eu.Count()) })

	changing := time.Now()
	w.put(activate, now[activate].key, us)
	w.deactivate(deact)
	w.put(rotate, now[rotate].key, us)
	w.put(move, now[move].key, eu)
	changed := time.Now()
	effective := changed.Add(topicBound + changeSlack)
	t.Logf("changes produced in %s; records produced from %s after them on are checked strictly",
		changed.Sub(changing).Round(time.Millisecond), topicBound+changeSlack)
	// The flow goes on for 4 s past that point.
	time.Sleep(time.Until(effective.Add(4 * time.Second)))
	recs := flow.stop()
	waitCommittedThrough(t, w.group, w.topic, w.partitions, 90*time.Second)

	got := w.arrivals()
	strict := map[string]int{}
	bad := 0
	for _, r := range recs {
		cs := got[r.call.MessageID]
		for _, c := range cs {
			if !bytes.Equal(c.Raw, r.call.JSON) {
				t.Errorf("%s seq %d: Segment got %s, the mapping makes %s", r.account, r.seq, c.Raw, r.call.JSON)
			}
		}
		o, n := old[r.account], now[r.account]
		switch {
		case r.produced.After(effective):
			strict[r.account]++
			if !n.matches(cs) {
				if bad++; bad <= 10 {
					t.Errorf("%s: a record produced %s after the change went %s, want %s",
						r.account, r.produced.Sub(changed).Round(time.Millisecond), where(cs), n)
				}
			}
		case !o.matches(cs) && !n.matches(cs):
			if bad++; bad <= 10 {
				t.Errorf("%s: a record produced %s before the change went %s, want %s or %s",
					r.account, changed.Sub(r.produced).Round(time.Millisecond), where(cs), o, n)
			}
		}
	}
	for _, a := range accounts {
		if strict[a] < 5 {
			t.Errorf("%s: only %d records produced after the change took effect: the test checked too little", a, strict[a])
		}
	}
	if dups := got.checkCopies(t); dups > 0 {
		t.Logf("%d duplicates, all identical", dups)
	}
	if n := p.metricLabelled(metricSkipped, skippedInactive); n < float64(strict[deact]) {
		t.Errorf("%s = %v, want at least the %d records of the deactivated account produced after the change", metricSkipped, n, strict[deact])
	}
	t.Logf("%d records of %d accounts; checked strictly after the change: %v", len(recs), len(accounts), strict)
}

// TestAccountsOneFailing: 50 active accounts (35 US, 15 EU) flow at a
// steady 250 records/s through one replica; one account's write key gets
// 503 (then, in the second variant, 429 with Retry-After: 2) for 20 s.
// The healthy accounts' latency from record to Segment during the
// failure is measured and logged (the contract's target, p99 under 2 s,
// is reported, not asserted: a timing assertion on a shared machine would
// be flaky). The failing account is parked after ACCOUNT_PARK_AFTER (3 s):
// its records go to the retry topic, and no healthy account's do; after
// recovery every record of every account is at its source, duplicates are
// identical, and committed offsets equal the end offsets.
func TestAccountsOneFailing(t *testing.T) {
	for _, c := range []struct {
		name       string
		status     int
		retryAfter time.Duration
	}{
		{"503", http.StatusServiceUnavailable, 0},
		{"429-retry-after", http.StatusTooManyRequests, 2 * time.Second},
	} {
		t.Run(c.name, func(t *testing.T) { oneFailing(t, c.status, c.retryAfter) })
	}
}

func oneFailing(t *testing.T, status int, retryAfter time.Duration) {
	w := newAccountsWorld(t, 6)
	run := unique("k")
	var accounts []string
	dests := map[string]dest{}
	for i := range 50 {
		a := fmt.Sprintf("acct-%02d", i)
		r := integrations.RegionUS
		if i >= 35 {
			r = integrations.RegionEU
		}
		d := dest{region: r, key: fmt.Sprintf("wk-one-%02d-%s", i, run)}
		w.put(a, d.key, d.region)
		accounts, dests[a] = append(accounts, a), d
	}
	failing := accounts[0]
	fkey := dests[failing].key

	p := w.start("one-failing", map[string]string{"ACCOUNT_PARK_AFTER": "3s"})
	p.waitReady(90 * time.Second)
	flow := newAcctFlow(t, w.topic, 250, accounts).start()
	waitFor(t, 60*time.Second, "the first 500 messages at Segment", func() bool { return w.us.Count()+w.eu.Count() >= 500 }, nil)

	failStart := time.Now()
	w.us.FailKey(fkey, status, retryAfter)
	t.Logf("%s: every request answered %d (Retry-After %s) from now on", failing, status, retryAfter)
	waitFor(t, 60*time.Second, "the failing account's records in the retry topic", func() bool {
		return sum(endOffsets(t, w.retry, w.retryParts)) > 0
	}, func() string { return fmt.Sprintf("%s = %v", metricParked, p.metric(metricParked)) })
	parkedAfter := time.Since(failStart)
	waitFor(t, 30*time.Second, "/accounts to list the failing account", func() bool {
		code, body := p.get("/accounts")
		return code == http.StatusOK && strings.Contains(body, failing)
	}, func() string { _, b := p.get("/accounts"); return b })
	_, listing := p.get("/accounts")
	noSecret(t, "/accounts", listing, w.secrets()...)
	time.Sleep(time.Until(failStart.Add(20 * time.Second)))
	w.us.ClearKey(fkey)
	failEnd := time.Now()
	t.Logf("%s healthy again after %s (parked after %s)", failing, failEnd.Sub(failStart).Round(time.Millisecond), parkedAfter.Round(time.Millisecond))
	time.Sleep(3 * time.Second)
	recs := flow.stop()

	// Everything arrives: the parked records after their not-before time.
	waitFor(t, 3*time.Minute, "every record at its source", func() bool {
		got := w.arrivals()
		for _, r := range recs {
			if len(got[r.call.MessageID]) == 0 {
				return false
			}
		}
		return true
	}, func() string {
		got, missing := w.arrivals(), map[string]int{}
		for _, r := range recs {
			if len(got[r.call.MessageID]) == 0 {
				missing[r.account]++
			}
		}
		return fmt.Sprintf("missing by account %v; %s %v, %s %v", missing, metricParked, p.metric(metricParked), metricRedelivered, p.metric(metricRedelivered))
	})
	waitCommittedThrough(t, w.group, w.topic, w.partitions, time.Minute)
	waitCommittedThrough(t, w.group, w.retry, w.retryParts, time.Minute)

	got := w.arrivals()
	var healthy, all []time.Duration
	for _, r := range recs {
		cs := got[r.call.MessageID]
		if d := dests[r.account]; !d.matches(cs) {
			t.Errorf("%s seq %d went %s, want %s", r.account, r.seq, where(cs), d)
		}
		if len(cs) > 0 && !bytes.Equal(cs[0].Raw, r.call.JSON) {
			t.Errorf("%s seq %d: Segment got %s, the mapping makes %s", r.account, r.seq, cs[0].Raw, r.call.JSON)
		}
		if r.account == failing || len(cs) == 0 {
			continue
		}
		lat := cs[0].At.Sub(r.produced)
		all = append(all, lat)
		if !r.produced.Before(failStart) && r.produced.Before(failEnd) {
			healthy = append(healthy, lat)
		}
	}
	dups := got.checkCopies(t)

	// The retry topic holds the failing account's records, and only its.
	parked := map[string]int{}
	for _, m := range readTopic(t, w.retry, w.retryParts) {
		acct, _ := header(m, "produktly-retry-account")
		parked[acct]++
		if nb, ok := header(m, "produktly-retry-not-before"); !ok || !strings.HasSuffix(nb, "Z") {
			t.Errorf("retry record %d/%d: produktly-retry-not-before = %q, want RFC 3339 UTC", m.Partition, m.Offset, nb)
		}
		if src, _ := header(m, "produktly-source-topic"); src != w.topic {
			t.Errorf("retry record %d/%d: produktly-source-topic = %q, want %q", m.Partition, m.Offset, src, w.topic)
		}
	}
	if parked[failing] == 0 {
		t.Errorf("no record of %s in the retry topic", failing)
	}
	for a, n := range parked {
		if a != failing {
			t.Errorf("%d records of %s, a healthy account, were parked", n, a)
		}
	}
	if n := p.metric(metricRedelivered); n <= 0 {
		t.Errorf("%s = %v after the parked records arrived", metricRedelivered, n)
	}
	ps := percentiles(healthy)
	t.Logf("healthy accounts during the %s failure of %s (%d records): latency record → Segment p50 %s, p99 %s, max %s (contract target p99 < 2s; not asserted); whole run p99 %s",
		failEnd.Sub(failStart).Round(time.Second), failing, len(healthy), ps[50], ps[99], ps[100], percentiles(all)[99])
	t.Logf("%d records, %d duplicates (identical), %d retry-topic copies of %s; %s %v, %s %v",
		len(recs), dups, parked[failing], failing, metricParked, p.metric(metricParked), metricRedelivered, p.metric(metricRedelivered))
	p.term()
	p.mustExit(0, time.Minute)
}

// percentiles returns the 50th, 99th and 100th percentile of ds.
func percentiles(ds []time.Duration) map[int]time.Duration {
	out := map[int]time.Duration{}
	if len(ds) == 0 {
		return out
	}
	s := append([]time.Duration(nil), ds...)
	sortDurations(s)
	for _, q := range []int{50, 99, 100} {
		i := min(len(s)-1, (len(s)*q+99)/100-1)
		out[q] = s[max(i, 0)].Round(time.Millisecond)
	}
	return out
}

// TestAccountsIntegrationsTopicMissing: an integrations topic that does
// not exist gives a log line naming it and a /readyz that stays false,
// and no record is consumed; once the topic is created the replica loads
// it and turns ready.
func TestAccountsIntegrationsTopicMissing(t *testing.T) {
	t.Parallel()
	w := newAccountsWorld(t, 1)
	missing := unique("t-missing-integrations")
	p := w.start("missing", map[string]string{"INTEGRATIONS_TOPIC": missing})
	waitFor(t, 60*time.Second, "a log line saying the integrations topic does not exist", func() bool {
		return p.countLog("integrations topic does not exist", missing) > 0
	}, func() string { return strings.Join(p.logLines(), "\n") })
	if code, _ := p.get("/readyz"); code == http.StatusOK {
		t.Errorf("/readyz = 200 while the integrations topic %s does not exist", missing)
	}
	if p.exited() {
		t.Fatalf("the service exited (%v) on a missing integrations topic: it must wait for it", p.state)
	}
	if c := committedOffsets(t, w.group, w.topic, 1); c[0] > 0 {
		t.Errorf("committed %v before the integrations were loaded", c)
	}
	createNamedTopic(t, missing, 1)
	p.waitReady(90 * time.Second)
}

// TestAccountsIntegrationsFileBreaks: in file mode (INTEGRATIONS_FILE), a
// file that stops parsing at run time keeps the previous table (records
// still go to their sources), is logged and counted; a valid file written
// after it takes effect within the contract's 5 s.
func TestAccountsIntegrationsFileBreaks(t *testing.T) {
	t.Parallel()
	w := newAccountsWorld(t, 2)
	run := unique("k")
	ka, kb, kb2 := "wk-file-a-"+run, "wk-file-b-"+run, "wk-file-b2-"+run
	for _, k := range []string{ka, kb, kb2} {
		w.accept(k)
	}
	path := filepath.Join(t.TempDir(), "integrations.json")
	writeFile := func(content string) {
		t.Helper()
		tmp := path + ".tmp"
		if err := os.WriteFile(tmp, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, path); err != nil {
			t.Fatal(err)
		}
	}
	writeFile(fmt.Sprintf(`{"acct-a": {"writeKey": %q}, "acct-b": {"writeKey": %q, "region": "eu"}}`, ka, kb))
	env := w.environ(map[string]string{"INTEGRATIONS_FILE": path})
	delete(env, "INTEGRATIONS_TOPIC")
	p := startProc(t, "file", env, "run")
	p.waitReady(90 * time.Second)

	flow := newAcctFlow(t, w.topic, 0, []string{"acct-a", "acct-b"})
	deliver := func(what string, want map[string]dest) {
		t.Helper()
		recs := flow.batch(40)
		if err := flow.write(recs); err != nil {
			t.Fatal(err)
		}
		waitCommittedThrough(t, w.group, w.topic, w.partitions, time.Minute)
		got := w.arrivals()
		for _, r := range recs {
			if cs := got[r.call.MessageID]; !want[r.account].matches(cs) {
				t.Errorf("%s: %s seq %d went %s, want %s", what, r.account, r.seq, where(cs), want[r.account])
			}
		}
	}
	first := map[string]dest{"acct-a": {region: "us", key: ka}, "acct-b": {region: "eu", key: kb}}
	deliver("the first file", first)

	writeFile(`{"acct-a": {"writeKey": "wk-broken`)
	waitFor(t, fileBound+30*time.Second, "the broken file to be counted", func() bool {
		return p.metricLabelled(metricIntegErrors, integReasonFile) >= 1
	}, nil)
	if p.countLog("integrations file unreadable") == 0 {
		t.Error("no log line says the integrations file is unreadable")
	}
	deliver("after the file broke (the previous table stays)", first)

	writeFile(fmt.Sprintf(`{"acct-a": {"writeKey": %q}, "acct-b": {"writeKey": %q, "region": "us"}}`, ka, kb2))
	time.Sleep(fileBound + changeSlack)
	deliver("after a valid file replaced it", map[string]dest{"acct-a": first["acct-a"], "acct-b": {region: "us", key: kb2}})
	noSecret(t, "log", strings.Join(p.logLines(), "\n"), ka, kb, kb2, "wk-broken")
}

// TestAccountsIntegrationsInvalid: a tombstone removes an account, and
// invalid integration values (not JSON, not an object, no writeKey, an
// unknown region) make their accounts inactive: their records are skipped
// and counted as inactive_account, each account is logged by name without
// its key, the error counter counts them, and the service serves on.
func TestAccountsIntegrationsInvalid(t *testing.T) {
	t.Parallel()
	w := newAccountsWorld(t, 2)
	run := unique("k")
	okKey, badRegionKey, tombKey := "wk-ok-"+run, "wk-badregion-"+run, "wk-tomb-"+run
	w.put("acct-ok", okKey, integrations.RegionUS)
	w.put("acct-tomb", tombKey, integrations.RegionUS)
	w.putRaw("acct-tomb", nil)
	invalid := map[string]string{
		"acct-badjson":   `{"writeKey": "wk-x`,
		"acct-notobject": `"just a string"`,
		"acct-nokey":     `{"region": "us", "active": true}`,
		"acct-badregion": fmt.Sprintf(`{"writeKey": %q, "region": "mars"}`, badRegionKey),
	}
	for a, v := range invalid {
		w.putRaw(a, []byte(v))
	}
	w.accept(badRegionKey)
	w.accept(tombKey)

	p := w.start("invalid", map[string]string{"LOG_LEVEL": "debug"})
	p.waitReady(90 * time.Second)
	accounts := []string{"acct-ok", "acct-tomb", "acct-badjson", "acct-notobject", "acct-nokey", "acct-badregion", "acct-never-seen"}
	flow := newAcctFlow(t, w.topic, 0, accounts)
	recs := flow.batch(20 * len(accounts))
	if err := flow.write(recs); err != nil {
		t.Fatal(err)
	}
	waitCommittedThrough(t, w.group, w.topic, w.partitions, time.Minute)
	got := w.arrivals()
	skipped := 0
	for _, r := range recs {
		want := dest{skip: true}
		if r.account == "acct-ok" {
			want = dest{region: "us", key: okKey}
		} else {
			skipped++
		}
		if cs := got[r.call.MessageID]; !want.matches(cs) {
			t.Errorf("%s seq %d went %s, want %s", r.account, r.seq, where(cs), want)
		}
	}
	if n := p.metricLabelled(metricSkipped, skippedInactive); n != float64(skipped) {
		t.Errorf("%s{%s} = %v, want %d", metricSkipped, skippedInactive, n, skipped)
	}
	if n := p.metricLabelled(metricIntegErrors, integReasonInvalid); n < float64(len(invalid)) {
		t.Errorf("%s{%s} = %v, want at least %d", metricIntegErrors, integReasonInvalid, n, len(invalid))
	}
	for a := range invalid {
		if p.countLog("invalid integration", a) == 0 {
			t.Errorf("no log line names the invalid integration of %s", a)
		}
	}
	if n := sum(endOffsets(t, w.dlq, 2)); n != 0 {
		t.Errorf("%d records dead-lettered; skipped records are not dead letters", n)
	}
	noSecret(t, "log", strings.Join(p.logLines(), "\n"), okKey, badRegionKey, tombKey)
}

// TestAccountsSecrets runs accounts mode with LOG_LEVEL=debug through the
// paths that handle keys: publishing with `integrations put
// --write-key-file` and listing, an invalid integration that holds a key,
// a key rotation, an account whose source answers 401 and one that answers
// 503 until it is parked. No write key may appear in the service's stderr
// or stdout, on /metrics or /accounts, or in the command's output.
func TestAccountsSecrets(t *testing.T) {
	t.Parallel()
	w := newAccountsWorld(t, 2)
	run := unique("k")
	k := func(n string) string { return "wk-SECRET-" + n + "-" + run }
	w.put("acct-us", k("us"), integrations.RegionUS)
	w.put("acct-eu", k("eu"), integrations.RegionEU)
	w.put("acct-rotate", k("rotate-1"), integrations.RegionUS)
	w.put("acct-503", k("503"), integrations.RegionUS)
	w.put("acct-401", k("401"), integrations.RegionUS)
	w.putRaw("acct-invalid", []byte(fmt.Sprintf(`{"writeKey": %q, "region": "apac"}`, k("invalid"))))
	w.accept(k("invalid"))
	w.us.FailKey(k("503"), http.StatusServiceUnavailable, 0)
	w.us.FailKey(k("401"), http.StatusUnauthorized, 0)

	// The operator's command, with the key in a file.
	keyFile := filepath.Join(t.TempDir(), "key")
	if err := os.WriteFile(keyFile, []byte(k("cli")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	w.accept(k("cli"))
	cmdEnv := map[string]string{"KAFKA_BROKERS": strings.Join(brokers(t), ","), "INTEGRATIONS_TOPIC": w.integrations, "LOG_LEVEL": "debug"}
	var cmdOut strings.Builder
	for _, args := range [][]string{
		{"integrations", "put", "acct-cli", "--write-key-file", keyFile, "--region", "eu"},
		{"integrations", "list"},
	} {
		stdout, stderr, code := runCmd(t, cmdEnv, time.Minute, args...)
		if code != 0 {
			t.Fatalf("%v: exit %d\n%s%s", args, code, stdout, stderr)
		}
		cmdOut.WriteString(stdout + stderr)
	}
	if !strings.Contains(cmdOut.String(), "acct-cli") {
		t.Errorf("integrations list does not show acct-cli:\n%s", cmdOut.String())
	}

	p := w.start("secrets", map[string]string{"LOG_LEVEL": "debug", "ACCOUNT_PARK_AFTER": "2s"})
	p.waitReady(90 * time.Second)
	accounts := []string{"acct-us", "acct-eu", "acct-rotate", "acct-503", "acct-401", "acct-invalid", "acct-cli"}
	flow := newAcctFlow(t, w.topic, 70, accounts).start()
	waitFor(t, 60*time.Second, "/accounts to list the failing accounts", func() bool {
		_, body := p.get("/accounts")
		return strings.Contains(body, "acct-503") && strings.Contains(body, "acct-401")
	}, func() string { _, b := p.get("/accounts"); return b })
	w.put("acct-rotate", k("rotate-2"), integrations.RegionUS)
	waitFor(t, 30*time.Second, "the rotated key in use", func() bool { return len(w.us.MessagesFor(k("rotate-2"))) > 0 }, nil)
	waitFor(t, 30*time.Second, "records of acct-cli at EU", func() bool { return len(w.eu.MessagesFor(k("cli"))) > 0 }, nil)
	flow.stop()

	secrets := w.secrets()
	for _, path := range []string{"/metrics", "/accounts"} {
		code, body := p.get(path)
		if code != http.StatusOK {
			t.Errorf("%s = %d", path, code)
		}
		noSecret(t, path, body, secrets...)
	}
	p.term()
	p.mustExit(0, time.Minute)
	log := strings.Join(p.logLines(), "\n")
	if !strings.Contains(log, `"level":"debug"`) {
		t.Error("no debug line in the log: the test did not run at debug level")
	}
	noSecret(t, "service log", log+p.stdout.String(), secrets...)
	noSecret(t, "integrations command", cmdOut.String(), secrets...)
}
