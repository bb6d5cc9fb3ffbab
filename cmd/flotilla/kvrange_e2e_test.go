package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/flotilla-kv/flotilla/internal/testutil"
)

// TestCLIRangesAndTxn drives a local fleet (placementd, 3 shardnodes, 4
// shards split at 0x40, 0x80 and 0xc0) with get's and del's range forms
// and with txn: get --count-only, --keys-only, --print-value-only,
// --limit and KEY END; del of a key, --prefix, a range across a shard
// boundary and --from-key across shards, each printing how many keys it
// deleted (and with --prev-kv which); txn taking its success branch, its
// failure branch, --json, a transaction across shards (atomic, one
// revision), and refusing malformed input naming the line.
func TestCLIRangesAndTxn(t *testing.T) {
	command, cli := cliFleet(t)
	// Every shard answers a linearizable read (a leader), so later
	// commands do not race the fleet's start.
	testutil.Eventually(t, time.Minute, func() error {
		for _, k := range []string{"0", "P", "\x90", "\xd0"} {
			if out, code := cli("get", "--count-only", k); code != 0 {
				return fmt.Errorf("get %q: exit %d: %s", k, code, out)
			}
		}
		return nil
	})
	expect := func(t *testing.T, wantCode int, re string, args ...string) []string {
		t.Helper()
		out, code := cli(args...)
		m := regexp.MustCompile(re).FindStringSubmatch(out)
		if code != wantCode || m == nil {
			t.Fatalf("%q: exit %d, want %d and output matching %s\n%s", args, code, wantCode, re, out)
		}
		return m
	}
	put := func(t *testing.T, k, v string) { t.Helper(); expect(t, 0, `^OK \(revision \d+\)\n$`, "put", k, v) }

	t.Run("get", func(t *testing.T) {
		put(t, "d/a", "1")
		put(t, "d/b", "2")
		put(t, "d/c", "3")
		put(t, "dd", "4")
		expect(t, 0, `^3\n$`, "get", "--prefix", "d/", "--count-only")
		expect(t, 0, `^1\n$`, "get", "d/a", "--count-only")
		expect(t, 0, `^0\n$`, "get", "d/none", "--count-only")
		expect(t, 0, `^revision \d+\nKEY +MOD_REV +CREATE_REV +VERSION +LEASE\n"d/a" +\d+ +\d+ +1 +-\n"d/b" .*\n"d/c" .*\n$`, "get", "--prefix", "d/", "--keys-only")
		expect(t, 0, `^d/a\n$`, "get", "d/a", "--keys-only")
		expect(t, 0, `^1\n2\n3\n$`, "get", "--print-value-only", "--prefix", "d/")
		expect(t, 0, `^revision \d+\nKEY +VALUE .*\n"d/b" +"2" .*\n"d/c" +"3" .*\n$`, "get", "d/b", "dd")
		out, code := cli("get", "--from-key", "d/b", "--limit", "2", "--json")
		var got struct {
			KVs []struct {
				Key, Value []byte // base64 in the JSON
			}
			More bool
		}
		if err := json.Unmarshal([]byte(out), &got); code != 0 || err != nil || len(got.KVs) != 2 ||
			string(got.KVs[0].Key) != "d/b" || string(got.KVs[1].Key) != "d/c" || string(got.KVs[1].Value) != "3" || !got.More {
			t.Fatalf("get --from-key d/b --limit 2 --json: exit %d (%v), want d/b, d/c and more\n%s", code, err, out)
		}
		for _, bad := range [][]string{
			{"get", "d/a", "--limit", "2"},                            // --limit without a range
			{"get", "--prefix", "d/", "--count-only", "--limit", "1"}, // a count of all keys
			{"get", "--prefix", "d/", "--keys-only", "--print-value-only"},
			{"get", "--prefix", "d/", "--print-value-only", "--json"},
			{"get", "--prefix", "--from-key", "d/"},
			{"get", "d/c", "d/a"}, // END before KEY
		} {
			expect(t, 2, ``, bad...)
		}
	})

	t.Run("del", func(t *testing.T) {
		expect(t, 0, `^deleted 1 \(revision \d+\)\n$`, "del", "d/a")
		expect(t, 0, `^deleted 0 \(revision \d+\)\n$`, "del", "d/a")
		expect(t, 0, `^deleted 2 \(revision \d+\)\nKEY +VALUE +MOD_REV +CREATE_REV +VERSION +LEASE\n"d/b" +"2" .*\n"d/c" +"3" .*\n$`,
			"del", "--prefix", "d/", "--prev-kv")
		expect(t, 0, `^4\n$`, "get", "dd") // not in the prefix
		expect(t, 0, `^0\n$`, "get", "--prefix", "d/", "--count-only")

		// [?, A) spans the boundary 0x40 ('@') between two shards.
		put(t, "?a", "x")
		put(t, "@a", "y")
		put(t, "Aa", "z")
		expect(t, 0, `^deleted 2 \(revision \d+\)\nKEY .*\n"\?a" +"x" .*\n"@a" +"y" .*\n$`, "del", "?", "A", "--prev-kv")
		expect(t, 0, `^z\n$`, "get", "Aa")
		expect(t, exitNotFound, `not found`, "get", "@a")

		// --from-key from 0xbf: the last two shards, to the end.
		put(t, "\xbfz", "1")
		put(t, "\xc0z", "2")
		out, code := cli("del", "--from-key", "\xbf", "--prev-kv", "--json")
		var got struct {
			Deleted int
			PrevKVs []struct{ Value []byte } `json:"prev_kvs"`
		}
		if err := json.Unmarshal([]byte(out), &got); code != 0 || err != nil || got.Deleted != 2 || len(got.PrevKVs) != 2 ||
			string(got.PrevKVs[0].Value) != "1" || string(got.PrevKVs[1].Value) != "2" {
			t.Fatalf("del --from-key \\xbf --prev-kv --json: exit %d (%v), want 2 deleted\n%s", code, err, out)
		}
		expect(t, 0, `^0\n$`, "get", "--from-key", "\xbf", "--count-only")
		expect(t, 0, `^1\n$`, "get", "Aa", "--count-only")

		expect(t, 2, `--prefix and --from-key: give one`, "del", "x", "--prefix", "--from-key")
		expect(t, 2, `does not sort after KEY`, "del", "b", "a")
		expect(t, 2, `with --prefix or --from-key`, "del", "a", "b", "--prefix")
	})

	txn := func(t *testing.T, wantCode int, input string, args ...string) string {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		cmd := command(ctx, append([]string{"txn"}, args...)...)
		cmd.Stdin = strings.NewReader(input)
		out, err := cmd.CombinedOutput()
		code := 0
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		if code != wantCode {
			t.Fatalf("txn %q <<%q: exit %d, want %d\n%s", args, input, code, wantCode, out)
		}
		return string(out)
	}
	t.Run("txn", func(t *testing.T) {
		put(t, "t/k", "v1")
		in := "value(\"t/k\") = \"v1\"\nversion(\"t/k\") > \"0\"\n\nput t/k v2\nget t/k\ndel t/other\n\nput t/k failed\nget t/k\n"
		if out, want := txn(t, 0, in), "SUCCESS\n\nOK\n\nt/k\nv2\n\n0\n"; out != want {
			t.Fatalf("txn taking its success branch printed %q, want %q", out, want)
		}
		expect(t, 0, `^v2\n$`, "get", "t/k")
		// The same again: t/k holds v2 now, so the failure branch runs,
		// and the command exits 3 (compare failed), saying nothing more.
		if out, want := txn(t, exitNotFound, in), "FAILURE\n\nOK\n\nt/k\nfailed\n"; out != want {
			t.Fatalf("txn taking its failure branch printed %q, want %q", out, want)
		}
		expect(t, 0, `^failed\n$`, "get", "t/k")

		out := txn(t, 0, "create(\"t/new\") = \"0\"\n\nput t/new n --prev-kv\ndel t/j t/l --prev-kv\n", "--json")
		var got struct {
			Succeeded bool
			Revision  uint64
			Ops       []struct {
				Op      string
				Deleted int
				PrevKVs []struct{ Key, Value []byte } `json:"prev_kvs"`
			}
		}
		if err := json.Unmarshal([]byte(out), &got); err != nil || !got.Succeeded || got.Revision == 0 || len(got.Ops) != 2 ||
			got.Ops[0].Op != "put" || len(got.Ops[0].PrevKVs) != 0 ||
			got.Ops[1].Op != "del" || got.Ops[1].Deleted != 1 || len(got.Ops[1].PrevKVs) != 1 || string(got.Ops[1].PrevKVs[0].Value) != "failed" {
			t.Fatalf("txn --json (%v): want a put, then t/k deleted\n%s", err, out)
		}
		expect(t, 0, `^n\n$`, "get", "--prefix", "t/", "--print-value-only")

		// t/ is on the shard [0x40, 0x80), 0 (0x30) on [, 0x40): one
		// transaction across the two, at one revision.
		out = txn(t, 0, "\nput t/x 1\nput 0x 2\n")
		if !strings.HasPrefix(out, "SUCCESS") {
			t.Fatalf("txn across shards: want SUCCESS\n%s", out)
		}
		expect(t, 0, `^1\n$`, "get", "t/x", "--print-value-only")
		expect(t, 0, `^2\n$`, "get", "0x", "--print-value-only")
		var mods [2]string
		for i, k := range []string{"t/x", "0x"} {
			mods[i] = expect(t, 0, `"mod_revision":\s*(\d+)`, "get", k, "-w", "json")[1]
		}
		if mods[0] != mods[1] {
			t.Fatalf("the keys of one transaction at two revisions: %s and %s", mods[0], mods[1])
		}

		out = txn(t, 2, "value(\"t/k\") = \"v\"\n\nput t/k\n")
		if !strings.Contains(out, "line 3: put: 1 argument;") {
			t.Fatalf("malformed txn: want the line named\n%s", out)
		}
	})
}
