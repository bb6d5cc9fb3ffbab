package router

import (
	"context"
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/flotilla-kv/flotilla/internal/testutil"
	"github.com/flotilla-kv/flotilla/rpc"
	pb "github.com/flotilla-kv/flotilla/rpc/flotillapb"
)

// Unit tests of a node's framed KV connections (framed.go), against
// rpc.KVFrameServer on loopback.

// framedGet is a Multi of one Get of key.
func framedGet(key string) *pb.MultiRequest {
	return &pb.MultiRequest{Ops: []*pb.MultiOp{{Op: &pb.MultiOp_Get{Get: &pb.GetRequest{Key: []byte(key)}}}}}
}

// echoFrames answers each Get op with a value equal to its key, counting
// the calls.
func echoFrames(calls *atomic.Int64) rpc.KVFrameHandler {
	return func(_ context.Context, req *pb.MultiRequest) (*pb.MultiResponse, error) {
		calls.Add(1)
		resp := &pb.MultiResponse{}
		for _, op := range req.GetOps() {
			k := op.GetGet().GetKey()
			resp.Results = append(resp.Results, &pb.MultiResult{Result: &pb.MultiResult_Get{Get: &pb.GetResponse{Found: true, Value: k}}})
		}
		return resp, nil
	}
}

// serveFrames serves h's framed KV connections (and nothing else) on lis
// until cleanup; it returns the server.
func serveFrames(t *testing.T, lis net.Listener, h rpc.KVFrameHandler) *rpc.KVFrameServer {
	t.Helper()
	s := rpc.NewKVFrameServer(h)
	grpcSide := s.Demux(lis, nil)
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			c, err := grpcSide.Accept()
			if err != nil {
				return
			}
			_ = c.Close()
		}
	})
	t.Cleanup(func() {
		_ = grpcSide.Close()
		s.Close()
		wg.Wait()
	})
	return s
}

func listen(t *testing.T) net.Listener {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return lis
}

// countingDialer counts its dials.
type countingDialer struct{ n atomic.Int64 }

func (d *countingDialer) dial(ctx context.Context, addr string) (net.Conn, error) {
	d.n.Add(1)
	var nd net.Dialer
	return nd.DialContext(ctx, "tcp", addr)
}

// TestFramedReusesConnections: calls in turn share one connection, which
// waits idle between them.
func TestFramedReusesConnections(t *testing.T) {
	var calls atomic.Int64
	lis := listen(t)
	serveFrames(t, lis, echoFrames(&calls))
	var d countingDialer
	f := newFramedConns(lis.Addr().String(), nil, d.dial, &counters{})
	t.Cleanup(f.close)
	ctx := testutil.Context(t, 10*time.Second)
	for i := range 5 {
		sent := &sendRecord{}
		resp, via, err := f.multi(withSendRecord(ctx, sent), framedGet("k"))
		if err != nil || !via || string(resp.GetResults()[0].GetGet().GetValue()) != "k" {
			t.Fatalf("call %d: %v, %v, %v", i, resp, via, err)
		}
		if !sent.maybeSent() {
			t.Fatalf("call %d answered but not marked sent", i)
		}
	}
	if d.n.Load() != 1 || calls.Load() != 5 || f.stats.framedRPCs.Load() != 5 {
		t.Fatalf("%d dials, %d calls served, %d framed RPCs; want 1, 5, 5", d.n.Load(), calls.Load(), f.stats.framedRPCs.Load())
	}
}

// TestFramedDialFailureBackoff: a node that refuses connections fails a
// call at once with Unavailable, not sent; calls within the backoff fail
// without dialling, and the node counts as failing; after it, the node is
// dialled again.
func TestFramedDialFailureBackoff(t *testing.T) {
	lis := listen(t)
	addr := lis.Addr().String()
	_ = lis.Close() // refused from now on
	var d countingDialer
	f := newFramedConns(addr, nil, d.dial, &counters{})
	t.Cleanup(f.close)
	now := time.Now()
	f.now = func() time.Time { return now }
	ctx := testutil.Context(t, 10*time.Second)
	for i := range 3 {
		sent := &sendRecord{}
		_, via, err := f.multi(withSendRecord(ctx, sent), framedGet("k"))
		if !via || status.Code(err) != codes.Unavailable || sent.maybeSent() {
			t.Fatalf("call %d to a refusing node: framed %v, sent %v, %v; want framed Unavailable, not sent", i, via, sent.maybeSent(), err)
		}
	}
	if d.n.Load() != 1 || !f.failing() {
		t.Fatalf("%d dials within the backoff, failing %v; want 1, true", d.n.Load(), f.failing())
	}
	now = now.Add(framedDialBackoffBase)
	if f.failing() {
		t.Fatal("still failing after the backoff")
	}
	if _, _, err := f.multi(ctx, framedGet("k")); status.Code(err) != codes.Unavailable || d.n.Load() != 2 {
		t.Fatalf("after the backoff: %v, %d dials; want Unavailable after a second dial", err, d.n.Load())
	}
	// The second failure doubles the backoff.
	now = now.Add(framedDialBackoffBase)
	if !f.failing() {
		t.Fatal("the second backoff did not double")
	}
}

// TestFramedFallsBackToGRPC: a node that does not serve framed
// connections (a gRPC server alone) is called over gRPC, and asked again
// after framedRetryAfter.
func TestFramedFallsBackToGRPC(t *testing.T) {
	lis := listen(t)
	srv := grpc.NewServer()
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	var d countingDialer
	st := &counters{}
	f := newFramedConns(lis.Addr().String(), nil, d.dial, st)
	t.Cleanup(f.close)
	now := time.Now()
	f.now = func() time.Time { return now }
	ctx := testutil.Context(t, 10*time.Second)
	for i := range 3 {
		sent := &sendRecord{}
		if _, via, err := f.multi(withSendRecord(ctx, sent), framedGet("k")); via || err != nil || sent.maybeSent() {
			t.Fatalf("call %d: framed %v, sent %v, %v; want a fallback to gRPC with nothing sent", i, via, sent.maybeSent(), err)
		}
	}
	if d.n.Load() != 1 || st.framedFallbacks.Load() != 1 {
		t.Fatalf("%d dials, %d fallbacks; want 1, 1", d.n.Load(), st.framedFallbacks.Load())
	}
	now = now.Add(framedRetryAfter)
	if _, via, _ := f.multi(ctx, framedGet("k")); via || d.n.Load() != 2 {
		t.Fatalf("after framedRetryAfter: framed %v, %d dials; want another try, and gRPC again", via, d.n.Load())
	}
}

// TestFramedUnimplementedFallsBack: a node whose framed Multi answers
// Unimplemented ran nothing; the call goes to gRPC, not marked sent.
func TestFramedUnimplementedFallsBack(t *testing.T) {
	lis := listen(t)
	serveFrames(t, lis, func(context.Context, *pb.MultiRequest) (*pb.MultiResponse, error) {
		return nil, status.Error(codes.Unimplemented, "no Multi")
	})
	st := &counters{}
	f := newFramedConns(lis.Addr().String(), nil, nil, st)
	t.Cleanup(f.close)
	sent := &sendRecord{}
	if _, via, err := f.multi(withSendRecord(testutil.Context(t, 10*time.Second), sent), framedGet("k")); via || err != nil || sent.maybeSent() {
		t.Fatalf("framed %v, sent %v, %v; want a fallback with nothing sent", via, sent.maybeSent(), err)
	}
	if st.framedFallbacks.Load() != 1 {
		t.Fatalf("%d fallbacks, want 1", st.framedFallbacks.Load())
	}
}

// TestFramedReplacesConnectionClosedWhileIdle: the node restarts on the
// same address while two connections are idle; the next call notices
// before sending, drops both and goes on a new connection, so it
// succeeds.
func TestFramedReplacesConnectionClosedWhileIdle(t *testing.T) {
	var before, after atomic.Int64
	lis := listen(t)
	addr := lis.Addr().String()
	first := serveFrames(t, lis, echoFrames(&before))
	var d countingDialer
	f := newFramedConns(addr, nil, d.dial, &counters{})
	t.Cleanup(f.close)
	ctx := testutil.Context(t, 10*time.Second)
	if _, _, err := f.multi(ctx, framedGet("a")); err != nil {
		t.Fatal(err)
	}
	// A second idle connection, as two calls at once leave.
	c1, _, _, err := f.take(ctx)
	if err != nil {
		t.Fatal(err)
	}
	c2, fresh, _, err := f.take(ctx)
	if err != nil || !fresh {
		t.Fatalf("second connection: fresh %v, %v", fresh, err)
	}
	f.put(c1)
	f.put(c2)
	first.Shutdown(ctx) // closes the idle connections
	_ = lis.Close()
	lis2, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("listening again on %s: %v", addr, err)
	}
	serveFrames(t, lis2, echoFrames(&after))
	// The node's FIN reaches the client's socket asynchronously.
	testutil.Eventually(t, 5*time.Second, func() error {
		f.mu.Lock()
		defer f.mu.Unlock()
		if len(f.mu.idle) != 2 || !f.mu.idle[0].PeerClosed() || !f.mu.idle[1].PeerClosed() {
			return errors.New("the node's close has not reached the idle connections yet")
		}
		return nil
	})
	resp, via, err := f.multi(ctx, framedGet("b"))
	if err != nil || !via || string(resp.GetResults()[0].GetGet().GetValue()) != "b" {
		t.Fatalf("call after the restart: %v, %v, %v", resp, via, err)
	}
	if before.Load() != 1 || after.Load() != 1 || d.n.Load() != 3 {
		t.Fatalf("calls served %d before, %d after the restart, %d dials; want 1, 1, 3", before.Load(), after.Load(), d.n.Load())
	}
}

// TestFramedCloseEndsCalls: closing the pool ends a call in progress, as
// closing a gRPC connection does, and the call counts as sent.
func TestFramedCloseEndsCalls(t *testing.T) {
	entered := make(chan struct{})
	lis := listen(t)
	serveFrames(t, lis, func(ctx context.Context, _ *pb.MultiRequest) (*pb.MultiResponse, error) {
		close(entered)
		<-ctx.Done()
		return nil, ctx.Err()
	})
	f := newFramedConns(lis.Addr().String(), nil, nil, &counters{})
	done := make(chan error, 1)
	sent := &sendRecord{}
	go func() {
		_, _, err := f.multi(withSendRecord(testutil.Context(t, 30*time.Second), sent), framedGet("k"))
		done <- err
	}()
	<-entered
	f.close()
	select {
	case err := <-done:
		if status.Code(err) != codes.Unavailable || !sent.maybeSent() {
			t.Fatalf("call under close: %v, sent %v; want Unavailable, sent", err, sent.maybeSent())
		}
	case <-time.After(5 * time.Second):
		t.Fatal("close did not end the call in progress")
	}
	if _, via, _ := f.multi(testutil.Context(t, time.Second), framedGet("k")); via {
		t.Fatal("a call after close went framed")
	}
}
