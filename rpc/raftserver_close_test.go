package rpc

import (
	"context"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "github.com/flotilla-kv/flotilla/rpc/flotillapb"
)

// TestRaftServerCloseEndsStreams: a peer's stream never ends on its own
// while the peer lives, so a graceful stop would wait for it until the
// shutdown timeout. Close ends the open streams with Unavailable, refuses
// new ones, and a graceful stop then returns.
func TestRaftServerCloseEndsStreams(t *testing.T) {
	s := newStack(t, stackConfig{})
	client := pb.NewRaftClient(s.conn)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	open, err := client.Stream(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// A batch with no messages: the stream is up and served.
	if err := open.Send(&pb.RaftBatch{FromNode: 2, ToNode: 1}); err != nil {
		t.Fatal(err)
	}
	s.raftSrv.Close()
	if _, err := open.Recv(); status.Code(err) != codes.Unavailable {
		t.Fatalf("open stream after Close: %v, want Unavailable", err)
	}
	refused, err := client.Stream(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := refused.Recv(); status.Code(err) != codes.Unavailable {
		t.Fatalf("new stream after Close: %v, want Unavailable", err)
	}
	s.raftSrv.Close() // idempotent

	stopped := make(chan struct{})
	go func() { s.srv.GracefulStop(); close(stopped) }()
	select {
	case <-stopped:
	case <-ctx.Done():
		t.Fatal("graceful stop still waiting after Close")
	}
}
