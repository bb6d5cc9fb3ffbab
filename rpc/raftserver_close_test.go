package rpc

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
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

// TestRaftServerCloseEndsFramedConnections: Close ends the framed
// connections too (their goroutines done when it returns), and a framed
// connection opened afterwards is refused with the reason.
func TestRaftServerCloseEndsFramedConnections(t *testing.T) {
	s := newStack(t, stackConfig{})
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	defer srv.Stop()
	go func() { _ = srv.Serve(s.raftSrv.Demux(l, nil)) }()
	dial := func() (net.Conn, error) {
		c, err := net.DialTimeout("tcp", l.Addr().String(), 10*time.Second)
		if err != nil {
			return nil, err
		}
		hello := make([]byte, helloBytes)
		binary.BigEndian.PutUint64(hello[:8], 2)
		binary.BigEndian.PutUint64(hello[8:], 1)
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := c.Write(append([]byte(raftConnMagic), hello...)); err != nil {
			_ = c.Close()
			return nil, err
		}
		return c, readStatus(c)
	}
	open, err := dial()
	if err != nil {
		t.Fatalf("framed connection before Close: %v", err)
	}
	defer open.Close()
	// An empty frame: the connection is up and served.
	frame, _ := appendFrame(nil, nil)
	if _, err := open.Write(frame); err != nil {
		t.Fatal(err)
	}
	s.raftSrv.Close()
	if _, err := io.ReadAll(open); err != nil && !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("open framed connection after Close: %v, want its end", err)
	}
	refused, err := dial()
	if err == nil || !strings.Contains(err.Error(), "shutting down") {
		t.Fatalf("framed connection after Close: %v, want a refusal", err)
	}
	_ = refused.Close()
}
