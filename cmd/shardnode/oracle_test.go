package main

import (
	"context"
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/flotilla-kv/flotilla/internal/serve"
	"github.com/flotilla-kv/flotilla/rpc"
	pb "github.com/flotilla-kv/flotilla/rpc/flotillapb"
)

// fakeOracle is a placement replica's timestamp service: the leader
// serves both calls from one counter; a follower forwards nothing and
// refuses streams, as placementd does.
type fakeOracle struct {
	pb.UnimplementedPlacementServer
	leader  bool
	next    *atomic.Uint64 // shared by the replicas
	unary   atomic.Int64
	streams atomic.Int64
	served  atomic.Int64                  // requests answered on streams
	stall   atomic.Pointer[chan struct{}] // if set, stream answers wait for it
}

func (f *fakeOracle) GetTimestamps(_ context.Context, req *pb.GetTimestampsRequest) (*pb.GetTimestampsResponse, error) {
	f.unary.Add(1)
	return &pb.GetTimestampsResponse{First: f.next.Add(uint64(req.GetCount())) - uint64(req.GetCount()) + 1}, nil
}

func (f *fakeOracle) StreamTimestamps(stream pb.Placement_StreamTimestampsServer) error {
	f.streams.Add(1)
	for {
		req, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		if !f.leader {
			return status.Error(codes.Unavailable, "not leading")
		}
		if stall := f.stall.Load(); stall != nil {
			select {
			case <-*stall:
			case <-stream.Context().Done():
				return stream.Context().Err()
			}
		}
		f.served.Add(1)
		n := uint64(req.GetCount())
		if err := stream.Send(&pb.GetTimestampsResponse{First: f.next.Add(n) - n + 1}); err != nil {
			return err
		}
	}
}

func startFakeOracle(t *testing.T, f *fakeOracle) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	pb.RegisterPlacementServer(srv, f)
	var wg sync.WaitGroup
	wg.Go(func() { _ = srv.Serve(lis) })
	t.Cleanup(func() { srv.Stop(); wg.Wait() })
	return lis.Addr().String()
}

// TestPlacementOracleStreams: the oracle finds the leader's stream (a
// follower's refusal falls back to GetTimestamps for that request), then
// asks on it; every batch is above the one before; a request whose
// context ends while it waits on the stream fails, and the next one is
// served again.
func TestPlacementOracleStreams(t *testing.T) {
	var next atomic.Uint64
	follower := &fakeOracle{next: &next}
	leader := &fakeOracle{next: &next, leader: true}
	addrs := []string{startFakeOracle(t, follower), startFakeOracle(t, leader)}
	conns := &serve.ConnPool{Creds: insecure.NewCredentials()}
	defer conns.Close()
	o := &placementOracle{addrs: addrs, dial: conns.Dial}
	defer o.close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	var top uint64
	ask := func(n int) {
		t.Helper()
		first, err := o.Next(ctx, n)
		if err != nil {
			t.Fatal(err)
		}
		if uint64(first) <= top {
			t.Fatalf("batch at %d, not above %d", first, top)
		}
		top = uint64(first) + uint64(n) - 1
	}
	ask(3) // the follower refuses the stream: asked by GetTimestamps
	if follower.streams.Load() != 1 || follower.unary.Load()+leader.unary.Load() != 1 {
		t.Fatalf("first request: %d streams to the follower, %d+%d unary calls", follower.streams.Load(), follower.unary.Load(), leader.unary.Load())
	}
	deadline := time.Now().Add(5 * time.Second)
	for leader.served.Load() < 20 {
		if time.Now().After(deadline) {
			t.Fatalf("the leader's stream served %d requests", leader.served.Load())
		}
		ask(1 + int(top%5))
	}
	unary := follower.unary.Load() + leader.unary.Load()

	// A request whose context ends on the stream fails; the stream is
	// dropped and the next request is served (by GetTimestamps, then on
	// a new stream).
	stall := make(chan struct{})
	leader.stall.Store(&stall)
	short, stop := context.WithTimeout(ctx, 50*time.Millisecond)
	defer stop()
	if _, err := o.Next(short, 1); err == nil {
		t.Fatal("a request whose context ended succeeded")
	}
	leader.stall.Store(nil)
	close(stall)
	ask(2)
	if follower.unary.Load()+leader.unary.Load() <= unary {
		t.Fatal("the request after a dropped stream was not asked by GetTimestamps")
	}
}

// startFramedFakeOracle serves f's gRPC service and framed timestamp
// connections, answered from f's counter and counted in framed, on one
// demultiplexed listener, as placementd does.
func startFramedFakeOracle(t *testing.T, f *fakeOracle, framed *atomic.Int64) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ts := rpc.NewTimestampServer(func(_ context.Context, req *pb.GetTimestampsRequest) (*pb.GetTimestampsResponse, error) {
		if !f.leader {
			return nil, status.Error(codes.Unavailable, "not leading")
		}
		framed.Add(1)
		n := uint64(req.GetCount())
		return &pb.GetTimestampsResponse{First: f.next.Add(n) - n + 1}, nil
	})
	srv := grpc.NewServer()
	pb.RegisterPlacementServer(srv, f)
	var wg sync.WaitGroup
	wg.Go(func() { _ = srv.Serve(ts.Demux(lis, nil)) })
	t.Cleanup(func() { ts.Close(); srv.Stop(); wg.Wait() })
	return lis.Addr().String()
}

// TestPlacementOracleFramed: with framed connections on, the oracle asks
// the leader on one (a follower's refusal falls back to GetTimestamps for
// that request, as with streams), and every batch is above the one
// before; towards a placementd that does not serve them it uses the
// stream.
func TestPlacementOracleFramed(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	conns := &serve.ConnPool{Creds: insecure.NewCredentials()}
	defer conns.Close()
	asks := func(o *placementOracle, n int) {
		t.Helper()
		var top uint64
		for i := range n {
			first, err := o.Next(ctx, 1+i%5)
			if err != nil {
				t.Fatal(err)
			}
			if uint64(first) <= top {
				t.Fatalf("batch at %d, not above %d", first, top)
			}
			top = uint64(first) + uint64(1+i%5) - 1
		}
	}

	var next atomic.Uint64
	var framedF, framedL atomic.Int64
	follower := &fakeOracle{next: &next}
	leader := &fakeOracle{next: &next, leader: true}
	o := &placementOracle{addrs: []string{startFramedFakeOracle(t, follower, &framedF), startFramedFakeOracle(t, leader, &framedL)}, dial: conns.Dial, framed: true}
	defer o.close()
	asks(o, 1) // the follower refuses: asked by GetTimestamps
	// The next request waits out streamRetry, then finds the leader.
	deadline := time.Now().Add(5 * time.Second)
	for framedL.Load() < 20 {
		if time.Now().After(deadline) {
			t.Fatalf("the leader answered %d framed requests", framedL.Load())
		}
		asks(o, 1)
	}
	if s := follower.streams.Load() + leader.streams.Load(); s != 0 {
		t.Fatalf("%d streams opened with framed connections on", s)
	}

	old := &fakeOracle{next: &next, leader: true}
	o2 := &placementOracle{addrs: []string{startFakeOracle(t, old)}, dial: conns.Dial, framed: true}
	defer o2.close()
	asks(o2, 20)
	if old.streams.Load() != 1 || old.served.Load() != 20 {
		t.Fatalf("towards a placementd without framed connections: %d streams served %d requests, want 1 and 20", old.streams.Load(), old.served.Load())
	}
}
