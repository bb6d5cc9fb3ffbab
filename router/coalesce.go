package router

import (
	"context"
	"slices"
	"sync"
	"time"

	"go.opentelemetry.io/otel/trace"
	spb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "github.com/flotilla-kv/flotilla/rpc/flotillapb"
)

// A coalescer shares RPCs among the requests that go to one node at the
// same time. Get, Put, Delete and CompareAndSwap requests queue; while
// fewer than Config.BatchesPerNode Multi calls to the node are in flight,
// the request that finds room sends everything queued (at most
// Config.MaxBatchOps) as one Multi call. Alone, a request goes at once as
// its own unary call, so coalescing adds no latency at low load; under
// load the batches grow by themselves, and the per-RPC cost of gRPC (a
// stream, its frames, a handler goroutine and a write syscall on each
// side) is divided by the batch size.
//
// Each request keeps its own outcome, as if sent alone: the node serves
// the ops of a Multi independently and returns one gRPC status per op, and
// a Multi that fails as a whole fails each of its requests with that
// status. A request whose context ends while its batch is in flight
// returns the context's error at once, as a unary call would. Whether a
// request may have reached the node is recorded in the sendRecord of its
// context (sent.go), as for a unary call: the Multi that carried it marks
// it, and so does leaving while its batch is in flight; leaving while
// still queued does not, since it is then taken out of the queue.
//
// A request whose context carries a sampled trace goes alone, so its trace
// runs unbroken from the router to the leader.
//
// A batch is also bounded by bytes (maxBatchBytes of keys and values), so
// that requests valid alone never make a Multi above the node's message
// limit (16 MiB): forty concurrent puts of 1 MiB values to one node were
// one 40 MiB Multi, refused whole. An answer's size is not known before
// it comes (forty gets of 1 MiB values), so a Multi that fails as a whole
// with ResourceExhausted and no Busy detail (a message over a limit, as
// gRPC and the framed connections report it; overload always carries
// Busy) is sent again request by request, each alone within the limits.
// A write among them may have applied already (its answer was the one too
// large): it goes again with its ClientID and Seq, and the node answers
// it from its record, as any retry.
//
// Safe for concurrent use.
type coalescer struct {
	kv          pb.KVClient
	maxInflight int
	maxOps      int
	mu          struct {
		sync.Mutex
		queue    []*pending
		inflight int
		// unary is set once the node answered Unimplemented to Multi (an
		// older node): every request then goes alone.
		unary bool
	}
}

// maxBatchBytes bounds the keys and values of one coalesced call (see
// coalescer): a quarter of the node's message limit leaves room for the
// rest of the ops. A request larger by itself goes alone.
const maxBatchBytes = 4 << 20

// pending is one request waiting in a coalescer, and then its outcome.
type pending struct {
	ctx context.Context
	op  *pb.MultiOp
	// bytes are op's keys and values (opBytes).
	bytes int
	res   *pb.MultiResult
	err   error
	done  chan struct{}
}

// opBytes returns the bytes of op's keys and values: the bulk of its
// encoding, as the batch bound counts it.
func opBytes(op *pb.MultiOp) int {
	switch o := op.GetOp().(type) {
	case *pb.MultiOp_Get:
		return len(o.Get.GetKey())
	case *pb.MultiOp_Put:
		return len(o.Put.GetKey()) + len(o.Put.GetValue())
	case *pb.MultiOp_Delete:
		return len(o.Delete.GetKey())
	case *pb.MultiOp_CompareAndSwap:
		c := o.CompareAndSwap
		return len(c.GetKey()) + len(c.GetExpected()) + len(c.GetValue())
	}
	return 0
}

func newCoalescer(kv pb.KVClient, maxInflight, maxOps int) *coalescer {
	return &coalescer{kv: kv, maxInflight: maxInflight, maxOps: maxOps}
}

// do sends op and returns its result or its error (a gRPC status error, or
// the status of ctx's error).
func (b *coalescer) do(ctx context.Context, op *pb.MultiOp) (*pb.MultiResult, error) {
	if traced(ctx) {
		return b.unary(ctx, op)
	}
	p := &pending{ctx: ctx, op: op, bytes: opBytes(op), done: make(chan struct{})}
	b.mu.Lock()
	if b.mu.unary {
		b.mu.Unlock()
		return b.unary(ctx, op)
	}
	b.mu.queue = append(b.mu.queue, p)
	var batch []*pending
	if b.mu.inflight < b.maxInflight {
		batch = b.takeLocked()
	}
	b.mu.Unlock()
	if batch != nil {
		b.send(batch)
	}
	select {
	case <-p.done:
		return p.res, p.err
	case <-ctx.Done():
		b.abandon(p)
		return nil, status.FromContextError(ctx.Err()).Err()
	}
}

// abandon handles p, whose context ended before its outcome came: still
// queued, it is taken out and surely never sent; already in a batch, it
// may be sent yet, so its sendRecord is marked.
func (b *coalescer) abandon(p *pending) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if i := slices.Index(b.mu.queue, p); i >= 0 {
		b.mu.queue = slices.Delete(b.mu.queue, i, i+1)
		return
	}
	if r := sendRecordOf(p.ctx); r != nil {
		r.mark()
	}
}

// takeLocked removes the next batch from the queue and counts it in
// flight.
func (b *coalescer) takeLocked() []*pending {
	n, size := 0, 0
	for _, p := range b.mu.queue[:min(len(b.mu.queue), b.maxOps)] {
		if n > 0 && size+p.bytes > maxBatchBytes {
			break
		}
		n, size = n+1, size+p.bytes
	}
	batch := make([]*pending, n)
	copy(batch, b.mu.queue)
	rest := copy(b.mu.queue, b.mu.queue[n:])
	clear(b.mu.queue[rest:])
	b.mu.queue = b.mu.queue[:rest]
	b.mu.inflight++
	return batch
}

// send sends batch, resolves its requests, and then, if requests queued
// meanwhile, sends them from a new goroutine: the caller's own request is
// already resolved and it should not wait for others.
func (b *coalescer) send(batch []*pending) {
	if len(batch) == 1 {
		p := batch[0]
		p.res, p.err = b.unary(p.ctx, p.op)
		close(p.done)
	} else {
		b.sendMulti(batch)
	}
	b.mu.Lock()
	b.mu.inflight--
	var next []*pending
	if len(b.mu.queue) > 0 && b.mu.inflight < b.maxInflight {
		next = b.takeLocked()
	}
	b.mu.Unlock()
	if next != nil {
		go b.send(next)
	}
}

// sendMulti sends batch as one Multi call, bounded by the latest of its
// requests' deadlines.
func (b *coalescer) sendMulti(batch []*pending) {
	req := &pb.MultiRequest{Ops: make([]*pb.MultiOp, len(batch))}
	var deadline time.Time
	bounded := true
	for i, p := range batch {
		req.Ops[i] = p.op
		if d, ok := p.ctx.Deadline(); !ok {
			bounded = false
		} else if d.After(deadline) {
			deadline = d
		}
	}
	ctx, cancel := context.Background(), context.CancelFunc(func() {})
	if bounded {
		ctx, cancel = context.WithDeadline(ctx, deadline)
	}
	sent := &sendRecord{}
	resp, err := b.kv.Multi(withSendRecord(ctx, sent), req)
	cancel()
	if status.Code(err) == codes.Unimplemented {
		b.mu.Lock()
		b.mu.unary = true
		b.mu.Unlock()
		b.eachAlone(batch, false)
		return
	}
	if tooLarge(err) {
		b.eachAlone(batch, sent.maybeSent())
		return
	}
	if err == nil && len(resp.GetResults()) != len(batch) {
		err = status.Errorf(codes.Internal, "router: Multi of %d ops answered %d results", len(batch), len(resp.GetResults()))
	}
	for i, p := range batch {
		if r := sendRecordOf(p.ctx); r != nil && sent.maybeSent() {
			r.mark() // the Multi carrying p may have reached the node
		}
		switch {
		case err != nil:
			p.err = err
		case resp.Results[i].GetStatus().GetCode() != int32(codes.OK):
			s := resp.Results[i].GetStatus()
			p.err = status.ErrorProto(&spb.Status{Code: s.GetCode(), Message: s.GetMessage(), Details: s.GetDetails()})
		default:
			p.res = resp.Results[i]
		}
		close(p.done)
	}
}

// eachAlone sends every request of batch, whose Multi failed as a whole,
// alone. sent says whether that Multi may have reached the node: each
// request's sendRecord is marked then, whatever its own call does.
func (b *coalescer) eachAlone(batch []*pending, sent bool) {
	for _, p := range batch {
		if r := sendRecordOf(p.ctx); r != nil && sent {
			r.mark()
		}
		p.res, p.err = b.unary(p.ctx, p.op)
		close(p.done)
	}
}

// tooLarge reports whether err says a message exceeded a size limit:
// ResourceExhausted without the Busy detail that overload carries.
func tooLarge(err error) bool {
	st, ok := status.FromError(err)
	if !ok || st.Code() != codes.ResourceExhausted {
		return false
	}
	for _, d := range st.Details() {
		if _, busy := d.(*pb.Busy); busy {
			return false
		}
	}
	return true
}

// traced reports whether ctx carries a sampled trace.
func traced(ctx context.Context) bool {
	return trace.SpanContextFromContext(ctx).IsSampled()
}

// unary sends op alone through its own method, with the caller's context.
func (b *coalescer) unary(ctx context.Context, op *pb.MultiOp) (*pb.MultiResult, error) {
	var err error
	res := &pb.MultiResult{}
	switch o := op.GetOp().(type) {
	case *pb.MultiOp_Get:
		var r *pb.GetResponse
		r, err = b.kv.Get(ctx, o.Get)
		res.Result = &pb.MultiResult_Get{Get: r}
	case *pb.MultiOp_Put:
		var r *pb.PutResponse
		r, err = b.kv.Put(ctx, o.Put)
		res.Result = &pb.MultiResult_Put{Put: r}
	case *pb.MultiOp_Delete:
		var r *pb.DeleteResponse
		r, err = b.kv.Delete(ctx, o.Delete)
		res.Result = &pb.MultiResult_Delete{Delete: r}
	case *pb.MultiOp_CompareAndSwap:
		var r *pb.CompareAndSwapResponse
		r, err = b.kv.CompareAndSwap(ctx, o.CompareAndSwap)
		res.Result = &pb.MultiResult_CompareAndSwap{CompareAndSwap: r}
	default:
		panic("router: coalescing an empty op")
	}
	if err != nil {
		return nil, err
	}
	return res, nil
}

// coalescedKV is the KV client the retry loop sends through: Get, Put,
// Delete and CompareAndSwap go through the node's coalescer (the call
// options are ignored: the Client passes none), the rest straight to the
// node.
type coalescedKV struct {
	pb.KVClient
	b *coalescer
}

func (c coalescedKV) Get(ctx context.Context, in *pb.GetRequest, _ ...grpc.CallOption) (*pb.GetResponse, error) {
	res, err := c.b.do(ctx, &pb.MultiOp{Op: &pb.MultiOp_Get{Get: in}})
	return res.GetGet(), err
}

func (c coalescedKV) Put(ctx context.Context, in *pb.PutRequest, _ ...grpc.CallOption) (*pb.PutResponse, error) {
	res, err := c.b.do(ctx, &pb.MultiOp{Op: &pb.MultiOp_Put{Put: in}})
	return res.GetPut(), err
}

func (c coalescedKV) Delete(ctx context.Context, in *pb.DeleteRequest, _ ...grpc.CallOption) (*pb.DeleteResponse, error) {
	res, err := c.b.do(ctx, &pb.MultiOp{Op: &pb.MultiOp_Delete{Delete: in}})
	return res.GetDelete(), err
}

func (c coalescedKV) CompareAndSwap(ctx context.Context, in *pb.CompareAndSwapRequest, _ ...grpc.CallOption) (*pb.CompareAndSwapResponse, error) {
	res, err := c.b.do(ctx, &pb.MultiOp{Op: &pb.MultiOp_CompareAndSwap{CompareAndSwap: in}})
	return res.GetCompareAndSwap(), err
}

// countingKV counts the requests and RPCs of Get, Put, Delete,
// CompareAndSwap and Multi in the Client's Stats.
type countingKV struct {
	pb.KVClient
	stats *counters
}

func (c countingKV) count(n int) {
	c.stats.requests.Add(uint64(n))
	c.stats.rpcs.Add(1)
}

func (c countingKV) Get(ctx context.Context, in *pb.GetRequest, opts ...grpc.CallOption) (*pb.GetResponse, error) {
	c.count(1)
	return c.KVClient.Get(ctx, in, opts...)
}

func (c countingKV) Put(ctx context.Context, in *pb.PutRequest, opts ...grpc.CallOption) (*pb.PutResponse, error) {
	c.count(1)
	return c.KVClient.Put(ctx, in, opts...)
}

func (c countingKV) Delete(ctx context.Context, in *pb.DeleteRequest, opts ...grpc.CallOption) (*pb.DeleteResponse, error) {
	c.count(1)
	return c.KVClient.Delete(ctx, in, opts...)
}

func (c countingKV) CompareAndSwap(ctx context.Context, in *pb.CompareAndSwapRequest, opts ...grpc.CallOption) (*pb.CompareAndSwapResponse, error) {
	c.count(1)
	return c.KVClient.CompareAndSwap(ctx, in, opts...)
}

func (c countingKV) Multi(ctx context.Context, in *pb.MultiRequest, opts ...grpc.CallOption) (*pb.MultiResponse, error) {
	c.count(len(in.GetOps()))
	return c.KVClient.Multi(ctx, in, opts...)
}
