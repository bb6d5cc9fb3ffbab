package target

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/flotilla-kv/flotilla/bench"
)

// etcdctlModule is the module whose pinned release test/tools builds.
const etcdctlModule = "go.etcd.io/etcd/etcdctl/v3"

var etcdctlOnce struct {
	sync.Mutex
	path string
}

// Etcdctl returns the path of an etcdctl binary of the release that
// test/tools/go.mod pins, building it into .cache/etcdctl/etcdctl-VERSION
// of the checkout (modules from the Go module proxy) when it is missing.
// Safe for concurrent use; the build happens once per checkout.
func Etcdctl(t testing.TB) string {
	t.Helper()
	etcdctlOnce.Lock()
	defer etcdctlOnce.Unlock()
	if etcdctlOnce.path != "" {
		return etcdctlOnce.path
	}
	src := filepath.Join(Root(), "test", "tools")
	version, err := bench.PinnedVersion(filepath.Join(src, "go.mod"), etcdctlModule)
	if err != nil {
		t.Fatal(err)
	}
	cache := filepath.Join(Root(), ".cache", "etcdctl")
	path := filepath.Join(cache, "etcdctl-"+version)
	if st, err := os.Stat(path); err == nil && st.Mode()&0o111 != 0 {
		etcdctlOnce.path = path
		return path
	}
	if err := os.MkdirAll(cache, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Logf("building etcdctl %s from the Go module proxy into %s (once)", version, cache)
	tmp, err := os.CreateTemp(cache, "etcdctl-*.tmp")
	if err != nil {
		t.Fatal(err)
	}
	_ = tmp.Close()
	defer os.Remove(tmp.Name())
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-o", tmp.Name(), etcdctlModule)
	cmd.Dir = src
	cmd.Env = append(os.Environ(), "GOFLAGS=-mod=readonly")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building etcdctl %s in %s: %v\n%s", version, src, err, out)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		t.Fatal(err)
	}
	etcdctlOnce.path = path
	return path
}
