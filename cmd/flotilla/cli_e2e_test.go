package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	flt "github.com/flotilla-kv/flotilla/internal/fleet"
	"github.com/flotilla-kv/flotilla/internal/poll"
	"github.com/flotilla-kv/flotilla/internal/testutil"
)

// runBinary runs the program bin with args and extra environment
// variables, to the end (within a minute), and returns its standard
// output, standard error and exit status.
func runBinary(t *testing.T, bin string, env []string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = append(os.Environ(), env...)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		code = ee.ExitCode()
	case err != nil:
		t.Fatalf("%s %q: %v", bin, args, err)
	}
	return out.String(), errOut.String(), code
}

// TestCLIHelpCompletionAndUsage runs the flotilla binary without a fleet:
// --help on standard output with every flag and its environment
// variable, completion scripts for each shell (bash's checked by bash
// -n), usage errors exiting 2 with nothing on standard output, and an
// unreachable placement exiting 4 in table and JSON output alike.
func TestCLIHelpCompletionAndUsage(t *testing.T) {
	bin := flt.Binary(t, "flotilla")
	run := func(env []string, args ...string) (string, string, int) {
		t.Helper()
		return runBinary(t, bin, env, args...)
	}

	t.Run("help", func(t *testing.T) {
		out, errOut, code := run(nil, "--help")
		if code != 0 || errOut != "" {
			t.Fatalf("--help: exit %d, stderr %q", code, errOut)
		}
		for _, want := range []string{"Exit status", "3  not found or compare failed", "4  unreachable", "completion", "version", "FLOTILLA_PLACEMENT"} {
			if !strings.Contains(out, want) {
				t.Errorf("flotilla --help lacks %q:\n%s", want, out)
			}
		}
		for cmd, wants := range map[string][]string{
			"get":             {"--prefix", "--from-key", "--keys-only", "--print-value-only", "--count-only", "--limit", "-w, --write-out", "[FLOTILLA_GET_WRITE_OUT]", "[FLOTILLA_PLACEMENT]", "[FLOTILLA_NODES]", "[FLOTILLA_CONSISTENCY]"},
			"demo":            {"[FLOTILLA_DEMO_DIR]", "[FLOTILLA_DEMO_NODES]"},
			"certs":           {"[FLOTILLA_CERTS_DIR]", "[FLOTILLA_CERTS_NODES]"},
			"backup":          {"[FLOTILLA_BACKUP_DIR]", "[FLOTILLA_NODES]"},
			"lease keepalive": {"[FLOTILLA_LEASE_KEEPALIVE_ONCE]"},
		} {
			out, errOut, code := run(nil, append(strings.Fields(cmd), "--help")...)
			if code != 0 || errOut != "" {
				t.Fatalf("%s --help: exit %d, stderr %q", cmd, code, errOut)
			}
			for _, want := range wants {
				if !strings.Contains(out, want) {
					t.Errorf("flotilla %s --help lacks %q:\n%s", cmd, want, out)
				}
			}
			// Every flag is explained: no flag line without words after it.
			for _, line := range strings.Split(out, "\n") {
				if f := strings.Fields(line); len(f) > 0 && strings.HasPrefix(f[0], "-") && len(f) < 4 {
					t.Errorf("flotilla %s --help: flag without an explanation: %q", cmd, line)
				}
			}
		}
	})

	t.Run("completion", func(t *testing.T) {
		for _, shell := range []string{"bash", "zsh", "fish", "powershell"} {
			out, errOut, code := run(nil, "completion", shell)
			if code != 0 || len(out) < 1000 || !strings.Contains(out, "flotilla") {
				t.Fatalf("completion %s: exit %d, %d bytes, stderr %q", shell, code, len(out), errOut)
			}
			if shell != "bash" {
				continue
			}
			script := filepath.Join(t.TempDir(), "flotilla.bash")
			if err := os.WriteFile(script, []byte(out), 0o644); err != nil {
				t.Fatal(err)
			}
			if bash, err := exec.LookPath("bash"); err == nil {
				if b, err := exec.Command(bash, "-n", script).CombinedOutput(); err != nil {
					t.Errorf("bash -n on the completion script: %v\n%s", err, b)
				}
			} else {
				t.Logf("no bash on $PATH: the script's syntax is not checked")
			}
		}
		// What the scripts ask the binary: commands, flags, -w's values.
		for _, tc := range []struct {
			args []string
			want string
		}{
			{[]string{"__complete", "ge"}, "get"},
			{[]string{"__complete", "lease", "t"}, "timetolive"},
			{[]string{"__complete", "get", "--pre"}, "--prefix"},
			{[]string{"__complete", "get", "k", "-w", ""}, "json"},
		} {
			out, _, code := run(nil, tc.args...)
			if code != 0 || !regexp.MustCompile(`(?m)^`+regexp.QuoteMeta(tc.want)+`(\t|$)`).MatchString(out) {
				t.Errorf("%q: exit %d, want %q offered:\n%s", tc.args, code, tc.want, out)
			}
		}
	})

	t.Run("usage", func(t *testing.T) {
		noPlacement := []string{"--placement", flt.FreePort(t), "--timeout", "5s"}
		for _, args := range [][]string{
			{},
			{"nope"},
			{"get"},
			{"get", "k", "--nope"},
			{"get", "k", "-w", "yaml"},
			{"get", "k", "-w", "table", "--json"},
			{"put", "k", "v", "-w", "table"}, // put prints no table
			{"lease"},
			{"lease", "nope"},
			{"lease", "revoke", "xyz"},
			{"drain", "zero"},
			{"txn", "extra"},
		} {
			out, errOut, code := run(nil, append(args, noPlacement...)...)
			if code != exitUsage || out != "" || !strings.Contains(errOut, "--help' for usage") {
				t.Errorf("%q: exit %d, want %d, nothing on stdout and where the usage is\nstdout %q\nstderr %q", args, code, exitUsage, out, errOut)
			}
		}
		// A malformed transaction is bad usage too, naming its line.
		cmd := exec.Command(bin, append([]string{"txn"}, noPlacement...)...)
		cmd.Stdin = strings.NewReader("value(\"k\") = \"v\"\n\nput k\n")
		b, err := cmd.CombinedOutput()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != exitUsage || !strings.Contains(string(b), "line 3") {
			t.Errorf("malformed txn: %v, want exit %d naming line 3\n%s", err, exitUsage, b)
		}
		// Environment variables named after their command: demo does not
		// read the CLI's FLOTILLA_NODES (addresses), and a bad value of its
		// own variable is a usage error naming it, before any start.
		_, errOut, code := run([]string{"FLOTILLA_NODES=0", "FLOTILLA_DEMO_WORKLOAD=nonsense"}, "demo", "--duration", "1s")
		if code != exitUsage || !strings.Contains(errOut, "FLOTILLA_DEMO_WORKLOAD") || strings.Contains(errOut, "--nodes") {
			t.Errorf("demo with FLOTILLA_NODES=0 FLOTILLA_DEMO_WORKLOAD=nonsense: exit %d\n%s", code, errOut)
		}
		_, errOut, code = run([]string{"FLOTILLA_DEMO_NODES=0"}, "demo", "--duration", "10s", "--workload", "1s")
		if code != exitUsage || !strings.Contains(errOut, "--nodes must be at least 1") || strings.Contains(errOut, "starting") {
			t.Errorf("demo with FLOTILLA_DEMO_NODES=0: exit %d\n%s", code, errOut)
		}
	})

	t.Run("unreachable", func(t *testing.T) {
		noPlacement := []string{"--placement", flt.FreePort(t), "--timeout", "5s"}
		for _, args := range [][]string{{"get", "k"}, {"get", "k", "-w", "json"}, {"put", "k", "v", "--json"}, {"status"}, {"nodes", "-w", "json"}} {
			out, errOut, code := run(nil, append(args, noPlacement...)...)
			if code != exitUnavailable || out != "" || errOut == "" {
				t.Errorf("%q with no placement: exit %d, want %d and an error\nstdout %q\nstderr %q", args, code, exitUnavailable, out, errOut)
			}
		}
	})
}

// TestVersionOfEveryBinary: flotilla --version and flotilla version,
// and --version of shardnode, placementd and flotilla-bench, name the
// program, the module and the toolchain, and exit 0. A build stamped with
// VCS information (-buildvcs=true, or the revision passed to the linker
// in a linked worktree) prints the commit it was built from, one git
// knows.
func TestVersionOfEveryBinary(t *testing.T) {
	versionRE := func(program string) *regexp.Regexp {
		return regexp.MustCompile(`^` + program + ` \S+ github\.com/flotilla-kv/flotilla commit (unknown|[0-9a-f]{40}( \([^)]*\))?) go\S+ \S+/\S+\n$`)
	}
	check := func(program string, args ...string) {
		t.Helper()
		out, errOut, code := runBinary(t, flt.Binary(t, program), nil, args...)
		if code != 0 || errOut != "" || !versionRE(program).MatchString(out) {
			t.Errorf("%s %q: exit %d, printed %q (stderr %q)", program, args, code, out, errOut)
		}
	}
	check("flotilla", "--version")
	check("flotilla", "version")
	check("shardnode", "--version")
	check("placementd", "--version")
	check("flotilla-bench", "--version")

	git, err := exec.LookPath("git")
	if err != nil {
		t.Log("no git on $PATH: the VCS revision is not checked")
		return
	}
	top, err := exec.Command(git, "rev-parse", "--show-toplevel").Output()
	if err != nil {
		t.Logf("not in a git repository (%v): the VCS revision is not checked", err)
		return
	}
	root := strings.TrimSpace(string(top))
	bin := filepath.Join(t.TempDir(), "flotilla")
	args := []string{"build", "-buildvcs=true", "-o", bin}
	// In a linked worktree (its git directory is not the common one) the
	// go command stamps nothing (internal/buildinfo says why): pass the
	// revision to the linker, as make build does.
	dirs, err := exec.Command(git, "-C", root, "rev-parse", "--git-dir", "--git-common-dir").Output()
	if err != nil {
		t.Fatalf("git rev-parse --git-dir --git-common-dir: %v", err)
	}
	if d := strings.Fields(string(dirs)); len(d) == 2 && d[0] != d[1] {
		head, err := exec.Command(git, "-C", root, "rev-parse", "HEAD").Output()
		if err != nil {
			t.Fatalf("git rev-parse HEAD: %v", err)
		}
		args = append(args, "-ldflags=-X github.com/flotilla-kv/flotilla/internal/buildinfo.linkRevision="+strings.TrimSpace(string(head)))
	}
	build := exec.Command("go", append(args, "./cmd/flotilla")...)
	build.Dir = root
	build.Env = append(os.Environ(), "GOFLAGS=")
	if b, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build -buildvcs=true: %v\n%s", err, b)
	}
	out, _, code := runBinary(t, bin, nil, "--version")
	m := regexp.MustCompile(`commit ([0-9a-f]{40})`).FindStringSubmatch(out)
	if code != 0 || m == nil {
		t.Fatalf("a build with VCS information printed %q, want a commit", out)
	}
	if b, err := exec.Command(git, "-C", root, "cat-file", "-e", m[1]+"^{commit}").CombinedOutput(); err != nil {
		t.Errorf("--version names commit %s, which git does not know: %v %s", m[1], err, b)
	}
}

// TestCLIOutputFormatsAndExitCodes drives a fleet: flags after the
// arguments, put's value from standard input, -w json round-tripping a key and value that are not UTF-8
// (base64) in get, get --prefix and scan, -w simple and table, and the
// exit statuses of not found (get, -w json too), compare failed (cas,
// txn FAILURE) and success.
func TestCLIOutputFormatsAndExitCodes(t *testing.T) {
	command, _ := cliFleet(t)
	run := func(stdin string, args ...string) (string, string, int) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		cmd := command(ctx, args...)
		cmd.Stdin = strings.NewReader(stdin)
		var out, errOut bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errOut
		err := cmd.Run()
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return out.String(), errOut.String(), ee.ExitCode()
		}
		if err != nil {
			t.Fatal(err)
		}
		return out.String(), errOut.String(), 0
	}
	testutil.Eventually(t, time.Minute, func() error {
		if _, errOut, code := run("", "put", "hello", "world"); code != 0 {
			return errors.New(errOut)
		}
		return nil
	})
	// Flags after the arguments.
	out, errOut, code := run("", "get", "hello", "--json")
	var one struct {
		Key, Value []byte
		Found      bool
		Revision   uint64
	}
	if err := json.Unmarshal([]byte(out), &one); code != 0 || err != nil || string(one.Key) != "hello" || string(one.Value) != "world" || !one.Found || one.Revision == 0 {
		t.Fatalf("get hello --json: exit %d (%v)\n%s%s", code, err, out, errOut)
	}

	// A value from standard input, byte for byte: a NUL byte and a trailing
	// newline, and one larger than a command line holds.
	for _, v := range []string{"nul\x00byte\n", strings.Repeat("0123456789abcdef", 200<<10/16)} {
		if _, errOut, code := run(v, "put", "stdin-value"); code != 0 {
			t.Fatalf("put of %d bytes from standard input: exit %d: %s", len(v), code, errOut)
		}
		out, errOut, code := run("", "get", "stdin-value", "-w", "json")
		var got struct{ Value []byte }
		if err := json.Unmarshal([]byte(out), &got); code != 0 || err != nil || string(got.Value) != v {
			t.Fatalf("get of the value put from standard input: exit %d (%v), %d bytes, want %d\n%s", code, err, len(got.Value), len(v), errOut)
		}
	}

	// A key and a value that are not UTF-8 (argv cannot hold a NUL byte).
	key, value := "bin/\xff\xfe\x80k", "\xc3\x28v\x01"
	if _, errOut, code := run("", "put", key, value); code != 0 {
		t.Fatalf("put of a binary key: exit %d: %s", code, errOut)
	}
	type kv struct {
		Key, Value  []byte
		ModRevision uint64 `json:"mod_revision"`
		Lease       uint64
	}
	out, errOut, code = run("", "get", key, "-w", "json")
	var got kv
	if err := json.Unmarshal([]byte(out), &got); code != 0 || err != nil || string(got.Key) != key || string(got.Value) != value || got.ModRevision == 0 {
		t.Fatalf("get -w json of a binary key: exit %d (%v), key %q value %q\n%s%s", code, err, got.Key, got.Value, out, errOut)
	}
	out, _, code = run("", "get", "--prefix", "bin/", "-w", "json")
	var rng struct {
		Revision uint64
		KVs      []kv
	}
	if err := json.Unmarshal([]byte(out), &rng); code != 0 || err != nil || len(rng.KVs) != 1 || string(rng.KVs[0].Key) != key || string(rng.KVs[0].Value) != value {
		t.Fatalf("get --prefix -w json: exit %d (%v)\n%s", code, err, out)
	}
	out, _, code = run("", "scan", "--start", "bin/", "--end", "bin0", "-w", "json")
	var scanned []kv
	if err := json.Unmarshal([]byte(out), &scanned); code != 0 || err != nil || len(scanned) != 1 || string(scanned[0].Key) != key || string(scanned[0].Value) != value {
		t.Fatalf("scan -w json: exit %d (%v)\n%s", code, err, out)
	}
	// simple: raw lines, as etcdctl's; table: a header.
	if out, _, code := run("", "get", "--prefix", "bin/", "-w", "simple"); code != 0 || out != key+"\n"+value+"\n" {
		t.Fatalf("get --prefix -w simple: exit %d, %q", code, out)
	}
	if out, _, code := run("", "get", "hello", "-w", "table"); code != 0 || !regexp.MustCompile(`^revision \d+\nKEY +VALUE +MOD_REV +CREATE_REV +VERSION +LEASE\n"hello" +"world" +\d+`).MatchString(out) {
		t.Fatalf("get hello -w table: exit %d\n%s", code, out)
	}
	if out, _, code := run("", "nodes", "-w", "json"); code != 0 || !regexp.MustCompile(`"node_id": [1-3],`).MatchString(out) {
		t.Fatalf("nodes -w json: exit %d, want node IDs as numbers\n%s", code, out)
	}
	// The variable of get's -w is get's own.
	if out, _, code := runWithEnv(command, []string{"FLOTILLA_GET_WRITE_OUT=json"}, "get", "hello"); code != 0 || !strings.Contains(out, `"found": true`) {
		t.Fatalf("FLOTILLA_GET_WRITE_OUT=json get hello: exit %d\n%s", code, out)
	}

	// Not found: 3, with a table or JSON alike; the JSON is printed.
	if out, errOut, code := run("", "get", "absent"); code != exitNotFound || out != "" || !strings.Contains(errOut, `key "absent" not found`) {
		t.Fatalf("get absent: exit %d, want %d\nstdout %q\nstderr %q", code, exitNotFound, out, errOut)
	}
	out, _, code = run("", "get", "absent", "-w", "json")
	var absent struct{ Found *bool }
	if err := json.Unmarshal([]byte(out), &absent); code != exitNotFound || err != nil || absent.Found == nil || *absent.Found {
		t.Fatalf("get absent -w json: exit %d (%v), want %d and \"found\": false\n%s", code, err, exitNotFound, out)
	}
	// An empty range and a count are answers, not "not found".
	if out, _, code := run("", "get", "--prefix", "none/"); code != 0 || !strings.HasPrefix(out, "revision ") {
		t.Fatalf("get of an empty range: exit %d\n%s", code, out)
	}
	if out, _, code := run("", "get", "absent", "--count-only"); code != 0 || out != "0\n" {
		t.Fatalf("get absent --count-only: exit %d %q", code, out)
	}

	// Compare failed: cas and txn exit 3, in either format.
	if _, errOut, code := run("", "cas", "hello", "nope", "x"); code != exitNotFound || !strings.Contains(errOut, `not swapped: "hello" holds "world"`) {
		t.Fatalf("cas with the wrong expected value: exit %d, want %d\n%s", code, exitNotFound, errOut)
	}
	out, _, code = run("", "cas", "hello", "nope", "x", "--json")
	var cas struct{ Swapped *bool }
	if err := json.Unmarshal([]byte(out), &cas); code != exitNotFound || err != nil || cas.Swapped == nil || *cas.Swapped {
		t.Fatalf("cas --json not swapped: exit %d (%v)\n%s", code, err, out)
	}
	if out, _, code := run("", "cas", "hello", "world", "earth"); code != 0 || !strings.HasPrefix(out, "OK (revision ") {
		t.Fatalf("cas that swaps: exit %d\n%s", code, out)
	}
	failing := "value(\"hello\") = \"world\"\n\nput hello again\n\nget hello\n"
	if out, errOut, code := run(failing, "txn"); code != exitNotFound || out != "FAILURE\n\nhello\nearth\n" || errOut != "" {
		t.Fatalf("txn FAILURE: exit %d, want %d with the failure branch printed and nothing on stderr\nstdout %q\nstderr %q", code, exitNotFound, out, errOut)
	}
	out, _, code = run(failing, "txn", "-w", "json")
	var txn struct{ Succeeded *bool }
	if err := json.Unmarshal([]byte(out), &txn); code != exitNotFound || err != nil || txn.Succeeded == nil || *txn.Succeeded {
		t.Fatalf("txn -w json FAILURE: exit %d (%v)\n%s", code, err, out)
	}
	if out, _, code := run("value(\"hello\") = \"earth\"\n\nget hello\n", "txn"); code != 0 || !strings.HasPrefix(out, "SUCCESS\n") {
		t.Fatalf("txn SUCCESS: exit %d\n%s", code, out)
	}

	// shard check and transfer-leader, over the leader's Admin service.
	type shardsJSON struct {
		Shards []struct {
			Route struct {
				Shard struct {
					ShardID  uint64 `json:"shard_id"`
					Replicas []struct {
						NodeID uint64 `json:"node_id"`
					}
				}
				LeaderNodeID uint64 `json:"leader_node_id"`
			}
		}
	}
	shards := func() shardsJSON {
		t.Helper()
		out, errOut, code := run("", "shards", "-w", "json")
		var s shardsJSON
		if err := json.Unmarshal([]byte(out), &s); code != 0 || err != nil || len(s.Shards) == 0 {
			t.Fatalf("shards -w json: exit %d (%v)\n%s%s", code, err, out, errOut)
		}
		return s
	}
	s := shards()
	first := s.Shards[0].Route
	id := strconv.FormatUint(first.Shard.ShardID, 10)
	if out, errOut, code := run("", "shard", "check", id); code != 0 || !regexp.MustCompile(`^shard `+id+` at index \d+: consistent\nREPLICA +NODE +CHECKSUM +ERROR\n(\d+ +n\d +[0-9a-f]+ *\n){3}$`).MatchString(out) {
		t.Fatalf("shard check %s: exit %d\n%s%s", id, code, out, errOut)
	}
	if _, errOut, code := run("", "shard", "check", "99999"); code != exitNotFound || !strings.Contains(errOut, "no such shard") {
		t.Fatalf("shard check of an unknown shard: exit %d, want %d\n%s", code, exitNotFound, errOut)
	}
	// The target: a replica that does not lead, on the node leading the
	// fewest shards, so that leader balance has no reason to move it back.
	leads := map[uint64]int{}
	for _, sh := range s.Shards {
		leads[sh.Route.LeaderNodeID]++
	}
	var to uint64
	for _, r := range first.Shard.Replicas {
		if r.NodeID != first.LeaderNodeID && (to == 0 || leads[r.NodeID] < leads[to]) {
			to = r.NodeID
		}
	}
	toArg := strconv.FormatUint(to, 10)
	// The command answers once the leader moved; placement's table shows
	// it at the next heartbeat. On a machine loaded enough to cost a
	// leader its term, an election may take the lead elsewhere before
	// that heartbeat: the transfer is then asked again, as an operator
	// would, at most three times.
	for attempt := 1; ; attempt++ {
		if out, errOut, code := run("", "shard", "transfer-leader", id, "--to", toArg); code != 0 || !strings.Contains(out, "on node "+toArg) {
			t.Fatalf("shard transfer-leader %s --to %s: exit %d\n%s%s", id, toArg, code, out, errOut)
		}
		err := poll.Until(context.Background(), 15*time.Second, 100*time.Millisecond, func(context.Context) error {
			for _, sh := range shards().Shards {
				if sh.Route.Shard.ShardID == first.Shard.ShardID && sh.Route.LeaderNodeID != to {
					return fmt.Errorf("shard %s is led by node %d, not %d", id, sh.Route.LeaderNodeID, to)
				}
			}
			return nil
		})
		if err == nil {
			break
		}
		if attempt == 3 {
			t.Fatalf("after 3 transfers: %v", err)
		}
		t.Logf("transfer %d: %v; asking again", attempt, err)
	}
	if _, _, code := run("", "shard", "transfer-leader", id, "--to", "99"); code != exitUsage {
		t.Fatalf("transfer-leader to a node without a replica: exit %d, want %d", code, exitUsage)
	}
}

// runWithEnv runs the command line args with extra environment variables
// through command (cliFleet's) and returns its standard output, standard
// error and exit status.
func runWithEnv(command func(context.Context, ...string) *exec.Cmd, env []string, args ...string) (string, string, int) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := command(ctx, args...)
	cmd.Env = append(cmd.Env, env...)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return out.String(), errOut.String(), ee.ExitCode()
	}
	if err != nil {
		return out.String(), err.Error(), -1
	}
	return out.String(), errOut.String(), 0
}
