package router

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/flotilla-kv/flotilla/internal/testutil"
	pb "github.com/flotilla-kv/flotilla/rpc/flotillapb"
)

// gate holds the first write a fake node serves until released, so the
// writes that arrive meanwhile queue in the coalescer.
type gate struct {
	once    sync.Once
	held    chan struct{}
	release chan struct{}
}

func newGate() *gate { return &gate{held: make(chan struct{}), release: make(chan struct{})} }

func (g *gate) hook(method string, _ *pb.RequestHeader) error {
	first := false
	g.once.Do(func() { first = true })
	if first {
		close(g.held)
		<-g.release
	}
	return nil
}

// queued returns how many requests wait in the coalescer of addr.
func queued(c *Client, addr string) int {
	kv, err := c.conns.kv(addr)
	if err != nil {
		return -1
	}
	b := kv.(coalescedKV).b
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.mu.queue)
}

// putAll runs n concurrent Puts of key-i = value-i and returns their
// errors.
func putAll(c *Client, n int) []error {
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			errs[i] = c.Put(context.Background(), fmt.Appendf(nil, "key-%03d", i), fmt.Appendf(nil, "value-%03d", i))
		})
	}
	wg.Wait()
	return errs
}

func TestConcurrentRequestsShareRPCs(t *testing.T) {
	n := newFakeNode(t, 1)
	g := newGate()
	n.hook = g.hook
	c := newTestClient(t, newStaticSource(fakeRoute(1, "", "", 1, n)), func(cfg *Config) {
		cfg.BatchesPerNode, cfg.WriteLanes = 1, 64
	})
	const writers = 50
	done := make(chan []error)
	go func() { done <- putAll(c, writers) }()
	<-g.held
	// The first Put holds the node's only batch slot; the others queue.
	testutil.Eventually(t, 10*time.Second, func() error {
		if q := c.Stats().Requests; q != 1 {
			return fmt.Errorf("requests sent %d, want 1 while the gate holds", q)
		}
		return nil
	})
	testutil.Eventually(t, 10*time.Second, func() error {
		if q := queued(c, n.addr); q != writers-1 {
			return fmt.Errorf("%d requests queued, want %d", q, writers-1)
		}
		return nil
	})
	close(g.release)
	for i, err := range <-done {
		if err != nil {
			t.Fatalf("put %d: %v", i, err)
		}
	}
	for i := range writers {
		got := string(n.mu.data[fmt.Sprintf("key-%03d", i)])
		if want := fmt.Sprintf("value-%03d", i); got != want {
			t.Fatalf("key-%03d = %q, want %q", i, got, want)
		}
	}
	st := c.Stats()
	if st.Requests != writers {
		t.Fatalf("Stats.Requests = %d, want %d", st.Requests, writers)
	}
	// One alone, then the 49 that queued behind it in one Multi; over a
	// framed connection the one alone is a Multi of one.
	if st.RPCs != 2 || n.multis.Load() != 2 || st.FramedRPCs != 2 {
		t.Fatalf("%d requests in %d RPCs (%d framed, %d Multi), want 2 framed Multi RPCs", st.Requests, st.RPCs, st.FramedRPCs, n.multis.Load())
	}
	// Every write still carries its own lane's ClientID and a fresh Seq.
	seen := map[[2]uint64]bool{}
	for _, r := range n.requests() {
		k := [2]uint64{r.hdr.GetClientId(), r.hdr.GetSeq()}
		if seen[k] {
			t.Fatalf("two writes carried ClientID %x Seq %d", k[0], k[1])
		}
		seen[k] = true
	}
}

func TestCoalescedRequestsKeepTheirOwnOutcome(t *testing.T) {
	n1, n2 := newFakeNode(t, 1), newFakeNode(t, 2)
	g := newGate()
	var redirected atomic.Int64
	n1.hook = func(method string, hdr *pb.RequestHeader) error {
		_ = g.hook(method, hdr)
		// Shard 2's leader is node 2: node 1 says so, for that shard only.
		if hdr.GetShardId() == 2 {
			redirected.Add(1)
			return withDetail(codes.FailedPrecondition, &pb.NotLeader{LeaderNodeId: 2, LeaderAddress: n2.addr})
		}
		return nil
	}
	src := newStaticSource(
		fakeRoute(1, "", "key-025", 1, n1, n2),
		fakeRoute(2, "key-025", "", 1, n1, n2), // a stale leader hint: node 1
	)
	c := newTestClient(t, src, func(cfg *Config) { cfg.BatchesPerNode = 1 })
	done := make(chan []error)
	go func() { done <- putAll(c, 50) }()
	<-g.held
	close(g.release)
	for i, err := range <-done {
		if err != nil {
			t.Fatalf("put %d: %v", i, err)
		}
	}
	if redirected.Load() == 0 {
		t.Fatal("no write was redirected: the test did not exercise a per-op error")
	}
	for i := range 50 {
		k := fmt.Sprintf("key-%03d", i)
		node := n1
		if k >= "key-025" {
			node = n2
		}
		if _, ok := node.mu.data[k]; !ok {
			t.Fatalf("%s missing on node %d", k, node.id)
		}
	}
	if n1.multis.Load() == 0 {
		t.Fatal("node 1 served no Multi: the NotLeader answers were not per-op")
	}
}

func TestCoalescerFallsBackToUnaryCalls(t *testing.T) {
	n := newFakeNode(t, 1)
	n.noMulti = true
	g := newGate()
	n.hook = g.hook
	c := newTestClient(t, newStaticSource(fakeRoute(1, "", "", 1, n)), func(cfg *Config) { cfg.BatchesPerNode = 1 })
	done := make(chan []error)
	go func() { done <- putAll(c, 20) }()
	<-g.held
	close(g.release)
	for i, err := range <-done {
		if err != nil {
			t.Fatalf("put %d against a node without Multi: %v", i, err)
		}
	}
	if got := len(n.mu.data); got != 20 {
		t.Fatalf("%d keys written, want 20", got)
	}
}

func TestCoalescedRequestEndsWithItsContext(t *testing.T) {
	n := newFakeNode(t, 1)
	g := newGate()
	n.hook = g.hook
	defer close(g.release)
	c := newTestClient(t, newStaticSource(fakeRoute(1, "", "", 1, n)), func(cfg *Config) {
		cfg.BatchesPerNode, cfg.MaxRetries = 1, -1
	})
	go func() { _ = c.Put(context.Background(), []byte("holder"), []byte("v")) }()
	<-g.held
	// This Get queues behind the held batch; its deadline must end it.
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, _, err := c.Get(ctx, []byte("queued"))
	if !errors.Is(err, context.DeadlineExceeded) && status.Code(errors.Unwrap(err)) != codes.DeadlineExceeded {
		t.Fatalf("Get = %v, want a deadline error", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("Get returned after %s, long after its 50ms deadline", d)
	}
}

func TestTracedRequestGoesAlone(t *testing.T) {
	n := newFakeNode(t, 1)
	g := newGate()
	n.hook = g.hook
	c := newTestClient(t, newStaticSource(fakeRoute(1, "", "", 1, n)), func(cfg *Config) { cfg.BatchesPerNode = 1 })
	holder := make(chan error, 1)
	go func() { holder <- c.Put(context.Background(), []byte("holder"), []byte("v")) }()
	<-g.held
	// The only batch slot is taken, yet a traced request does not queue.
	sc := trace.NewSpanContext(trace.SpanContextConfig{
		TraceID: trace.TraceID{1}, SpanID: trace.SpanID{1}, TraceFlags: trace.FlagsSampled,
	})
	ctx, cancel := context.WithTimeout(trace.ContextWithSpanContext(context.Background(), sc), 10*time.Second)
	defer cancel()
	if _, _, err := c.Get(ctx, []byte("traced")); err != nil {
		t.Fatalf("traced Get while the batch slot is held: %v", err)
	}
	close(g.release)
	if err := <-holder; err != nil {
		t.Fatal(err)
	}
	// The holder went as a framed Multi of one; the traced Get went
	// alone over gRPC, as its unary call.
	if m, st := n.multis.Load(), c.Stats(); m != 1 || st.FramedRPCs != 1 || st.RPCs != 2 {
		t.Fatalf("%d Multi calls, %d framed of %d RPCs; want the holder's only", m, st.FramedRPCs, st.RPCs)
	}
}
