package rpc

import (
	"bytes"
	"context"
	"errors"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	grpccodes "google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/flotilla-kv/flotilla/internal/keyfmt"
	"github.com/flotilla-kv/flotilla/multiraft"
	pb "github.com/flotilla-kv/flotilla/rpc/flotillapb"
	"github.com/flotilla-kv/flotilla/rpc/pbconv"
	"github.com/flotilla-kv/flotilla/shard"
)

// DefaultScanLimit is the page size of a Scan without a limit, and the
// largest page a Scan may ask for.
const DefaultScanLimit = 1000

// ScanPageBytes bounds the keys and values of one Scan page: a page of
// 1,000 pairs of 1 MiB values would be a 1 GiB answer, over what a router
// accepts (64 MiB). A page it ends early says more, with its resume key,
// as one the limit ends; it holds at least one pair.
const ScanPageBytes = 4 << 20

// DefaultCountLimit is the most keys a count_only Scan counts in one
// request, and its page without a limit: a count holds no key in memory,
// so its pages are larger than a Scan's, but still bound the time one
// request holds its snapshot.
const DefaultCountLimit = 100 * DefaultScanLimit

// forwardedKey marks a request proxied by another node, so it is never
// forwarded twice.
const forwardedKey = "x-flotilla-forwarded"

// KVServer is the KV service over a node's Store. Safe for concurrent use.
type KVServer struct {
	pb.UnimplementedKVServer
	store *shard.Store
	errs  errorMapper
	// forward, when set, proxies requests this node cannot serve because it
	// is not the leader to the leader, so plain clients may talk to any node.
	forward func(node multiraft.NodeID) (*grpc.ClientConn, error)
	// leases, when set, serves the lease RPCs and fences reads of
	// leased keys (see SetLeases).
	leases Leases
}

// NewKVServer returns the KV service of store. With forward non-nil the
// server proxies NotLeader requests to the leader through the connection
// forward returns.
func NewKVServer(store *shard.Store, resolver Resolver, forward func(multiraft.NodeID) (*grpc.ClientConn, error)) *KVServer {
	return &KVServer{store: store, errs: errorMapper{store: store, resolver: resolver}, forward: forward}
}

// header validates a request header and returns the shard and the write
// header.
func header(h *pb.RequestHeader) (shard.ShardID, shard.Header, error) {
	if h == nil {
		return 0, shard.Header{}, invalid("header", "required")
	}
	if h.GetShardId() == 0 {
		return 0, shard.Header{}, invalid("header.shard_id", "required")
	}
	if h.GetSeq() == 0 && h.GetClientId() != 0 {
		return 0, shard.Header{}, invalid("header.seq", "required with client_id")
	}
	return shard.ShardID(h.GetShardId()), shard.Header{ClientID: h.GetClientId(), Seq: h.GetSeq(), Epoch: pbconv.EpochFromProto(h.GetEpoch())}, nil
}

func readMode(h *pb.RequestHeader) (multiraft.ReadMode, error) {
	m, ok := pbconv.ReadModeFromProto(h.GetConsistency())
	if !ok {
		return 0, invalid("header.consistency", "unknown value")
	}
	return m, nil
}

// readHeader validates the header of a read (Get, Scan) and returns its
// shard, the epoch the client routed by, and the read mode. The unary
// handlers and Multi both validate through it.
func readHeader(h *pb.RequestHeader) (shard.ShardID, shard.Epoch, multiraft.ReadMode, error) {
	id, _, err := header(h)
	if err != nil {
		return 0, shard.Epoch{}, 0, err
	}
	mode, err := readMode(h)
	if err != nil {
		return 0, shard.Epoch{}, 0, err
	}
	return id, pbconv.EpochFromProto(h.GetEpoch()), mode, nil
}

// writeHeader validates the header of a write and sets it on cmd; it
// returns the shard cmd goes to. The unary handlers and Multi both
// validate through it.
func writeHeader(h *pb.RequestHeader, cmd *shard.Command) (shard.ShardID, error) {
	id, sh, err := header(h)
	if err != nil {
		return 0, err
	}
	cmd.Header = sh
	return id, nil
}

// putCommand, deleteCommand and casCommand turn a write request into the
// shard command it proposes, without its header (writeHeader sets it).
func putCommand(req *pb.PutRequest) shard.Command {
	return shard.Command{Kind: shard.KindPut, Key: req.GetKey(), Value: req.GetValue(), Lease: req.GetLease(), LeaseUntil: req.GetLeaseUntil()}
}

func deleteCommand(req *pb.DeleteRequest) shard.Command {
	return shard.Command{Kind: shard.KindDelete, Key: req.GetKey(), Lease: req.GetIfLease()}
}

func casCommand(req *pb.CompareAndSwapRequest) shard.Command {
	return shard.Command{Kind: shard.KindCompareAndSwap, Key: req.GetKey(),
		Expected: req.GetExpected(), ExpectAbsent: req.GetExpectAbsent(), Value: req.GetValue()}
}

// execute proposes cmd, validated by writeHeader, to shard id and waits
// until it applies, inside the apply span of method.
func (s *KVServer) execute(ctx context.Context, method string, id shard.ShardID, cmd *shard.Command) (*shard.Result, error) {
	actx, endApply := applySpan(ctx, method, id)
	res, err := s.store.Execute(actx, id, cmd)
	endApply(err)
	return res, err
}

// leaderConn returns a connection to the leader when err is NotLeader, the
// server forwards, and the request was not forwarded already.
func (s *KVServer) leaderConn(ctx context.Context, err error) (*grpc.ClientConn, context.Context, bool) {
	var nle *multiraft.NotLeaderError
	if s.forward == nil || !errors.As(err, &nle) || nle.Node == 0 {
		return nil, nil, false
	}
	if md, ok := metadata.FromIncomingContext(ctx); ok && len(md.Get(forwardedKey)) > 0 {
		return nil, nil, false
	}
	conn, cerr := s.forward(nle.Node)
	if cerr != nil {
		return nil, nil, false
	}
	return conn, metadata.AppendToOutgoingContext(ctx, forwardedKey, "1"), true
}

// Get implements pb.KVServer.
func (s *KVServer) Get(ctx context.Context, req *pb.GetRequest) (*pb.GetResponse, error) {
	id, epoch, mode, err := readHeader(req.GetHeader())
	if err != nil {
		return nil, err
	}
	var (
		kv    shard.KeyValue
		found bool
		rev   = req.GetRevision()
	)
	latest := rev == 0
	if !latest {
		kv, found, err = s.store.GetAt(ctx, id, epoch, req.GetKey(), rev)
	} else {
		kv, found, rev, err = s.store.StartGet(id, epoch, req.GetKey(), mode).WaitKV(ctx)
	}
	if err == nil {
		found, err = s.fenceOne(ctx, kv, found, rev, latest)
	}
	if err != nil {
		if conn, fctx, ok := s.leaderConn(ctx, err); ok {
			return pb.NewKVClient(conn).Get(fctx, req)
		}
		return nil, s.errs.toStatus(err, id, req.GetKey())
	}
	return getResponse(kv, found, rev), nil
}

// getResponse is the answer to a Get that read kv (found or not) at rev.
func getResponse(kv shard.KeyValue, found bool, rev uint64) *pb.GetResponse {
	if !found {
		return &pb.GetResponse{Revision: rev}
	}
	v := kv.Value
	if v == nil {
		v = []byte{}
	}
	return &pb.GetResponse{Found: true, Value: v, CreateRevision: kv.CreateRevision, ModRevision: kv.ModRevision, Version: kv.Version, Revision: rev, Lease: kv.Lease}
}

// Put implements pb.KVServer.
func (s *KVServer) Put(ctx context.Context, req *pb.PutRequest) (*pb.PutResponse, error) {
	cmd := putCommand(req)
	id, err := writeHeader(req.GetHeader(), &cmd)
	if err != nil {
		return nil, err
	}
	res, err := s.execute(ctx, "Put", id, &cmd)
	if err != nil {
		if conn, fctx, ok := s.leaderConn(ctx, err); ok {
			return pb.NewKVClient(conn).Put(fctx, req)
		}
		return nil, s.errs.toStatus(err, id, req.GetKey())
	}
	return &pb.PutResponse{Revision: res.Revision}, nil
}

// Delete implements pb.KVServer.
func (s *KVServer) Delete(ctx context.Context, req *pb.DeleteRequest) (*pb.DeleteResponse, error) {
	cmd := deleteCommand(req)
	id, err := writeHeader(req.GetHeader(), &cmd)
	if err != nil {
		return nil, err
	}
	res, err := s.execute(ctx, "Delete", id, &cmd)
	if err != nil {
		if conn, fctx, ok := s.leaderConn(ctx, err); ok {
			return pb.NewKVClient(conn).Delete(fctx, req)
		}
		return nil, s.errs.toStatus(err, id, req.GetKey())
	}
	return &pb.DeleteResponse{Revision: res.Revision, Deleted: res.Found}, nil
}

// CompareAndSwap implements pb.KVServer.
func (s *KVServer) CompareAndSwap(ctx context.Context, req *pb.CompareAndSwapRequest) (*pb.CompareAndSwapResponse, error) {
	cmd := casCommand(req)
	id, err := writeHeader(req.GetHeader(), &cmd)
	if err != nil {
		return nil, err
	}
	res, err := s.execute(ctx, "CompareAndSwap", id, &cmd)
	if err != nil {
		if conn, fctx, ok := s.leaderConn(ctx, err); ok {
			return pb.NewKVClient(conn).CompareAndSwap(fctx, req)
		}
		return nil, s.errs.toStatus(err, id, req.GetKey())
	}
	return &pb.CompareAndSwapResponse{Succeeded: res.Succeeded, Found: res.Found, Value: res.Value, Revision: res.Revision}, nil
}

// Scan implements pb.KVServer.
func (s *KVServer) Scan(ctx context.Context, req *pb.ScanRequest) (*pb.ScanResponse, error) {
	id, epoch, mode, err := readHeader(req.GetHeader())
	if err != nil {
		return nil, err
	}
	if err := checkSpan(req.GetStart(), req.GetEnd()); err != nil {
		return nil, err
	}
	maxLimit := DefaultScanLimit
	if req.GetCountOnly() {
		maxLimit = DefaultCountLimit
	}
	limit := int(req.GetLimit())
	if limit == 0 || limit > maxLimit {
		limit = maxLimit
	}
	start, end := req.GetStart(), req.GetEnd()
	if d, err := s.store.Descriptor(id); err == nil {
		start, end = clampSpan(start, end, d.Start, d.End)
	}
	var resp *pb.ScanResponse
	if req.GetCountOnly() || req.GetKeysOnly() {
		resp, err = s.scanWithOptions(ctx, req, id, epoch, mode, start, end, limit)
	} else {
		resp, err = s.scanPairs(ctx, req, id, epoch, mode, start, end, limit)
	}
	if err != nil {
		if conn, fctx, ok := s.leaderConn(ctx, err); ok {
			return pb.NewKVClient(conn).Scan(fctx, req)
		}
		return nil, s.errs.toStatus(err, id, req.GetStart(), req.GetEnd(), start, end)
	}
	return resp, nil
}

// scanPairs serves a Scan of full pairs, validated and clamped to the
// shard by Scan.
func (s *KVServer) scanPairs(ctx context.Context, req *pb.ScanRequest, id shard.ShardID, epoch shard.Epoch, mode multiraft.ReadMode, start, end []byte, limit int) (*pb.ScanResponse, error) {
	var (
		kvs  []shard.KeyValue
		more bool
		err  error
		rev  = req.GetRevision()
	)
	latest := rev == 0
	if !latest {
		kvs, more, err = s.store.ScanAt(ctx, id, epoch, start, end, limit, rev, shard.MaxBytes(ScanPageBytes))
	} else {
		kvs, more, rev, err = s.store.ScanPage(ctx, id, epoch, start, end, limit, mode, shard.MaxBytes(ScanPageBytes))
	}
	if err != nil {
		return nil, err
	}
	return s.pageResponse(ctx, kvs, more, rev, latest)
}

// scanWithOptions serves a keys_only or count_only Scan, validated and
// clamped to the shard by Scan. A read of the latest state passes the
// shard's read barrier first and then reads at the revision it resolved,
// which is what Store.Scan reads.
func (s *KVServer) scanWithOptions(ctx context.Context, req *pb.ScanRequest, id shard.ShardID, epoch shard.Epoch, mode multiraft.ReadMode, start, end []byte, limit int) (*pb.ScanResponse, error) {
	rev := req.GetRevision()
	latest := rev == 0
	if latest {
		var err error
		if rev, err = s.store.LatestRevision(ctx, id, epoch, mode); err != nil {
			return nil, err
		}
	}
	if !req.GetCountOnly() {
		kvs, more, err := s.store.ScanAt(ctx, id, epoch, start, end, limit, rev, shard.KeysOnly(), shard.MaxBytes(ScanPageBytes))
		if err != nil {
			return nil, err
		}
		return s.pageResponse(ctx, kvs, more, rev, latest)
	}
	c, err := s.store.CountAt(ctx, id, epoch, start, end, limit, rev)
	if err != nil {
		return nil, err
	}
	n, err := s.fenceCount(ctx, c, rev, latest)
	if err != nil {
		return nil, err
	}
	resp := &pb.ScanResponse{Count: n, More: c.More, Revision: rev}
	if c.More && c.Last != nil {
		resp.ResumeKey = append(c.Last, 0)
	}
	return resp, nil
}

// pageResponse fences the leased keys of a page read at rev and builds
// its answer: more with the resume key just after the last key read.
func (s *KVServer) pageResponse(ctx context.Context, kvs []shard.KeyValue, more bool, rev uint64, latest bool) (*pb.ScanResponse, error) {
	var last []byte
	if len(kvs) > 0 {
		last = kvs[len(kvs)-1].Key
		var err error
		if kvs, err = s.fenceLeased(ctx, kvs, rev, latest); err != nil {
			return nil, err
		}
	}
	resp := &pb.ScanResponse{Kvs: make([]*pb.KeyValue, len(kvs)), More: more, Revision: rev}
	for i := range kvs {
		resp.Kvs[i] = keyValueToProto(&kvs[i])
	}
	if more && last != nil {
		resp.ResumeKey = append(append([]byte(nil), last...), 0)
	}
	return resp, nil
}

// Compact implements pb.KVServer.
func (s *KVServer) Compact(ctx context.Context, req *pb.CompactRequest) (*pb.CompactResponse, error) {
	id, epoch, _, err := readHeader(req.GetHeader())
	if err != nil {
		return nil, err
	}
	if req.GetRevision() == 0 {
		return nil, invalid("revision", "required")
	}
	rev, err := s.store.Compact(ctx, id, epoch, req.GetRevision())
	if err != nil {
		if conn, fctx, ok := s.leaderConn(ctx, err); ok {
			return pb.NewKVClient(conn).Compact(fctx, req)
		}
		return nil, s.errs.toStatus(err, id, nil)
	}
	return &pb.CompactResponse{CompactRevision: rev}, nil
}

// Batch implements pb.KVServer.
func (s *KVServer) Batch(ctx context.Context, req *pb.BatchRequest) (*pb.BatchResponse, error) {
	cmd := shard.Command{Kind: shard.KindBatch}
	id, err := writeHeader(req.GetHeader(), &cmd)
	if err != nil {
		return nil, err
	}
	if len(req.GetOps()) == 0 {
		return nil, invalid("ops", "at least one operation is required")
	}
	ops := make([]shard.Op, len(req.GetOps()))
	for i, o := range req.GetOps() {
		ops[i] = shard.Op{Key: o.GetKey(), Value: o.GetValue(), Delete: o.GetDelete()}
	}
	cmd.Ops = ops
	res, err := s.execute(ctx, "Batch", id, &cmd)
	if err != nil {
		if conn, fctx, ok := s.leaderConn(ctx, err); ok {
			return pb.NewKVClient(conn).Batch(fctx, req)
		}
		keys := make([][]byte, len(ops))
		for i, o := range ops {
			keys[i] = o.Key
		}
		return nil, s.errs.toStatus(err, id, req.GetOps()[0].GetKey(), keys...)
	}
	return &pb.BatchResponse{Revision: res.Revision}, nil
}

// applySpan starts the span of a write's proposal and its wait for apply
// (the engine resolves the proposal's future at apply), as a child of the
// request's server span; end records the outcome and ends it. A request
// that is not traced (tracing off, or not sampled) gets no span and costs
// one context lookup.
func applySpan(ctx context.Context, method string, id shard.ShardID) (_ context.Context, end func(error)) {
	parent := trace.SpanFromContext(ctx)
	if !parent.IsRecording() {
		return ctx, func(error) {}
	}
	ctx, span := parent.TracerProvider().Tracer("github.com/flotilla-kv/flotilla/rpc").Start(ctx, "flotilla.shard.propose-apply",
		trace.WithAttributes(attribute.String("flotilla.kv.method", method), attribute.Int64("flotilla.shard.id", int64(id))))
	return ctx, func(err error) {
		if err != nil {
			span.RecordError(err)
			span.SetStatus(codes.Error, err.Error())
		}
		span.End()
	}
}

// checkSpan refuses a range [start, end) whose end sorts before its start
// (an empty end is +inf; start == end is the empty range) with
// InvalidArgument naming both, cut by keyfmt.
func checkSpan(start, end []byte) error {
	if len(end) != 0 && bytes.Compare(start, end) > 0 {
		return status.Errorf(grpccodes.InvalidArgument, "end: %s sorts before start %s", keyfmt.Quote(end), keyfmt.Quote(start))
	}
	return nil
}

// clampSpan intersects [start, end) with [lo, hi); an empty end or hi is
// +inf. The store re-checks the range against the descriptor it reads
// under, so a descriptor that changed meanwhile is still refused.
func clampSpan(start, end, lo, hi []byte) ([]byte, []byte) {
	if bytes.Compare(start, lo) < 0 {
		start = lo
	}
	if len(hi) > 0 && (len(end) == 0 || bytes.Compare(end, hi) > 0) {
		end = hi
	}
	return start, end
}

// keyValueToProto converts kv, aliasing its slices.
func keyValueToProto(kv *shard.KeyValue) *pb.KeyValue {
	return &pb.KeyValue{Key: kv.Key, Value: kv.Value, CreateRevision: kv.CreateRevision, ModRevision: kv.ModRevision, Version: kv.Version, Lease: kv.Lease}
}

// fenceCount is fenceLeased for a count: it takes off c.Keys the keys
// attached to leases that were not alive at rev, which c tallies by lease.
// Counts of unleased keys pay nothing.
func (s *KVServer) fenceCount(ctx context.Context, c shard.KeyCount, rev uint64, latest bool) (int64, error) {
	if s.leases == nil || len(c.Leased) == 0 {
		return c.Keys, nil
	}
	ids := make([]uint64, 0, len(c.Leased))
	for id := range c.Leased {
		ids = append(ids, id)
	}
	dead, err := s.leases.Dead(ctx, ids, rev, latest)
	if err != nil {
		return 0, err
	}
	n := c.Keys
	for id, keys := range c.Leased {
		if dead[id] {
			n -= keys
		}
	}
	return n, nil
}
