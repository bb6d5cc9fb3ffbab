package rpc

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/flotilla-kv/flotilla/internal/testutil"
	pb "github.com/flotilla-kv/flotilla/rpc/flotillapb"
)

// BenchmarkPuts measures one node's KV service over loopback gRPC, with 64
// writers: each Put as its own unary call, against the same Puts 64 to a
// Multi call (what a coalescing router sends under load). The engine's
// share (a single replica, in memory) is the same in both; the difference
// is gRPC's per-call cost. Compare allocs/op and ns/op:
//
//	go test -run '^$' -bench Puts -benchmem ./rpc/
func BenchmarkPuts(b *testing.B) {
	for _, batch := range []int{1, 64} {
		b.Run(fmt.Sprintf("batch=%d", batch), func(b *testing.B) {
			s := newStack(b, stackConfig{})
			kv := s.kv()
			ctx := context.Background()
			const writers = 64
			value := make([]byte, 256)
			b.ReportAllocs()
			cpu0 := testutil.ProcessCPU(b)
			b.ResetTimer()
			var wg sync.WaitGroup
			per := b.N/writers + 1
			if batch > 1 {
				per = b.N/batch + 1
			}
			for w := range writers {
				if batch > 1 && w > 0 {
					break // one goroutine sends Multi calls of 64 ops from 64 clients
				}
				wg.Go(func() {
					seq := uint64(0)
					for i := range per {
						seq++
						if batch == 1 {
							_, err := kv.Put(ctx, &pb.PutRequest{
								Header: &pb.RequestHeader{ShardId: 1, ClientId: uint64(w + 1), Seq: seq},
								Key:    fmt.Appendf(nil, "k%d-%d", w, i%1000), Value: value})
							if err != nil {
								b.Error(err)
								return
							}
							continue
						}
						req := &pb.MultiRequest{Ops: make([]*pb.MultiOp, batch)}
						for j := range batch {
							req.Ops[j] = &pb.MultiOp{Op: &pb.MultiOp_Put{Put: &pb.PutRequest{
								Header: &pb.RequestHeader{ShardId: 1, ClientId: uint64(j + 1), Seq: seq},
								Key:    fmt.Appendf(nil, "k%d-%d", j, i%1000), Value: value}}}
						}
						resp, err := kv.Multi(ctx, req)
						if err != nil {
							b.Error(err)
							return
						}
						for _, r := range resp.GetResults() {
							if r.GetStatus().GetCode() != 0 {
								b.Errorf("op failed: %v", r.GetStatus())
								return
							}
						}
					}
				})
			}
			wg.Wait()
			b.StopTimer()
			b.ReportMetric(float64(testutil.ProcessCPU(b)-cpu0)/float64(time.Microsecond)/float64(b.N), "cpu-µs/op")
		})
	}
}
