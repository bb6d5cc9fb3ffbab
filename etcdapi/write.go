package etcdapi

import (
	"bytes"
	"context"
	"errors"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/flotilla-kv/flotilla/internal/syskeys"
	"github.com/flotilla-kv/flotilla/router"
)

// maxTxnOps is how many compares, and how many operations in each
// branch, a Txn may hold: etcd's default (--max-txn-ops).
const maxTxnOps = 128

// ignoreAttempts bounds the read-then-compare rounds of a Put with
// ignore_value or ignore_lease that keeps losing to concurrent writes.
const ignoreAttempts = 10

// errReserved refuses a write of a key the fleet keeps for itself.
var errReserved = status.Errorf(codes.InvalidArgument, "etcdapi: keys from %q on are reserved for the fleet", syskeys.SystemPrefix)

// writeStatus maps a write's error: etcd's ErrLeaseNotFound for a lease
// that does not exist, Unimplemented for what a transaction across shards
// cannot do (attach a lease), the rest as toStatus maps them.
func writeStatus(err error) error {
	switch {
	case errors.Is(err, router.ErrLeaseNotFound):
		return rpctypes.ErrGRPCLeaseNotFound
	case errors.Is(err, router.ErrCrossShardTxn):
		return status.Errorf(codes.Unimplemented, "etcdapi: not supported in a transaction whose keys are on more than one shard: %v", err)
	}
	return toStatus(err)
}

// checkWriteKey refuses an empty key and a reserved one.
func checkWriteKey(key []byte) error {
	if len(key) == 0 {
		return rpctypes.ErrGRPCEmptyKey
	}
	if bytes.Compare(key, syskeys.SystemPrefix) >= 0 {
		return errReserved
	}
	return nil
}

// Put implements etcd's KV.Put. A plain put is a router put; prev_kv
// makes it a one-key transaction that returns the version it replaced;
// ignore_value and ignore_lease read the key and write it back
// conditionally on its mod revision, retrying if another write came
// between.
func (k *kvServer) Put(ctx context.Context, req *pb.PutRequest) (*pb.PutResponse, error) {
	if err := checkWriteKey(req.GetKey()); err != nil {
		return nil, err
	}
	if req.GetIgnoreValue() && len(req.GetValue()) != 0 {
		return nil, rpctypes.ErrGRPCValueProvided
	}
	if req.GetIgnoreLease() && req.GetLease() != 0 {
		return nil, rpctypes.ErrGRPCLeaseProvided
	}
	if req.GetLease() < 0 {
		return nil, rpctypes.ErrGRPCLeaseNotFound
	}
	r := k.s.r
	key, value, lease := req.GetKey(), req.GetValue(), uint64(req.GetLease())
	if !req.GetIgnoreValue() && !req.GetIgnoreLease() {
		if !req.GetPrevKv() {
			res, err := r.PutLease(ctx, key, value, lease)
			if err != nil {
				return nil, writeStatus(err)
			}
			return &pb.PutResponse{Header: k.s.header(res.Revision)}, nil
		}
		res, err := r.Transact(ctx, router.CompareTxn{Then: []router.TxnOp{{Kind: router.TxnPut, Key: key, Value: value, Lease: lease, PrevKV: true}}})
		if err != nil {
			return nil, writeStatus(err)
		}
		return putResponse(k.s, res.Ops[0], res.Revision), nil
	}
	for range ignoreAttempts {
		cur, err := r.GetAt(ctx, key, 0)
		if err != nil {
			return nil, writeStatus(err)
		}
		if !cur.Found {
			return nil, rpctypes.ErrGRPCKeyNotFound
		}
		v, l := value, lease
		if req.GetIgnoreValue() {
			v = cur.KV.Value
		}
		if req.GetIgnoreLease() {
			l = cur.KV.Lease
		}
		res, err := r.Transact(ctx, router.CompareTxn{
			If:   []router.Compare{{Key: key, Target: router.CompareModRevision, Op: router.CompareEqual, Number: cur.KV.ModRevision}},
			Then: []router.TxnOp{{Kind: router.TxnPut, Key: key, Value: v, Lease: l, PrevKV: req.GetPrevKv()}},
		})
		if err != nil {
			return nil, writeStatus(err)
		}
		if res.Succeeded {
			return putResponse(k.s, res.Ops[0], res.Revision), nil
		}
	}
	return nil, status.Errorf(codes.Aborted, "etcdapi: put of %q: the key changed under %d attempts to keep its value or lease", key, ignoreAttempts)
}

// putResponse is the answer to a put that ran as a transaction op.
func putResponse(s *Server, op router.TxnOpResult, rev uint64) *pb.PutResponse {
	resp := &pb.PutResponse{Header: s.header(rev)}
	if len(op.KVs) > 0 {
		resp.PrevKv = etcdKeyValue(op.KVs[0], false)
	}
	return resp
}

// DeleteRange implements etcd's KV.DeleteRange. One key is a one-key
// transaction; a range is deleted shard by shard (router.DeleteRange):
// each shard's part is atomic at its own revision, and the header
// carries the highest.
func (k *kvServer) DeleteRange(ctx context.Context, req *pb.DeleteRangeRequest) (*pb.DeleteRangeResponse, error) {
	if len(req.GetKey()) == 0 {
		return nil, rpctypes.ErrGRPCEmptyKey
	}
	start, end, single, empty := etcdSpan(req.GetKey(), req.GetRangeEnd())
	if empty {
		rev, err := k.s.freshRevision(ctx)
		if err != nil {
			return nil, toStatus(err)
		}
		return &pb.DeleteRangeResponse{Header: k.s.header(rev)}, nil
	}
	var (
		deleted int64
		prev    []router.KeyValue
		rev     uint64
	)
	if single {
		res, err := k.s.r.Transact(ctx, router.CompareTxn{Then: []router.TxnOp{{Kind: router.TxnDelete, Key: start, PrevKV: req.GetPrevKv()}}})
		if err != nil {
			return nil, writeStatus(err)
		}
		deleted, prev, rev = res.Ops[0].Deleted, res.Ops[0].KVs, res.Revision
	} else {
		res, err := k.s.r.DeleteRange(ctx, start, end, req.GetPrevKv())
		if err != nil {
			return nil, writeStatus(err)
		}
		deleted, prev, rev = res.Deleted, res.PrevKVs, res.Revision
	}
	resp := &pb.DeleteRangeResponse{Header: k.s.header(rev), Deleted: deleted}
	for _, kv := range prev {
		resp.PrevKvs = append(resp.PrevKvs, etcdKeyValue(kv, false))
	}
	return resp, nil
}

// Compact implements etcd's KV.Compact: it compacts every shard at the
// revision (router.CompactTo). physical is always honoured: the call
// returns once every shard applied its compaction. A revision some shard
// was compacted past already answers etcd's ErrCompacted, as etcd
// answers a revision at or below its compaction (the other shards are
// compacted all the same; compaction only grows).
func (k *kvServer) Compact(ctx context.Context, req *pb.CompactionRequest) (*pb.CompactionResponse, error) {
	if req.GetRevision() <= 0 {
		return nil, rpctypes.ErrGRPCCompacted
	}
	rev := uint64(req.GetRevision())
	after, err := k.s.r.CompactTo(ctx, nil, nil, rev)
	if err != nil {
		return nil, toStatus(err)
	}
	if after > rev {
		return nil, rpctypes.ErrGRPCCompacted
	}
	return &pb.CompactionResponse{Header: k.s.header(rev)}, nil
}

// Txn implements etcd's KV.Txn over router.Transact: every key and range
// of the transaction must be on one shard (a transaction across shards
// answers Unimplemented). Ranges inside it read at the transaction's
// revision, as they read in etcd; a range with a revision of its own,
// and a put with ignore_value or ignore_lease, are refused with
// InvalidArgument.
func (k *kvServer) Txn(ctx context.Context, req *pb.TxnRequest) (*pb.TxnResponse, error) {
	var tr txnPlan
	t, err := tr.build(req, 0)
	if err != nil {
		return nil, err
	}
	if err := checkDuplicates(nil, req.GetSuccess()); err != nil {
		return nil, err
	}
	if err := checkDuplicates(nil, req.GetFailure()); err != nil {
		return nil, err
	}
	var res router.TxnResult
	if _, ok := t.FirstKey(); ok {
		if res, err = k.s.r.Transact(ctx, t); err != nil {
			return nil, writeStatus(err)
		}
	} else {
		// Nothing to read or write, and no compare on a key the API can
		// see: every compare is decided already (see txnPlan.build).
		res.Succeeded = tr.decided
		if res.Revision, err = k.s.freshRevision(ctx); err != nil {
			return nil, toStatus(err)
		}
	}
	return tr.response(k.s, res), nil
}

// txnPlan is an etcd transaction turned into a router.CompareTxn, and
// what it takes to answer it from the router's result: which etcd
// operation became which router operation, and the answers of those
// that needed none (a range or delete of keys the API cannot see).
type txnPlan struct {
	// decided: whether every compare decided without reading held (see
	// compareOf); falseCheck: one did not, and t got a compare that
	// never holds in its place.
	decided    bool
	falseCheck bool
	then, els  []planOp
}

// planOp is one etcd operation of a branch: idx is its router
// operation's index (-1: none), nested its nested transaction's plan.
type planOp struct {
	op     *pb.RequestOp
	idx    int
	nested *txnPlan
}

// build converts req into the router transaction, filling p.
func (p *txnPlan) build(req *pb.TxnRequest, depth int) (router.CompareTxn, error) {
	var t router.CompareTxn
	if depth > 8 {
		return t, status.Error(codes.InvalidArgument, "etcdapi: transactions nested deeper than 8")
	}
	if len(req.GetCompare()) > maxTxnOps || len(req.GetSuccess()) > maxTxnOps || len(req.GetFailure()) > maxTxnOps {
		return t, rpctypes.ErrGRPCTooManyOps
	}
	p.decided = true
	for _, c := range req.GetCompare() {
		cmp, decided, holds, err := compareOf(c)
		if err != nil {
			return t, err
		}
		if !decided {
			t.If = append(t.If, cmp)
		} else if !holds {
			p.decided = false
		}
	}
	var err error
	if t.Then, p.then, err = buildOps(req.GetSuccess(), depth); err != nil {
		return t, err
	}
	if t.Else, p.els, err = buildOps(req.GetFailure(), depth); err != nil {
		return t, err
	}
	if !p.decided {
		// Some compare can never hold: make the shard take Else, with a
		// compare that never holds on any key of the transaction.
		if k, ok := t.FirstKey(); ok {
			t.If = append(t.If, router.Compare{Key: k, Target: router.CompareVersion, Op: router.CompareLess, Number: 0})
			p.falseCheck = true
		}
	}
	return t, nil
}

// compareOf converts an etcd compare. decided reports a compare whose
// outcome is known without reading (holds): one on a range the API
// cannot see (compared as one absent key), or one against a negative
// number, which no revision, version or lease is below.
func compareOf(c *pb.Compare) (cmp router.Compare, decided, holds bool, err error) {
	if len(c.GetKey()) == 0 {
		return cmp, false, false, rpctypes.ErrGRPCEmptyKey
	}
	switch c.GetResult() {
	case pb.Compare_EQUAL:
		cmp.Op = router.CompareEqual
	case pb.Compare_NOT_EQUAL:
		cmp.Op = router.CompareNotEqual
	case pb.Compare_LESS:
		cmp.Op = router.CompareLess
	case pb.Compare_GREATER:
		cmp.Op = router.CompareGreater
	default:
		return cmp, false, false, status.Errorf(codes.InvalidArgument, "etcdapi: unknown compare result %d", c.GetResult())
	}
	var n int64
	switch c.GetTarget() {
	case pb.Compare_VALUE:
		cmp.Target, cmp.Value = router.CompareValue, c.GetValue()
	case pb.Compare_VERSION:
		cmp.Target, n = router.CompareVersion, c.GetVersion()
	case pb.Compare_CREATE:
		cmp.Target, n = router.CompareCreateRevision, c.GetCreateRevision()
	case pb.Compare_MOD:
		cmp.Target, n = router.CompareModRevision, c.GetModRevision()
	case pb.Compare_LEASE:
		cmp.Target, n = router.CompareLease, c.GetLease()
	default:
		return cmp, false, false, status.Errorf(codes.InvalidArgument, "etcdapi: unknown compare target %d", c.GetTarget())
	}
	start, end, single, empty := etcdSpan(c.GetKey(), c.GetRangeEnd())
	if empty || n < 0 {
		// An absent key: no value compare holds, and its numbers are 0;
		// every number is at least 0 > n.
		if cmp.Target == router.CompareValue {
			return cmp, true, false, nil
		}
		var r int
		if n < 0 {
			r = 1
		} else if n > 0 {
			r = -1
		}
		return cmp, true, opHolds(cmp.Op, r), nil
	}
	cmp.Key, cmp.Number = start, uint64(n)
	if !single {
		cmp.End, cmp.Range = end, true
	}
	return cmp, false, false, nil
}

// opHolds reports whether op holds for a comparison result r (-1, 0, 1).
func opHolds(op router.CompareOp, r int) bool {
	switch op {
	case router.CompareEqual:
		return r == 0
	case router.CompareNotEqual:
		return r != 0
	case router.CompareLess:
		return r < 0
	}
	return r > 0
}

// buildOps converts the operations of a branch.
func buildOps(reqs []*pb.RequestOp, depth int) ([]router.TxnOp, []planOp, error) {
	var ops []router.TxnOp
	plan := make([]planOp, len(reqs))
	for i, ro := range reqs {
		plan[i] = planOp{op: ro, idx: -1}
		var op router.TxnOp
		switch r := ro.GetRequest().(type) {
		case *pb.RequestOp_RequestRange:
			rr := r.RequestRange
			if err := checkRange(rr); err != nil {
				return nil, nil, err
			}
			if rr.GetRevision() != 0 {
				return nil, nil, status.Error(codes.InvalidArgument, "etcdapi: a range inside a transaction reads at the transaction's revision; a revision of its own is not supported")
			}
			start, end, single, empty := etcdSpan(rr.GetKey(), rr.GetRangeEnd())
			if empty {
				continue
			}
			op = router.TxnOp{Kind: router.TxnGet, Key: start, End: end, Range: !single}
		case *pb.RequestOp_RequestPut:
			rp := r.RequestPut
			if err := checkWriteKey(rp.GetKey()); err != nil {
				return nil, nil, err
			}
			if rp.GetIgnoreValue() || rp.GetIgnoreLease() {
				return nil, nil, status.Error(codes.InvalidArgument, "etcdapi: ignore_value and ignore_lease are not supported inside a transaction")
			}
			if rp.GetLease() < 0 {
				return nil, nil, rpctypes.ErrGRPCLeaseNotFound
			}
			op = router.TxnOp{Kind: router.TxnPut, Key: rp.GetKey(), Value: rp.GetValue(), Lease: uint64(rp.GetLease()), PrevKV: rp.GetPrevKv()}
		case *pb.RequestOp_RequestDeleteRange:
			rd := r.RequestDeleteRange
			if len(rd.GetKey()) == 0 {
				return nil, nil, rpctypes.ErrGRPCEmptyKey
			}
			start, end, single, empty := etcdSpan(rd.GetKey(), rd.GetRangeEnd())
			if empty {
				continue
			}
			op = router.TxnOp{Kind: router.TxnDelete, Key: start, End: end, Range: !single, PrevKV: rd.GetPrevKv()}
		case *pb.RequestOp_RequestTxn:
			nested := &txnPlan{}
			nt, err := nested.build(r.RequestTxn, depth+1)
			if err != nil {
				return nil, nil, err
			}
			plan[i].nested = nested
			op = router.TxnOp{Kind: router.TxnNested, Txn: &nt}
		default:
			return nil, nil, status.Error(codes.InvalidArgument, "etcdapi: a transaction operation without a request")
		}
		plan[i].idx = len(ops)
		ops = append(ops, op)
	}
	return ops, plan, nil
}

// checkDuplicates refuses, with etcd's ErrGRPCDuplicateKey, a branch
// that puts a key twice or puts a key one of its deletes covers; a
// nested transaction's branches are each checked with the writes around
// them. Deletes may overlap.
func checkDuplicates(outer []*pb.RequestOp, ops []*pb.RequestOp) error {
	local := outer
	for _, o := range ops {
		switch o.GetRequest().(type) {
		case *pb.RequestOp_RequestPut, *pb.RequestOp_RequestDeleteRange:
			for _, prev := range local {
				if writesConflict(o, prev) {
					return rpctypes.ErrGRPCDuplicateKey
				}
			}
			local = append(local[:len(local):len(local)], o)
		}
	}
	for _, o := range ops {
		if t := o.GetRequestTxn(); t != nil {
			if err := checkDuplicates(local, t.GetSuccess()); err != nil {
				return err
			}
			if err := checkDuplicates(local, t.GetFailure()); err != nil {
				return err
			}
		}
	}
	return nil
}

// writesConflict reports whether two writes of one branch touch a key
// both: a put and a put of the key, or a put of a key a delete covers.
func writesConflict(a, b *pb.RequestOp) bool {
	pa, pb2 := a.GetRequestPut(), b.GetRequestPut()
	switch {
	case pa != nil && pb2 != nil:
		return bytes.Equal(pa.GetKey(), pb2.GetKey())
	case pa != nil:
		return covers(b.GetRequestDeleteRange(), pa.GetKey())
	case pb2 != nil:
		return covers(a.GetRequestDeleteRange(), pb2.GetKey())
	}
	return false
}

// covers reports whether delete d deletes key.
func covers(d *pb.DeleteRangeRequest, key []byte) bool {
	if d == nil {
		return false
	}
	end := d.GetRangeEnd()
	switch {
	case len(end) == 0:
		return bytes.Equal(d.GetKey(), key)
	case len(end) == 1 && end[0] == 0:
		return bytes.Compare(key, d.GetKey()) >= 0
	}
	return bytes.Compare(key, d.GetKey()) >= 0 && bytes.Compare(key, end) < 0
}

// response builds the answer to p's transaction from the router's
// result.
func (p *txnPlan) response(s *Server, res router.TxnResult) *pb.TxnResponse {
	plan := p.then
	if !res.Succeeded {
		plan = p.els
	}
	out := &pb.TxnResponse{Header: s.header(res.Revision), Succeeded: res.Succeeded, Responses: make([]*pb.ResponseOp, len(plan))}
	for i, po := range plan {
		var r router.TxnOpResult
		if po.idx >= 0 && po.idx < len(res.Ops) {
			r = res.Ops[po.idx]
		}
		out.Responses[i] = po.response(s, r, res.Revision)
	}
	return out
}

// response answers one operation from its router result.
func (po *planOp) response(s *Server, r router.TxnOpResult, rev uint64) *pb.ResponseOp {
	switch req := po.op.GetRequest().(type) {
	case *pb.RequestOp_RequestRange:
		rr := shapeRange(req.RequestRange, r.KVs, rev)
		rr.Header = s.header(rev)
		return &pb.ResponseOp{Response: &pb.ResponseOp_ResponseRange{ResponseRange: rr}}
	case *pb.RequestOp_RequestPut:
		return &pb.ResponseOp{Response: &pb.ResponseOp_ResponsePut{ResponsePut: putResponse(s, r, rev)}}
	case *pb.RequestOp_RequestDeleteRange:
		dr := &pb.DeleteRangeResponse{Header: s.header(rev), Deleted: r.Deleted}
		if req.RequestDeleteRange.GetPrevKv() {
			dr.PrevKvs = make([]*mvccpb.KeyValue, len(r.KVs))
			for j, kv := range r.KVs {
				dr.PrevKvs[j] = etcdKeyValue(kv, false)
			}
		}
		return &pb.ResponseOp{Response: &pb.ResponseOp_ResponseDeleteRange{ResponseDeleteRange: dr}}
	case *pb.RequestOp_RequestTxn:
		nr := router.TxnResult{Succeeded: po.nested.decided}
		if r.Txn != nil {
			nr = *r.Txn
			// Without a key to hang a compare that never holds on, the
			// shard did not see the compare decided false.
			nr.Succeeded = nr.Succeeded && (po.nested.falseCheck || po.nested.decided)
		}
		nr.Revision = rev
		return &pb.ResponseOp{Response: &pb.ResponseOp_ResponseTxn{ResponseTxn: po.nested.response(s, nr)}}
	}
	return &pb.ResponseOp{}
}
