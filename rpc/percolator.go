package rpc

import (
	"context"

	"google.golang.org/grpc"

	pb "github.com/flotilla-kv/flotilla/rpc/flotillapb"
	"github.com/flotilla-kv/flotilla/shard"
)

// The steps of a transaction across shards (shard/percolator.go): each
// becomes one shard command, served by the shard's leader (a follower
// forwards it, as it forwards a write). None may carry a client_id: each
// is idempotent by the transaction's start, and the client table never
// records it.

// stepHeader validates a step's header and returns its shard.
func stepHeader(h *pb.RequestHeader, cmd *shard.Command) (shard.ShardID, error) {
	if h.GetClientId() != 0 {
		return 0, invalid("header.client_id", "the steps of a transaction are not exactly-once writes")
	}
	return writeHeader(h, cmd)
}

// Prewrite implements pb.KVServer.
func (s *KVServer) Prewrite(ctx context.Context, req *pb.PrewriteRequest) (*pb.PrewriteResponse, error) {
	step := &shard.TxnStep{Start: req.GetStart(), Primary: req.GetPrimary(), TTL: req.GetTtlMs(),
		Mutations: make([]shard.Mutation, len(req.GetMutations())), Async: req.GetAsync(), Secondaries: req.GetSecondaries()}
	for i, m := range req.GetMutations() {
		var op shard.MutationOp
		switch m.GetOp() {
		case pb.Mutation_PUT:
			op = shard.MutationPut
		case pb.Mutation_DELETE:
			op = shard.MutationDelete
		case pb.Mutation_LOCK:
			op = shard.MutationLock
		default:
			return nil, invalid("mutations.op", "unknown op "+m.GetOp().String())
		}
		value := m.GetValue()
		if op == shard.MutationPut && value == nil {
			value = []byte{}
		}
		step.Mutations[i] = shard.Mutation{Op: op, Key: m.GetKey(), Value: value}
	}
	cmd := shard.Command{Kind: shard.KindPrewrite, Step: step}
	var id shard.ShardID
	var err error
	if step.OnePhase = req.GetOnePhase(); step.OnePhase {
		id, err = writeHeader(req.GetHeader(), &cmd)
	} else {
		id, err = stepHeader(req.GetHeader(), &cmd)
	}
	if err != nil {
		return nil, err
	}
	res, err := s.execute(ctx, "Prewrite", id, &cmd)
	if err != nil {
		if conn, fctx, ok := s.leaderConn(ctx, err); ok {
			return pb.NewKVClient(conn).Prewrite(fctx, req)
		}
		return nil, s.errs.toStatus(err, id, firstKey(req.GetMutations()))
	}
	return &pb.PrewriteResponse{Revision: res.Revision}, nil
}

// CommitTxn implements pb.KVServer.
func (s *KVServer) CommitTxn(ctx context.Context, req *pb.CommitTxnRequest) (*pb.CommitTxnResponse, error) {
	cmd := shard.Command{Kind: shard.KindCommitTxn, Step: &shard.TxnStep{Start: req.GetStart(), Primary: req.GetPrimary(),
		Commit: req.GetCommit(), Keys: req.GetKeys()}}
	id, err := stepHeader(req.GetHeader(), &cmd)
	if err != nil {
		return nil, err
	}
	if _, err := s.execute(ctx, "CommitTxn", id, &cmd); err != nil {
		if conn, fctx, ok := s.leaderConn(ctx, err); ok {
			return pb.NewKVClient(conn).CommitTxn(fctx, req)
		}
		return nil, s.errs.toStatus(err, id, routingKey(req.GetKeys()))
	}
	return &pb.CommitTxnResponse{}, nil
}

// RollbackTxn implements pb.KVServer.
func (s *KVServer) RollbackTxn(ctx context.Context, req *pb.RollbackTxnRequest) (*pb.RollbackTxnResponse, error) {
	cmd := shard.Command{Kind: shard.KindRollbackTxn, Step: &shard.TxnStep{Start: req.GetStart(), Primary: req.GetPrimary(),
		Keys: req.GetKeys()}}
	id, err := stepHeader(req.GetHeader(), &cmd)
	if err != nil {
		return nil, err
	}
	if _, err := s.execute(ctx, "RollbackTxn", id, &cmd); err != nil {
		if conn, fctx, ok := s.leaderConn(ctx, err); ok {
			return pb.NewKVClient(conn).RollbackTxn(fctx, req)
		}
		return nil, s.errs.toStatus(err, id, routingKey(req.GetKeys()))
	}
	return &pb.RollbackTxnResponse{}, nil
}

// CheckTxn implements pb.KVServer. The server takes the fresh timestamp
// the primary lock's TTL is judged against: a timestamp from a call that
// began after the request arrived, so a lock is never judged expired by
// a clock older than the request.
func (s *KVServer) CheckTxn(ctx context.Context, req *pb.CheckTxnRequest) (*pb.CheckTxnResponse, error) {
	cmd := shard.Command{Kind: shard.KindCheckTxn, Step: &shard.TxnStep{Start: req.GetStart(), Primary: req.GetPrimary()}}
	id, err := stepHeader(req.GetHeader(), &cmd)
	if err != nil {
		return nil, err
	}
	if cmd.Step.Now, err = s.store.Now(ctx); err != nil {
		return nil, s.errs.toStatus(err, id, req.GetPrimary())
	}
	res, err := s.execute(ctx, "CheckTxn", id, &cmd)
	if err != nil {
		if conn, fctx, ok := s.leaderConn(ctx, err); ok {
			return pb.NewKVClient(conn).CheckTxn(fctx, req)
		}
		return nil, s.errs.toStatus(err, id, req.GetPrimary())
	}
	out := &pb.CheckTxnResponse{}
	switch res.Status {
	case shard.TxnPending:
		out.Status = pb.CheckTxnResponse_PENDING
	case shard.TxnCommitted:
		out.Status, out.Commit = pb.CheckTxnResponse_COMMITTED, res.Revision
	case shard.TxnRolledBack:
		out.Status = pb.CheckTxnResponse_ROLLED_BACK
	case shard.TxnSecondaries:
		// The secondaries are in the primary lock, which the check left
		// in place. Gone since (another resolver recorded the outcome):
		// pending, and the caller asks again.
		out.Status = pb.CheckTxnResponse_PENDING
		l, ok, err := s.store.TxnLock(id, req.GetPrimary())
		if err != nil {
			return nil, s.errs.toStatus(err, id, req.GetPrimary())
		}
		if ok && l.Start == req.GetStart() && l.Async {
			out.Status, out.Secondaries, out.Prewrite = pb.CheckTxnResponse_SECONDARIES, l.Secondaries, l.Prewrite
		}
	}
	return out, nil
}

// CheckSecondaries implements pb.KVServer.
func (s *KVServer) CheckSecondaries(ctx context.Context, req *pb.CheckSecondariesRequest) (*pb.CheckSecondariesResponse, error) {
	if len(req.GetKeys()) == 0 {
		return nil, invalid("keys", "a check of secondaries names at least one key")
	}
	cmd := shard.Command{Kind: shard.KindCheckTxn, Step: &shard.TxnStep{Start: req.GetStart(), Primary: req.GetPrimary(), Keys: req.GetKeys()}}
	id, err := stepHeader(req.GetHeader(), &cmd)
	if err != nil {
		return nil, err
	}
	res, err := s.execute(ctx, "CheckSecondaries", id, &cmd)
	if err != nil {
		if conn, fctx, ok := s.leaderConn(ctx, err); ok {
			return pb.NewKVClient(conn).CheckSecondaries(fctx, req)
		}
		return nil, s.errs.toStatus(err, id, routingKey(req.GetKeys()))
	}
	if res.Status == shard.TxnCommitted {
		return &pb.CheckSecondariesResponse{AllLocked: true, Prewrite: res.Revision}, nil
	}
	return &pb.CheckSecondariesResponse{}, nil
}

// firstKey and routingKey return the key a router routed a step with
// (its first), so that a refusal after a split names the shard that
// holds it now.
func firstKey(ms []*pb.Mutation) []byte {
	if len(ms) == 0 {
		return nil
	}
	return ms[0].GetKey()
}

func routingKey(keys [][]byte) []byte {
	if len(keys) == 0 {
		return nil
	}
	return keys[0]
}

func (l localKV) Prewrite(ctx context.Context, in *pb.PrewriteRequest, _ ...grpc.CallOption) (*pb.PrewriteResponse, error) {
	return unary(ctx, in, l.s.Prewrite)
}

func (l localKV) CommitTxn(ctx context.Context, in *pb.CommitTxnRequest, _ ...grpc.CallOption) (*pb.CommitTxnResponse, error) {
	return unary(ctx, in, l.s.CommitTxn)
}

func (l localKV) RollbackTxn(ctx context.Context, in *pb.RollbackTxnRequest, _ ...grpc.CallOption) (*pb.RollbackTxnResponse, error) {
	return unary(ctx, in, l.s.RollbackTxn)
}

func (l localKV) CheckTxn(ctx context.Context, in *pb.CheckTxnRequest, _ ...grpc.CallOption) (*pb.CheckTxnResponse, error) {
	return unary(ctx, in, l.s.CheckTxn)
}

func (l localKV) CheckSecondaries(ctx context.Context, in *pb.CheckSecondariesRequest, _ ...grpc.CallOption) (*pb.CheckSecondariesResponse, error) {
	return unary(ctx, in, l.s.CheckSecondaries)
}
