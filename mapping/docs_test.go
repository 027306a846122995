package mapping

import (
	"bufio"
	"bytes"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// contractDoc is the user-facing statement of the contract.
var contractDoc = filepath.Join("..", "docs", "contract.md")

// markdownTable returns the body rows of the table whose header row is
// header, each row as its trimmed cells.
func markdownTable(t *testing.T, doc []byte, header string) [][]string {
	t.Helper()
	var rows [][]string
	in := false
	sc := bufio.NewScanner(bytes.NewReader(doc))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == header:
			if in || rows != nil {
				t.Fatalf("%s: two tables headed %s", contractDoc, header)
			}
			in = true
			sc.Scan() // the |---| line
		case in && strings.HasPrefix(line, "|"):
			var cells []string
			for _, c := range strings.Split(strings.Trim(line, "|"), "|") {
				cells = append(cells, strings.TrimSpace(c))
			}
			rows = append(rows, cells)
		case in:
			in = false
		}
	}
	if rows == nil {
		t.Fatalf("%s: no table headed %s", contractDoc, header)
	}
	return rows
}

// TestDocsEventTable holds docs/contract.md and the catalogue to the same
// table, both ways: every catalogue event is documented exactly, and every
// documented event is in the catalogue.
func TestDocsEventTable(t *testing.T) {
	doc, err := os.ReadFile(contractDoc)
	if err != nil {
		t.Fatal(err)
	}
	rows := markdownTable(t, doc, "| raw `type` | Segment `event` | required properties |")
	documented := map[string][]string{}
	for _, cells := range rows {
		if len(cells) != 3 {
			t.Errorf("%s: event row %q has %d cells, want 3", contractDoc, cells, len(cells))
			continue
		}
		documented[cells[0]] = cells
		ev := lookup([]byte(cells[0]))
		if ev == nil || ev.Type != cells[0] {
			t.Errorf("%s documents %q, which is not in the catalogue", contractDoc, cells[0])
		}
	}
	for i, ev := range catalogue {
		want := []string{ev.Type, "`" + ev.Name + "`", ev.requirements()}
		got, ok := documented[ev.Type]
		switch {
		case !ok:
			t.Errorf("%s lacks the row for %s:\n| %s |", contractDoc, ev.Type, strings.Join(want, " | "))
		case strings.Join(got, "|") != strings.Join(want, "|"):
			t.Errorf("%s, row for %s:\n got | %s |\nwant | %s |", contractDoc, ev.Type, strings.Join(got, " | "), strings.Join(want, " | "))
		case i < len(rows) && rows[i][0] != ev.Type:
			t.Errorf("%s: row %d is %s, want %s (the catalogue's order)", contractDoc, i+1, rows[i][0], ev.Type)
		}
	}
	if n := strings.Count(string(doc), "one of the 14"); n == 0 || len(catalogue) != 14 {
		t.Errorf("%s says there are 14 events (%d times); the catalogue has %d", contractDoc, n, len(catalogue))
	}
}

// TestDocsCodeTable holds the documented error codes to Codes(), both ways
// and in order.
func TestDocsCodeTable(t *testing.T) {
	doc, err := os.ReadFile(contractDoc)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, cells := range markdownTable(t, doc, "| code | when |") {
		got = append(got, strings.Trim(cells[0], "`"))
	}
	var want []string
	for _, c := range Codes() {
		want = append(want, string(c))
	}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("%s documents the codes\n%v\nCodes() returns\n%v", contractDoc, got, want)
	}
}

// TestDocsExample keeps the documented example call a real one: the golden
// tour_start call.
func TestDocsExample(t *testing.T) {
	doc, err := os.ReadFile(contractDoc)
	if err != nil {
		t.Fatal(err)
	}
	golden, err := os.ReadFile(filepath.Join("testdata", "golden", "tour_start.json"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(doc, append(append([]byte("```json\n"), golden...), "```"...)) {
		t.Errorf("%s: the example call is not testdata/golden/tour_start.json:\n%s", contractDoc, golden)
	}
}

// TestPure holds the package comment's promise: no Kafka, network, file or
// clock access in the package's own code. (analytics-go, needed for
// Call.Track, brings net/http along but is only used for its types.)
func TestPure(t *testing.T) {
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(token.NewFileSet(), name, nil, parser.ImportsOnly)
		if err != nil {
			t.Fatal(err)
		}
		for _, imp := range f.Imports {
			path, _ := strconv.Unquote(imp.Path.Value)
			if strings.Contains(path, "kafka") || strings.Contains(path, "franz") || strings.HasPrefix(path, "net") ||
				path == "os" || path == "io/fs" || path == "math/rand" || path == "crypto/rand" {
				t.Errorf("%s imports %s; the mapping is pure", name, path)
			}
		}
		src, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Contains(src, []byte("time.Now(")) || bytes.Contains(src, []byte("time.Since(")) {
			t.Errorf("%s reads the clock; timestamps come from the record or Kafka", name)
		}
	}
}

// TestDocsAccounts holds the accounts sections of docs/contract.md to the
// code: the accountId row, the accounts-mode example (the golden call),
// the messageId names and missing_account's place in the precedence list.
func TestDocsAccounts(t *testing.T) {
	doc, err := os.ReadFile(contractDoc)
	if err != nil {
		t.Fatal(err)
	}
	if row := "\n| `accountId` (`account_id`) | string, or integer (read as its decimal digits) | in accounts mode |"; !bytes.Contains(doc, []byte(row)) {
		t.Errorf("%s lacks the accounts field row%s", contractDoc, row)
	}
	if roleOf([]byte("account_id")) != roleAccountID {
		t.Errorf("account_id is not an envelope field in the code")
	}
	golden, err := os.ReadFile(filepath.Join("testdata", "golden-accounts", "tour_start.json"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(doc, append(append([]byte("```json\n"), golden...), "```"...)) {
		t.Errorf("%s: the accounts-mode example is not testdata/golden-accounts/tour_start.json:\n%s", contractDoc, golden)
	}
	// The example's stated name is the one the code hashes.
	c, err := MapAccount(goldenRecord(1, accountValue(1, readRecords(t)[1])))
	if err != nil {
		t.Fatal(err)
	}
	const name = "account:1001/id:int_01JDX3K9B1C3D5E7F9G1H3J5K7"
	if got := newSHA1([]byte(name)); c.MessageID != got.String() || !bytes.Contains(doc, []byte("`"+name+"`")) {
		t.Errorf("%s: the example's messageId %s is not documented as the UUID of `%s` (%s)", contractDoc, c.MessageID, name, got)
	}
	for _, s := range []string{"`account:<accountId>/id:<id>`", "`kafka:<topic>/<partition>/<offset>`"} {
		if !bytes.Contains(doc, []byte(s)) {
			t.Errorf("%s does not give the messageId name %s", contractDoc, s)
		}
	}
	// missing_account comes right after missing_identity.
	i := bytes.Index(doc, []byte("then `missing_identity`;\n"))
	j := bytes.Index(doc, []byte("`missing_account` (accounts mode)"))
	if i < 0 || j < 0 || bytes.Count(doc[i:j], []byte("\n")) != 1 {
		t.Errorf("%s: the precedence list must put `missing_account` right after `missing_identity`", contractDoc)
	}
}
