package main

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"time"
)

// recordGen makes a realistic mix of raw Produktly records: all 14 event
// types, ids as strings and numbers, a few extra context fields, 200–600
// bytes each, optionally an accountId drawn from a Zipf law, plus a share
// of records that break the contract.
type recordGen struct {
	rng    *rand.Rand
	badPer int // one bad record every badPer records; 0: none
	n      int
	// accounts draws each good record's accountId (benchAccounts' ids);
	// nil: records without one.
	accounts *zipf
}

func newRecordGen(seed uint64, badShare float64, accounts *zipf) *recordGen {
	g := &recordGen{rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)), accounts: accounts}
	if badShare > 0 {
		g.badPer = int(1 / badShare)
	}
	return g
}

var genEvents = []struct{ typ, idField, meta string }{
	{"tour_available", "tourId", ""},
	{"tour_start", "tourId", ""},
	{"tourAutoStart", "tourId", ""},
	{"TourContinue", "tourId", ""},
	{"tour_finish", "tourId", ""},
	{"tour_step", "tourId", `{"stepIndex":%d,"type":"next"}`},
	{"checklist_step_completed", "checklistId", `{"stepId":"step-%d"}`},
	{"checklist_finished", "checklistId", ""},
	{"smart_tip_available", "smartTipId", ""},
	{"smart_tip_open", "smartTipId", ""},
	{"announcement_shown", "announcementId", ""},
	{"announcement_action_clicked", "announcementId", ""},
	{"announcement_closed", "announcementId", ""},
	{"nps_widget_shown", "npsWidgetId", ""},
}

var genBad = []string{
	`{"type":"tour_start","userId":"u-1","tourId":`,
	`{"type":"tour_teleport","userId":"u-1","tourId":1}`,
	`{"type":"tour_start","userId":"u-1"}`,
	`{"type":"tour_step","userId":"u-1","tourId":1,"metadata":{"stepIndex":-1,"type":"next"}}`,
	`{"type":"tour_start","tourId":1}`,
	`{"type":"tour_start","userId":"u-1","tourId":1,"timestamp":"yesterday"}`,
}

// next returns a record key, value and whether the value is good. at is
// written as the record's own timestamp (epoch milliseconds).
func (g *recordGen) next(at time.Time) (key, value []byte, good bool) {
	g.n++
	user := g.rng.IntN(50000)
	key = fmt.Appendf(nil, "user-%d", user)
	if g.badPer > 0 && g.n%g.badPer == 0 {
		return key, []byte(genBad[g.rng.IntN(len(genBad))]), false
	}
	ev := genEvents[g.rng.IntN(len(genEvents))]
	var b strings.Builder
	b.Grow(600)
	fmt.Fprintf(&b, `{"type":%q,"id":"evt-%d-%016x","userId":"user-%d"`, ev.typ, g.n, g.rng.Uint64(), user)
	if g.accounts != nil {
		fmt.Fprintf(&b, `,"accountId":"acct-%04d"`, g.accounts.draw(g.rng))
	}
	if g.rng.IntN(4) == 0 {
		fmt.Fprintf(&b, `,"anonymousId":"%08x-%04x-4%03x-8%03x-%012x"`, g.rng.Uint32(), g.rng.IntN(1<<16), g.rng.IntN(1<<12), g.rng.IntN(1<<12), g.rng.Uint64()&(1<<48-1))
	}
	if g.rng.IntN(2) == 0 {
		fmt.Fprintf(&b, `,%q:%d`, ev.idField, g.rng.IntN(100000))
	} else {
		fmt.Fprintf(&b, `,%q:"%s-%d"`, ev.idField, strings.ToLower(ev.idField[:3]), g.rng.IntN(100000))
	}
	if ev.meta != "" {
		fmt.Fprintf(&b, `,"metadata":`+ev.meta, g.rng.IntN(12))
	}
	fmt.Fprintf(&b, `,"timestamp":%d,"companyId":"company-%d","locale":"en-GB","appVersion":"4.%d.%d"`,
		at.UnixMilli(), g.rng.IntN(3000), g.rng.IntN(20), g.rng.IntN(50))
	// Page context of varying size brings records to 200–600 bytes.
	fmt.Fprintf(&b, `,"pageUrl":"https://app.example.com/%s","userAgent":"%s"`,
		strings.Repeat("workspace/projects/", 1+g.rng.IntN(6)),
		userAgents[g.rng.IntN(len(userAgents))][:40+g.rng.IntN(60)])
	if g.rng.IntN(3) == 0 {
		fmt.Fprintf(&b, `,"plan":"%s","seats":%d`, []string{"free", "team", "enterprise"}[g.rng.IntN(3)], g.rng.IntN(500))
	}
	b.WriteByte('}')
	return key, []byte(b.String()), true
}

var userAgents = []string{
	"Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Safari/605.1.15",
	"Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36 Edg/131.0",
	"Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0.0.0 Safari/537.36 OPR/114.0.0.0",
}
