package deploy_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os/exec"
	"strings"
	"testing"
)

// TestGoModMarksDirectImports checks go.mod's "// indirect" marks against
// the code, as go mod tidy sets them: a module that a package of this
// repository (or one of its tests) imports is a direct requirement, and
// every other module is marked indirect.
func TestGoModMarksDirectImports(t *testing.T) {
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("no go command")
	}
	indirect, err := readRequires(repoRoot)
	if err != nil {
		t.Fatal(err)
	}
	out := goList(t, `{{join .Imports "\n"}}{{"\n"}}{{join .TestImports "\n"}}{{"\n"}}{{join .XTestImports "\n"}}`)
	modules := make([]string, 0, len(indirect))
	for m := range indirect {
		modules = append(modules, m)
	}
	used := map[string]bool{}
	for _, imp := range strings.Fields(out) {
		if m := moduleOf(imp, modules); m != "" {
			used[m] = true
		}
	}
	for _, m := range modules {
		switch {
		case used[m] && indirect[m]:
			t.Errorf("go.mod marks %s indirect, but the code imports it", m)
		case !used[m] && !indirect[m]:
			t.Errorf("go.mod requires %s directly, but no package imports it", m)
		}
	}
}

// goList runs `go list -f format ./...` in the repository and returns its
// output, failing t when go list fails.
func goList(t *testing.T, format string) string {
	t.Helper()
	cmd := exec.Command("go", "list", "-f", format, "./...")
	cmd.Dir = repoRoot
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, stderr.String())
	}
	return string(out)
}

// moduleOf returns the module of modules that holds the package imp: the
// longest module path that is imp or a prefix of it ending at a slash, or
// "" for the standard library and this module's own packages.
func moduleOf(imp string, modules []string) string {
	best := ""
	for _, m := range modules {
		if (imp == m || strings.HasPrefix(imp, m+"/")) && len(m) > len(best) {
			best = m
		}
	}
	return best
}

// readRequires returns go.mod's required modules, each with whether it is
// marked "// indirect", as go mod edit -json reads them.
func readRequires(dir string) (map[string]bool, error) {
	cmd := exec.Command("go", "mod", "edit", "-json")
	cmd.Dir = dir
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("go mod edit -json: %w", err)
	}
	var mod struct {
		Require []struct {
			Path     string
			Indirect bool
		}
	}
	if err := json.Unmarshal(out, &mod); err != nil {
		return nil, err
	}
	req := make(map[string]bool, len(mod.Require))
	for _, r := range mod.Require {
		req[r.Path] = r.Indirect
	}
	return req, nil
}
