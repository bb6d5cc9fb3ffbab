package etcdapi

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"

	flt "github.com/flotilla-kv/flotilla/internal/fleet"
	"github.com/flotilla-kv/flotilla/router"
)

// testAPI is a real fleet (three shardnodes and a placementd, on
// loopback, four shards at first), a router to it, an etcdapi Server in
// this process on a loopback port, and an etcd client connected to it.
type testAPI struct {
	fleet  *flt.Fleet
	router *router.Client
	server *Server
	addr   string
	client *clientv3.Client
}

// startAPI starts a testAPI; everything stops when the test ends.
func startAPI(t testing.TB) *testAPI {
	t.Helper()
	return startAPIWith(t, nil)
}

// startAPIWith is startAPI with the Server's Config adjusted by adjust
// (nil: as startAPI).
func startAPIWith(t testing.TB, adjust func(*Config)) *testAPI {
	t.Helper()
	f := flt.New(t, 3, "--heartbeat-interval", "250ms")
	f.AddPlacement(1, "--heartbeat-interval", "250ms", "--schedule-interval", "250ms", "--initial-shards", "4")
	f.StartPlacement()
	f.Start()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	rc, err := router.New(ctx, router.Config{PlacementAddresses: strings.Split(f.PlacementAddrs(), ","), Timeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = rc.Close() })
	cfg := Config{Router: rc, ClusterID: 0x10, MemberID: 1}
	if adjust != nil {
		adjust(&cfg)
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := grpc.NewServer()
	s.Register(g)
	go func() { _ = g.Serve(lis) }()
	t.Cleanup(g.Stop)
	a := &testAPI{fleet: f, router: rc, server: s, addr: lis.Addr().String()}
	a.client = a.newClient(t)
	return a
}

// newClient returns another etcd client of the API, closed when the test
// ends.
func (a *testAPI) newClient(t testing.TB) *clientv3.Client {
	t.Helper()
	c, err := clientv3.New(clientv3.Config{Endpoints: []string{a.addr}, DialTimeout: 10 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// ctx returns a context for one step of a test.
func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}
