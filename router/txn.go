package router

import (
	"bytes"
	"context"
	"errors"
	"fmt"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/flotilla-kv/flotilla/internal/keyfmt"
	pb "github.com/flotilla-kv/flotilla/rpc/flotillapb"
)

// ErrCrossShardTxn: a CompareTxn across shards asked for what only one
// shard does (a put attaching a lease); nothing was written.
var ErrCrossShardTxn = errors.New("router: transaction spans shards")

// CompareTarget says which property of a key a Compare looks at.
type CompareTarget int

// The compare targets.
const (
	CompareValue CompareTarget = iota + 1
	CompareVersion
	CompareCreateRevision
	CompareModRevision
	CompareLease
)

// CompareOp is a Compare's operator.
type CompareOp int

// The compare operators: the key's property is Equal to, NotEqual to,
// Less than or Greater than the operand.
const (
	CompareEqual CompareOp = iota + 1
	CompareNotEqual
	CompareLess
	CompareGreater
)

// Compare is one condition of a CompareTxn. With Range, every key of
// [Key, End) (an empty End: +inf) must satisfy it, and a range holding no
// key is compared as one absent key. An absent key has version, create
// and mod revision and lease 0, and no value compare holds on it.
type Compare struct {
	Key    []byte
	End    []byte
	Range  bool
	Target CompareTarget
	Op     CompareOp
	// Value is the operand of CompareValue, Number of the others.
	Value  []byte
	Number uint64
}

// TxnOpKind says what a TxnOp does.
type TxnOpKind int

// The kinds of TxnOp.
const (
	// TxnGet reads Key, or with Range the keys of [Key, End).
	TxnGet TxnOpKind = iota + 1
	// TxnPut sets Key to Value, attached to Lease (0: none).
	TxnPut
	// TxnDelete deletes Key, or with Range every key of [Key, End).
	TxnDelete
	// TxnNested runs the nested transaction Txn.
	TxnNested
)

// TxnOp is one operation of a CompareTxn branch.
type TxnOp struct {
	Kind  TxnOpKind
	Key   []byte
	End   []byte
	Range bool
	Value []byte
	Lease uint64
	// PrevKV asks a TxnPut or TxnDelete for the versions it replaced.
	PrevKV bool
	Txn    *CompareTxn
}

// CompareTxn is a compare-then-else transaction: if every compare holds,
// Then runs, otherwise Else; the operations of the branch run in order,
// and reads see the writes before them. A branch may not write a key
// twice (two puts, or a put inside a delete's range).
type CompareTxn struct {
	If   []Compare
	Then []TxnOp
	Else []TxnOp
}

// TxnResult is the outcome of a CompareTxn.
type TxnResult struct {
	// Succeeded says whether every compare held (Then ran).
	Succeeded bool
	// Ops are the results of the branch that ran, in order.
	Ops []TxnOpResult
	// Revision is the transaction's revision: the mod revision of every
	// key it wrote, and the revision its reads saw.
	Revision uint64
}

// TxnOpResult is the result of one TxnOp.
type TxnOpResult struct {
	// KVs: a TxnGet's keys, in key order; a TxnPut's or TxnDelete's
	// replaced versions, with PrevKV.
	KVs []KeyValue
	// Deleted: how many keys a TxnDelete deleted.
	Deleted int64
	// Txn: a TxnNested's result (its Revision is the outer one's).
	Txn *TxnResult
}

// Transact runs t atomically on the one shard that owns every key and
// range it names, as one Raft command at one revision, exactly once
// (retries as for Put; an unknown outcome is ErrAmbiguous). Keys on
// more than one shard run as a transaction across shards instead (see
// txncross.go for what differs). A put attaching a key to a lease first records the key with
// the lease's home, as PutLease does. Reads see keys of a lease that
// ended as absent; compares see such a key until its delete applies.
func (c *Client) Transact(ctx context.Context, t CompareTxn) (TxnResult, error) {
	first, ok := t.FirstKey()
	if !ok {
		return TxnResult{}, status.Error(codes.InvalidArgument, "router: a transaction without a key")
	}
	ctx, cancel := c.callContext(ctx)
	defer cancel()
	for range leasePutAttempts {
		req, err := c.txnToProto(ctx, &t)
		if err != nil {
			return TxnResult{}, err
		}
		var resp *pb.TxnResponse
		err = c.do(ctx, &call{op: "txn", key: first, write: true,
			send: func(ctx context.Context, kv pb.KVClient, r *route, hdr *pb.RequestHeader) error {
				if err := t.within(r); err != nil {
					return err
				}
				var err error
				resp, err = kv.Txn(ctx, &pb.TxnRequest{Header: hdr, Txn: req})
				return err
			}})
		if err == nil {
			return txnResultFromProto(resp.GetResult(), resp.GetRevision()), nil
		}
		if errors.Is(err, ErrCrossShardTxn) {
			return c.transactAcrossShards(ctx, t)
		}
		if !isLeasePromise(err) {
			return TxnResult{}, err
		}
	}
	return TxnResult{}, fmt.Errorf("%w: transaction: stamped past a lease's promise %d times", ErrRetriesExhausted, leasePutAttempts)
}

// FirstKey returns the first key t names (the first compare's, else the
// first operation's, nested transactions included): the key whose shard
// Transact routes t to. It reports false for a transaction that names no
// key, which Transact refuses.
func (t *CompareTxn) FirstKey() ([]byte, bool) {
	if len(t.If) > 0 {
		return t.If[0].Key, true
	}
	for _, ops := range [][]TxnOp{t.Then, t.Else} {
		for i := range ops {
			if ops[i].Kind == TxnNested && ops[i].Txn != nil {
				if k, ok := ops[i].Txn.FirstKey(); ok {
					return k, true
				}
				continue
			}
			return ops[i].Key, true
		}
	}
	return nil, false
}

// within checks that every key and range of t is in r's shard.
func (t *CompareTxn) within(r *route) error {
	in := func(key, end []byte, ranged bool) error {
		ok := r.contains(key)
		if ok && ranged && len(r.end()) != 0 {
			ok = len(end) != 0 && bytes.Compare(end, r.end()) <= 0
		}
		if !ok {
			return fmt.Errorf("%w: shard %d is [%s, %s); %s is not in it", ErrCrossShardTxn, r.id(), printKey(r.start()), printEnd(r.end()), describeRange(key, end, ranged))
		}
		return nil
	}
	for i := range t.If {
		if err := in(t.If[i].Key, t.If[i].End, t.If[i].Range); err != nil {
			return err
		}
	}
	for _, ops := range [][]TxnOp{t.Then, t.Else} {
		for i := range ops {
			op := &ops[i]
			if op.Kind == TxnNested {
				if op.Txn != nil {
					if err := op.Txn.within(r); err != nil {
						return err
					}
				}
				continue
			}
			if err := in(op.Key, op.End, op.Range); err != nil {
				return err
			}
		}
	}
	return nil
}

// describeRange prints a key, or a range [key, end).
func describeRange(key, end []byte, ranged bool) string {
	if !ranged {
		return keyfmt.Quote(key)
	}
	return "[" + printKey(key) + ", " + printEnd(end) + ")"
}

// txnToProto converts t, attaching the key of each put with a lease to
// its lease (see PutLease) to carry the home's promise.
func (c *Client) txnToProto(ctx context.Context, t *CompareTxn) (*pb.Txn, error) {
	out := &pb.Txn{Compares: make([]*pb.TxnCompare, len(t.If))}
	for i, cmp := range t.If {
		out.Compares[i] = &pb.TxnCompare{Key: cmp.Key, End: cmp.End, Ranged: cmp.Range,
			Target: pb.TxnCompare_Target(cmp.Target), Operator: pb.TxnCompare_Operator(cmp.Op), Value: cmp.Value, Number: cmp.Number}
	}
	var err error
	if out.Success, err = c.txnOpsToProto(ctx, t.Then); err != nil {
		return nil, err
	}
	if out.Failure, err = c.txnOpsToProto(ctx, t.Else); err != nil {
		return nil, err
	}
	return out, nil
}

func (c *Client) txnOpsToProto(ctx context.Context, ops []TxnOp) ([]*pb.TxnOp, error) {
	out := make([]*pb.TxnOp, len(ops))
	for i := range ops {
		op := &ops[i]
		po := &pb.TxnOp{Kind: pb.TxnOp_Kind(op.Kind), Key: op.Key, End: op.End, Ranged: op.Range, PrevKv: op.PrevKV}
		switch op.Kind {
		case TxnPut:
			po.Value, po.Lease = op.Value, op.Lease
			if po.Value == nil {
				po.Value = []byte{}
			}
			if op.Lease != 0 {
				var attach *pb.LeaseAttachResponse
				err := c.leaseCall(ctx, "lease attach", op.Lease, false, func(ctx context.Context, kv pb.KVClient, hdr *pb.RequestHeader) error {
					var err error
					attach, err = kv.LeaseAttach(ctx, &pb.LeaseAttachRequest{Header: hdr, Id: op.Lease, Key: op.Key})
					return err
				})
				if err != nil {
					return nil, err
				}
				po.LeaseUntil = attach.GetUntil()
			}
		case TxnNested:
			if op.Txn == nil {
				return nil, status.Error(codes.InvalidArgument, "router: a nested transaction op without its transaction")
			}
			var err error
			if po.Txn, err = c.txnToProto(ctx, op.Txn); err != nil {
				return nil, err
			}
		case TxnGet, TxnDelete:
		default:
			return nil, status.Errorf(codes.InvalidArgument, "router: transaction op of unknown kind %d", op.Kind)
		}
		out[i] = po
	}
	return out, nil
}

func txnResultFromProto(r *pb.TxnResult, rev uint64) TxnResult {
	out := TxnResult{Succeeded: r.GetSucceeded(), Revision: rev, Ops: make([]TxnOpResult, len(r.GetOps()))}
	for i, o := range r.GetOps() {
		res := TxnOpResult{Deleted: o.GetDeleted()}
		for _, kv := range o.GetKvs() {
			res.KVs = append(res.KVs, kvFromProto(kv))
		}
		if o.GetTxn() != nil {
			n := txnResultFromProto(o.GetTxn(), rev)
			res.Txn = &n
		}
		out.Ops[i] = res
	}
	return out
}

// DeleteRangeResult is the outcome of DeleteRange.
type DeleteRangeResult struct {
	// Deleted counts the keys deleted.
	Deleted int64
	// PrevKVs are the deleted keys as they were, in key order, when asked.
	PrevKVs []KeyValue
	// Revision is the highest revision of the shards' deletes.
	Revision uint64
}

// DeleteRange deletes every key of [start, end) (an empty end is +inf;
// like Scan, a range starting below the system span stops where it
// begins), and with prevKV returns them as they were. It deletes shard
// by shard, in key order: each shard's part is one transaction, atomic
// and exactly once at its own revision, but the parts are not one
// transaction; an error after some parts applied leaves them applied
// (the error says which key the failed part began at). Each part is
// one Raft command holding a tombstone per deleted key: a very large
// range is better deleted in pieces.
func (c *Client) DeleteRange(ctx context.Context, start, end []byte, prevKV bool) (DeleteRangeResult, error) {
	ctx, cancel := c.callContext(ctx)
	defer cancel()
	end = clipSystem(start, end)
	if len(end) != 0 {
		switch order := bytes.Compare(start, end); {
		case order > 0:
			return DeleteRangeResult{}, status.Errorf(codes.InvalidArgument, "router: delete range: end %s sorts before start %s", keyfmt.Quote(end), keyfmt.Quote(start))
		case order == 0:
			return DeleteRangeResult{}, nil
		}
	}
	var out DeleteRangeResult
	cur := start
	for {
		var (
			resp *pb.TxnResponse
			used *route
		)
		err := c.do(ctx, &call{op: "delete range", key: cur, write: true,
			send: func(ctx context.Context, kv pb.KVClient, r *route, hdr *pb.RequestHeader) error {
				partEnd := end
				if len(r.end()) != 0 && (len(end) == 0 || bytes.Compare(r.end(), end) < 0) {
					partEnd = r.end()
				}
				txn := &pb.Txn{Success: []*pb.TxnOp{{Kind: pb.TxnOp_DELETE, Key: cur, End: partEnd, Ranged: true, PrevKv: prevKV}}}
				var err error
				resp, err = kv.Txn(ctx, &pb.TxnRequest{Header: hdr, Txn: txn})
				used = r
				return err
			}})
		if err != nil {
			if out.Deleted > 0 {
				return out, fmt.Errorf("router: delete range: the part from %s on failed after %d keys before it were deleted: %w", keyfmt.Quote(cur), out.Deleted, err)
			}
			return out, err
		}
		if ops := resp.GetResult().GetOps(); len(ops) == 1 {
			out.Deleted += ops[0].GetDeleted()
			for _, kv := range ops[0].GetKvs() {
				out.PrevKVs = append(out.PrevKVs, kvFromProto(kv))
			}
		}
		out.Revision = max(out.Revision, resp.GetRevision())
		if used.endsAtOrAfter(end) {
			return out, nil
		}
		cur = used.end()
	}
}
