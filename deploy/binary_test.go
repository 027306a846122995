package deploy_test

import (
	"bytes"
	"context"
	"debug/elf"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"sort"
	"strings"
	"testing"
	"time"
)

// The binary under test, built once by TestMain with the Dockerfile's flags.
var (
	binPath  string
	binBuild error // why there is no binary
)

// The version the test build stamps in place of the Dockerfile's ${VERSION}.
const testVersion = "test"

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "produktly-segment-deploy-test")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binPath = filepath.Join(dir, "produktly-segment")
	binBuild = buildLikeDockerfile(binPath)
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// needBinary stops a test that needs the binary when it could not be built.
func needBinary(t *testing.T) string {
	t.Helper()
	if binBuild != nil {
		t.Fatalf("building the binary with the Dockerfile's flags: %v", binBuild)
	}
	return binPath
}

// buildLikeDockerfile runs the Dockerfile's `go build` line from the
// repository root with VERSION=test and the host's GOOS/GOARCH, writing the
// binary to out.
func buildLikeDockerfile(out string) error {
	df, err := os.ReadFile(filepath.Join(repoRoot, "Dockerfile"))
	if err != nil {
		return err
	}
	b, err := parseDockerBuild(string(df))
	if err != nil {
		return err
	}
	args := []string{"build"}
	for i := 0; i < len(b.args); i++ {
		if b.args[i] == "-o" && i+1 < len(b.args) {
			i++
			continue
		}
		args = append(args, b.args[i])
	}
	// The package comes last; the output goes before it.
	args = append(args[:len(args)-1], "-o", out, args[len(args)-1])
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = repoRoot
	cmd.Env = append(os.Environ(), b.env...)
	if outp, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go %s: %v\n%s", strings.Join(args, " "), err, outp)
	}
	return nil
}

// dockerBuild is the Dockerfile's `go build` step, variables substituted.
type dockerBuild struct {
	env  []string // NAME=VALUE set on the command
	args []string // after `go build`
}

var dockerVar = regexp.MustCompile(`\$\{?(VERSION|TARGETOS|TARGETARCH)\}?`)

// parseDockerBuild finds the one RUN instruction that runs `go build` and
// splits it into the environment it sets and the arguments it passes.
func parseDockerBuild(dockerfile string) (dockerBuild, error) {
	var found []string
	for _, ins := range dockerInstructions(dockerfile) {
		if strings.HasPrefix(ins, "RUN ") && strings.Contains(ins, "go build") {
			found = append(found, ins)
		}
	}
	if len(found) != 1 {
		return dockerBuild{}, fmt.Errorf("Dockerfile: want exactly one RUN with `go build`, found %d", len(found))
	}
	subst := func(s string) string {
		return dockerVar.ReplaceAllStringFunc(s, func(v string) string {
			switch strings.Trim(v, "${}") {
			case "VERSION":
				return testVersion
			case "TARGETOS":
				return runtime.GOOS
			default:
				return runtime.GOARCH
			}
		})
	}
	words, err := shellWords(strings.TrimPrefix(found[0], "RUN "))
	if err != nil {
		return dockerBuild{}, fmt.Errorf("Dockerfile: %v", err)
	}
	var b dockerBuild
	i := 0
	for ; i < len(words) && strings.HasPrefix(words[i], "--"); i++ { // RUN --mount=...
	}
	for ; i < len(words) && words[i] != "go"; i++ {
		if !regexp.MustCompile(`^[A-Z_][A-Z0-9_]*=`).MatchString(words[i]) {
			return dockerBuild{}, fmt.Errorf("Dockerfile: unexpected %q before `go build`", words[i])
		}
		b.env = append(b.env, subst(words[i]))
	}
	if i+1 >= len(words) || words[i+1] != "build" {
		return dockerBuild{}, errors.New("Dockerfile: no `go build` command")
	}
	for _, w := range words[i+2:] {
		if w == "&&" || w == ";" {
			return dockerBuild{}, errors.New("Dockerfile: keep `go build` alone in its RUN instruction")
		}
		b.args = append(b.args, subst(w))
	}
	if len(b.args) == 0 || !strings.HasPrefix(b.args[len(b.args)-1], "./") {
		return dockerBuild{}, errors.New("Dockerfile: `go build` must end with the package path")
	}
	return b, nil
}

// dockerInstructions joins continuation lines and drops comments.
func dockerInstructions(dockerfile string) []string {
	var out []string
	var cur strings.Builder
	for _, line := range strings.Split(dockerfile, "\n") {
		trimmed := strings.TrimSpace(line)
		if strings.HasPrefix(trimmed, "#") || (trimmed == "" && cur.Len() == 0) {
			continue
		}
		if strings.HasSuffix(trimmed, "\\") {
			cur.WriteString(strings.TrimSuffix(trimmed, "\\") + " ")
			continue
		}
		cur.WriteString(trimmed)
		if s := strings.TrimSpace(cur.String()); s != "" {
			out = append(out, s)
		}
		cur.Reset()
	}
	return out
}

// shellWords splits s like a POSIX shell does for simple words and quotes.
func shellWords(s string) ([]string, error) {
	var words []string
	var w strings.Builder
	inWord := false
	var quote rune
	for _, r := range s {
		switch {
		case quote != 0 && r == quote:
			quote = 0
		case quote != 0:
			w.WriteRune(r)
		case r == '"' || r == '\'':
			quote, inWord = r, true
		case r == ' ' || r == '\t':
			if inWord {
				words = append(words, w.String())
				w.Reset()
				inWord = false
			}
		default:
			w.WriteRune(r)
			inWord = true
		}
	}
	if quote != 0 {
		return nil, fmt.Errorf("unterminated quote in %q", s)
	}
	if inWord {
		words = append(words, w.String())
	}
	return words, nil
}

// TestBinaryStatic proves the Dockerfile's flags give a binary that runs on
// distroless/static (or scratch): no ELF interpreter, no shared libraries,
// stripped, and stamped with the version.
func TestBinaryStatic(t *testing.T) {
	bin := needBinary(t)
	if runtime.GOOS != "linux" {
		t.Skipf("the image is linux; this host builds %s binaries", runtime.GOOS)
	}
	f, err := elf.Open(bin)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Error("binary has a PT_INTERP program header: it is dynamically linked (is CGO_ENABLED=0 set?)")
		}
		if p.Type == elf.PT_DYNAMIC {
			t.Error("binary has a PT_DYNAMIC segment: it is dynamically linked")
		}
	}
	libs, err := f.ImportedLibraries()
	if err != nil {
		t.Fatal(err)
	}
	if len(libs) > 0 {
		t.Errorf("binary needs shared libraries (DT_NEEDED): %v", libs)
	}
	if f.Section(".symtab") != nil {
		t.Error("binary has a symbol table: -ldflags -s did not take effect")
	}

	out, err := exec.Command(bin, "version").Output()
	if err != nil {
		t.Fatalf("%s version: %v", bin, err)
	}
	if got, want := string(out), "produktly-segment "+testVersion+"\n"; got != want {
		t.Errorf("version printed %q, want %q (is -X main.version=${VERSION} in the ldflags?)", got, want)
	}
}

// setting is one line of `produktly-segment run --help`.
type setting struct {
	env      string
	def      string // the default, when the help names one
	required bool
	secret   bool
	// mode: one of the settings of which exactly one must be set (the
	// mode: SEGMENT_WRITE_KEY, INTEGRATIONS_TOPIC, INTEGRATIONS_FILE); the
	// help says so with modeRule.
	mode bool
}

// modeRule is how run --help states the mode rule on each of its settings.
const modeRule = "exactly one of SEGMENT_WRITE_KEY, INTEGRATIONS_TOPIC, INTEGRATIONS_FILE"

// binaryFacts is what the binary says about itself.
type binaryFacts struct {
	settings map[string]setting // by environment variable
	metrics  map[string]bool    // metric names it exposes or registers
}

func (f *binaryFacts) names() []string {
	var n []string
	for k := range f.settings {
		n = append(n, k)
	}
	sort.Strings(n)
	return n
}

// helpLine matches "  --kafka-brokers  KAFKA_BROKERS  help text (required)".
var helpLine = regexp.MustCompile(`^\s+--([a-z0-9-]+)\s+([A-Z][A-Z0-9_]*)(?:\s+(.*))?$`)

// helpMarks is the closing parenthesis of a help line when it carries
// markers: "required", "secret", "default X", comma-separated. Anything
// else in parentheses, such as "(default: the system pool)", is help text.
var helpMarks = regexp.MustCompile(`\(((?:required|secret|default [^,()]+)(?:, (?:required|secret|default [^,()]+))*)\)\s*$`)

// parseHelp reads the settings from `run --help` output.
func parseHelp(help string) (map[string]setting, error) {
	out := map[string]setting{}
	for _, line := range strings.Split(help, "\n") {
		m := helpLine.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		s := setting{env: m[2]}
		if want := strings.ToLower(strings.ReplaceAll(s.env, "_", "-")); m[1] != want {
			return nil, fmt.Errorf("help line %q: flag --%s does not match %s", line, m[1], s.env)
		}
		s.mode = strings.Contains(m[3], modeRule)
		if mm := helpMarks.FindStringSubmatch(m[3]); mm != nil {
			for _, mark := range strings.Split(mm[1], ", ") {
				switch {
				case mark == "required":
					s.required = true
				case mark == "secret":
					s.secret = true
				default:
					s.def = strings.TrimPrefix(mark, "default ")
				}
			}
		}
		out[s.env] = s
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no settings found in run --help output:\n%s", help)
	}
	return out, nil
}

// runHelp runs `produktly-segment run --help` with an empty environment.
func runHelp(bin string) (string, error) {
	cmd := exec.Command(bin, "run", "--help")
	cmd.Env = []string{}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("run --help: %v\n%s", err, stderr.String())
	}
	return stdout.String(), nil
}
