package rpc

import (
	"context"
	"fmt"

	pb "github.com/flotilla-kv/flotilla/rpc/flotillapb"
	"github.com/flotilla-kv/flotilla/shard"
)

// Txn implements pb.KVServer: one compare-then-else transaction on one
// shard, one Raft command (shard.KindTxn). The keys its ranges read pass
// the lease fence at the transaction's revision, as a read at that
// revision would; its compares and the versions a put or delete
// replaced do not (a key of a lease that ended is seen by them until its
// delete applies, as by CompareAndSwap).
func (s *KVServer) Txn(ctx context.Context, req *pb.TxnRequest) (*pb.TxnResponse, error) {
	cmd := shard.Command{Kind: shard.KindTxn}
	id, err := writeHeader(req.GetHeader(), &cmd)
	if err != nil {
		return nil, err
	}
	if req.GetTxn() == nil {
		return nil, invalid("txn", "required")
	}
	if cmd.Txn, err = txnFromProto(req.GetTxn(), 0); err != nil {
		return nil, err
	}
	res, err := s.execute(ctx, "Txn", id, &cmd)
	if err != nil {
		if conn, fctx, ok := s.leaderConn(ctx, err); ok {
			return pb.NewKVClient(conn).Txn(fctx, req)
		}
		return nil, s.errs.toStatus(err, id, firstTxnKey(cmd.Txn))
	}
	if res.Txn == nil {
		return nil, s.errs.toStatus(shard.ErrBadCommand, id, nil)
	}
	out, err := s.txnResultToProto(ctx, cmd.Txn, res.Txn, res.Revision)
	if err != nil {
		return nil, s.errs.toStatus(err, id, nil)
	}
	return &pb.TxnResponse{Result: out, Revision: res.Revision}, nil
}

// firstTxnKey returns a key of t for error messages (nil if it has none).
func firstTxnKey(t *shard.Txn) []byte {
	if len(t.Compares) > 0 {
		return t.Compares[0].Key
	}
	for _, ops := range [][]shard.TxnOp{t.Then, t.Else} {
		for _, op := range ops {
			if op.Kind != shard.TxnNested {
				return op.Key
			}
		}
	}
	return nil
}

// txnFromProto converts a wire transaction, refusing unknown targets,
// operators and kinds and nesting deeper than the shard accepts, with
// InvalidArgument. The result aliases t's bytes.
func txnFromProto(t *pb.Txn, depth int) (*shard.Txn, error) {
	if depth > 8 {
		return nil, invalid("txn", "transactions nest deeper than 8")
	}
	out := &shard.Txn{Compares: make([]shard.Compare, len(t.GetCompares()))}
	for i, c := range t.GetCompares() {
		target := c.GetTarget()
		if target <= pb.TxnCompare_TARGET_UNSPECIFIED || target > pb.TxnCompare_LEASE {
			return nil, invalid("txn.compares.target", "unknown target "+target.String())
		}
		op := c.GetOperator()
		if op <= pb.TxnCompare_OPERATOR_UNSPECIFIED || op > pb.TxnCompare_GREATER {
			return nil, invalid("txn.compares.operator", "unknown operator "+op.String())
		}
		out.Compares[i] = shard.Compare{Key: c.GetKey(), End: c.GetEnd(), Ranged: c.GetRanged(),
			Target: shard.CompareTarget(target), Op: shard.CompareOp(op), Value: c.GetValue(), Number: c.GetNumber()}
	}
	var err error
	if out.Then, err = txnOpsFromProto(t.GetSuccess(), depth); err != nil {
		return nil, err
	}
	if out.Else, err = txnOpsFromProto(t.GetFailure(), depth); err != nil {
		return nil, err
	}
	return out, nil
}

func txnOpsFromProto(ops []*pb.TxnOp, depth int) ([]shard.TxnOp, error) {
	out := make([]shard.TxnOp, len(ops))
	for i, o := range ops {
		op := shard.TxnOp{Key: o.GetKey(), End: o.GetEnd(), Ranged: o.GetRanged(), Value: o.GetValue(),
			Lease: o.GetLease(), LeaseUntil: o.GetLeaseUntil(), PrevKV: o.GetPrevKv()}
		switch o.GetKind() {
		case pb.TxnOp_RANGE:
			op.Kind = shard.TxnRange
		case pb.TxnOp_PUT:
			op.Kind = shard.TxnPut
			if op.Value == nil {
				op.Value = []byte{}
			}
		case pb.TxnOp_DELETE:
			op.Kind = shard.TxnDelete
		case pb.TxnOp_TXN:
			op.Kind = shard.TxnNested
			if o.GetTxn() == nil {
				return nil, invalid("txn.op.txn", "a TXN op needs its transaction")
			}
			var err error
			if op.Txn, err = txnFromProto(o.GetTxn(), depth+1); err != nil {
				return nil, err
			}
		default:
			return nil, invalid("txn.op.kind", "unknown kind "+o.GetKind().String())
		}
		out[i] = op
	}
	return out, nil
}

// txnResultToProto converts the result r of transaction t, dropping
// from its ranges' results the keys whose lease was not alive at rev.
func (s *KVServer) txnResultToProto(ctx context.Context, t *shard.Txn, r *shard.TxnResult, rev uint64) (*pb.TxnResult, error) {
	ops := t.Then
	if !r.Succeeded {
		ops = t.Else
	}
	if len(ops) != len(r.Ops) {
		return nil, fmt.Errorf("%w: a txn result of %d ops for a branch of %d", shard.ErrBadCommand, len(r.Ops), len(ops))
	}
	out := &pb.TxnResult{Succeeded: r.Succeeded, Ops: make([]*pb.TxnOpResult, len(r.Ops))}
	for i := range r.Ops {
		o := &r.Ops[i]
		po := &pb.TxnOpResult{Deleted: o.Deleted}
		kvs := o.KVs
		var err error
		switch ops[i].Kind {
		case shard.TxnNested:
			if o.Txn == nil {
				return nil, fmt.Errorf("%w: a nested txn without its result", shard.ErrBadCommand)
			}
			if po.Txn, err = s.txnResultToProto(ctx, ops[i].Txn, o.Txn, rev); err != nil {
				return nil, err
			}
		case shard.TxnRange:
			if kvs, err = s.fenceLeased(ctx, kvs, rev, false); err != nil {
				return nil, err
			}
		}
		po.Kvs = make([]*pb.KeyValue, len(kvs))
		for j := range kvs {
			po.Kvs[j] = keyValueToProto(&kvs[j])
		}
		out.Ops[i] = po
	}
	return out, nil
}

// Now implements pb.KVServer: a revision from the node's oracle, from a
// call that began after the request arrived (shard.Store.Now).
func (s *KVServer) Now(ctx context.Context, _ *pb.NowRequest) (*pb.NowResponse, error) {
	rev, err := s.store.Now(ctx)
	if err != nil {
		return nil, s.errs.toStatus(err, 0, nil)
	}
	return &pb.NowResponse{Revision: rev}, nil
}
