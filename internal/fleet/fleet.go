package fleet

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"

	"github.com/flotilla-kv/flotilla/internal/ports"
	"github.com/flotilla-kv/flotilla/internal/tlsconfig"
)

var (
	buildMu  sync.Mutex
	buildDir string
	built    = map[string]error{}
)

// Binary returns the path of a Flotilla binary (e.g. "shardnode") built from
// this checkout, building each binary once per test process.
func Binary(t testing.TB, name string) string {
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
	err, ok := built[name]
	if !ok {
		cmd := exec.Command("go", "build", "-o", filepath.Join(buildDir, name), "./cmd/"+name)
		cmd.Dir = moduleRoot()
		if out, berr := cmd.CombinedOutput(); berr != nil {
			err = fmt.Errorf("go build ./cmd/%s: %v\n%s", name, berr, out)
		}
		built[name] = err
	}
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Join(buildDir, name)
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

// Node is one shardnode process.
type Node struct {
	ID      uint64
	Addr    string // gRPC
	HTTP    string
	DataDir string
	LogPath string
	Args    []string // extra flags

	t    testing.TB
	bin  string
	base func() []string // the flags every start passes, before Args
	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan error
	conn *grpc.ClientConn

	// Plaintext starts this process without TLS flags even in a TLS fleet
	// (see Fleet.EnableTLS), as a misconfigured process would be; Conn
	// then dials it in plaintext. Set before Start.
	Plaintext bool
	fleet     *Fleet          // for TLS; nil for a Node built by hand
	tlsFiles  tlsconfig.Files // issued on first start in a TLS fleet
}

// Fleet is a set of shardnodes that know each other's addresses, and
// optionally placementd replicas they report to.
type Fleet struct {
	t     testing.TB
	Dir   string
	Nodes map[uint64]*Node
	order []uint64
	// Placement holds the placementd replicas, by replica ID.
	Placement map[uint64]*Node

	tls *fleetTLS // nil: plaintext
}

// New prepares n nodes (IDs 1..n) without starting them; extra flags apply
// to every node.
func New(t testing.TB, n int, extra ...string) *Fleet {
	f := &Fleet{t: t, Dir: t.TempDir(), Nodes: map[uint64]*Node{}}
	for i := 1; i <= n; i++ {
		f.Add(extra...)
	}
	t.Cleanup(f.killAll)
	return f
}

// Add prepares one more node; every node learns its address on its next
// start.
func (f *Fleet) Add(extra ...string) *Node {
	id := uint64(len(f.order) + 1)
	n := &Node{
		ID: id, Addr: FreePort(f.t), HTTP: FreePort(f.t),
		DataDir: filepath.Join(f.Dir, fmt.Sprintf("n%d", id)),
		LogPath: filepath.Join(f.Dir, fmt.Sprintf("n%d.log", id)),
		Args:    extra, t: f.t, bin: Binary(f.t, "shardnode"), fleet: f,
	}
	n.base = func() []string {
		args := []string{
			"--node-id", fmt.Sprint(n.ID), "--listen", n.Addr, "--http", n.HTTP,
			"--data-dir", n.DataDir, "--peers", f.peers(), "--log-level", "info",
		}
		if len(f.Placement) > 0 {
			args = append(args, "--placement", f.PlacementAddrs())
		}
		return args
	}
	f.Nodes[id] = n
	f.order = append(f.order, id)
	return n
}

// AddPlacement prepares n placementd replicas (IDs 1..n) that know each
// other; extra flags apply to each. Shardnodes started afterwards report to
// them. Start them with StartPlacement.
func (f *Fleet) AddPlacement(n int, extra ...string) {
	if f.Placement == nil {
		f.Placement = map[uint64]*Node{}
	}
	for id := uint64(1); id <= uint64(n); id++ {
		p := &Node{
			ID: id, Addr: FreePort(f.t), HTTP: FreePort(f.t),
			DataDir: filepath.Join(f.Dir, fmt.Sprintf("p%d", id)),
			LogPath: filepath.Join(f.Dir, fmt.Sprintf("p%d.log", id)),
			Args:    extra, t: f.t, bin: Binary(f.t, "placementd"), fleet: f,
		}
		p.base = func() []string {
			var peers []string
			for i := uint64(1); i <= uint64(len(f.Placement)); i++ {
				peers = append(peers, fmt.Sprintf("%d=%s", i, f.Placement[i].Addr))
			}
			return []string{"--id", fmt.Sprint(p.ID), "--listen", p.Addr, "--http", p.HTTP,
				"--data-dir", p.DataDir, "--peers", strings.Join(peers, ","), "--log-level", "info"}
		}
		f.Placement[id] = p
	}
}

// PlacementAddrs returns the placementd addresses, comma-separated.
func (f *Fleet) PlacementAddrs() string {
	var addrs []string
	for i := uint64(1); i <= uint64(len(f.Placement)); i++ {
		addrs = append(addrs, f.Placement[i].Addr)
	}
	return strings.Join(addrs, ",")
}

// StartPlacement starts every placementd replica and waits until each is
// ready.
func (f *Fleet) StartPlacement() {
	for i := uint64(1); i <= uint64(len(f.Placement)); i++ {
		if !f.Placement[i].Running() {
			f.Placement[i].Start()
		}
	}
	for i := uint64(1); i <= uint64(len(f.Placement)); i++ {
		f.Placement[i].WaitReady(30 * time.Second)
	}
}

func (f *Fleet) peers() string {
	var parts []string
	for _, id := range f.order {
		parts = append(parts, fmt.Sprintf("%d=%s", id, f.Nodes[id].Addr))
	}
	return strings.Join(parts, ",")
}

// Start starts every node that is not running and waits until each is ready.
func (f *Fleet) Start() {
	for _, id := range f.order {
		if !f.Nodes[id].Running() {
			f.Nodes[id].Start()
		}
	}
	for _, id := range f.order {
		f.Nodes[id].WaitReady(30 * time.Second)
	}
}

func (f *Fleet) killAll() {
	all := make([]*Node, 0, len(f.Nodes)+len(f.Placement))
	for _, n := range f.Nodes {
		all = append(all, n)
	}
	for _, n := range f.Placement {
		all = append(all, n)
	}
	for _, n := range all {
		n.Kill()
		n.mu.Lock()
		if n.conn != nil {
			_ = n.conn.Close()
		}
		n.mu.Unlock()
	}
}

// Start launches the process (without waiting for readiness).
func (n *Node) Start() {
	n.t.Helper()
	n.mu.Lock()
	defer n.mu.Unlock()
	logf, err := os.OpenFile(n.LogPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		n.t.Fatal(err)
	}
	args := append(append(n.base(), n.tlsArgs()...), n.Args...)
	cmd := exec.Command(n.bin, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		n.t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait(); logf.Close() }()
	n.cmd, n.done = cmd, done
}

// Running reports whether the process is alive.
func (n *Node) Running() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.cmd == nil {
		return false
	}
	select {
	case err := <-n.done:
		n.done <- err
		return false
	default:
		return true
	}
}

// WaitReady polls /readyz until it answers 200.
func (n *Node) WaitReady(timeout time.Duration) {
	n.t.Helper()
	Eventually(n.t, timeout, func() error {
		if !n.Running() {
			n.t.Fatalf("node %d exited while starting; log:\n%s", n.ID, n.Log())
		}
		resp, err := http.Get("http://" + n.HTTP + "/readyz")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("node %d: /readyz: %s", n.ID, resp.Status)
		}
		return nil
	})
}

// Kill sends SIGKILL and waits for the process to go.
func (n *Node) Kill() {
	n.signal(syscall.SIGKILL)
	n.Wait(10 * time.Second)
}

// Terminate sends SIGTERM (a graceful stop); Wait collects the exit status.
func (n *Node) Terminate() { n.signal(syscall.SIGTERM) }

// Pause sends SIGSTOP: the process freezes with its sockets open, as a
// node that hangs would. Resume undoes it; Kill works on a paused node.
func (n *Node) Pause() { n.signal(syscall.SIGSTOP) }

// Resume sends SIGCONT to a paused process.
func (n *Node) Resume() { n.signal(syscall.SIGCONT) }

func (n *Node) signal(s syscall.Signal) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.cmd != nil && n.cmd.Process != nil {
		_ = n.cmd.Process.Signal(s)
	}
}

// Wait waits for the process to exit and returns its exit error (nil for
// status 0).
func (n *Node) Wait(timeout time.Duration) error {
	n.mu.Lock()
	done := n.done
	n.mu.Unlock()
	if done == nil {
		return nil
	}
	select {
	case err := <-done:
		done <- err
		return err
	case <-time.After(timeout):
		n.t.Fatalf("node %d did not exit within %s", n.ID, timeout)
		return nil
	}
}

// Restart starts a stopped node again with its data directory intact and
// waits until it is ready.
func (n *Node) Restart() {
	n.Start()
	n.WaitReady(30 * time.Second)
}

// Conn returns a client connection to the node (shared, closed at cleanup).
func (n *Node) Conn() *grpc.ClientConn {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.conn == nil {
		c, err := grpc.NewClient(n.Addr, n.dialCreds())
		if err != nil {
			n.t.Fatal(err)
		}
		n.conn = c
	}
	return n.conn
}

// Log returns the node's log so far.
func (n *Node) Log() string {
	b, _ := os.ReadFile(n.LogPath)
	return string(b)
}

// Eventually polls cond every interval until it returns nil or timeout
// passes, then fails with cond's last error.
func Eventually(t testing.TB, timeout time.Duration, cond func() error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var err error
	for {
		if err = cond(); err == nil {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("condition not met within %s: %v", timeout, err)
		case <-time.After(25 * time.Millisecond):
		}
	}
}
