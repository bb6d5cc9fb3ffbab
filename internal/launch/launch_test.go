package launch

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestOptionsValidateReportsEveryProblem(t *testing.T) {
	err := Options{Nodes: -1, PlacementReplicas: 2, Shards: -1, ReadyTimeout: -time.Second}.Validate()
	if err == nil {
		t.Fatal("no error")
	}
	for _, want := range []string{"Dir is required", "Nodes must not be negative", "PlacementReplicas must be 0, 1 or 3",
		"Shards and ReplicationFactor", "ReadyTimeout"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("validation does not report %q:\n%v", want, err)
		}
	}
	if err := (Options{Dir: "d", Shards: 4}).Validate(); err == nil || !strings.Contains(err.Error(), "need placement") {
		t.Errorf("Shards without placement: %v", err)
	}
	if err := (Options{Dir: "d", Nodes: 3, PlacementReplicas: 1, Shards: 4}).Validate(); err != nil {
		t.Errorf("valid options: %v", err)
	}
}

// fakeBins returns a directory holding files named like the binaries;
// they are never run.
func fakeBins(t *testing.T) string {
	dir := t.TempDir()
	for _, name := range []string{"shardnode", "placementd"} {
		if err := os.WriteFile(filepath.Join(dir, name), nil, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func TestFindBinary(t *testing.T) {
	bins := fakeBins(t)
	if p, err := FindBinary(bins, "shardnode"); err != nil || p != filepath.Join(bins, "shardnode") {
		t.Errorf("FindBinary(dir) = %q, %v", p, err)
	}
	if _, err := FindBinary(bins, "flotilla-bench"); !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), bins) {
		t.Errorf("missing binary in dir: %v, want ErrNotFound naming the dir", err)
	}
	if p, err := FindBinary("", "sh"); err != nil || filepath.Base(p) != "sh" {
		t.Errorf("FindBinary on $PATH = %q, %v", p, err)
	}
	if _, err := FindBinary("", "no-such-flotilla-binary"); !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), "$PATH") {
		t.Errorf("binary nowhere: %v", err)
	}
}

// flagValue returns the value following flag in args, and whether flag is
// there.
func flagValue(args []string, flag string) (string, bool) {
	i := slices.Index(args, flag)
	if i < 0 || i+1 >= len(args) {
		return "", false
	}
	return args[i+1], true
}

func TestCommandLines(t *testing.T) {
	f, err := New(Options{Dir: t.TempDir(), BinDir: fakeBins(t), Nodes: 2, PlacementReplicas: 3, Shards: 8,
		LogLevel: "warn", NodeArgs: []string{"--tick", "50ms"}, PlacementArgs: []string{"--down-after", "10s"}, TLS: true})
	if err != nil {
		t.Fatal(err)
	}
	n2, err := f.Add("--pprof")
	if err != nil || n2.ID != 3 {
		t.Fatalf("Add = %v, %v; want node 3", n2, err)
	}
	n2.Plaintext = true

	node, err := f.Node(1).flags()
	if err != nil {
		t.Fatal(err)
	}
	if v, _ := flagValue(node, "--placement"); v != strings.Join(f.PlacementAddrs(), ",") || strings.Count(v, ",") != 2 {
		t.Errorf("--placement %q, want the three replicas %v", v, f.PlacementAddrs())
	}
	if _, ok := flagValue(node, "--peers"); ok {
		t.Errorf("a node with placement got --peers without Options.Peers: %v", node)
	}
	if v, _ := flagValue(node, "--tls-cert"); filepath.Base(v) != "node-1.crt" {
		t.Errorf("--tls-cert %q, want node-1.crt", v)
	}
	if v, _ := flagValue(node, "--log-level"); v != "warn" || node[len(node)-2] != "--tick" {
		t.Errorf("log level or extra flags missing or not last: %v", node)
	}
	if v, _ := flagValue(node, "--data-dir"); v != filepath.Join(f.Dir, "node1") || f.Node(1).LogPath != filepath.Join(f.Dir, "shardnode-1.log") {
		t.Errorf("node 1 data %q, log %q", v, f.Node(1).LogPath)
	}

	plain, err := n2.flags()
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := flagValue(plain, "--tls-cert"); ok || plain[len(plain)-1] != "--pprof" {
		t.Errorf("a Plaintext node's flags: %v", plain)
	}

	p3, err := f.Placements()[2].flags()
	if err != nil {
		t.Fatal(err)
	}
	if v, _ := flagValue(p3, "--peers"); strings.Count(v, "=") != 3 || !strings.HasPrefix(v, "1=") {
		t.Errorf("placement --peers %q, want the three replicas", v)
	}
	if v, _ := flagValue(p3, "--initial-shards"); v != "8" || p3[len(p3)-1] != "10s" {
		t.Errorf("placement flags: %v", p3)
	}
	if f.Placements()[2].Name != "placementd-3" {
		t.Errorf("replica 3 is named %q", f.Placements()[2].Name)
	}
	if err := f.AddPlacement(1); err == nil {
		t.Error("a second AddPlacement was accepted")
	}

	alone, err := New(Options{Dir: t.TempDir(), BinDir: fakeBins(t), Nodes: 2})
	if err != nil {
		t.Fatal(err)
	}
	args, err := alone.Node(2).flags()
	if err != nil {
		t.Fatal(err)
	}
	if v, _ := flagValue(args, "--peers"); v != alone.Node(1).idAddr()+","+alone.Node(2).idAddr() {
		t.Errorf("without placement --peers %q", v)
	}
	if _, ok := flagValue(args, "--placement"); ok {
		t.Errorf("--placement without placement: %v", args)
	}
	if _, _, err := alone.Leaders(context.Background()); !errors.Is(err, ErrNoPlacement) {
		t.Errorf("Leaders without placement: %v", err)
	}
}

func (n *Node) idAddr() string { return peers([]*Node{n}) }

func TestProcessStartKillRestart(t *testing.T) {
	p := &Process{Name: "sleeper", Bin: "/bin/sh", LogPath: filepath.Join(t.TempDir(), "sleeper.log")}
	ctx := context.Background()
	if err := p.Wait(ctx); err != nil || p.Running() || p.PID() != 0 || p.Exited() != nil {
		t.Fatalf("a process never started: Wait %v, Running %v, PID %d, Exited %v", err, p.Running(), p.PID(), p.Exited())
	}
	if err := p.Start("-c", "echo first; exec sleep 60"); err != nil {
		t.Fatal(err)
	}
	if err := p.Start("-c", "true"); !errors.Is(err, ErrRunning) {
		t.Errorf("a second Start while running: %v, want ErrRunning", err)
	}
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	if err := p.Wait(short); !errors.Is(err, context.DeadlineExceeded) || !p.Running() {
		t.Errorf("Wait on a running process = %v, want DeadlineExceeded", err)
	}
	if err := p.Kill(ctx); err != nil {
		t.Fatal(err)
	}
	if err := p.Exited(); !errors.Is(err, ErrExited) || !strings.Contains(err.Error(), "killed") || !strings.Contains(err.Error(), p.LogPath) {
		t.Errorf("Exited after SIGKILL = %v, want the signal and the log", err)
	}
	if err := p.Start("-c", "echo second; exit 3"); err != nil {
		t.Fatal(err)
	}
	if err := p.Wait(ctx); err == nil || !strings.Contains(err.Error(), "exit status 3") {
		t.Errorf("Wait = %v, want exit status 3", err)
	}
	if log := p.Log(); log != "first\nsecond\n" {
		t.Errorf("log %q: a restart must append to the first start's log", log)
	}
	fresh := &Process{Name: "again", Bin: "/bin/sh", LogPath: p.LogPath}
	if err := fresh.Start("-c", "echo new"); err != nil {
		t.Fatal(err)
	}
	if err := fresh.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	if log := fresh.Log(); log != "new\n" {
		t.Errorf("log %q: a first start truncates the log", log)
	}
}

func TestWaitHTTP(t *testing.T) {
	var calls atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if calls.Add(1) < 3 {
			http.Error(w, "recovering", http.StatusServiceUnavailable)
		}
	}))
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := WaitHTTP(ctx, srv.URL, nil); err != nil || calls.Load() != 3 {
		t.Fatalf("WaitHTTP = %v after %d probes, want nil after 3", err, calls.Load())
	}

	dead := errors.New("exited")
	began := time.Now()
	if err := WaitHTTP(ctx, "http://127.0.0.1:1/readyz", func() error { return dead }); !errors.Is(err, dead) {
		t.Errorf("WaitHTTP with a dead process = %v, want its error", err)
	}
	if time.Since(began) > time.Second {
		t.Errorf("a dead process took %s to fail the wait", time.Since(began))
	}

	short, cancel2 := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel2()
	if err := WaitHTTP(short, "http://127.0.0.1:1/readyz", nil); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("WaitHTTP past its deadline = %v", err)
	}
}

func TestAllLed(t *testing.T) {
	for _, tc := range []struct {
		perNode      map[uint64]int
		shards, want int
		ok           bool
		msg          string
	}{
		{map[uint64]int{1: 2, 2: 2}, 4, 4, true, ""},
		{map[uint64]int{1: 2, 2: 3}, 5, 4, true, ""},
		{map[uint64]int{1: 2, 2: 1}, 4, 4, false, "3 of 4 shards"},
		{map[uint64]int{1: 2}, 2, 4, false, "2 of 4 shards"},
		{nil, 0, 1, false, "0 of 1 shards"},
	} {
		err := AllLed(tc.perNode, tc.shards, tc.want)
		if (err == nil) != tc.ok || (err != nil && !strings.Contains(err.Error(), tc.msg)) {
			t.Errorf("AllLed(%v, %d, %d) = %v, want ok=%v %q", tc.perNode, tc.shards, tc.want, err, tc.ok, tc.msg)
		}
	}
}
