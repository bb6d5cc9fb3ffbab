package router

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/flotilla-kv/flotilla/internal/fleet"
	"github.com/flotilla-kv/flotilla/internal/testutil"
	pb "github.com/flotilla-kv/flotilla/rpc/flotillapb"
)

// Tests of what a failed call says: whether a write may have applied
// (ErrAmbiguous) or surely did not, and how soon a shard without a leader
// is reported (ErrUnavailable).

// TestMajorityDownWriteFailsFastAsUnavailable: the cached leader's node
// refuses connections, so does a second replica's, and the third says it
// knows no leader. No attempt reached a leader, so the write surely did
// not apply: it fails with ErrUnavailable naming the shard, code
// Unavailable, not ErrAmbiguous, within ElectionWait rather than the
// call's Timeout.
func TestMajorityDownWriteFailsFastAsUnavailable(t *testing.T) {
	dead1, dead2 := &fakeNode{id: 1, addr: fleet.FreePort(t)}, &fakeNode{id: 2, addr: fleet.FreePort(t)}
	n3 := newFakeNode(t, 3)
	n3.hook = func(string, *pb.RequestHeader) error {
		return withDetail(codes.FailedPrecondition, &pb.NotLeader{ShardId: 7})
	}
	c := newTestClient(t, newStaticSource(fakeRoute(7, "", "", 1, dead1, dead2, n3)), func(cfg *Config) {
		cfg.ElectionWait, cfg.Timeout, cfg.MaxRetries = 300*time.Millisecond, 5*time.Second, 100_000
	})
	for _, op := range []struct {
		name string
		call func(context.Context) error
	}{
		{"put", func(ctx context.Context) error { return c.Put(ctx, []byte("k"), []byte("v")) }},
		{"batch", func(ctx context.Context) error { return c.Batch(ctx, []Op{{Key: []byte("k"), Value: []byte("v")}}) }},
		{"get", func(ctx context.Context) error { _, _, err := c.Get(ctx, []byte("k")); return err }},
	} {
		start := time.Now()
		err := op.call(context.Background())
		el := time.Since(start)
		var ue *ShardUnavailableError
		switch {
		case !errors.Is(err, ErrUnavailable) || !errors.As(err, &ue) || ue.ShardID != 7:
			t.Errorf("%s: want ErrUnavailable for shard 7, got %v", op.name, err)
		case errors.Is(err, ErrAmbiguous):
			t.Errorf("%s: a write no leader accepted is reported ambiguous: %v", op.name, err)
		case status.Code(err) != codes.Unavailable:
			t.Errorf("%s: code %v, want Unavailable: %v", op.name, status.Code(err), err)
		case !strings.Contains(err.Error(), "shard 7 unavailable"):
			t.Errorf("%s: message does not name the shard: %v", op.name, err)
		case el < 300*time.Millisecond || el > 3*time.Second:
			t.Errorf("%s: failed after %s, want about ElectionWait (300ms)", op.name, el)
		}
	}
	if got := c.Stats().Ambiguous; got != 0 {
		t.Errorf("%d writes counted ambiguous", got)
	}
}

// TestConnectionBrokenUnderAWriteLeavesItAmbiguous: the node received the
// write and its connection broke before it answered, so the write may have
// applied; the node is gone after that. The call still ends within
// ElectionWait, and says both: outcome unknown, shard unavailable.
func TestConnectionBrokenUnderAWriteLeavesItAmbiguous(t *testing.T) {
	n := newFakeNode(t, 1)
	n.hook = func(string, *pb.RequestHeader) error {
		n.stop() // closes the connection under this very call
		return nil
	}
	c := newTestClient(t, newStaticSource(fakeRoute(1, "", "", 1, n)), func(cfg *Config) {
		cfg.ElectionWait, cfg.Timeout, cfg.MaxRetries = 300*time.Millisecond, 5*time.Second, 100_000
	})
	err := c.Put(context.Background(), []byte("k"), []byte("v"))
	if !errors.Is(err, ErrAmbiguous) || !errors.Is(err, ErrUnavailable) {
		t.Fatalf("want ErrAmbiguous and ErrUnavailable, got %v", err)
	}
	if n.calls.Load() != 1 {
		t.Fatalf("the node served %d calls, want 1", n.calls.Load())
	}
}

// TestStaleReadOfUnreachableShardIsUnavailable: a stale read needs any
// replica; with none reachable it fails with ErrUnavailable too.
func TestStaleReadOfUnreachableShardIsUnavailable(t *testing.T) {
	dead1, dead2 := &fakeNode{id: 1, addr: fleet.FreePort(t)}, &fakeNode{id: 2, addr: fleet.FreePort(t)}
	c := newTestClient(t, newStaticSource(fakeRoute(3, "", "", 1, dead1, dead2)), func(cfg *Config) {
		cfg.ElectionWait, cfg.Timeout, cfg.MaxRetries = 200*time.Millisecond, 5*time.Second, 100_000
	})
	start := time.Now()
	_, _, err := c.Get(context.Background(), []byte("k"), WithConsistency(Stale))
	var ue *ShardUnavailableError
	if !errors.As(err, &ue) || ue.ShardID != 3 || !ue.Stale || !strings.Contains(err.Error(), "no replica reachable") {
		t.Fatalf("want a ShardUnavailableError for a stale read of shard 3, got %v", err)
	}
	if el := time.Since(start); el > 3*time.Second {
		t.Fatalf("failed after %s", el)
	}
}

// TestElectionWaitLetsAnElectionFinish: replicas that know no leader for
// less than ElectionWait do not fail the call.
func TestElectionWaitLetsAnElectionFinish(t *testing.T) {
	n := newFakeNode(t, 1)
	elected := time.Now().Add(300 * time.Millisecond)
	n.hook = func(string, *pb.RequestHeader) error {
		if time.Now().Before(elected) {
			return withDetail(codes.FailedPrecondition, &pb.NotLeader{ShardId: 1})
		}
		return nil
	}
	c := newTestClient(t, newStaticSource(fakeRoute(1, "", "", 1, n)), func(cfg *Config) { cfg.ElectionWait = 2 * time.Second })
	if err := c.Put(context.Background(), []byte("k"), []byte("v")); err != nil {
		t.Fatal(err)
	}
}

// TestAbandonedQueuedRequestIsNeverSent: a write whose deadline passes
// while it waits in the coalescer's queue is taken out of the queue, so it
// never reaches the node and is not ambiguous; one whose deadline passes
// while the call carrying it is in flight may have applied.
func TestAbandonedQueuedRequestIsNeverSent(t *testing.T) {
	n := newFakeNode(t, 1)
	var calls atomic.Int64
	hold1, hold2, entered2 := make(chan struct{}), make(chan struct{}), make(chan struct{})
	n.hook = func(string, *pb.RequestHeader) error {
		switch calls.Add(1) {
		case 1:
			<-hold1
		case 2:
			close(entered2)
			<-hold2
		}
		return nil
	}
	c := newTestClient(t, newStaticSource(fakeRoute(1, "", "", 1, n)), func(cfg *Config) { cfg.BatchesPerNode = 1 })
	errA := make(chan error, 1)
	go func() { errA <- c.Put(context.Background(), []byte("a"), []byte("1")) }()
	testutil.Eventually(t, 10*time.Second, func() error {
		if calls.Load() != 1 {
			return fmt.Errorf("the first write has not reached the node")
		}
		return nil
	})

	// b waits in the queue behind a, and gives up there.
	ctxB, cancelB := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancelB()
	errB := c.Put(ctxB, []byte("b"), []byte("2"))
	if !errors.Is(errB, context.DeadlineExceeded) || errors.Is(errB, ErrAmbiguous) {
		t.Fatalf("queued write cut by its deadline: want DeadlineExceeded alone, got %v", errB)
	}
	if q := queued(c, n.addr); q != 0 {
		t.Fatalf("%d requests still queued after the write gave up", q)
	}

	// c waits in the queue too, goes out when a returns, and gives up while
	// the node holds it.
	ctxC, cancelC := context.WithCancel(context.Background())
	errC := make(chan error, 1)
	go func() { errC <- c.Put(ctxC, []byte("c"), []byte("3")) }()
	testutil.Eventually(t, 10*time.Second, func() error {
		if q := queued(c, n.addr); q != 1 {
			return fmt.Errorf("%d queued, want c", q)
		}
		return nil
	})
	close(hold1)
	if err := <-errA; err != nil {
		t.Fatal(err)
	}
	<-entered2
	cancelC()
	if err := <-errC; !errors.Is(err, ErrAmbiguous) {
		t.Fatalf("write cancelled while the node held it: want ErrAmbiguous, got %v", err)
	}
	close(hold2)

	var keys []string
	for _, r := range n.requests() {
		keys = append(keys, r.method)
	}
	if len(keys) != 2 {
		t.Fatalf("the node saw %v, want the puts of a and c only", keys)
	}
	if v, ok, err := c.Get(context.Background(), []byte("b")); err != nil || ok {
		t.Fatalf("b, which gave up in the queue, was written: %q %v %v", v, ok, err)
	}
}

// TestScanRefusesEndBeforeStart: Scan answers InvalidArgument for an end
// that sorts before start, without asking a node; [k, k) is empty.
func TestScanRefusesEndBeforeStart(t *testing.T) {
	n := newFakeNode(t, 1)
	c := newTestClient(t, newStaticSource(fakeRoute(1, "", "", 1, n)), nil)
	_, err := c.Scan(context.Background(), []byte("m"), []byte("a"), 0)
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), `end "a" sorts before start "m"`) {
		t.Fatalf("want InvalidArgument naming both keys, got %v", err)
	}
	if kvs, err := c.Scan(context.Background(), []byte("m"), []byte("m"), 0); err != nil || len(kvs) != 0 {
		t.Fatalf("[m, m): %v %v", kvs, err)
	}
	if n.calls.Load() != 0 {
		t.Fatalf("a node was asked %d times", n.calls.Load())
	}
}

// TestErrorsCutLongKeys: an error about a 5 KiB key shows its first bytes
// and its length, not the whole key.
func TestErrorsCutLongKeys(t *testing.T) {
	n := newFakeNode(t, 1)
	n.hook = func(string, *pb.RequestHeader) error {
		return status.Error(codes.InvalidArgument, "shard: key too large: 5120 bytes, limit 4096")
	}
	c := newTestClient(t, newStaticSource(fakeRoute(1, "", "", 1, n)), nil)
	key := []byte(strings.Repeat("k", 5<<10))
	err := c.Put(context.Background(), key, []byte("v"))
	if status.Code(err) != codes.InvalidArgument {
		t.Fatalf("want InvalidArgument, got %v", err)
	}
	if msg := err.Error(); len(msg) > 200 || !strings.Contains(msg, `..." (5120 bytes)`) {
		t.Fatalf("message of %d bytes: %s", len(msg), msg)
	}
}
