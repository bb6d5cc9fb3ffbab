package router

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/flotilla-kv/flotilla/internal/fleet"
	"github.com/flotilla-kv/flotilla/internal/testutil"
	pb "github.com/flotilla-kv/flotilla/rpc/flotillapb"
)

// Unit tests of routing and retries against scripted in-process nodes
// (fake_test.go). The integration tests against real shardnodes are in
// integration_test.go.

func TestConfigValidateReportsEveryProblem(t *testing.T) {
	err := Config{
		PlacementAddresses: []string{"a:1", ""},
		ReadConsistency:    Consistency(9),
		AttemptTimeout:     -time.Second,
		BackoffBase:        time.Second,
		BackoffMax:         time.Millisecond,
		RouteCacheSize:     -1,
		WriteLanes:         -2,
	}.Validate()
	if !errors.Is(err, ErrInvalidConfig) {
		t.Fatalf("want ErrInvalidConfig, got %v", err)
	}
	for _, want := range []string{"PlacementAddresses[1]", "ReadConsistency", "AttemptTimeout", "BackoffMax", "RouteCacheSize", "WriteLanes"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not mention %s:\n%v", want, err)
		}
	}
	if err := (Config{}).Validate(); err == nil || !strings.Contains(err.Error(), "RouteSource") {
		t.Errorf("empty config: %v", err)
	}
	if err := (Config{PlacementAddresses: []string{"x:1"}}).Validate(); err != nil {
		t.Errorf("minimal config: %v", err)
	}
	cfg := Config{PlacementAddresses: []string{"x:1"}}
	_ = cfg.Validate()
	if cfg.Timeout != 0 || cfg.WriteLanes != 0 {
		t.Errorf("Validate modified its receiver: %+v", cfg)
	}
	if _, err := New(context.Background(), Config{WriteLanes: -1}); !errors.Is(err, ErrInvalidConfig) {
		t.Errorf("New with a bad config: %v", err)
	}
}

func TestNotLeaderHintIsFollowedAtOnceAndCached(t *testing.T) {
	n1, n2 := newFakeNode(t, 1), newFakeNode(t, 2)
	n1.hook = func(string, *pb.RequestHeader) error {
		return withDetail(codes.FailedPrecondition, &pb.NotLeader{ShardId: 1, LeaderReplicaId: 201, LeaderNodeId: 2, LeaderAddress: n2.addr})
	}
	src := newStaticSource(fakeRoute(1, "", "", 1, n1, n2))
	// Backoff so long that the test would time out if the hint waited.
	c := newTestClient(t, src, func(cfg *Config) { cfg.BackoffBase, cfg.BackoffMax = time.Minute, time.Minute })
	ctx := context.Background()
	if err := c.Put(ctx, []byte("k"), []byte("v")); err != nil {
		t.Fatal(err)
	}
	if v, ok, err := c.Get(ctx, []byte("k")); err != nil || !ok || string(v) != "v" {
		t.Fatalf("get: %q %v %v", v, ok, err)
	}
	if got := n1.calls.Load(); got != 1 {
		t.Errorf("node 1 (stale leader) called %d times, want 1: the hint was not cached", got)
	}
	if got := n2.calls.Load(); got != 2 {
		t.Errorf("node 2 (leader) called %d times, want 2", got)
	}
	st := c.Stats()
	if st.Retries[RetryNotLeader] != 1 || st.TotalRetries() != 1 {
		t.Errorf("retries: %v", st.Retries)
	}
	if st.RouteLoads != 1 || src.gets.Load() != 0 { // New's warm-up ScanRoutes found the route
		t.Errorf("route loads %d (GetRoute %d), want only the warm-up", st.RouteLoads, src.gets.Load())
	}
}

func TestBusyBacksOffForRetryAfter(t *testing.T) {
	n := newFakeNode(t, 1)
	var busy atomic.Int64
	n.hook = func(string, *pb.RequestHeader) error {
		if busy.Add(1) <= 2 {
			return withDetail(codes.ResourceExhausted, &pb.Busy{RetryAfterMs: 40})
		}
		return nil
	}
	c := newTestClient(t, newStaticSource(fakeRoute(1, "", "", 1, n)), nil)
	start := time.Now()
	if err := c.Put(context.Background(), []byte("k"), []byte("v")); err != nil {
		t.Fatal(err)
	}
	if el := time.Since(start); el < 80*time.Millisecond {
		t.Errorf("two Busy{40ms} answers retried after %s", el)
	}
	if got := c.Stats().Retries[RetryBusy]; got != 2 {
		t.Errorf("busy retries %d", got)
	}
}

func TestWriteRetriesKeepClientIDAndSeq(t *testing.T) {
	n1, n2 := newFakeNode(t, 1), newFakeNode(t, 2)
	var failures atomic.Int64
	// The leader loses leadership with the write in its log (Ambiguous),
	// then the connection breaks (Unavailable), then it redirects.
	n1.hook = func(string, *pb.RequestHeader) error {
		switch failures.Add(1) {
		case 1:
			return withDetail(codes.Unknown, &pb.Ambiguous{Reason: "leadership lost"})
		case 2:
			return status.Error(codes.Unavailable, "connection reset")
		}
		return withDetail(codes.FailedPrecondition, &pb.NotLeader{ShardId: 1, LeaderReplicaId: 201, LeaderNodeId: 2})
	}
	c := newTestClient(t, newStaticSource(fakeRoute(1, "", "", 1, n1, n2)), func(cfg *Config) { cfg.WriteLanes = 1 })
	ctx := context.Background()
	if err := c.Put(ctx, []byte("k"), []byte("v1")); err != nil {
		t.Fatal(err)
	}
	if err := c.Put(ctx, []byte("k"), []byte("v2")); err != nil {
		t.Fatal(err)
	}
	var hdrs []*pb.RequestHeader
	for _, r := range append(n1.requests(), n2.requests()...) {
		hdrs = append(hdrs, r.hdr)
	}
	if len(hdrs) < 4 {
		t.Fatalf("%d requests, want at least 4", len(hdrs))
	}
	id := hdrs[0].GetClientId()
	if id == 0 {
		t.Fatal("write sent without a ClientID")
	}
	seqs := map[uint64]int{}
	for _, h := range hdrs {
		if h.GetClientId() != id {
			t.Fatalf("one lane, two ClientIDs: %x and %x", id, h.GetClientId())
		}
		seqs[h.GetSeq()]++
	}
	// First write: n1 ×3 (ambiguous, unavailable... then n2) all at Seq 1;
	// the second write at Seq 2.
	first := hdrs[0].GetSeq()
	if seqs[first] < 3 || seqs[first+1] == 0 || len(seqs) != 2 {
		t.Fatalf("seqs by count: %v (want the retries of the first write to share Seq %d)", seqs, first)
	}
	st := c.Stats()
	if st.Retries[RetryAmbiguous] != 1 || st.Retries[RetryUnavailable] != 1 {
		t.Errorf("retries: %v", st.Retries)
	}
}

func TestAmbiguousWriteSurfacesErrAmbiguous(t *testing.T) {
	n := newFakeNode(t, 1)
	n.hook = func(string, *pb.RequestHeader) error {
		return withDetail(codes.Unknown, &pb.Ambiguous{Reason: "leadership lost"})
	}
	c := newTestClient(t, newStaticSource(fakeRoute(1, "", "", 1, n)), func(cfg *Config) { cfg.MaxRetries = 3 })
	err := c.Put(context.Background(), []byte("k"), []byte("v"))
	if !errors.Is(err, ErrAmbiguous) || !errors.Is(err, ErrRetriesExhausted) {
		t.Fatalf("want ErrAmbiguous and ErrRetriesExhausted, got %v", err)
	}
	if s, ok := status.FromError(err); !ok || s.Code() != codes.Unknown {
		t.Errorf("the node's status is not reachable from %v", err)
	}
	if got := n.calls.Load(); got != 4 {
		t.Errorf("%d attempts, want 1 + MaxRetries = 4", got)
	}
	if c.Stats().Ambiguous != 1 {
		t.Errorf("ambiguous count %d", c.Stats().Ambiguous)
	}

	// A write that was refused every time surely did not apply: not
	// ambiguous.
	n.hook = func(string, *pb.RequestHeader) error {
		return withDetail(codes.FailedPrecondition, &pb.NotLeader{ShardId: 1})
	}
	err = c.Put(context.Background(), []byte("k"), []byte("v"))
	if !errors.Is(err, ErrRetriesExhausted) || errors.Is(err, ErrAmbiguous) {
		t.Fatalf("refused write: want ErrRetriesExhausted alone, got %v", err)
	}
}

func TestDeadlineDuringWriteIsAmbiguous(t *testing.T) {
	n := newFakeNode(t, 1)
	release := make(chan struct{})
	defer close(release)
	n.hook = func(method string, _ *pb.RequestHeader) error {
		<-release
		return nil
	}
	c := newTestClient(t, newStaticSource(fakeRoute(1, "", "", 1, n)), nil)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	err := c.Put(ctx, []byte("k"), []byte("v"))
	if !errors.Is(err, ErrAmbiguous) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("write cut by its deadline: want ErrAmbiguous and DeadlineExceeded, got %v", err)
	}
	ctx, cancel = context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	_, _, err = c.Get(ctx, []byte("k"))
	if errors.Is(err, ErrAmbiguous) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("read cut by its deadline: want DeadlineExceeded alone, got %v", err)
	}
}

func TestAttemptTimeoutMovesToNextReplica(t *testing.T) {
	n1, n2 := newFakeNode(t, 1), newFakeNode(t, 2)
	release := make(chan struct{})
	defer close(release)
	n1.hook = func(string, *pb.RequestHeader) error { <-release; return nil }
	c := newTestClient(t, newStaticSource(fakeRoute(1, "", "", 1, n1, n2)), func(cfg *Config) { cfg.AttemptTimeout = 50 * time.Millisecond })
	if err := c.Put(context.Background(), []byte("k"), []byte("v")); err != nil {
		t.Fatal(err)
	}
	if n2.calls.Load() != 1 {
		t.Fatalf("node 2 called %d times", n2.calls.Load())
	}
	// Node 2 served a write, so it is the leader now: the next calls go
	// straight to it instead of waiting out node 1 (paused, say) again.
	for range 3 {
		if err := c.Put(context.Background(), []byte("k"), []byte("v")); err != nil {
			t.Fatal(err)
		}
	}
	if got := n1.calls.Load(); got != 1 {
		t.Fatalf("the hung node 1 was tried %d times, want once", got)
	}
	if got := n2.calls.Load(); got != 4 {
		t.Fatalf("node 2 called %d times, want 4", got)
	}
}

func TestUnreachableLeaderFailsOverToNextReplica(t *testing.T) {
	n2 := newFakeNode(t, 2)
	dead := &fakeNode{id: 1, addr: fleet.FreePort(t)}
	c := newTestClient(t, newStaticSource(fakeRoute(1, "", "", 1, dead, n2)), nil)
	if err := c.Put(context.Background(), []byte("k"), []byte("v")); err != nil {
		t.Fatal(err)
	}
	if got := c.Stats().Retries[RetryUnavailable]; got != 1 {
		t.Errorf("unavailable retries %d, want 1", got)
	}
	// Every replica unreachable: the route is reloaded and the call ends
	// when retries run out, with the transport's status.
	c2 := newTestClient(t, newStaticSource(fakeRoute(1, "", "", 1, dead)), func(cfg *Config) { cfg.MaxRetries = 4 })
	_, _, err := c2.Get(context.Background(), []byte("k"))
	if !errors.Is(err, ErrRetriesExhausted) || status.Code(err) != codes.Unavailable {
		t.Fatalf("want ErrRetriesExhausted with Unavailable, got %v", err)
	}
	if st := c2.Stats(); st.RouteLoads < 3 {
		t.Errorf("route not reloaded after every replica failed: %+v", st)
	}
}

func TestShardNotFoundReloadsTheRoute(t *testing.T) {
	n1, n2 := newFakeNode(t, 1), newFakeNode(t, 2)
	n1.hook = func(string, *pb.RequestHeader) error {
		return withDetail(codes.NotFound, &pb.ShardNotFound{ShardId: 1})
	}
	src := newStaticSource(fakeRoute(1, "", "", 1, n1))
	c := newTestClient(t, src, nil)
	ctx := context.Background()
	if _, _, err := c.Get(ctx, []byte("k")); err != nil {
		// Placement still says node 1: the call keeps failing and reloading.
		if !errors.Is(err, ErrRetriesExhausted) {
			t.Fatalf("want ErrRetriesExhausted, got %v", err)
		}
	}
	// The shard moved to node 2; the next reload finds it.
	src.set(fakeRoute(1, "", "", 2, n2))
	before := src.gets.Load()
	if _, _, err := c.Get(ctx, []byte("k")); err != nil {
		t.Fatal(err)
	}
	if src.gets.Load() == before {
		t.Fatal("route not reloaded after ShardNotFound")
	}
	if c.Stats().Retries[RetryShardNotFound] == 0 {
		t.Error("no ShardNotFound retry counted")
	}
}

func TestKeyNotInShardTakesTheNodesDescriptor(t *testing.T) {
	n := newFakeNode(t, 1)
	// Placement is stale: shard 1 is said to cover everything, but it split
	// and "m" belongs to shard 2 now.
	stale := fakeRoute(1, "", "", 1, n)
	cur1 := fakeRoute(1, "", "f", 1, n).GetShard()
	cur1.Epoch.Version = 2
	right := fakeRoute(2, "f", "", 1, n)
	right.Shard.Epoch.Version = 2
	n.hook = func(_ string, hdr *pb.RequestHeader) error {
		if hdr.GetShardId() == 1 {
			return withDetail(codes.OutOfRange, &pb.KeyNotInShard{ShardId: 1, Key: []byte("m"), Current: cur1})
		}
		return nil
	}
	src := newStaticSource(stale)
	c := newTestClient(t, src, nil)
	src.set(fakeRoute(1, "", "f", 1, n), right) // placement caught up
	if err := c.Put(context.Background(), []byte("m"), []byte("v")); err != nil {
		t.Fatal(err)
	}
	if c.Stats().Retries[RetryKeyNotInShard] != 1 {
		t.Errorf("retries %v", c.Stats().Retries)
	}
}

func TestBatchRefusals(t *testing.T) {
	n := newFakeNode(t, 1)
	c := newTestClient(t, newStaticSource(fakeRoute(1, "", "m", 1, n), fakeRoute(2, "m", "", 1, n)), nil)
	ctx := context.Background()
	if err := c.Batch(ctx, nil); !errors.Is(err, ErrEmptyBatch) {
		t.Fatalf("want ErrEmptyBatch, got %v", err)
	}
	if err := c.Batch(ctx, []Op{{Key: []byte("a"), Value: []byte("1")}, {Key: []byte("b"), Delete: true}}); err != nil {
		t.Fatal(err)
	}
}

func TestScanPagesAcrossShards(t *testing.T) {
	n1, n2 := newFakeNode(t, 1), newFakeNode(t, 2)
	src := newStaticSource(fakeRoute(1, "", "m", 1, n1), fakeRoute(2, "m", "t", 2, n2), fakeRoute(3, "t", "", 2, n2))
	c := newTestClient(t, src, nil)
	ctx := context.Background()
	var want []string
	for _, k := range []string{"a", "b", "c", "d", "e", "m", "n", "o", "t", "u"} {
		if err := c.Put(ctx, []byte(k), []byte("v"+k)); err != nil {
			t.Fatal(err)
		}
		want = append(want, k)
	}
	// Both fake nodes hold one map each, which a shard's range filters.
	for _, limit := range []int{0, 1, 3, 6, 10, 20} {
		kvs, err := c.Scan(ctx, nil, nil, limit)
		if err != nil {
			t.Fatal(err)
		}
		w := want
		if limit > 0 && limit < len(w) {
			w = w[:limit]
		}
		if got := keysOf(kvs); strings.Join(got, ",") != strings.Join(w, ",") {
			t.Errorf("limit %d: got %v, want %v", limit, got, w)
		}
	}
	kvs, err := c.Scan(ctx, []byte("c"), []byte("o"), 0)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(keysOf(kvs), ","); got != "c,d,e,m,n" {
		t.Errorf("[c, o): %s", got)
	}
	if kvs[0].Key[0] != 'c' || string(kvs[0].Value) != "vc" {
		t.Errorf("first pair %q=%q", kvs[0].Key, kvs[0].Value)
	}
}

func keysOf(kvs []KeyValue) []string {
	var out []string
	for _, kv := range kvs {
		out = append(out, string(kv.Key))
	}
	return out
}

func TestConcurrentMissesShareOneLoadAndPrefetchNeighbours(t *testing.T) {
	n := newFakeNode(t, 1)
	src := newStaticSource(fakeRoute(1, "", "f", 1, n), fakeRoute(2, "f", "m", 1, n), fakeRoute(3, "m", "t", 1, n), fakeRoute(4, "t", "", 1, n))
	src.block = make(chan struct{})
	c := newTestClient(t, src, func(cfg *Config) { cfg.PrefetchNeighbours = 1 })
	scansAtStart := src.scans.Load()
	c.cache = newRouteCache(100) // forget the warm-up
	ctx := context.Background()
	var wg sync.WaitGroup
	errs := make(chan error, 20)
	for range 20 {
		wg.Go(func() {
			_, _, err := c.Get(ctx, []byte("g"))
			errs <- err
		})
	}
	// Wait until every caller missed, then let the one load answer.
	testutil.Eventually(t, 10*time.Second, func() error {
		if n := c.Stats().CacheMisses; n < 20 {
			return fmt.Errorf("%d misses", n)
		}
		return nil
	})
	close(src.block)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if got := src.gets.Load(); got != 1 {
		t.Fatalf("20 concurrent misses made %d GetRoute calls, want 1", got)
	}
	// The neighbours (shards 1 and 3) came with it.
	for _, k := range []string{"a", "n"} {
		if _, ok := c.cache.lookup([]byte(k)); !ok {
			t.Errorf("neighbour route of %q not prefetched", k)
		}
	}
	if _, ok := c.cache.lookup([]byte("u")); ok {
		t.Errorf("route of shard 4 prefetched beyond 1 neighbour")
	}
	if src.scans.Load() != scansAtStart {
		t.Errorf("unexpected ScanRoutes")
	}
}

func TestLanesNeverCarryTwoWritesAtOnce(t *testing.T) {
	n := newFakeNode(t, 1)
	var mu sync.Mutex
	inFlight := map[uint64]bool{}
	lastSeq := map[uint64]uint64{}
	var violations []string
	n.hook = func(_ string, hdr *pb.RequestHeader) error {
		id, seq := hdr.GetClientId(), hdr.GetSeq()
		mu.Lock()
		if inFlight[id] {
			violations = append(violations, fmt.Sprintf("client %x: two writes in flight", id))
		}
		if seq <= lastSeq[id] {
			violations = append(violations, fmt.Sprintf("client %x: seq %d after %d", id, seq, lastSeq[id]))
		}
		inFlight[id], lastSeq[id] = true, seq
		mu.Unlock()
		runtime.Gosched()
		mu.Lock()
		inFlight[id] = false
		mu.Unlock()
		return nil
	}
	c := newTestClient(t, newStaticSource(fakeRoute(1, "", "", 1, n)), func(cfg *Config) { cfg.WriteLanes = 3 })
	var wg sync.WaitGroup
	for w := range 16 {
		wg.Go(func() {
			for i := range 20 {
				if err := c.Put(context.Background(), fmt.Appendf(nil, "k%d-%d", w, i), []byte("v")); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	if len(violations) > 0 {
		t.Fatalf("%d violations, first: %s", len(violations), violations[0])
	}
	if len(lastSeq) != 3 {
		t.Fatalf("%d ClientIDs used, want 3 (one per lane)", len(lastSeq))
	}
}

func TestCloseEndsCallsAndLeaksNoGoroutines(t *testing.T) {
	n := newFakeNode(t, 1)
	before := runtime.NumGoroutine()
	release := make(chan struct{})
	n.hook = func(method string, _ *pb.RequestHeader) error {
		if method == "put" {
			<-release
		}
		return nil
	}
	c, err := New(context.Background(), Config{RouteSource: newStaticSource(fakeRoute(1, "", "", 1, n))})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := c.Get(context.Background(), []byte("k")); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- c.Put(context.Background(), []byte("k"), []byte("v")) }()
	testutil.Eventually(t, 10*time.Second, func() error {
		if n.calls.Load() < 2 {
			return errors.New("the put has not reached the node")
		}
		return nil
	})
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-done; !errors.Is(err, ErrClosed) || !errors.Is(err, ErrAmbiguous) {
		t.Fatalf("write in flight at Close: want ErrClosed and ErrAmbiguous, got %v", err)
	}
	if _, _, err := c.Get(context.Background(), []byte("k")); !errors.Is(err, ErrClosed) {
		t.Fatalf("call after Close: %v", err)
	}
	close(release)
	// The Client's goroutines, and the fake server's for its connections,
	// wind down.
	testutil.Eventually(t, 10*time.Second, func() error {
		if n := runtime.NumGoroutine(); n > before {
			buf := make([]byte, 1<<20)
			return fmt.Errorf("%d goroutines after Close, %d before:\n%s", n, before, buf[:runtime.Stack(buf, true)])
		}
		return nil
	})
}

func TestPlacementSourceMovesOnFromAFailedAddress(t *testing.T) {
	n := newFakeNode(t, 1)
	src := newStaticSource(fakeRoute(1, "", "m", 1, n), fakeRoute(2, "m", "", 1, n))
	good := servePlacement(t, src)
	c, err := New(context.Background(), Config{PlacementAddresses: []string{fleet.FreePort(t), good}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if got := c.Stats().CachedRoutes; got != 2 {
		t.Fatalf("warm-up cached %d routes, want 2", got)
	}
	c.cache = newRouteCache(10) // forget them: GetRoute must go through too
	if err := c.Put(context.Background(), []byte("x"), []byte("v")); err != nil {
		t.Fatal(err)
	}
	if src.gets.Load() != 1 {
		t.Fatalf("GetRoute calls: %d", src.gets.Load())
	}
}

type failingSource struct{ calls atomic.Int64 }

func (f *failingSource) GetRoute(context.Context, []byte, int) (*pb.Route, []*pb.Route, error) {
	f.calls.Add(1)
	return nil, nil, status.Error(codes.Unavailable, "placement down")
}

func (f *failingSource) ScanRoutes(context.Context, []byte, []byte, int) ([]*pb.Route, error) {
	return nil, status.Error(codes.Unavailable, "placement down")
}

func TestNoRouteIsRetriedThenReported(t *testing.T) {
	src := &failingSource{}
	c := newTestClient(t, src, func(cfg *Config) { cfg.MaxRetries = 3 })
	_, _, err := c.Get(context.Background(), []byte("k"))
	if !errors.Is(err, ErrNoRoute) || !errors.Is(err, ErrRetriesExhausted) {
		t.Fatalf("want ErrNoRoute and ErrRetriesExhausted, got %v", err)
	}
	if src.calls.Load() != 4 {
		t.Fatalf("%d GetRoute calls, want 4", src.calls.Load())
	}
	if st := c.Stats(); st.Retries[RetryNoRoute] != 3 || st.RouteLoadErrors != 5 { // + the warm-up
		t.Fatalf("stats: %+v", st)
	}
	// A malformed route is no route either.
	bad := newStaticSource(&pb.Route{Shard: &pb.Descriptor{ShardId: 1}})
	c2 := newTestClient(t, bad, func(cfg *Config) { cfg.MaxRetries = -1 })
	if err := c2.Put(context.Background(), []byte("k"), nil); !errors.Is(err, ErrNoRoute) || errors.Is(err, ErrAmbiguous) {
		t.Fatalf("route without replicas: %v", err)
	}
}

// TestElectionWaitsAreCappedByElectionBackoffMax: while replicas answer
// that they know no leader, the call polls at ElectionBackoffMax, not at
// BackoffMax (an hour here: a call that waited that long would hit the
// test's deadline).
func TestElectionWaitsAreCappedByElectionBackoffMax(t *testing.T) {
	n := newFakeNode(t, 1)
	var answers atomic.Int64
	n.hook = func(string, *pb.RequestHeader) error {
		if answers.Add(1) <= 30 {
			return withDetail(codes.Unavailable, &pb.NotLeader{})
		}
		return nil
	}
	c := newTestClient(t, newStaticSource(fakeRoute(1, "", "", 1, n)), func(cfg *Config) {
		cfg.BackoffBase, cfg.BackoffMax, cfg.ElectionBackoffMax = time.Millisecond, time.Hour, 2*time.Millisecond
	})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := c.Put(ctx, []byte("k"), []byte("v")); err != nil {
		t.Fatalf("Put after 30 leaderless answers: %v", err)
	}
	if got := c.Stats().Retries[RetryNotLeader]; got != 30 {
		t.Fatalf("%d not-leader retries, want 30", got)
	}
}
