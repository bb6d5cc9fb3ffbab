package placement

import (
	"context"
	"net"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/flotilla-kv/flotilla/placement/tso"
	"github.com/flotilla-kv/flotilla/rpc"
	pb "github.com/flotilla-kv/flotilla/rpc/flotillapb"
)

// TestGetTimestamps: the placement leader hands out batches of
// timestamps, each above every one handed out before, across concurrent
// callers and across a change of leadership, which opens a new oracle
// above the limit the old one saved in the catalogue; a count above
// LogicalRange, or a write span above the count, is INVALID_ARGUMENT.
func TestGetTimestamps(t *testing.T) {
	svc, c := newTestPlacement(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for _, req := range []*pb.GetTimestampsRequest{{Count: tso.LogicalRange + 1}, {Count: 2, WriteSpan: 3}, {WriteSpan: 1}} {
		if _, err := c.GetTimestamps(ctx, req); status.Code(err) != codes.InvalidArgument {
			t.Fatalf("%v: %v, want INVALID_ARGUMENT", req, err)
		}
	}
	type batch struct{ first, n uint64 }
	var (
		mu      sync.Mutex
		batches []batch
		wg      sync.WaitGroup
	)
	call := func(n uint32) {
		resp, err := c.GetTimestamps(ctx, &pb.GetTimestampsRequest{Count: n})
		if err != nil {
			t.Error(err)
			return
		}
		mu.Lock()
		batches = append(batches, batch{resp.GetFirst(), uint64(n)})
		mu.Unlock()
	}
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range 20 {
				call(uint32(1 + (i+j)%7))
			}
		}()
	}
	wg.Wait()
	// No two batches overlap.
	seen := map[uint64]bool{}
	var top uint64
	for _, b := range batches {
		for ts := b.first; ts < b.first+b.n; ts++ {
			if seen[ts] {
				t.Fatalf("timestamp %d handed out twice", ts)
			}
			seen[ts] = true
			top = max(top, ts)
		}
	}
	// A new leadership (as after a failover: leaderSince moves) opens a
	// new oracle, which starts above everything handed out before.
	old := svc.clock.o
	svc.leaderSince.Store(svc.leaderSince.Load() + 1)
	resp, err := c.GetTimestamps(ctx, &pb.GetTimestampsRequest{Count: 1})
	if err != nil {
		t.Fatal(err)
	}
	if svc.clock.o == old {
		t.Fatal("a new leadership reused the oracle of the old one")
	}
	if resp.GetFirst() <= top {
		t.Fatalf("after a new leadership, timestamp %d, not above %d", resp.GetFirst(), top)
	}
	if limit := svc.cat.load().Next(CounterTimestamp); limit <= resp.GetFirst() {
		t.Fatalf("the catalogue's limit %d is not above the timestamp %d handed out", limit, resp.GetFirst())
	}
}

// TestStreamTimestamps: on a stream, each request gets its batch, above
// every earlier one, in order; a bad count ends the stream.
func TestStreamTimestamps(t *testing.T) {
	_, c := newTestPlacement(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	stream, err := c.StreamTimestamps(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var top uint64
	for i := range 50 {
		n := uint32(1 + i%9)
		if err := stream.Send(&pb.GetTimestampsRequest{Count: n}); err != nil {
			t.Fatal(err)
		}
		resp, err := stream.Recv()
		if err != nil {
			t.Fatal(err)
		}
		if resp.GetFirst() <= top {
			t.Fatalf("batch %d starts at %d, not above %d", i, resp.GetFirst(), top)
		}
		top = resp.GetFirst() + uint64(n) - 1
	}
	if err := stream.Send(&pb.GetTimestampsRequest{Count: tso.LogicalRange + 1}); err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Recv(); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("count %d on a stream: %v", tso.LogicalRange+1, err)
	}
}

// TestLastWriteTimestamps: every answer carries the last write's
// timestamp, which moves to the end of each request's write span and
// nowhere else; a count of 0 asks for it alone, on a call or a stream.
// After a change of leadership (a new oracle) it is the limit the old
// oracle saved, above everything handed out, until the first write.
func TestLastWriteTimestamps(t *testing.T) {
	svc, c := newTestPlacement(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	get := func(count, span uint32) *pb.GetTimestampsResponse {
		t.Helper()
		resp, err := c.GetTimestamps(ctx, &pb.GetTimestampsRequest{Count: count, WriteSpan: span})
		if err != nil {
			t.Fatalf("GetTimestamps(%d, %d): %v", count, span, err)
		}
		return resp
	}
	w := get(4, 2)
	if want := w.GetFirst() + 1; w.GetLastWrite() != want {
		t.Fatalf("GetTimestamps(4, 2) = first %d, last write %d; want %d", w.GetFirst(), w.GetLastWrite(), want)
	}
	write := w.GetLastWrite()
	if r := get(3, 0); r.GetLastWrite() != write || r.GetFirst() <= write {
		t.Fatalf("a batch without writes: first %d, last write %d; want last write %d", r.GetFirst(), r.GetLastWrite(), write)
	}
	if r := get(0, 0); r.GetLastWrite() != write || r.GetFirst() != 0 {
		t.Fatalf("count 0: first %d, last write %d; want 0, %d", r.GetFirst(), r.GetLastWrite(), write)
	}
	stream, err := c.StreamTimestamps(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&pb.GetTimestampsRequest{}); err != nil {
		t.Fatal(err)
	}
	if r, err := stream.Recv(); err != nil || r.GetLastWrite() != write {
		t.Fatalf("count 0 on a stream: %v, %v; want last write %d", r, err, write)
	}
	top := get(5, 0).GetFirst() + 4

	svc.leaderSince.Store(svc.leaderSince.Load() + 1)
	limit := svc.cat.load().Next(CounterTimestamp)
	r := get(0, 0)
	if r.GetLastWrite() <= top {
		t.Fatalf("after a new leadership the last write is %d, not above %d handed out before", r.GetLastWrite(), top)
	}
	if r.GetLastWrite() != limit {
		t.Fatalf("after a new leadership the last write is %d, want the limit %d the old oracle saved", r.GetLastWrite(), limit)
	}
	if w := get(1, 1); w.GetLastWrite() != w.GetFirst() || w.GetFirst() <= limit {
		t.Fatalf("the new leadership's first write: first %d, last write %d; want equal and above %d", w.GetFirst(), w.GetLastWrite(), limit)
	}
}

// TestFramedTimestamps: on a framed timestamp connection served with
// FramedTimestamps (as placementd serves them), each request gets its
// batch, above every earlier one; a bad count is refused with
// INVALID_ARGUMENT and ends the connection.
func TestFramedTimestamps(t *testing.T) {
	svc, _ := newTestPlacement(t)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ts := rpc.NewTimestampServer(svc.FramedTimestamps)
	srv := grpc.NewServer()
	var wg sync.WaitGroup
	wg.Go(func() { _ = srv.Serve(ts.Demux(lis, nil)) })
	defer func() { ts.Close(); srv.Stop(); wg.Wait() }()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, err := rpc.DialTimestamps(ctx, lis.Addr().String(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var top uint64
	for i := range 50 {
		n := uint32(1 + i%9)
		resp, err := c.Ask(ctx, &pb.GetTimestampsRequest{Count: n, WriteSpan: n})
		if err != nil {
			t.Fatal(err)
		}
		if resp.GetFirst() <= top {
			t.Fatalf("batch %d starts at %d, not above %d", i, resp.GetFirst(), top)
		}
		top = resp.GetFirst() + uint64(n) - 1
		if resp.GetLastWrite() != top {
			t.Fatalf("batch %d: last write %d, want %d", i, resp.GetLastWrite(), top)
		}
	}
	if _, err := c.Ask(ctx, &pb.GetTimestampsRequest{Count: tso.LogicalRange + 1}); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("count %d on a framed connection: %v", tso.LogicalRange+1, err)
	}
}
