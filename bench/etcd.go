package bench

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/flotilla-kv/flotilla/internal/launch"
	"github.com/flotilla-kv/flotilla/internal/ports"
)

// etcdModule is the module whose pinned release bench/etcdtool builds.
const etcdModule = "go.etcd.io/etcd/server/v3"

// EtcdBuild says where the etcd server comes from.
type EtcdBuild struct {
	// Binary, when set, is an etcd server to use as is.
	Binary string
	// SourceDir is bench/etcdtool, the tools module that builds etcd.
	// Empty: found from the working directory or the executable, in a
	// Flotilla checkout.
	SourceDir string
	// CacheDir receives the built binary, etcd-VERSION. Empty: .cache/etcd
	// of the checkout holding SourceDir.
	CacheDir string
	// Log receives a line when a build starts.
	Log io.Writer
}

// EnsureEtcd returns the path of the etcd server binary: b.Binary, or the
// cached build of the release pinned in bench/etcdtool/go.mod, building it
// with `go build` (modules from the Go module proxy) when it is missing.
func EnsureEtcd(ctx context.Context, b EtcdBuild) (path, version string, err error) {
	if b.Binary != "" {
		if _, err := os.Stat(b.Binary); err != nil {
			return "", "", fmt.Errorf("bench: --etcd: %w", err)
		}
		return b.Binary, "(given)", nil
	}
	src := b.SourceDir
	if src == "" {
		if src, err = findEtcdTool(); err != nil {
			return "", "", err
		}
	}
	version, err = PinnedVersion(filepath.Join(src, "go.mod"), etcdModule)
	if err != nil {
		return "", "", err
	}
	path, err = buildCached(ctx, b, src, ".", "etcd-"+version, "etcd "+version+" (once; a few minutes)")
	return path, version, err
}

// buildCached returns b.CacheDir/name (default: .cache/etcd of the
// checkout holding the tool module src), building package pkg of module
// src there with `go build` (modules from the Go module proxy) when it is
// missing, and telling b.Log what it builds.
func buildCached(ctx context.Context, b EtcdBuild, src, pkg, name, what string) (string, error) {
	cache := b.CacheDir
	if cache == "" {
		cache = filepath.Join(src, "..", "..", ".cache", "etcd")
	}
	path := filepath.Join(cache, name)
	if st, err := os.Stat(path); err == nil && st.Mode()&0o111 != 0 {
		return path, nil
	}
	if err := os.MkdirAll(cache, 0o755); err != nil {
		return "", err
	}
	if b.Log != nil {
		fmt.Fprintf(b.Log, "building %s from the Go module proxy into %s\n", what, cache)
	}
	tmp := path + ".tmp"
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-o", tmp, pkg)
	cmd.Dir = src
	cmd.Env = append(os.Environ(), "GOFLAGS=-mod=readonly")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("bench: building %s in %s: %w\n%s", pkg, src, err, out)
	}
	if err := os.Rename(tmp, path); err != nil {
		return "", err
	}
	return path, nil
}

// findEtcdTool looks for bench/etcdtool in the working directory and its
// parents, then beside the executable's directory and its parents (./bin
// of a checkout).
func findEtcdTool() (string, error) {
	var starts []string
	if wd, err := os.Getwd(); err == nil {
		starts = append(starts, wd)
	}
	if exe, err := os.Executable(); err == nil {
		starts = append(starts, filepath.Dir(exe))
	}
	for _, d := range starts {
		for {
			p := filepath.Join(d, "bench", "etcdtool")
			if _, err := os.Stat(filepath.Join(p, "go.mod")); err == nil {
				return p, nil
			}
			parent := filepath.Dir(d)
			if parent == d {
				break
			}
			d = parent
		}
	}
	return "", fmt.Errorf("bench: bench/etcdtool not found: run from a Flotilla checkout, or pass --etcd with an etcd server binary")
}

// PinnedVersion reads the version of module that a go.mod requires (the
// release a tool module pins).
func PinnedVersion(gomod, module string) (string, error) {
	f, err := os.Open(gomod)
	if err != nil {
		return "", err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(strings.TrimPrefix(strings.TrimSpace(sc.Text()), "require "))
		if len(fields) >= 2 && fields[0] == module {
			return fields[1], nil
		}
	}
	if err := sc.Err(); err != nil {
		return "", err
	}
	return "", fmt.Errorf("bench: %s does not require %s", gomod, module)
}

// EtcdCluster is a running local etcd cluster, child processes of this
// one. Stop stops it.
type EtcdCluster struct {
	Dir       string
	Endpoints []string
	members   []*launch.Process
}

// StartEtcd starts members etcd members on loopback with their data in
// dir and etcd's default durability (fsync on every commit), and waits
// until each answers /health (which needs a leader).
func StartEtcd(ctx context.Context, binary, dir string, members int) (*EtcdCluster, error) {
	addrs, err := ports.Free(2 * members)
	if err != nil {
		return nil, err
	}
	var initial []string
	for i := range members {
		initial = append(initial, fmt.Sprintf("m%d=http://%s", i+1, addrs[2*i+1]))
	}
	c := &EtcdCluster{Dir: dir}
	for i := range members {
		client, peer := "http://"+addrs[2*i], "http://"+addrs[2*i+1]
		name := fmt.Sprintf("m%d", i+1)
		p := &launch.Process{Name: "etcd-" + name, Bin: binary, LogPath: filepath.Join(dir, "etcd-"+name+".log"),
			OwnProcessGroup: true} // a Ctrl-C reaches the bench, which kills the members
		err := p.Start("--name", name, "--data-dir", filepath.Join(dir, "etcd-"+name),
			"--listen-client-urls", client, "--advertise-client-urls", client,
			"--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
			"--initial-cluster", strings.Join(initial, ","), "--initial-cluster-state", "new",
			"--initial-cluster-token", "flotilla-bench", "--log-level", "warn")
		if err != nil {
			c.Stop()
			return nil, fmt.Errorf("bench: %w", err)
		}
		c.members = append(c.members, p)
		c.Endpoints = append(c.Endpoints, addrs[2*i])
	}
	// Any member's exit fails the wait at once.
	alive := func() error {
		for _, m := range c.members {
			if err := m.Exited(); err != nil {
				return err
			}
		}
		return nil
	}
	for i, ep := range c.Endpoints {
		hctx, cancel := context.WithTimeout(ctx, readyTimeout)
		err := launch.WaitHTTP(hctx, "http://"+ep+"/health", alive)
		cancel()
		if err != nil {
			c.Stop()
			return nil, fmt.Errorf("bench: etcd member m%d not healthy: %w (logs in %s)", i+1, err, dir)
		}
	}
	return c, nil
}

// Procs returns the members' processes.
func (c *EtcdCluster) Procs() []Proc {
	var ps []Proc
	for _, m := range c.members {
		ps = append(ps, Proc{Name: m.Name, PID: m.PID()})
	}
	return ps
}

// Stop kills every member (the bench discards the data).
func (c *EtcdCluster) Stop() {
	for _, m := range c.members {
		_ = m.Kill(context.Background()) // no deadline: SIGKILL cannot be refused
	}
}
