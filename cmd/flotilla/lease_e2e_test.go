package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/flotilla-kv/flotilla/internal/testutil"
)

// TestCLILeases drives a local fleet (placementd, 3 shardnodes, 4
// shards) with the CLI's lease commands: grant prints a hexadecimal ID,
// put --lease attaches a key, get shows the lease (--json and --prefix),
// timetolive --keys lists the key, list and keepalive (--once, and until
// SIGINT) find the lease, revoke deletes the key, and afterwards every
// lease command exits 1 naming the lease. put --ttl 2s prints the lease
// it granted, and its key is gone within 10s.
func TestCLILeases(t *testing.T) {
	command, cli := cliFleet(t)
	must := func(re string, args ...string) []string {
		t.Helper()
		out, code := cli(args...)
		m := regexp.MustCompile(re).FindStringSubmatch(out)
		if code != 0 || m == nil {
			t.Fatalf("%q: exit %d, want output matching %s\n%s", args, code, re, out)
		}
		return m
	}
	testutil.Eventually(t, time.Minute, func() error {
		if out, code := cli("lease", "grant", "60"); code != 0 {
			return fmt.Errorf("lease grant: exit %d: %s", code, out)
		}
		return nil
	})

	id := must(`^lease ([0-9a-f]{16}) granted with TTL\(60s\)\n$`, "lease", "grant", "60")[1]
	must(`^OK \(revision \d+\)\n$`, "put", "l/k", "v", "--lease", id)
	must(`^OK \(revision \d+\)\n$`, "put", "l/plain", "p")
	out, code := cli("get", "l/k", "--json")
	var got struct {
		Value    []byte `json:"value"` // base64 in the JSON
		Lease    uint64 `json:"lease"`
		LeaseHex string `json:"lease_hex"`
	}
	if err := json.Unmarshal([]byte(out), &got); code != 0 || err != nil || string(got.Value) != "v" || got.LeaseHex != id || fmt.Sprintf("%016x", got.Lease) != id {
		t.Fatalf("get l/k --json: exit %d (%v), want lease %s\n%s", code, err, id, out)
	}
	must(`"l/k" +"v" +\d+ +\d+ +1 +`+id+`\n"l/plain" +"p" +\d+ +\d+ +1 +-\n$`, "get", "--prefix", "l/")
	must(`^lease `+id+` granted with TTL\(60s\), remaining\(\d+s\), attached keys\(\[l/k\]\)\n$`, "lease", "timetolive", id, "--keys")
	must(`^lease `+id+` granted with TTL\(60s\), remaining\(\d+s\)\n$`, "lease", "ttl", id)
	must(`(?m)^found \d+ leases\n(.*\n)*`+id+`$`, "lease", "list")
	must(`^lease `+id+` keepalived with TTL\(60\)\n$`, "lease", "keepalive", "--once", id)

	// keepalive until SIGINT: renewals every third of the TTL (1s here).
	short := must(`^lease ([0-9a-f]{16}) granted with TTL\(3s\)\n$`, "lease", "grant", "3")[1]
	kctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	kcmd := command(kctx, "lease", "keepalive", short)
	stdout, err := kcmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	kcmd.Stderr = &stderr
	if err := kcmd.Start(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(stdout)
	for i := range 3 {
		if !sc.Scan() {
			t.Fatalf("keepalive ended after %d renewals: %s", i, stderr.String())
		}
		if want := "lease " + short + " keepalived with TTL(3)"; sc.Text() != want {
			t.Fatalf("keepalive printed %q, want %q", sc.Text(), want)
		}
	}
	if err := kcmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	for sc.Scan() {
	}
	if err := kcmd.Wait(); err != nil {
		t.Fatalf("keepalive after SIGINT: %v\n%s", err, stderr.String())
	}

	must(`^lease `+id+` revoked \(revision \d+\)\n$`, "lease", "revoke", id)
	if out, code := cli("get", "l/k"); code != exitNotFound || !strings.Contains(out, `key "l/k" not found`) {
		t.Fatalf("get l/k after revoke: exit %d, want %d\n%s", code, exitNotFound, out)
	}
	must(`^p\n$`, "get", "l/plain")
	for _, args := range [][]string{
		{"lease", "timetolive", id},
		{"lease", "revoke", id},
		{"lease", "keepalive", id},
		{"put", "l/k", "again", "--lease", id},
	} {
		if out, code := cli(args...); code != exitNotFound || !strings.Contains(out, "lease "+id+" not found") {
			t.Fatalf("%q after revoke: exit %d, want %d naming the lease\n%s", args, code, exitNotFound, out)
		}
	}
	if out, code := cli("lease", "list"); code != 0 || strings.Contains(out, id) {
		t.Fatalf("lease list after revoke: exit %d, still lists %s\n%s", code, id, out)
	}

	// put --ttl: a lease of its own, which nothing keeps alive.
	ttlID := must(`^OK \(revision \d+\)\nlease ([0-9a-f]{16}) granted with TTL\(2s\)\n$`, "put", "l/ttl", "t", "--ttl", "2s")[1]
	must(`"l/ttl" +"t" +\d+ +\d+ +1 +`+ttlID+`\n`, "get", "--prefix", "l/ttl")
	testutil.Eventually(t, 10*time.Second, func() error {
		out, code := cli("get", "l/ttl")
		if code == exitNotFound && strings.Contains(out, "not found") {
			return nil
		}
		if code != 0 {
			t.Fatalf("get l/ttl: exit %d\n%s", code, out)
		}
		return fmt.Errorf("l/ttl still there after put --ttl 2s: %s", out)
	})
	if out, code := cli("lease", "ttl", ttlID); code != exitNotFound || !strings.Contains(out, "lease "+ttlID+" not found") {
		t.Fatalf("lease ttl of the expired lease: exit %d, want %d\n%s", code, exitNotFound, out)
	}
}
