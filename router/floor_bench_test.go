package router

import (
	"context"
	"math/rand/v2"
	"net"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"

	"github.com/flotilla-kv/flotilla/internal/testutil"
	"github.com/flotilla-kv/flotilla/rpc"
	pb "github.com/flotilla-kv/flotilla/rpc/flotillapb"
)

// BenchmarkFloor measures the request path alone: the router and its
// connections on loopback (framed KV connections, the default, or gRPC)
// against three KV servers that answer every op at once, with no
// consensus and no storage behind them. 100 clients write (or read) random
// keys of 16 shards, as `flotilla bench compare --clients 100` does, all
// in this one process, so cpu-µs/op is what the path costs, client and
// server together. A real operation costs this and more: the figure is the
// floor under the bench's CPU per operation, and bench/README.md compares
// them.
//
//	go test -run '^$' -bench Floor -benchtime 200000x -count 3 ./router/
func BenchmarkFloor(b *testing.B) {
	for _, bc := range []struct{ op, via string }{{"put", "framed"}, {"put", "grpc"}, {"get", "framed"}, {"get", "grpc"}} {
		op := bc.op
		b.Run(bc.op+"/"+bc.via, func(b *testing.B) {
			nodes := []*nullNode{newNullNode(b, 1), newNullNode(b, 2), newNullNode(b, 3)}
			// fakeRoute reads only a node's ID and address.
			var replicas []*fakeNode
			for _, n := range nodes {
				replicas = append(replicas, &fakeNode{id: n.id, addr: n.addr})
			}
			const shards = 16
			var routes []*pb.Route
			for i := range shards {
				start, end := "", ""
				if i > 0 {
					start = string([]byte{byte(i * 256 / shards)})
				}
				if i < shards-1 {
					end = string([]byte{byte((i + 1) * 256 / shards)})
				}
				routes = append(routes, fakeRoute(uint64(i+1), start, end, nodes[i%len(nodes)].id, replicas...))
			}
			c, err := New(context.Background(), Config{RouteSource: newStaticSource(routes...), DisableFramedKV: bc.via == "grpc"})
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close()

			const clients = 100
			value := make([]byte, 256)
			ctx := context.Background()
			// Warm the route cache and the connections.
			for i := range 256 {
				if err := c.Put(ctx, []byte{byte(i), 'w'}, value); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportAllocs()
			cpu0 := testutil.ProcessCPU(b)
			start := time.Now()
			b.ResetTimer()
			var wg sync.WaitGroup
			per := b.N/clients + 1
			for w := range clients {
				wg.Go(func() {
					r := rand.New(rand.NewPCG(uint64(w), 1))
					key := make([]byte, 16)
					for range per {
						for i := range key {
							key[i] = byte(r.Uint32())
						}
						var err error
						if op == "put" {
							err = c.Put(ctx, key, value)
						} else {
							_, _, err = c.Get(ctx, key)
						}
						if err != nil {
							b.Error(err)
							return
						}
					}
				})
			}
			wg.Wait()
			b.StopTimer()
			if st := c.Stats(); (st.FramedRPCs > 0) != (bc.via == "framed") {
				b.Fatalf("%d of %d RPCs framed, with %s", st.FramedRPCs, st.RPCs, bc.via)
			}
			ops := float64(per * clients)
			b.ReportMetric(ops/time.Since(start).Seconds(), "ops/s")
			b.ReportMetric(float64(testutil.ProcessCPU(b)-cpu0)/float64(time.Microsecond)/ops, "cpu-µs/op")
		})
	}
}

// nullNode is a KV server that answers every op at once, over gRPC and
// framed KV connections: a put succeeds, a get finds nothing.
type nullNode struct {
	pb.UnimplementedKVServer
	id   uint64
	addr string
}

func newNullNode(b *testing.B, id uint64) *nullNode {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	n := &nullNode{id: id, addr: lis.Addr().String()}
	srv := grpc.NewServer()
	pb.RegisterKVServer(srv, n)
	frames := rpc.NewKVFrameServer(n.Multi)
	grpcSide := frames.Demux(lis, nil)
	go func() { _ = srv.Serve(grpcSide) }()
	b.Cleanup(func() {
		srv.Stop()
		frames.Close()
	})
	return n
}

func (n *nullNode) Multi(_ context.Context, req *pb.MultiRequest) (*pb.MultiResponse, error) {
	resp := &pb.MultiResponse{Results: make([]*pb.MultiResult, len(req.GetOps()))}
	for i, op := range req.GetOps() {
		switch op.GetOp().(type) {
		case *pb.MultiOp_Get:
			resp.Results[i] = &pb.MultiResult{Result: &pb.MultiResult_Get{Get: &pb.GetResponse{}}}
		case *pb.MultiOp_Put:
			resp.Results[i] = &pb.MultiResult{Result: &pb.MultiResult_Put{Put: &pb.PutResponse{}}}
		default:
			resp.Results[i] = &pb.MultiResult{Status: &pb.OpStatus{Code: 12, Message: "null node: op not supported"}}
		}
	}
	return resp, nil
}

func (n *nullNode) Get(context.Context, *pb.GetRequest) (*pb.GetResponse, error) {
	return &pb.GetResponse{}, nil
}

func (n *nullNode) Put(context.Context, *pb.PutRequest) (*pb.PutResponse, error) {
	return &pb.PutResponse{}, nil
}
