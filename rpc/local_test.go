package rpc

import (
	"context"
	"errors"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	pb "github.com/flotilla-kv/flotilla/rpc/flotillapb"
)

// TestLocalClientUnary: the local client's unary calls answer what the
// same calls over gRPC answer, its responses are the caller's (changing
// one changes nothing the server holds), a request changed after its call
// changes nothing either, and errors carry the codes gRPC gives.
func TestLocalClientUnary(t *testing.T) {
	s := newStack(t, stackConfig{})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	local, remote := s.kvSrv.LocalClient(nil), s.kv()
	h := &pb.RequestHeader{ShardId: 1}

	put := &pb.PutRequest{Header: h, Key: []byte("k"), Value: []byte("v1")}
	pr, err := local.Put(ctx, put)
	if err != nil {
		t.Fatal(err)
	}
	put.Value[0] = 'X' // the caller's again once the call returned
	get := &pb.GetRequest{Header: h, Key: []byte("k")}
	lg, err := local.Get(ctx, get)
	if err != nil {
		t.Fatal(err)
	}
	rg, err := remote.Get(ctx, get)
	if err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(lg, rg) {
		t.Fatalf("local Get %v, gRPC Get %v", lg, rg)
	}
	if string(lg.GetValue()) != "v1" || lg.GetModRevision() != pr.GetRevision() {
		t.Fatalf("local Get %v after a put of v1 at %d", lg, pr.GetRevision())
	}
	lg.Value[0] = 'Y'
	if again, err := local.Get(ctx, get); err != nil || string(again.GetValue()) != "v1" {
		t.Fatalf("after changing a response's value, Get = %v, %v; want v1", again, err)
	}

	scan := &pb.ScanRequest{Header: h}
	ls, err := local.Scan(ctx, scan)
	if err != nil {
		t.Fatal(err)
	}
	rs, err := remote.Scan(ctx, scan)
	if err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(ls, rs) || len(ls.GetKvs()) != 2 {
		t.Fatalf("local Scan %v, gRPC Scan %v (want seed and k)", ls, rs)
	}

	m, err := local.Multi(ctx, &pb.MultiRequest{Ops: []*pb.MultiOp{{Op: &pb.MultiOp_Get{Get: get}}}})
	if err != nil || string(m.GetResults()[0].GetGet().GetValue()) != "v1" {
		t.Fatalf("local Multi Get = %v, %v; want v1", m, err)
	}

	_, lerr := local.Get(ctx, &pb.GetRequest{Key: []byte("k")})
	_, rerr := remote.Get(ctx, &pb.GetRequest{Key: []byte("k")})
	if status.Code(lerr) != codes.InvalidArgument || status.Code(lerr) != status.Code(rerr) {
		t.Fatalf("a Get without a header: local %v, gRPC %v; want InvalidArgument from both", lerr, rerr)
	}

	done, cancelDone := context.WithCancel(ctx)
	cancelDone()
	if _, err := local.Get(done, get); status.Code(err) != codes.Canceled {
		t.Fatalf("a local Get with a canceled context = %v; want Canceled", err)
	}
	if _, err := remote.Get(done, get); status.Code(err) != codes.Canceled {
		t.Fatalf("a gRPC Get with a canceled context = %v; want Canceled", err)
	}
}

// TestLocalClientDoneContext: a call whose context is already done fails
// as a gRPC client fails it, before anything is sent, even when the
// handler would answer at once (the Future of a read served under the
// leader's lease is done as soon as it is made, and a select between it
// and the context picks either); TestLocalClientUnary saw that race once
// in a few hundred runs.
func TestLocalClientDoneContext(t *testing.T) {
	ready := func(context.Context, *pb.GetRequest) (*pb.GetResponse, error) {
		t.Error("the handler ran for a call whose context was done")
		return &pb.GetResponse{Found: true}, nil
	}
	canceled, cancel := context.WithCancel(context.Background())
	cancel()
	expired, cancelExpired := context.WithDeadline(context.Background(), time.Unix(1, 0))
	defer cancelExpired()
	for _, tc := range []struct {
		ctx  context.Context
		want codes.Code
	}{{canceled, codes.Canceled}, {expired, codes.DeadlineExceeded}} {
		resp, err := unary(tc.ctx, &pb.GetRequest{}, ready)
		if status.Code(err) != tc.want || resp != nil {
			t.Fatalf("unary with a done context = %v, %v; want nil, %v", resp, err, tc.want)
		}
	}
}

// TestLocalClientMetadata: a handler called locally sees the caller's
// outgoing metadata as incoming, as gRPC would send it, and neither the
// caller's incoming metadata (what a forwarded request carries) nor its
// outgoing metadata as its own.
func TestLocalClientMetadata(t *testing.T) {
	ctx := metadata.NewIncomingContext(context.Background(), metadata.Pairs(forwardedKey, "1"))
	ctx = metadata.AppendToOutgoingContext(ctx, "x-caller", "a")
	sctx := serverContext(ctx)
	in, _ := metadata.FromIncomingContext(sctx)
	if len(in.Get(forwardedKey)) != 0 || len(in.Get("x-caller")) != 1 || in.Get("x-caller")[0] != "a" {
		t.Fatalf("incoming metadata %v; want x-caller=a only", in)
	}
	if out, _ := metadata.FromOutgoingContext(sctx); len(out) != 0 {
		t.Fatalf("outgoing metadata %v; want none", out)
	}
	// A caller that marks its request forwarded is seen as forwarded.
	fctx := serverContext(metadata.AppendToOutgoingContext(context.Background(), forwardedKey, "1"))
	if in, _ := metadata.FromIncomingContext(fctx); len(in.Get(forwardedKey)) != 1 {
		t.Fatalf("incoming metadata %v; want %s", in, forwardedKey)
	}
}

// watchOnly is a fallback KV client that records its Watch calls.
type watchOnly struct {
	pb.KVClient
	watched []*pb.WatchRequest
}

var errFallbackWatch = errors.New("fallback watch")

func (w *watchOnly) Watch(_ context.Context, in *pb.WatchRequest, _ ...grpc.CallOption) (grpc.ServerStreamingClient[pb.WatchResponse], error) {
	w.watched = append(w.watched, in)
	return nil, errFallbackWatch
}

// TestLocalClientWatch: Watch, a stream, goes to the fallback client;
// without one it is Unimplemented.
func TestLocalClientWatch(t *testing.T) {
	fb := &watchOnly{}
	c := (&KVServer{}).LocalClient(fb)
	req := &pb.WatchRequest{Header: &pb.RequestHeader{ShardId: 1}}
	if _, err := c.Watch(context.Background(), req); !errors.Is(err, errFallbackWatch) {
		t.Fatalf("Watch = %v; want the fallback's error", err)
	}
	if len(fb.watched) != 1 || fb.watched[0] != req {
		t.Fatalf("fallback saw %v; want the one request", fb.watched)
	}
	if _, err := (&KVServer{}).LocalClient(nil).Watch(context.Background(), req); status.Code(err) != codes.Unimplemented {
		t.Fatalf("Watch without a fallback = %v; want Unimplemented", err)
	}
}
