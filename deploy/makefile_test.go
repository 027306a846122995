package deploy_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// needsBroker are the packages `make unit` leaves out: their tests start
// or reach a Kafka cluster of their own (make test runs them).
var needsBroker = []string{"integration"}

// TestMakeUnitCoversEveryPackage checks that the Makefile's unit target
// tests every package that has tests, but for needsBroker: a package
// added later and not listed there would go untested by `make unit`.
func TestMakeUnitCoversEveryPackage(t *testing.T) {
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("no go command")
	}
	patterns, err := unitPatterns(filepath.Join(repoRoot, "Makefile"))
	if err != nil {
		t.Fatal(err)
	}
	dirs := strings.Fields(goList(t, `{{if or .TestGoFiles .XTestGoFiles}}{{.Dir}}{{end}}`))
	if len(dirs) < 5 {
		t.Fatalf("go list found %d packages with tests: %q", len(dirs), dirs)
	}
	for _, dir := range dirs {
		rel, err := filepath.Rel(repoRoot, dir)
		if err != nil {
			t.Fatal(err)
		}
		rel = filepath.ToSlash(rel)
		if slices.Contains(needsBroker, strings.SplitN(rel, "/", 2)[0]) {
			continue
		}
		if !slices.ContainsFunc(patterns, func(p string) bool { return covers(p, rel) }) {
			t.Errorf("make unit (%s) does not test ./%s", strings.Join(patterns, " "), rel)
		}
	}
}

// unitPatterns returns the package patterns of the go test command of
// the Makefile's unit target.
func unitPatterns(makefile string) ([]string, error) {
	b, err := os.ReadFile(makefile)
	if err != nil {
		return nil, err
	}
	lines := strings.Split(string(b), "\n")
	for i, l := range lines {
		if l != "unit:" {
			continue
		}
		var pats []string
		for _, cmd := range lines[i+1:] {
			if !strings.HasPrefix(cmd, "\t") {
				break
			}
			for _, f := range strings.Fields(cmd) {
				if strings.HasPrefix(f, "./") {
					pats = append(pats, f)
				}
			}
		}
		return pats, nil
	}
	return nil, os.ErrNotExist
}

// covers reports whether the go package pattern p (./dir or ./dir/...)
// matches the package in the directory rel.
func covers(p, rel string) bool {
	p = strings.TrimPrefix(p, "./")
	if p == "..." {
		return true
	}
	if dir, ok := strings.CutSuffix(p, "/..."); ok {
		return rel == dir || strings.HasPrefix(rel, dir+"/")
	}
	return rel == p
}
