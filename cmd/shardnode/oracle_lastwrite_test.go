package main

import (
	"context"
	"errors"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/flotilla-kv/flotilla/internal/serve"
	"github.com/flotilla-kv/flotilla/placement/tso"
	pb "github.com/flotilla-kv/flotilla/rpc/flotillapb"
)

// tsoServer serves GetTimestamps and StreamTimestamps from a tso.Oracle,
// as placementd's leader does (without forwarding or fencing).
type tsoServer struct {
	pb.UnimplementedPlacementServer
	o *tso.Oracle
}

func (s *tsoServer) GetTimestamps(ctx context.Context, req *pb.GetTimestampsRequest) (*pb.GetTimestampsResponse, error) {
	if req.GetCount() == 0 {
		l, err := s.o.LastWrite(ctx)
		return &pb.GetTimestampsResponse{LastWrite: uint64(l)}, err
	}
	first, l, err := s.o.NextWrites(ctx, int(req.GetCount()), int(req.GetWriteSpan()))
	return &pb.GetTimestampsResponse{First: uint64(first), LastWrite: uint64(l)}, err
}

func (s *tsoServer) StreamTimestamps(stream pb.Placement_StreamTimestampsServer) error {
	for {
		req, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		resp, err := s.GetTimestamps(stream.Context(), req)
		if err != nil {
			return err
		}
		if err := stream.Send(resp); err != nil {
			return err
		}
	}
}

// TestPlacementOracleLastWrite: the client of placementd's oracle sends
// each batch's write span and returns the last write's timestamp, on the
// stream and by GetTimestamps alike; LastWrite asks for it alone.
func TestPlacementOracleLastWrite(t *testing.T) {
	o := tso.Local()
	defer o.Close()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	pb.RegisterPlacementServer(srv, &tsoServer{o: o})
	var wg sync.WaitGroup
	wg.Go(func() { _ = srv.Serve(lis) })
	defer func() { srv.Stop(); wg.Wait() }()
	conns := &serve.ConnPool{Creds: insecure.NewCredentials()}
	defer conns.Close()
	c := &placementOracle{addrs: []string{lis.Addr().String()}, dial: conns.Dial}
	defer c.close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for i := range 3 { // the stream, once open, serves each
		first, last, err := c.NextWrites(ctx, 4, 2)
		if err != nil {
			t.Fatal(err)
		}
		if last != first+1 {
			t.Fatalf("round %d: NextWrites(4, 2) = %v, last write %v; want %v", i, first, last, first+1)
		}
		if _, err := c.Next(ctx, 3); err != nil {
			t.Fatal(err)
		}
		got, err := c.LastWrite(ctx)
		if err != nil || got != last {
			t.Fatalf("round %d: LastWrite = %v, %v; want %v", i, got, err, last)
		}
	}
}
