package main

import (
	"flag"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/flotilla-kv/flotilla/internal/cli"
)

// TestHistoryGCFlags: the collector's flags parse over its defaults, and
// validation reports every bad value at once.
func TestHistoryGCFlags(t *testing.T) {
	c := defaultHistoryGC()
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	c.registerFlags(fs)
	if err := fs.Parse(nil); err != nil || c != defaultHistoryGC() {
		t.Fatalf("no flags: %+v, %v", c, err)
	}
	var p cli.Problems
	c.validate(&p)
	if len(p) != 0 {
		t.Fatalf("the defaults are invalid: %v", p)
	}
	if err := fs.Parse([]string{"--history-gc-interval=0", "--history-gc-budget=5"}); err != nil {
		t.Fatal(err)
	}
	if c.Interval != 0 || c.Budget != 5 {
		t.Fatalf("parsed %+v", c)
	}
	c = historyGCConfig{Interval: -time.Second, Budget: 0}
	c.validate(&p)
	if len(p) != 2 || !strings.Contains(p[0], "--history-gc-interval") || !strings.Contains(p[1], "--history-gc-budget") {
		t.Fatalf("problems: %v", p)
	}
}
