package rpc

import (
	"context"
	"fmt"
	"sync"

	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "github.com/flotilla-kv/flotilla/rpc/flotillapb"
	"github.com/flotilla-kv/flotilla/shard"
)

// MaxMultiOps bounds the ops of one Multi call. A client coalescing
// requests stops adding to a batch well before it.
const MaxMultiOps = 4096

// Multi implements pb.KVServer. Every op is served as its own request,
// with the same validation, forwarding and error mapping as the unary
// methods, and the call answers once all are done.
//
// The ops are started one after another without waiting (writes proposed,
// reads' barriers begun), then awaited in turn: a batch costs no goroutine
// per op, and its proposals and reads reach the engine together, so they
// share rounds, syncs, ReadIndex rounds and messages. The reads of the
// latest state then pass their barriers, and one Pebble iterator, made
// after the last of them, serves them all (shard.PointReader). An op the engine
// refuses because this node does not lead its shard is forwarded to the
// leader, as its unary call, on a goroutine of its own. When the call
// carries a sampled trace, every op goes through its unary handler
// instead, so each gets its own apply span.
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
	for i := range ops {
		resp.Results[i] = &results[i]
	}
	var wg sync.WaitGroup
	if trace.SpanFromContext(ctx).IsRecording() {
		for i, op := range ops {
			wg.Go(func() { s.multiOp(ctx, i, op, &results[i]) })
		}
		wg.Wait()
		return resp, nil
	}
	started := make([]startedOp, 0, len(ops))
	var barriers shard.ReadBarriers // the call's reads of a shard share one
	for i, op := range ops {
		o, err := s.startOp(i, op, &barriers)
		if err != nil {
			results[i].Status = opStatus(err)
			continue
		}
		started = append(started, o)
	}
	// The reads of the latest state pass their barriers first, so that
	// one iterator, made after all of them, serves them all.
	for j := range started {
		if o := &started[j]; o.get && o.at == 0 {
			o.barrierErr = o.r.Barrier(ctx)
		}
	}
	var reader shard.PointReader
	for _, o := range started {
		res, op := &results[o.i], ops[o.i]
		err := o.wait(ctx, res, op, &reader)
		if err == nil {
			continue
		}
		if conn, fctx, ok := s.leaderConn(ctx, err); ok {
			wg.Go(func() { forwardOp(fctx, pb.NewKVClient(conn), op, res) })
			continue
		}
		res.Status = opStatus(s.errs.toStatus(err, o.id, o.key))
	}
	// The iterator's reads are checked as they are made; a failure
	// Close reports afterwards concerns none of the answers.
	_ = reader.Close()
	wg.Wait()
	return resp, nil
}

// startedOp is an op of a Multi call, started and not yet awaited: a
// write (w) or a read (r).
type startedOp struct {
	i   int
	w   shard.Pending
	r   shard.PendingRead
	get bool
	id  shard.ShardID
	key []byte
	// A read at a revision (at) is served by the Store at wait.
	at    uint64
	epoch shard.Epoch
	s     *shard.Store
	kv    *KVServer // fences a read of a leased key
	// barrierErr is the outcome of a read's barrier (r.Barrier), which
	// Multi waits for before any read.
	barrierErr error
}

// wait waits for o and records its result in res, or returns its error.
// A read of the latest state, whose barrier passed, reads through reader.
func (o *startedOp) wait(ctx context.Context, res *pb.MultiResult, op *pb.MultiOp, reader *shard.PointReader) error {
	if o.get {
		var (
			kv    shard.KeyValue
			found bool
			rev   = o.at
			err   error
		)
		latest := rev == 0
		if !latest {
			kv, found, err = o.s.GetAt(ctx, o.id, o.epoch, o.key, rev)
		} else if err = o.barrierErr; err == nil {
			kv, found, rev, err = o.r.Read(reader)
		}
		if err == nil {
			found, err = o.kv.fenceOne(ctx, kv, found, rev, latest)
		}
		if err == nil {
			res.Result = &pb.MultiResult_Get{Get: getResponse(kv, found, rev)}
		}
		return err
	}
	r, err := o.w.Wait(ctx)
	if err == nil {
		setWriteResult(res, op, r)
	}
	return err
}

// startOp starts ops[i]: it proposes a write or begins a read. It
// validates the op with the unary handlers' functions (readHeader,
// writeHeader, and the request-to-command conversions), so an op is
// refused or admitted exactly as its unary call would be; it returns the
// error of an op that is invalid before it reaches a shard (no request, a
// bad header).
func (s *KVServer) startOp(i int, op *pb.MultiOp, barriers *shard.ReadBarriers) (startedOp, error) {
	var (
		hdr *pb.RequestHeader
		cmd shard.Command
	)
	switch o := op.GetOp().(type) {
	case *pb.MultiOp_Get:
		id, epoch, mode, err := readHeader(o.Get.GetHeader())
		if err != nil {
			return startedOp{}, err
		}
		key := o.Get.GetKey()
		if at := o.Get.GetRevision(); at != 0 {
			return startedOp{i: i, get: true, id: id, key: key, at: at, epoch: epoch, s: s.store, kv: s}, nil
		}
		return startedOp{i: i, get: true, id: id, key: key, r: s.store.StartGetIn(barriers, id, epoch, key, mode), kv: s}, nil
	case *pb.MultiOp_Put:
		hdr, cmd = o.Put.GetHeader(), putCommand(o.Put)
	case *pb.MultiOp_Delete:
		hdr, cmd = o.Delete.GetHeader(), deleteCommand(o.Delete)
	case *pb.MultiOp_CompareAndSwap:
		hdr, cmd = o.CompareAndSwap.GetHeader(), casCommand(o.CompareAndSwap)
	default:
		return startedOp{}, invalid(fmt.Sprintf("ops[%d]", i), "no request set")
	}
	id, err := writeHeader(hdr, &cmd)
	if err != nil {
		return startedOp{}, err
	}
	return startedOp{i: i, w: s.store.Start(id, &cmd), id: id, key: cmd.Key}, nil
}

// setWriteResult records the result of a write op that applied.
func setWriteResult(res *pb.MultiResult, op *pb.MultiOp, r *shard.Result) {
	switch op.GetOp().(type) {
	case *pb.MultiOp_Put:
		res.Result = &pb.MultiResult_Put{Put: &pb.PutResponse{Revision: r.Revision}}
	case *pb.MultiOp_Delete:
		res.Result = &pb.MultiResult_Delete{Delete: &pb.DeleteResponse{Revision: r.Revision, Deleted: r.Found}}
	default:
		res.Result = &pb.MultiResult_CompareAndSwap{CompareAndSwap: &pb.CompareAndSwapResponse{Succeeded: r.Succeeded, Found: r.Found, Value: r.Value, Revision: r.Revision}}
	}
}

// forwardOp sends an op to the leader as its unary call.
func forwardOp(ctx context.Context, kv pb.KVClient, op *pb.MultiOp, res *pb.MultiResult) {
	var err error
	switch o := op.GetOp().(type) {
	case *pb.MultiOp_Get:
		var r *pb.GetResponse
		if r, err = kv.Get(ctx, o.Get); err == nil {
			res.Result = &pb.MultiResult_Get{Get: r}
		}
	case *pb.MultiOp_Put:
		var r *pb.PutResponse
		if r, err = kv.Put(ctx, o.Put); err == nil {
			res.Result = &pb.MultiResult_Put{Put: r}
		}
	case *pb.MultiOp_Delete:
		var r *pb.DeleteResponse
		if r, err = kv.Delete(ctx, o.Delete); err == nil {
			res.Result = &pb.MultiResult_Delete{Delete: r}
		}
	case *pb.MultiOp_CompareAndSwap:
		var r *pb.CompareAndSwapResponse
		if r, err = kv.CompareAndSwap(ctx, o.CompareAndSwap); err == nil {
			res.Result = &pb.MultiResult_CompareAndSwap{CompareAndSwap: r}
		}
	}
	if err != nil {
		res.Status = opStatus(err)
	}
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
