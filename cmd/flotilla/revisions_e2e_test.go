package main

import (
	"bufio"
	"context"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/flotilla-kv/flotilla/internal/testutil"
)

// TestCLIRevisionsAndWatch drives a local fleet (placementd, 3
// shardnodes, 4 shards) with the CLI: put and del print revisions, get
// --rev reads the past, get --prefix reads one snapshot, watch --prefix
// prints writes as they happen (with --prev-kv and --progress) and ends
// cleanly on SIGINT, and after compact, a read or a watch below the
// compaction revision exits 1 saying so.
func TestCLIRevisionsAndWatch(t *testing.T) {
	command, cli := cliFleet(t)
	revRE := regexp.MustCompile(`^(?:OK|deleted 1) \(revision (\d+)\)\n$`)
	write := func(args ...string) string {
		t.Helper()
		out, code := cli(args...)
		m := revRE.FindStringSubmatch(out)
		if code != 0 || m == nil {
			t.Fatalf("%v: exit %d, want OK (revision N)\n%s", args, code, out)
		}
		return m[1]
	}
	testutil.Eventually(t, time.Minute, func() error {
		if out, code := cli("put", "a", "1"); code != 0 {
			return fmt.Errorf("put: exit %d: %s", code, out)
		}
		return nil
	})
	rev1 := write("put", "a", "1")
	rev2 := write("put", "a", "2")
	if a, b := mustUint(t, rev1), mustUint(t, rev2); b <= a {
		t.Fatalf("revisions %s then %s", rev1, rev2)
	}
	if out, code := cli("get", "a", "--rev", rev1); code != 0 || out != "1\n" {
		t.Fatalf("get a --rev %s: exit %d\n%s", rev1, code, out)
	}
	if out, code := cli("get", "a"); code != 0 || out != "2\n" {
		t.Fatalf("get a: exit %d\n%s", code, out)
	}
	if out, code := cli("get", "a", "--json"); code != 0 || !strings.Contains(out, `"mod_revision": `+rev2) || !strings.Contains(out, `"version": 3`) {
		t.Fatalf("get a --json: exit %d\n%s", code, out)
	}
	// A prefix: its keys at one revision, with their revisions.
	for _, k := range []string{"p/1", "p/\x40", "p/\x90", "p/\xf0", "q"} {
		write("put", k, "v-"+k)
	}
	out, code := cli("get", "--prefix", "p/")
	if code != 0 || !regexp.MustCompile(`^revision \d+\nKEY +VALUE +MOD_REV +CREATE_REV +VERSION +LEASE\n`).MatchString(out) || strings.Count(out, "\n") != 6 || strings.Contains(out, `"q"`) {
		t.Fatalf("get --prefix p/: exit %d\n%s", code, out)
	}

	// watch --prefix w/ in the background, until SIGINT.
	wctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	wcmd := command(wctx, "watch", "--prefix", "w/", "--prev-kv", "--progress", "100ms")
	stdout, err := wcmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	wcmd.Stderr = &stderr
	if err := wcmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := make(chan string, 100)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	next := func() string {
		t.Helper()
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatalf("watch ended: %s", stderr.String())
			}
			return l
		case <-time.After(30 * time.Second):
			t.Fatalf("no line from watch; stderr: %s", stderr.String())
		}
		return ""
	}
	nextEvent := func() string {
		t.Helper()
		for {
			if l := next(); !strings.HasPrefix(l, "PROGRESS ") {
				return l
			}
		}
	}
	if l := next(); !strings.HasPrefix(l, "PROGRESS rev=") {
		t.Fatalf("first line %q, want PROGRESS (the watch is open)", l)
	}
	r1 := write("put", "w/\x40", "x")
	r2 := write("put", "w/\x40", "y")
	r3 := write("put", "w/\xc0", "z")
	r4 := write("del", "w/\x40")
	write("put", "other", "o")
	for _, want := range []string{
		fmt.Sprintf(`PUT "w/@" "x" rev=%s`, r1),
		fmt.Sprintf(`PUT "w/@" "y" rev=%s prev="x"`, r2),
		fmt.Sprintf(`PUT "w/\xc0" "z" rev=%s`, r3),
		fmt.Sprintf(`DELETE "w/@" rev=%s prev="y"`, r4),
	} {
		if got := nextEvent(); got != want {
			t.Fatalf("watch printed %q, want %q", got, want)
		}
	}
	if err := wcmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	for range lines {
	}
	if err := wcmd.Wait(); err != nil {
		t.Fatalf("watch after SIGINT: %v\n%s", err, stderr.String())
	}

	// Compaction: below it, reads and watches fail with a clear message.
	if out, code := cli("compact", rev2); code != 0 || !strings.Contains(out, "OK (compacted to revision "+rev2+")") {
		t.Fatalf("compact %s: exit %d\n%s", rev2, code, out)
	}
	if out, code := cli("get", "a", "--rev", rev1); code != 1 || !strings.Contains(out, "revision compacted") {
		t.Fatalf("get below the compaction: exit %d, want 1\n%s", code, out)
	}
	if out, code := cli("get", "a", "--rev", rev2); code != 0 || out != "2\n" {
		t.Fatalf("get at the compaction revision: exit %d\n%s", code, out)
	}
	if out, code := cli("watch", "a", "--rev", rev1); code != 1 || !strings.Contains(out, "revision compacted") {
		t.Fatalf("watch below the compaction: exit %d, want 1\n%s", code, out)
	}
}

func mustUint(t *testing.T, s string) uint64 {
	t.Helper()
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	return n
}
