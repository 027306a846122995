package mapping

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// differentialPath holds one digest per generated record: what the mapping
// made of it in both modes (the call, its every field, or the error). It
// was written by the mapping before its fast paths, so TestDifferential
// holds the fast paths to that output byte for byte; -update rewrites it.
var differentialPath = filepath.Join("testdata", "differential.txt")

// differentialRecords is how many records TestDifferential generates.
const differentialRecords = 4000

// TestDifferential maps a fixed, generated corpus of records (every event,
// names in every spelling, escapes, whitespace, repeated fields, every
// timestamp form, accounts, broken records) and compares a digest of each
// outcome with the one the reference mapping gave.
func TestDifferential(t *testing.T) {
	gen := newDiffGen(20261201)
	var got []string
	var inputs [][]byte
	for range differentialRecords {
		r := gen.record()
		inputs = append(inputs, r.Value)
		got = append(got, outcomeDigest(r))
	}
	if *update {
		if err := os.WriteFile(differentialPath, []byte(strings.Join(got, "\n")+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	f, err := os.Open(differentialPath)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	defer f.Close()
	var want []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		want = append(want, sc.Text())
	}
	if len(want) != len(got) {
		t.Fatalf("%s has %d digests, the corpus %d records", differentialPath, len(want), len(got))
	}
	failed := 0
	for i := range got {
		if got[i] != want[i] {
			failed++
			if failed <= 5 {
				r := diffRecord(i, inputs[i])
				c, err := Map(r)
				t.Errorf("record %d differs from the reference mapping: %s\n got %s, %v", i, inputs[i], c.JSON, err)
			}
		}
	}
	if failed > 0 {
		t.Errorf("%d of %d records differ", failed, len(got))
	}
}

// outcomeDigest describes everything Map and MapAccount return for r.
func outcomeDigest(r Record) string {
	h := sha256.New()
	for _, mapFn := range []func(Record) (Call, error){Map, MapAccount} {
		c, err := mapFn(r)
		if err != nil {
			e := err.(*Error)
			fmt.Fprintf(h, "error %q %q %q\n", e.Code, e.Field, e.Msg)
			continue
		}
		fmt.Fprintf(h, "call %q %q %q %q %q %s\n%s\n", c.MessageID, c.Event, c.UserID, c.AnonymousID, c.AccountID,
			c.Timestamp.Format(time.RFC3339Nano)+c.Timestamp.Location().String(), c.JSON)
		for _, p := range c.Properties {
			fmt.Fprintf(h, "%q=%s\n", p.Name, p.Value)
		}
	}
	return hex.EncodeToString(h.Sum(nil)[:8])
}

func diffRecord(i int, value []byte) Record {
	return Record{Topic: "produktly.interactions", Partition: i % 7, Offset: int64(i) * 977, Time: time.UnixMilli(1795950000000 + int64(i)), Value: value}
}

// diffGen generates the corpus: mostly valid records of every shape, a
// share of records that break one rule, and some that are not JSON.
type diffGen struct {
	rng *rand.Rand
	n   int
}

func newDiffGen(seed uint64) *diffGen {
	return &diffGen{rng: rand.New(rand.NewPCG(seed, seed^0x5851f42d4c957f2d))}
}

func (g *diffGen) pick(xs ...string) string { return xs[g.rng.IntN(len(xs))] }

// odd is usual, and one of the odd values one time in twelve.
func (g *diffGen) odd(usual string, odd ...string) string {
	if g.rng.IntN(12) == 0 {
		return g.pick(odd...)
	}
	return usual
}

// spell writes a snake_case name in one of the spellings records use.
func (g *diffGen) spell(snake string) string {
	words := strings.Split(snake, "_")
	switch g.rng.IntN(12) {
	case 0, 1, 2, 3: // camelCase
		for i := 1; i < len(words); i++ {
			words[i] = strings.ToUpper(words[i][:1]) + words[i][1:]
		}
		return strings.Join(words, "")
	case 4: // PascalCase
		for i := range words {
			words[i] = strings.ToUpper(words[i][:1]) + words[i][1:]
		}
		return strings.Join(words, "")
	case 5: // camelCase with an upper-case Id
		s := words[0]
		for i := 1; i < len(words); i++ {
			w := strings.ToUpper(words[i][:1]) + words[i][1:]
			if words[i] == "id" {
				w = "ID"
			}
			s += w
		}
		return s
	case 6:
		return strings.Join(words, "-")
	case 7:
		return strings.Join(words, " ")
	case 8:
		return strings.ToUpper(snake)
	default:
		return snake
	}
}

// key quotes a field name, now and then with escapes.
func (g *diffGen) key(name string) string {
	if g.rng.IntN(25) == 0 && name != "" {
		i := g.rng.IntN(len(name))
		return `"` + name[:i] + fmt.Sprintf(`\u%04x`, name[i]) + name[i+1:] + `"`
	}
	return strconv.Quote(name)
}

// ws is insignificant whitespace, rarely.
func (g *diffGen) ws() string {
	if g.rng.IntN(30) == 0 {
		return g.pick(" ", "\n", "\t ", "\r\n  ")
	}
	return ""
}

func (g *diffGen) str(prefix string) string {
	s := prefix + strconv.Itoa(g.rng.IntN(100000))
	switch g.rng.IntN(40) {
	case 0:
		s += `\"q\"`
	case 1:
		s += `\u00e9\n`
	case 2:
		s += "é😀"
	case 3:
		s += `\ud83d\ude00`
	case 4:
		s += `\ud800`
	case 5:
		s += `\/\b\f\r\t\\`
	}
	return `"` + s + `"`
}

func (g *diffGen) idValue(prefix string) string {
	switch g.rng.IntN(20) {
	case 0:
		return "-" + strconv.Itoa(g.rng.IntN(1000))
	case 1:
		return "123456789012345678901234567890"
	case 2:
		return g.pick(`1.5`, `1e3`, `true`, `[1]`, `{"a":1}`, `null`, `""`, `-0`)
	}
	if g.rng.IntN(2) == 0 {
		return strconv.Itoa(g.rng.IntN(100000))
	}
	return g.str(prefix)
}

func (g *diffGen) timestamp() string {
	switch g.rng.IntN(14) {
	case 0, 1, 2, 3:
		return strconv.FormatInt(1795950000000+g.rng.Int64N(1e10), 10)
	case 4:
		return `"2026-11-29T10:00:07.890Z"`
	case 5:
		return fmt.Sprintf(`"2026-%02d-%02dT%02d:%02d:%02d%sZ"`, 1+g.rng.IntN(12), 1+g.rng.IntN(31), g.rng.IntN(24), g.rng.IntN(60), g.rng.IntN(61),
			g.pick("", ".1", ".123", ".123456", ".1234567891234", ".999999999"))
	case 6:
		return fmt.Sprintf(`"%04d-%02d-%02dt%02d:%02d:%02d%s"`, g.rng.IntN(10000), g.rng.IntN(14), g.rng.IntN(33), g.rng.IntN(26), g.rng.IntN(61), g.rng.IntN(61),
			g.pick("z", "Z", "+01:00", "-05:30", "+23:59", "-23:59", "+24:00", "+01:60", "+0100", ""))
	case 7:
		return g.pick(`"0001-01-01T00:00:00Z"`, `"0000-12-31T23:00:00-01:00"`, `"9999-12-31T23:59:59.999Z"`, `"9999-12-31T23:59:59+23:59"`,
			`"2024-02-29T12:00:00Z"`, `"2023-02-29T12:00:00Z"`, `"2026-04-31T00:00:00Z"`, `"2026-11-29 10:00:00Z"`, `"2026-11-29T10:00:00,5Z"`,
			`"2026-11-29T10:00:60Z"`, `"yesterday"`, `""`, `null`)
	case 8:
		return g.pick(`-1`, `0`, `1.5`, `1e12`, `253402300799999`, `253402300800000`, `-62135596800000`, `-62135596800001`, `99999999999999999999`, `true`, `{}`)
	case 9:
		return `"` + time.UnixMilli(1795950000000+g.rng.Int64N(1e11)).In(time.FixedZone("", (g.rng.IntN(49)-24)*1800)).Format(time.RFC3339Nano) + `"`
	}
	return ""
}

func (g *diffGen) extra() (string, string) {
	name := g.pick("companyId", "locale", "pageUrl", "userAgent", "appVersion", "plan", "seats", "url", "referrer",
		"HTTPServer", "tourIDs", "step2Index", "__typename", "ÀÉÎ", "àéî", "Σigma", "naïveName", "x", "a-b c", "", "k\\\"q", "_leading", "trailing_",
		"ABC", "aBC", "ABCdef", "utm_source", "utmSource", "Metadata2")
	var v string
	switch g.rng.IntN(10) {
	case 0:
		v = strconv.Itoa(g.rng.IntN(1 << 20))
	case 1:
		v = g.pick(`true`, `false`, `null`, `""`, `-0.5e-3`, `0`)
	case 2:
		v = `{"a":1,"b":[1,2,{"c":"d"}],"e":null}`
	case 3:
		v = `[ 1 , 2 , { "x" : "y" } ]`
	case 4:
		v = `{ "nested" : { "k" : "v" } , "n" : 1 }`
	default:
		v = g.str("v-")
	}
	return name, v
}

// record returns the next generated record.
func (g *diffGen) record() Record {
	g.n++
	i := g.n
	if g.rng.IntN(40) == 0 { // not a record at all, or broken JSON
		good := g.valid()
		switch g.rng.IntN(6) {
		case 0:
			return diffRecord(i, []byte(good[:g.rng.IntN(len(good))]))
		case 1:
			b := []byte(good)
			b[g.rng.IntN(len(b))] = byte(g.rng.IntN(256))
			return diffRecord(i, b)
		case 2:
			return diffRecord(i, []byte(g.pick(`[]`, `null`, `1`, `"s"`, ``, `  `, `{}`, `{"type":"tour_start"} x`, "\xef\xbb\xbf{}", `{"a":`+strings.Repeat("[", 120)+strings.Repeat("]", 120)+`}`)))
		case 3:
			return diffRecord(i, []byte(strings.Replace(good, `"`, `'`, 1)))
		default:
			return diffRecord(i, []byte(" \n"+good+"\t"))
		}
	}
	return diffRecord(i, []byte(g.valid()))
}

func (g *diffGen) valid() string {
	ev := catalogue[g.rng.IntN(len(catalogue))]
	type member struct{ k, v string }
	var ms []member
	add := func(snake, v string) {
		if v != "" {
			ms = append(ms, member{g.key(g.spell(snake)), v})
		}
	}
	typ := ev.Type
	switch g.rng.IntN(8) {
	case 0:
		typ = ev.Name
	case 1:
		typ = strings.ReplaceAll(strings.ToUpper(ev.Type), "_", "-")
	case 2:
		typ = g.spell(ev.Type)
	case 3:
		if g.rng.IntN(4) == 0 {
			typ = g.pick("tour_teleport", "", "tour__start", "tour.start", "TOUR START", "Tour Start ")
		}
	}
	if g.rng.IntN(60) != 0 {
		add("type", strconv.Quote(typ))
	}
	if g.rng.IntN(5) != 0 {
		add("id", g.odd(g.pick(g.str("int_"), g.str("evt-")), `""`, `null`, `5`))
	}
	hasUser := g.rng.IntN(6) != 0
	if hasUser {
		add("user_id", g.odd(g.str("user-"), `""`, `null`, `7`))
	}
	if g.rng.IntN(3) == 0 || !hasUser {
		add("anonymous_id", g.pick(`"6f1c2a9e-3b7d-4e15-9c0a-2d8f4b6e1a37"`, g.str("anon-"), g.str("anon-"), `null`))
	}
	if g.rng.IntN(4) != 0 {
		add("account_id", g.odd(g.pick(g.str("acct-"), strconv.Itoa(g.rng.IntN(5000))), `""`, `null`, `1.5`, `-7`, `true`))
	}
	add("timestamp", g.timestamp())
	if g.rng.IntN(30) != 0 {
		add(ev.ID, g.idValue(ev.ID[:3]+"-"))
	}
	if len(ev.Metadata) > 0 || g.rng.IntN(6) == 0 {
		var md []string
		for _, m := range ev.Metadata {
			if g.rng.IntN(30) == 0 {
				continue
			}
			var v string
			switch m.Rule {
			case ruleNonNegativeInteger:
				v = g.pick(strconv.Itoa(g.rng.IntN(12)), strconv.Itoa(g.rng.IntN(12)), `-1`, `1.0`, `"2"`, `-0`)
			case ruleOneOf:
				v = g.pick(`"next"`, `"previous"`, `"next"`, `"Next"`, `"n\u0065xt"`, `1`)
			default:
				v = g.pick(g.str("step-"), strconv.Itoa(g.rng.IntN(50)), `1.5`, `null`)
			}
			md = append(md, g.key(g.spell(strings.ReplaceAll(m.snake, "_", "_")))+":"+g.ws()+v)
		}
		md = append(md, `"stepTitle":"Create your first report"`)
		if g.rng.IntN(8) == 0 {
			md = append(md, `"elementSelector" : "#new-report"`)
		}
		g.rng.Shuffle(len(md), func(i, j int) { md[i], md[j] = md[j], md[i] })
		add("metadata", g.pick("{"+strings.Join(md, ",")+"}", "{"+strings.Join(md, ",")+"}", "{"+strings.Join(md, ",")+"}", `[]`, `"m"`))
	}
	seen := map[string]bool{}
	for range g.rng.IntN(7) {
		name, v := g.extra()
		if !seen[string(appendSnake(nil, []byte(name)))] {
			seen[string(appendSnake(nil, []byte(name)))] = true
			ms = append(ms, member{g.key(name), v})
		}
	}
	if g.rng.IntN(3) == 0 {
		ms = append(ms, member{`"userAgent"`, `"Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5"`})
	}
	g.rng.Shuffle(len(ms), func(i, j int) { ms[i], ms[j] = ms[j], ms[i] })
	// Repeated fields: the same value or another, under another spelling.
	if g.rng.IntN(8) == 0 && len(ms) > 0 {
		m := ms[g.rng.IntN(len(ms))]
		v := m.v
		if g.rng.IntN(3) == 0 {
			v = g.pick(`1`, `"x"`, `null`, `""`, ` `+v)
		}
		k := m.k
		if g.rng.IntN(2) == 0 {
			if u, err := strconv.Unquote(k); err == nil {
				k = strconv.Quote(strings.ToUpper(u[:min(1, len(u))]) + u[min(1, len(u)):])
			}
		}
		ms = append(ms, member{k, v})
	}
	if g.rng.IntN(200) == 0 { // many fields
		for j := range 40 {
			ms = append(ms, member{strconv.Quote("extraField" + strconv.Itoa(j%35)), strconv.Itoa(j % 3)})
		}
	}
	if g.rng.IntN(300) == 0 { // a call over Segment's limit
		ms = append(ms, member{`"big"`, `"` + strings.Repeat("x", 32000) + `"`})
	}
	var b bytes.Buffer
	b.WriteString("{" + g.ws())
	for j, m := range ms {
		if j > 0 {
			b.WriteString("," + g.ws())
		}
		b.WriteString(m.k + g.ws() + ":" + g.ws() + m.v + g.ws())
	}
	b.WriteString("}")
	return b.String()
}
