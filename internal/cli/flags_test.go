package cli

import (
	"flag"
	"io"
	"strings"
	"testing"
)

func TestParseBytes(t *testing.T) {
	for in, want := range map[string]int64{"4096": 4096, "64KiB": 64 << 10, "32MiB": 32 << 20, "1GiB": 1 << 30, "10MB": 10e6, "0": 0} {
		got, err := ParseBytes(in)
		if err != nil || got != want {
			t.Errorf("ParseBytes(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "abc", "-1", "12XB"} {
		if _, err := ParseBytes(bad); err == nil {
			t.Errorf("ParseBytes(%q) accepted", bad)
		}
	}
}

func TestParseReadsEnvironmentAndReportsEveryProblem(t *testing.T) {
	fs := flag.NewFlagSet("x", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	a := fs.String("data-dir", "", "")
	var b Bytes
	fs.Var(&b, "snapshot-rate", "")
	c := fs.Int("workers", 0, "")
	t.Setenv("FLOTILLA_DATA_DIR", "/from/env")
	t.Setenv("FLOTILLA_SNAPSHOT_RATE", "nonsense")
	t.Setenv("FLOTILLA_WORKERS", "also-bad")
	err := Parse(fs, nil, "x")
	if *a != "/from/env" {
		t.Errorf("data-dir = %q, want the environment's value", *a)
	}
	if err == nil || !strings.Contains(err.Error(), "SNAPSHOT_RATE") || !strings.Contains(err.Error(), "WORKERS") {
		t.Fatalf("err = %v, want both bad variables named", err)
	}
	_ = c
	// The command line wins over the environment.
	fs2 := flag.NewFlagSet("y", flag.ContinueOnError)
	d := fs2.String("data-dir", "", "")
	if err := Parse(fs2, []string{"--data-dir", "/flag"}, "y"); err != nil || *d != "/flag" {
		t.Fatalf("data-dir = %q, %v", *d, err)
	}
}
