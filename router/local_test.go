package router

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "github.com/flotilla-kv/flotilla/rpc/flotillapb"
)

// directKV is a KV client that calls a fake node's handlers in-process,
// as rpc.KVServer.LocalClient does for a real node; calls counts them.
type directKV struct {
	pb.KVClient // nil: a method not listed below panics
	n           *fakeNode
}

func (d directKV) Get(ctx context.Context, in *pb.GetRequest, _ ...grpc.CallOption) (*pb.GetResponse, error) {
	return d.n.Get(ctx, in)
}

func (d directKV) Put(ctx context.Context, in *pb.PutRequest, _ ...grpc.CallOption) (*pb.PutResponse, error) {
	return d.n.Put(ctx, in)
}

func (d directKV) Multi(ctx context.Context, in *pb.MultiRequest, _ ...grpc.CallOption) (*pb.MultiResponse, error) {
	return d.n.Multi(ctx, in)
}

// localNode returns fake node id stopped, so a call
// that reached it can only have come through Config.Local, and the Local
// that calls it.
func localNode(t *testing.T, id uint64) (*fakeNode, *LocalNode) {
	t.Helper()
	n := newFakeNode(t, id)
	n.stop()
	return n, &LocalNode{ID: id, KV: directKV{n: n}}
}

// gets counts the Get requests n served (unary or inside a Multi).
func gets(n *fakeNode) int {
	c := 0
	for _, r := range n.requests() {
		if r.method == "get" {
			c++
		}
	}
	return c
}

// TestLocalNodeWithoutConnection: requests for the local node (here the
// leader of the only shard, its gRPC server stopped) go to Config.Local:
// writes and linearizable reads succeed, the Client opens no connection to
// the node's address, and Stats counts the calls as for any node.
func TestLocalNodeWithoutConnection(t *testing.T) {
	for _, batches := range []int{-1, 1} {
		n1, local := localNode(t, 1)
		src := newStaticSource(fakeRoute(1, "", "", 1, n1))
		c := newTestClient(t, src, func(cfg *Config) { cfg.Local, cfg.BatchesPerNode = local, batches })
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := c.Put(ctx, []byte("k"), []byte("v")); err != nil {
			t.Fatalf("batches %d: Put through the local node: %v", batches, err)
		}
		v, found, err := c.Get(ctx, []byte("k"))
		if err != nil || !found || string(v) != "v" {
			t.Fatalf("batches %d: Get = %q, %v, %v; want v", batches, v, found, err)
		}
		if got := n1.calls.Load(); got != 2 {
			t.Fatalf("batches %d: the local node served %d requests, want 2", batches, got)
		}
		c.conns.mu.Lock()
		_, dialed := c.conns.mu.conns[n1.addr]
		c.conns.mu.Unlock()
		if dialed {
			t.Fatalf("batches %d: the Client opened a connection to the local node's address", batches)
		}
		if s := c.Stats(); s.Requests != 2 || s.RPCs != 2 {
			t.Fatalf("batches %d: Stats Requests %d, RPCs %d; want 2 and 2", batches, s.Requests, s.RPCs)
		}
	}
}

// TestLocalNodeStaleReadsPreferIt: stale reads of a shard the local node
// holds a follower replica of go to that replica, every time; reads that
// need the leader still go to the leader, and a shard without a local
// replica is read elsewhere.
func TestLocalNodeStaleReadsPreferIt(t *testing.T) {
	n1, local := localNode(t, 1)
	n2, n3 := newFakeNode(t, 2), newFakeNode(t, 3)
	src := newStaticSource(fakeRoute(1, "", "m", 2, n1, n2, n3), fakeRoute(2, "m", "", 2, n2, n3))
	c := newTestClient(t, src, func(cfg *Config) { cfg.Local = local })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	const reads = 50
	for range reads {
		if _, _, err := c.Get(ctx, []byte("a"), WithConsistency(Stale)); err != nil {
			t.Fatal(err)
		}
	}
	if g1, g2, g3 := gets(n1), gets(n2), gets(n3); g1 != reads || g2 != 0 || g3 != 0 {
		t.Fatalf("%d stale reads served by nodes 1, 2, 3: %d, %d, %d; want all by the local node 1", reads, g1, g2, g3)
	}
	if _, _, err := c.Get(ctx, []byte("a")); err != nil {
		t.Fatal(err)
	}
	if g1, g2 := gets(n1), gets(n2); g1 != reads || g2 != 1 {
		t.Fatalf("a linearizable read: nodes 1, 2 served %d, %d gets; want %d (unchanged) and 1 (the leader)", g1, g2, reads)
	}
	if _, _, err := c.Get(ctx, []byte("z"), WithConsistency(Stale)); err != nil {
		t.Fatal(err)
	}
	if g1, g23 := gets(n1), gets(n2)+gets(n3); g1 != reads || g23 != 2 {
		t.Fatalf("a stale read of a shard without a local replica: node 1 served %d gets, 2 and 3 %d; want %d and 2", g1, g23, reads)
	}
}

// TestLocalNodeFailedWriteIsAmbiguous: a local call has no connection to
// tell whether it left, so a write whose local call fails as a broken
// connection would (Unavailable) may have applied: the Client reports it
// ambiguous, as it does for a gRPC call that was sent.
func TestLocalNodeFailedWriteIsAmbiguous(t *testing.T) {
	n1, local := localNode(t, 1)
	n1.hook = func(string, *pb.RequestHeader) error { return status.Error(codes.Unavailable, "fake: gone") }
	src := newStaticSource(fakeRoute(1, "", "", 1, n1))
	c := newTestClient(t, src, func(cfg *Config) { cfg.Local, cfg.MaxRetries = local, 1 })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := c.Put(ctx, []byte("k"), []byte("v"))
	if !errors.Is(err, ErrAmbiguous) {
		t.Fatalf("Put whose local call failed Unavailable = %v; want ErrAmbiguous", err)
	}
	if n1.calls.Load() == 0 {
		t.Fatal("the local node never saw the write")
	}
}

// TestLocalNodeValidate: a Local without an ID or a client is refused,
// both problems at once.
func TestLocalNodeValidate(t *testing.T) {
	err := Config{RouteSource: newStaticSource(), Local: &LocalNode{}}.Validate()
	if !errors.Is(err, ErrInvalidConfig) {
		t.Fatalf("Validate = %v; want ErrInvalidConfig", err)
	}
	for _, want := range []string{"Local.ID", "Local.KV"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("Validate = %v; want it to name %s", err, want)
		}
	}
}
