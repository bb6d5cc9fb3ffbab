package placement

import (
	"context"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/flotilla-kv/flotilla/placement/tso"
	pb "github.com/flotilla-kv/flotilla/rpc/flotillapb"
)

// TestGetTimestamps: the placement leader hands out batches of
// timestamps, each above every one handed out before, across concurrent
// callers and across a change of leadership, which opens a new oracle
// above the limit the old one saved in the catalogue; a bad count is
// INVALID_ARGUMENT.
func TestGetTimestamps(t *testing.T) {
	svc, c := newTestPlacement(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for _, n := range []uint32{0, tso.LogicalRange + 1} {
		if _, err := c.GetTimestamps(ctx, &pb.GetTimestampsRequest{Count: n}); status.Code(err) != codes.InvalidArgument {
			t.Fatalf("count %d: %v, want INVALID_ARGUMENT", n, err)
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
	if err := stream.Send(&pb.GetTimestampsRequest{Count: 0}); err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Recv(); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("count 0 on a stream: %v", err)
	}
}
