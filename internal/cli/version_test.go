package cli

import (
	"flag"
	"io"
	"runtime"
	"strings"
	"testing"

	"github.com/flotilla-kv/flotilla/internal/buildinfo"
)

func TestVersionNamesProgramModuleAndToolchain(t *testing.T) {
	v := Version("shardnode")
	b := buildinfo.Read()
	for _, want := range []string{"shardnode ", b.Version, b.GoVersion, runtime.GOOS + "/" + runtime.GOARCH} {
		if !strings.Contains(v, want) {
			t.Errorf("Version = %q, lacks %q", v, want)
		}
	}
	if b.Revision == "" && !strings.Contains(v, "commit unknown") {
		t.Errorf("Version = %q: no revision recorded, and it does not say so", v)
	}
	if b.Revision != "" && !strings.Contains(v, "commit "+b.Revision) {
		t.Errorf("Version = %q, lacks the revision %s", v, b.Revision)
	}
}

// TestVersionFlagPrintsAndExitsButNotFromTheEnvironment: --version on the
// command line prints and exits 0; FLOTILLA_VERSION is never read.
func TestVersionFlagPrintsAndExitsButNotFromTheEnvironment(t *testing.T) {
	newFS := func(out io.Writer, exited *int) *flag.FlagSet {
		fs := flag.NewFlagSet("x", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		fs.Var(&versionFlag{program: "placementd", out: out, exit: func(code int) { *exited = code }}, "version", "")
		fs.String("data-dir", "", "")
		return fs
	}
	var out strings.Builder
	exited := -1
	if err := Parse(newFS(&out, &exited), []string{"--version"}, "x"); err != nil {
		t.Fatal(err)
	}
	if exited != 0 || !strings.HasPrefix(out.String(), "placementd ") || !strings.HasSuffix(out.String(), "\n") {
		t.Fatalf("--version: exit %d, printed %q", exited, out.String())
	}
	t.Setenv("FLOTILLA_VERSION", "true")
	out.Reset()
	exited = -1
	if err := Parse(newFS(&out, &exited), nil, "x"); err != nil || exited != -1 || out.Len() != 0 {
		t.Fatalf("FLOTILLA_VERSION=true: err %v, exit %d, printed %q; want it ignored", err, exited, out.String())
	}
	var usage strings.Builder
	fs := newFS(&out, &exited)
	printUsage(fs, &usage, "x", EnvPrefix)
	if strings.Contains(usage.String(), "FLOTILLA_VERSION") || !strings.Contains(usage.String(), "FLOTILLA_DATA_DIR") {
		t.Errorf("usage:\n%s", usage.String())
	}
}

// TestParseWithPrefix: flotilla-bench's variables do not take a server's.
func TestParseWithPrefix(t *testing.T) {
	t.Setenv("FLOTILLA_NODES", "9")
	t.Setenv("FLOTILLA_BENCH_CLIENTS", "7")
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	nodes := fs.Int("nodes", 3, "")
	clients := fs.Int("clients", 1, "")
	if err := ParseWithPrefix(fs, nil, "x", "FLOTILLA_BENCH_"); err != nil {
		t.Fatal(err)
	}
	if *nodes != 3 || *clients != 7 {
		t.Errorf("nodes %d clients %d; want 3 (FLOTILLA_NODES is not bench's) and 7", *nodes, *clients)
	}
	if got := EnvNameWithPrefix("FLOTILLA_BENCH_", "value-size"); got != "FLOTILLA_BENCH_VALUE_SIZE" {
		t.Errorf("EnvNameWithPrefix = %q", got)
	}
}
