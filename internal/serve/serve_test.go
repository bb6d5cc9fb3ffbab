package serve

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/flotilla-kv/flotilla/internal/framed"
	"github.com/flotilla-kv/flotilla/internal/testutil"
)

// startHealth serves gRPC's health service on loopback with the servers'
// options and returns the server, its address and a channel that
// receives Serve's result.
func startHealth(t *testing.T) (*grpc.Server, string, <-chan error) {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer(ServerOptions()...)
	healthpb.RegisterHealthServer(srv, health.NewServer())
	served := make(chan error, 1)
	go func() { served <- srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	return srv, lis.Addr().String(), served
}

// healthClient returns a health client over a pool's connection to addr;
// the pool closes when the test ends.
func healthClient(t *testing.T, addr string) healthpb.HealthClient {
	t.Helper()
	var p ConnPool
	t.Cleanup(p.Close)
	conn, err := p.Dial(addr)
	if err != nil {
		t.Fatal(err)
	}
	return healthpb.NewHealthClient(conn)
}

func TestConnPoolSharesOneConnectionPerAddress(t *testing.T) {
	_, addr, _ := startHealth(t)
	var p ConnPool
	c1, err := p.Dial(addr)
	if err != nil {
		t.Fatal(err)
	}
	if c2, err := p.Dial(addr); err != nil || c2 != c1 {
		t.Fatalf("second Dial of %s = %p, %v; want the first connection %p", addr, c2, err, c1)
	}
	other, err := p.Dial("127.0.0.1:1")
	if err != nil {
		t.Fatal(err)
	}
	if other == c1 {
		t.Fatal("two addresses share one connection")
	}
	ctx := testutil.Context(t, 10*time.Second)
	if _, err := healthpb.NewHealthClient(c1).Check(ctx, &healthpb.HealthCheckRequest{}); err != nil {
		t.Fatalf("health check over the pool's connection: %v", err)
	}
	p.Close()
	for _, c := range []*grpc.ClientConn{c1, other} {
		if s := c.GetState(); s != connectivity.Shutdown {
			t.Errorf("connection to %s after Close: %v, want Shutdown", c.Target(), s)
		}
	}
}

// TestStopGRPCForcesAtDeadline: a stream that never ends holds up the
// graceful stop; StopGRPC stops the server once its context ends.
func TestStopGRPCForcesAtDeadline(t *testing.T) {
	srv, addr, served := startHealth(t)
	watch, err := healthClient(t, addr).Watch(testutil.Context(t, 30*time.Second), &healthpb.HealthCheckRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := watch.Recv(); err != nil { // the stream is open on the server
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	StopGRPC(ctx, srv)
	if ctx.Err() == nil {
		t.Fatal("StopGRPC returned before its deadline although a stream was open")
	}
	if _, err := watch.Recv(); err == nil {
		t.Fatal("the open stream survived the forced stop")
	}
	if err := <-served; err != nil {
		t.Fatalf("Serve after the stop: %v", err)
	}
}

// TestStopGRPCGraceful: with no request in flight, StopGRPC stops the
// server without a deadline, its idle client connection included.
func TestStopGRPCGraceful(t *testing.T) {
	srv, addr, served := startHealth(t)
	// A call answered: the server is serving, and the connection stays idle.
	if _, err := healthClient(t, addr).Check(testutil.Context(t, 10*time.Second), &healthpb.HealthCheckRequest{}); err != nil {
		t.Fatal(err)
	}
	StopGRPC(context.Background(), srv)
	if err := <-served; err != nil {
		t.Fatalf("Serve after the stop: %v", err)
	}
}

func TestHealthMux(t *testing.T) {
	var ready atomic.Bool
	mux := HealthMux(&ready)
	get := func(path string) int {
		rec := httptest.NewRecorder()
		mux.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
		return rec.Code
	}
	if code := get("/healthz"); code != http.StatusOK {
		t.Errorf("/healthz = %d, want 200", code)
	}
	if code := get("/readyz"); code != http.StatusServiceUnavailable {
		t.Errorf("/readyz before ready = %d, want 503", code)
	}
	ready.Store(true)
	if code := get("/readyz"); code != http.StatusOK {
		t.Errorf("/readyz once ready = %d, want 200", code)
	}
}

// TestFramedRequestLimit: a framed KV request is bounded as a gRPC
// message is.
func TestFramedRequestLimit(t *testing.T) {
	if framed.MaxKVRequestBytes != MaxMessageBytes {
		t.Fatalf("framed.MaxKVRequestBytes = %d, MaxMessageBytes = %d", framed.MaxKVRequestBytes, MaxMessageBytes)
	}
}
