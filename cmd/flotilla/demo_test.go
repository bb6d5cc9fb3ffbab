package main

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	flt "github.com/flotilla-kv/flotilla/internal/fleet"
	"github.com/flotilla-kv/flotilla/internal/testutil"
)

// TestDemoRunsAndExits runs `flotilla demo` as a user would and checks that
// it boots the fleet, prints every process's addresses, serves the
// workload without errors, prints its tables and, with --duration, the
// commands to try, and exits 0 at --duration. While the fleet is up, the
// test scrapes each printed HTTP address's /metrics and runs the printed
// put, get and scan commands as they are; scan's table cuts a long value
// that --value-width 0 and -w json show whole.
func TestDemoRunsAndExits(t *testing.T) {
	bin := flt.Binary(t, "flotilla")
	flt.Binary(t, "shardnode")
	flt.Binary(t, "placementd")
	// A --dir that does not exist yet is created.
	dir := filepath.Join(t.TempDir(), "new", "fleet")
	cmd := exec.Command(bin, "demo", "--duration", "40s", "--workload", "2s", "--shards", "4", "--clients", "4",
		"--bin", filepath.Dir(bin), "--dir", dir)
	pr, pw := io.Pipe()
	cmd.Stdout, cmd.Stderr = pw, pw
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var all strings.Builder
	lines := make(chan string, 1000)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	waited := make(chan error, 1)
	go func() { err := cmd.Wait(); pw.Close(); waited <- err }()

	// Read up to the end of the hints, which come once the workload ran.
	var httpAddrs, hints []string
	deadline := time.After(35 * time.Second)
read:
	for {
		select {
		case line, ok := <-lines:
			if !ok {
				t.Fatalf("demo ended before its hints:\n%s", all.String())
			}
			all.WriteString(line + "\n")
			if f := strings.Fields(line); len(f) == 5 && f[0] == "shardnode" {
				httpAddrs = append(httpAddrs, f[3])
			}
			if cmdline, ok := strings.CutPrefix(line, "  flotilla "); ok {
				hints = append(hints, strings.Split(cmdline, "   # ")[0])
			}
			if strings.HasPrefix(line, "and the status page at http://") {
				break read
			}
		case <-deadline:
			t.Fatalf("no hints 35 s into the demo:\n%s", all.String())
		}
	}
	if len(httpAddrs) != 3 {
		t.Errorf("the endpoints table lists %d shardnodes' HTTP addresses, want 3:\n%s", len(httpAddrs), all.String())
	}
	for _, addr := range httpAddrs {
		resp, err := http.Get("http://" + addr + "/metrics")
		if err != nil {
			t.Errorf("GET /metrics of the printed HTTP address %s: %v", addr, err)
			continue
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), "flotilla_engine_proposals_total") {
			t.Errorf("GET http://%s/metrics: %d, no engine metrics", addr, resp.StatusCode)
		}
	}
	// The hints run as printed.
	hint := func(verb string) []string {
		for _, h := range hints {
			if f := strings.Fields(h); f[0] == verb {
				return f
			}
		}
		t.Fatalf("no %q among the hints %q", verb, hints)
		return nil
	}
	run := func(args ...string) string {
		t.Helper()
		out, err := exec.Command(bin, args...).CombinedOutput()
		if err != nil {
			t.Fatalf("flotilla %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	run(hint("put")...)
	if out := run(append(hint("get"), "--print-value-only")...); strings.TrimSpace(out) != "world" {
		t.Errorf("the get hint after the put hint printed %q, want world", out)
	}
	hint("watch") // runs until interrupted: only printed
	scan := hint("scan")
	long := strings.Repeat("v", 300)
	put := hint("put")
	run(append(put[:len(put)-2], "long", long)...)
	table := run(append(scan, "--start", "long", "--end", "long0")...)
	if want := `"long"  "` + strings.Repeat("v", defaultValueWidth-2) + `"… (300 bytes)`; !strings.Contains(table, want) {
		t.Errorf("scan's table does not cut the 300-byte value to %q:\n%s", want, table)
	}
	if whole := run(append(scan, "--start", "long", "--end", "long0", "--value-width", "0")...); !strings.Contains(whole, `"`+long+`"`) {
		t.Errorf("scan --value-width 0 does not show the whole value:\n%s", whole)
	}
	if js := run(append(scan, "--start", "long", "--end", "long0", "-w", "json")...); !strings.Contains(js, b64([]byte(long))) {
		t.Errorf("scan -w json does not hold the whole value:\n%s", js)
	}

	for line := range lines {
		all.WriteString(line + "\n")
	}
	if err := <-waited; err != nil {
		t.Fatalf("demo failed: %v\n%s", err, all.String())
	}
	text := all.String()
	for _, want := range []string{"fleet ready", "etcd API at 127.0.0.1:", "PROCESS     ID  GRPC", "NODE  ADDRESS", "SHARD  RANGE", "OP   COUNT",
		"the fleet runs until --duration (40s", "etcdctl --endpoints 127.0.0.1:", "fleet stopped"} {
		if !strings.Contains(text, want) {
			t.Errorf("demo output lacks %q:\n%s", want, text)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "placementd.log")); err != nil {
		t.Errorf("the fleet's logs are not in --dir: %v", err)
	}
	// The workload table: both operations ran and none failed.
	for _, line := range strings.Split(text, "\n") {
		f := strings.Fields(line)
		if len(f) == 7 && (f[0] == "put" || f[0] == "get") {
			if f[1] == "0" || f[6] != "0" {
				t.Errorf("workload row %q: want operations and no errors", line)
			}
		}
	}
}

// TestDemoRefusesDurationWithinWorkload: --duration bounds the whole demo,
// so one no longer than --workload is refused before anything starts.
func TestDemoRefusesDurationWithinWorkload(t *testing.T) {
	bin := flt.Binary(t, "flotilla")
	out, err := exec.Command(bin, "demo", "--duration", "3s", "--workload", "5s").CombinedOutput()
	if err == nil {
		t.Fatalf("demo accepted --duration 3s with --workload 5s:\n%s", out)
	}
	if !strings.Contains(string(out), "--duration (3s) bounds the whole demo") || strings.Contains(string(out), "starting placementd") {
		t.Fatalf("want a refusal before the fleet starts, got:\n%s", out)
	}
}

// TestDemoInterruptedDuringWorkload: Ctrl-C while the workload runs stops
// the demo and its fleet, with what the workload did so far and exit 0
// (it used to end with the canceled listing of the nodes as an error).
func TestDemoInterruptedDuringWorkload(t *testing.T) {
	bin := flt.Binary(t, "flotilla")
	flt.Binary(t, "shardnode")
	flt.Binary(t, "placementd")
	cmd := exec.Command(bin, "demo", "--workload", "60s", "--shards", "4", "--clients", "4", "--bin", filepath.Dir(bin),
		"--dir", t.TempDir(), "--placement-listen", flt.FreePort(t))
	pr, pw := io.Pipe()
	cmd.Stdout, cmd.Stderr = pw, pw
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill() })
	waited := make(chan error, 1)
	go func() { err := cmd.Wait(); pw.Close(); waited <- err }()
	var all strings.Builder
	httpAddrs := make(chan string, 3)
	done := make(chan struct{})
	go func() {
		defer close(done)
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			all.WriteString(sc.Text() + "\n")
			if f := strings.Fields(sc.Text()); len(f) == 5 && f[0] == "shardnode" {
				httpAddrs <- f[3]
			}
		}
	}()
	var node string
	select {
	case node = <-httpAddrs:
	case <-time.After(2 * time.Minute):
		t.Fatal("demo fleet not ready within 2 minutes")
	}
	// Interrupt once the workload writes: a node has served KV puts.
	puts := regexp.MustCompile(`(?m)^flotilla_rpc_server_requests_total\{code="OK",method="(Put|Multi)",[^}]*service="flotilla.v1.KV"\} [1-9]`)
	testutil.Eventually(t, time.Minute, func() error {
		resp, err := http.Get("http://" + node + "/metrics")
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		if body, _ := io.ReadAll(resp.Body); !puts.Match(body) {
			return fmt.Errorf("no KV put served by %s yet", node)
		}
		return nil
	})
	if err := cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	var err error
	select {
	case err = <-waited:
	case <-time.After(time.Minute):
		t.Fatal("demo did not stop within a minute of SIGINT")
	}
	<-done
	text := all.String()
	if err != nil {
		t.Fatalf("demo interrupted during the workload: %v\n%s", err, text)
	}
	for _, want := range []string{"OP   COUNT", "fleet stopped"} {
		if !strings.Contains(text, want) {
			t.Errorf("demo output lacks %q:\n%s", want, text)
		}
	}
	if strings.Contains(text, "canceled") {
		t.Errorf("demo output reports the cancellation as an error:\n%s", text)
	}
}
