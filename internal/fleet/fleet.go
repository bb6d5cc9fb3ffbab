package fleet

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"

	"github.com/flotilla-kv/flotilla/internal/launch"
	"github.com/flotilla-kv/flotilla/internal/ports"
	"github.com/flotilla-kv/flotilla/internal/tlsconfig"
)

// readyTimeout bounds each process's start in Start, StartPlacement and
// Restart.
const readyTimeout = 30 * time.Second

var (
	buildMu  sync.Mutex
	buildDir string
	built    = map[string]error{}
)

// Binary returns the path of a Flotilla binary (e.g. "shardnode") built from
// this checkout, building each binary once per test process; they all land
// in one directory, so a binary finds the others next to itself.
func Binary(t testing.TB, name string) string {
	t.Helper()
	dir := binDir(t)
	buildMu.Lock()
	defer buildMu.Unlock()
	err, ok := built[name]
	if !ok {
		cmd := exec.Command("go", "build", "-o", filepath.Join(dir, name), "./cmd/"+name)
		cmd.Dir = moduleRoot()
		if out, berr := cmd.CombinedOutput(); berr != nil {
			err = fmt.Errorf("go build ./cmd/%s: %v\n%s", name, berr, out)
		}
		built[name] = err
	}
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Join(dir, name)
}

// binDir returns the directory Binary builds into, made on first use.
func binDir(t testing.TB) string {
	t.Helper()
	buildMu.Lock()
	defer buildMu.Unlock()
	if buildDir == "" {
		d, err := os.MkdirTemp("", "flotilla-bin-")
		if err != nil {
			t.Fatal(err)
		}
		buildDir = d
	}
	return buildDir
}

// moduleRoot finds the directory of go.mod from this source file.
func moduleRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

// FreePort returns a loopback address whose port was free a moment ago,
// outside the ephemeral range (see package ports).
func FreePort(t testing.TB) string {
	t.Helper()
	addrs, err := ports.Free(1)
	if err != nil {
		t.Fatal(err)
	}
	return addrs[0]
}

// Fleet is a launch.Fleet whose calls fail the test t: shardnodes that
// know each other's addresses (--peers) and optionally placementd replicas
// they report to, logging at info level. Nodes and Placement map IDs to
// processes; only the test goroutine changes them (New, Add,
// AddPlacement).
type Fleet struct {
	// Launch is the fleet underneath, for what this package does not wrap.
	Launch *launch.Fleet
	// Dir holds every process's data and log (see package launch).
	Dir       string
	Nodes     map[uint64]*Node
	Placement map[uint64]*Node

	t testing.TB
}

// Node is a launch.Node whose calls fail the test: a shardnode or a
// placementd replica. Its fields (ID, Addr, HTTP, DataDir, LogPath, Args,
// Plaintext) and the calls that cannot fail (Running, Log, Terminate,
// Pause, Resume) are launch.Node's.
type Node struct {
	*launch.Node
	t testing.TB
}

// New prepares n shardnodes (IDs 1..n) without starting them; extra flags
// apply to every node. The fleet is killed when the test ends.
func New(t testing.TB, n int, extra ...string) *Fleet {
	t.Helper()
	lf, err := launch.New(launch.Options{Dir: t.TempDir(), BinDir: binDir(t),
		Peers: true, LogLevel: "info", ReadyTimeout: readyTimeout})
	if err != nil {
		t.Fatal(err)
	}
	f := &Fleet{Launch: lf, Dir: lf.Dir, Nodes: map[uint64]*Node{}, Placement: map[uint64]*Node{}, t: t}
	t.Cleanup(lf.Close)
	t.Cleanup(f.logTailsIfFailed) // runs first: cleanups run last in, first out
	for range n {
		f.Add(extra...)
	}
	return f
}

// Add prepares one more node; every node learns its address on its next
// start.
func (f *Fleet) Add(extra ...string) *Node {
	f.t.Helper()
	Binary(f.t, "shardnode")
	ln, err := f.Launch.Add(extra...)
	if err != nil {
		f.t.Fatal(err)
	}
	n := &Node{Node: ln, t: f.t}
	f.Nodes[ln.ID] = n
	return n
}

// AddPlacement prepares n placementd replicas (IDs 1..n) that know each
// other; extra flags apply to each. Shardnodes started afterwards report to
// them. Start them with StartPlacement.
func (f *Fleet) AddPlacement(n int, extra ...string) {
	f.t.Helper()
	Binary(f.t, "placementd")
	if err := f.Launch.AddPlacement(n, extra...); err != nil {
		f.t.Fatal(err)
	}
	for _, p := range f.Launch.Placements() {
		f.Placement[p.ID] = &Node{Node: p, t: f.t}
	}
}

// PlacementAddrs returns the placementd addresses, comma-separated.
func (f *Fleet) PlacementAddrs() string { return strings.Join(f.Launch.PlacementAddrs(), ",") }

// StartPlacement starts every placementd replica and waits until each is
// ready.
func (f *Fleet) StartPlacement() {
	f.t.Helper()
	if err := f.Launch.StartPlacement(context.Background()); err != nil {
		f.t.Fatalf("%v; log:\n%s", err, logOfFailed(f.Launch.Placements()))
	}
}

// Start starts every node that is not running and waits until each is
// ready.
func (f *Fleet) Start() {
	f.t.Helper()
	if err := f.Launch.StartNodes(context.Background()); err != nil {
		f.t.Fatalf("%v; log:\n%s", err, logOfFailed(f.Launch.Nodes()))
	}
}

// tailLines is how much of each process's log a failed test prints.
const tailLines = 40

// logTailsIfFailed prints the end of every process's log when the test
// failed, so that a failure in CI, whose temporary directories are gone
// when it is read, keeps what the processes saw.
func (f *Fleet) logTailsIfFailed() {
	if !f.t.Failed() {
		return
	}
	procs := append(f.Launch.Placements(), f.Launch.Nodes()...)
	for _, p := range procs {
		f.t.Logf("last %d lines of %s:\n%s", tailLines, p.LogPath, tail(p.Log(), tailLines))
	}
}

// tail returns the last n lines of s.
func tail(s string, n int) string {
	s = strings.TrimRight(s, "\n")
	for i := len(s) - 1; i >= 0; i-- {
		if s[i] == '\n' {
			if n--; n == 0 {
				return s[i+1:]
			}
		}
	}
	return s
}

// logOfFailed returns the log of the first process of nodes that exited.
func logOfFailed(nodes []*launch.Node) string {
	for _, n := range nodes {
		if n.Exited() != nil {
			return n.Log()
		}
	}
	return "(every process still runs)"
}

// EnableTLS makes f a mutual-TLS fleet (see launch.Fleet.EnableTLS). Call
// it before starting any process.
func (f *Fleet) EnableTLS() {
	f.t.Helper()
	if err := f.Launch.EnableTLS(); err != nil {
		f.t.Fatal(err)
	}
}

// ClientTLS returns the files of a TLS fleet's client certificate, or the
// zero Files for a plaintext fleet.
func (f *Fleet) ClientTLS() tlsconfig.Files { return f.Launch.ClientTLS() }

// ClientTLSConfig returns the client configuration of a TLS fleet, or nil
// (plaintext); its DialOption suits grpc.NewClient and
// router.Config.DialOptions.
func (f *Fleet) ClientTLSConfig() *tlsconfig.Config { return f.Launch.ClientTLSConfig() }

// Start launches the process (without waiting for readiness).
func (n *Node) Start() {
	n.t.Helper()
	if err := n.Node.Start(); err != nil {
		n.t.Fatal(err)
	}
}

// WaitReady waits until the node answers /readyz, failing the test with
// the node's log if it exits or timeout passes first.
func (n *Node) WaitReady(timeout time.Duration) {
	n.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if err := n.Node.WaitReady(ctx); err != nil {
		n.t.Fatalf("%v; log:\n%s", err, n.Log())
	}
}

// Kill sends SIGKILL and waits for the process to go.
func (n *Node) Kill() {
	n.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := n.Node.Kill(ctx); err != nil {
		n.t.Fatal(err)
	}
}

// Wait waits for the process to exit and returns its exit error (nil for
// status 0), failing the test if it still runs after timeout.
func (n *Node) Wait(timeout time.Duration) error {
	n.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	err := n.Node.Wait(ctx)
	if ctx.Err() != nil && n.Running() {
		n.t.Fatalf("%s did not exit within %s", n.Name, timeout)
	}
	return err
}

// Restart starts a stopped node again with its data directory intact and
// waits until it is ready.
func (n *Node) Restart() {
	n.t.Helper()
	n.Start()
	n.WaitReady(readyTimeout)
}

// Conn returns a client connection to the node (shared, closed at
// cleanup).
func (n *Node) Conn() *grpc.ClientConn {
	n.t.Helper()
	c, err := n.Node.Conn()
	if err != nil {
		n.t.Fatal(err)
	}
	return c
}
