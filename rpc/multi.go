package rpc

import (
	"context"
	"fmt"
	"sync"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "github.com/flotilla-kv/flotilla/rpc/flotillapb"
)

// MaxMultiOps bounds the ops of one Multi call. A client coalescing
// requests stops adding to a batch well before it.
const MaxMultiOps = 4096

// Multi implements pb.KVServer. It serves every op as its own request,
// concurrently, through the same handlers (validation, forwarding, error
// mapping) as the unary methods, and answers once all are done. The last
// op runs on the calling goroutine, so a Multi of one costs no goroutine.
func (s *KVServer) Multi(ctx context.Context, req *pb.MultiRequest) (*pb.MultiResponse, error) {
	ops := req.GetOps()
	switch {
	case len(ops) == 0:
		return nil, invalid("ops", "at least one operation is required")
	case len(ops) > MaxMultiOps:
		return nil, status.Errorf(codes.ResourceExhausted, "ops: %d operations, at most %d per call", len(ops), MaxMultiOps)
	}
	results := make([]pb.MultiResult, len(ops))
	resp := &pb.MultiResponse{Results: make([]*pb.MultiResult, len(ops))}
	var wg sync.WaitGroup
	for i, op := range ops {
		resp.Results[i] = &results[i]
		if i == len(ops)-1 {
			s.multiOp(ctx, i, op, &results[i])
			break
		}
		wg.Go(func() { s.multiOp(ctx, i, op, &results[i]) })
	}
	wg.Wait()
	return resp, nil
}

// multiOp serves ops[i] into res.
func (s *KVServer) multiOp(ctx context.Context, i int, op *pb.MultiOp, res *pb.MultiResult) {
	var err error
	switch o := op.GetOp().(type) {
	case *pb.MultiOp_Get:
		var r *pb.GetResponse
		if r, err = s.Get(ctx, o.Get); err == nil {
			res.Result = &pb.MultiResult_Get{Get: r}
		}
	case *pb.MultiOp_Put:
		var r *pb.PutResponse
		if r, err = s.Put(ctx, o.Put); err == nil {
			res.Result = &pb.MultiResult_Put{Put: r}
		}
	case *pb.MultiOp_Delete:
		var r *pb.DeleteResponse
		if r, err = s.Delete(ctx, o.Delete); err == nil {
			res.Result = &pb.MultiResult_Delete{Delete: r}
		}
	case *pb.MultiOp_CompareAndSwap:
		var r *pb.CompareAndSwapResponse
		if r, err = s.CompareAndSwap(ctx, o.CompareAndSwap); err == nil {
			res.Result = &pb.MultiResult_CompareAndSwap{CompareAndSwap: r}
		}
	default:
		err = invalid(fmt.Sprintf("ops[%d]", i), "no request set")
	}
	if err != nil {
		res.Status = opStatus(err)
	}
}

// opStatus converts the error of one op of a Multi call into its
// OpStatus: the gRPC status the op would have failed with alone.
func opStatus(err error) *pb.OpStatus {
	p := status.Convert(err).Proto()
	return &pb.OpStatus{Code: p.GetCode(), Message: p.GetMessage(), Details: p.GetDetails()}
}
