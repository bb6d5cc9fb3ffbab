package etcdapi

import (
	"bytes"
	"cmp"
	"context"
	"slices"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"

	"github.com/flotilla-kv/flotilla/internal/syskeys"
	"github.com/flotilla-kv/flotilla/router"
)

// Range serves etcd's Range: the keys of the request's range as of one
// revision, shaped by shapeRange.
//
// The range is etcd's: key alone is that one key; range_end "\x00" is
// every key from key on (so key "\x00" with range_end "\x00" is every
// key); any other range_end is [key, range_end), empty when range_end
// does not sort after key. The fleet's system span (syskeys.SystemPrefix
// and above) is not part of the etcd keyspace: ranges stop before it.
//
// The read is at req.Revision when it is positive, otherwise at the
// revision Server.freshRevision answers (Config.Now): at or above every
// write acknowledged before the call began, on any shard, and below every
// revision handed out after. A shardnode passes shard.Store.LastWrite,
// the revision of the last write of user data fleet-wide, so a read made
// when nothing was written since a write answers exactly that write's
// revision, as etcd answers its current revision (the Kubernetes API
// server relies on it); without Config.Now it is router.Client.Now, a
// fresh revision above the last write. That revision is the response
// header's: every key of the answer is as it was at that revision, across
// every shard the range spans, so a client may list at it and watch from
// the next one, and a client that saw revision r anywhere reads at r or
// later. A revision below a shard's compaction point fails with etcd's
// ErrCompacted, one above every revision handed out with ErrFutureRev.
// serializable reads go to any replica (router.Stale) and skip the fresh
// revision: they are read at the latest revision of the first replica
// asked (for a span, still one snapshot), possibly stale, as etcd's
// serializable reads may be. Reads at the fresh revision go to this
// node's own replicas when Config.LocalResolved says they resolved past
// it (readsLocally), else to the leaders: the data there at that revision
// is final either way. Reads at req.Revision go to the leaders, which
// refuse a revision below a compaction acknowledged before the read (a
// local replica may not have applied that compaction yet).
//
// Cost: etcd always answers count, the number of keys in the range
// before the limit. A Range whose answer is in key order without revision
// filters (no sort_order DESCEND or sort_target other than KEY, no
// min/max revision) and that has a limit reads the first limit+1 keys of
// its span (router.ScanAt, or router.ScanKeysAt with keys_only) and, when
// the span holds more, has the nodes count the rest at the same revision
// (router.CountAt), so a paginated list of n keys in pages of p reads
// each key's pair about once and counts about n²/2p keys on the nodes,
// where each counted key costs a walk over its versions but no copy or
// transfer. count_only only counts. Any other Range over a span (a sort,
// a filter, or no limit) reads every pair of it at one revision (values
// left out with keys_only, unless it sorts by value) and shapes them
// here. A single-key Range is one point read. A linearizable read of the
// latest state also costs the revision (an oracle call, shared with other
// reads and writes) and, in each shard it reads that has not resolved
// past it (written, or resolved, since), a Resolve through Raft before
// the read: more than the quorum check a read of a shard's own latest
// state needs, the price of one revision order across shards. Where this
// node's replicas resolved past the revision already (a shard read
// again with no write since, or whose write reached this replica), the
// read is theirs and crosses no other node.
func (k *kvServer) Range(ctx context.Context, req *pb.RangeRequest) (*pb.RangeResponse, error) {
	if err := checkRange(req); err != nil {
		return nil, err
	}
	resp, rev, err := k.s.readRange(ctx, req)
	if err != nil {
		return nil, toStatus(err)
	}
	resp.Header = k.s.header(rev)
	return resp, nil
}

// checkRange refuses what etcd refuses before reading: an empty key and
// sort options outside the enums.
func checkRange(req *pb.RangeRequest) error {
	if len(req.GetKey()) == 0 {
		return rpctypes.ErrGRPCEmptyKey
	}
	if _, ok := pb.RangeRequest_SortOrder_name[int32(req.GetSortOrder())]; !ok {
		return rpctypes.ErrGRPCInvalidSortOption
	}
	if _, ok := pb.RangeRequest_SortTarget_name[int32(req.GetSortTarget())]; !ok {
		return rpctypes.ErrGRPCInvalidSortOption
	}
	return nil
}

// readRange answers req, checked by checkRange, without its header: it
// reads etcd's range (key, range_end) at req.Revision (when positive, else
// the latest, as Range says), from any replica when serializable, and
// returns the answer shapeRange gives for every key of the range, and the
// revision read at, which every read of the answer (pages and counts,
// across shards) shares. It reads what the answer needs (see Range's
// cost). A range with no keys to read (empty, or inside the system span)
// still reads key's shard at the revision, so the revision is real and a
// compacted or future one is refused as for any other range. Errors are
// the router's.
func (s *Server) readRange(ctx context.Context, req *pb.RangeRequest) (*pb.RangeResponse, uint64, error) {
	var opts []router.ReadOption
	stale := req.GetSerializable()
	if stale {
		opts = append(opts, router.WithConsistency(router.Stale))
	}
	rev := uint64(max(req.GetRevision(), 0))
	asked := rev != 0 // a revision of the client's, which may be compacted
	if rev == 0 && !stale {
		// A read of the latest state is made at the fleet's revision
		// (the last write's, or a fresh one): the shards' own latest (the
		// router's rev 0) is only as new as each shard's last write, so
		// a span read at the first shard's could miss writes later
		// shards acknowledged, and a header naming a key's shard's could
		// be below a revision the client saw on another shard.
		fresh, err := s.freshRevision(ctx)
		if err != nil {
			return nil, 0, err
		}
		rev = fresh
	}
	key := req.GetKey()
	start, end, single, empty := etcdSpan(key, req.GetRangeEnd())
	if !stale && !asked && s.readsLocally(start, end, single || empty, rev) {
		// The node's own replicas resolved past rev: their data at rev is
		// the leaders', and reading it here saves the hop to them. Only
		// for the fresh revision: a compaction acknowledged before this
		// read began was to a revision handed out before it, below the
		// fresh one, so no replica refuses the fresh one. A revision the
		// client gave may be below such a compaction, which a local
		// replica may not have applied yet; the leader has, and refuses
		// the read as etcd does.
		opts = append(opts, router.WithConsistency(router.Stale))
	}
	if single || empty {
		res, err := s.r.GetAt(ctx, key, rev, opts...)
		if err != nil {
			return nil, 0, err
		}
		var kvs []router.KeyValue
		if res.Found && !empty {
			kvs = []router.KeyValue{res.KV}
		}
		return shapeRange(req, kvs, res.Revision), res.Revision, nil
	}
	if req.GetCountOnly() {
		// The count is of the keys before any filter or limit.
		n, seen, err := s.r.CountAt(ctx, start, end, rev, opts...)
		if err != nil {
			return nil, 0, err
		}
		return &pb.RangeResponse{Count: n}, seen, nil
	}
	scan := s.r.ScanAt
	if req.GetKeysOnly() && req.GetSortTarget() != pb.RangeRequest_VALUE {
		scan = s.r.ScanKeysAt
	}
	limit := req.GetLimit()
	if limit <= 0 || limit >= maxPagedLimit || !inKeyOrder(req) {
		// Every key is needed: to sort or filter, or for the answer.
		res, err := scan(ctx, start, end, 0 /* limit: all */, rev, opts...)
		if err != nil {
			return nil, 0, err
		}
		return shapeRange(req, res.KVs, res.Revision), res.Revision, nil
	}
	// The first limit keys are the answer; one more says whether there are
	// more, and then the nodes count the rest.
	res, err := scan(ctx, start, end, int(limit)+1, rev, opts...)
	if err != nil {
		return nil, 0, err
	}
	count := int64(len(res.KVs))
	if count > limit {
		after := append(bytes.Clone(res.KVs[limit].Key), 0)
		rest, _, err := s.r.CountAt(ctx, after, end, res.Revision, opts...)
		if err != nil {
			return nil, 0, err
		}
		count += rest
	}
	resp := shapeRange(req, res.KVs, res.Revision)
	resp.Count = count
	return resp, res.Revision, nil
}

// readsLocally reports whether a read at rev of [start, end) (the key
// start alone with point) may go to this node's own replicas
// (Config.LocalResolved): they resolved past rev, so they answer it as
// the leaders would.
func (s *Server) readsLocally(start, end []byte, point bool, rev uint64) bool {
	if s.cfg.LocalResolved == nil {
		return false
	}
	if point {
		end = nil
	}
	return s.cfg.LocalResolved(start, end, rev)
}

// maxPagedLimit bounds the limits readRange reads page by page (limit+1
// pairs, then a count); a Range with a larger limit reads its whole span.
const maxPagedLimit = 1 << 30

// inKeyOrder reports whether req's answer is the keys of its range in
// key order with none filtered out: no min/max revision filter, and a
// sort that leaves key order (sortRange's no-op cases).
func inKeyOrder(req *pb.RangeRequest) bool {
	if req.GetMinModRevision() != 0 || req.GetMaxModRevision() != 0 || req.GetMinCreateRevision() != 0 || req.GetMaxCreateRevision() != 0 {
		return false
	}
	return req.GetSortTarget() == pb.RangeRequest_KEY && req.GetSortOrder() != pb.RangeRequest_DESCEND
}

// etcdSpan turns etcd's (key, range_end) into the router's [start, end)
// (an empty end is +inf), cut at the system span. single reports a
// one-key request (no range_end); empty reports a range without any key
// the etcd API can see.
func etcdSpan(key, rangeEnd []byte) (start, end []byte, single, empty bool) {
	inSystem := bytes.Compare(key, syskeys.SystemPrefix) >= 0
	switch {
	case len(rangeEnd) == 0:
		return key, nil, !inSystem, inSystem
	case inSystem:
		return key, nil, false, true
	case len(rangeEnd) == 1 && rangeEnd[0] == 0:
		end = syskeys.SystemPrefix
	case bytes.Compare(rangeEnd, syskeys.SystemPrefix) > 0:
		end = syskeys.SystemPrefix
	default:
		end = rangeEnd
	}
	if bytes.Compare(end, key) <= 0 {
		return key, nil, false, true
	}
	return key, end, false, false
}

// shapeRange builds the answer to req from kvs, every key of req's range
// as read at revision rev (unlimited, in key order), as etcd shapes a
// range: count is len(kvs), the keys in the range before any filter or
// limit; with count_only that is all the answer holds. Otherwise the
// min/max mod and create revision filters drop keys (a bound of 0 is no
// bound), the keys are sorted as asked (sort_target other than KEY
// without a sort_order sorts ascending, as etcd does; equal keys of the
// target stay in key order), the first limit are kept (limit <= 0: all)
// and more reports that the limit cut some off; keys_only leaves values
// out.
//
// rev is not needed to shape the answer; it is taken so that callers
// (Range, and range operations inside Txn) hand over the whole read, and
// set the header themselves: the response's Header is nil. shapeRange
// neither keeps nor changes kvs; the response shares its byte slices.
func shapeRange(req *pb.RangeRequest, kvs []router.KeyValue, rev uint64) *pb.RangeResponse {
	resp := &pb.RangeResponse{Count: int64(len(kvs))}
	if req.GetCountOnly() {
		return resp
	}
	sel := make([]router.KeyValue, 0, len(kvs))
	for _, kv := range kvs {
		if inRevisionBounds(req, kv) {
			sel = append(sel, kv)
		}
	}
	sortRange(req, sel)
	if limit := req.GetLimit(); limit > 0 && int64(len(sel)) > limit {
		sel = sel[:limit]
		resp.More = true
	}
	resp.Kvs = make([]*mvccpb.KeyValue, len(sel))
	for i, kv := range sel {
		resp.Kvs[i] = etcdKeyValue(kv, req.GetKeysOnly())
	}
	return resp
}

// inRevisionBounds reports whether kv passes req's min/max mod and create
// revision filters.
func inRevisionBounds(req *pb.RangeRequest, kv router.KeyValue) bool {
	mod, create := int64(kv.ModRevision), int64(kv.CreateRevision)
	switch {
	case req.GetMinModRevision() != 0 && mod < req.GetMinModRevision():
		return false
	case req.GetMaxModRevision() != 0 && mod > req.GetMaxModRevision():
		return false
	case req.GetMinCreateRevision() != 0 && create < req.GetMinCreateRevision():
		return false
	case req.GetMaxCreateRevision() != 0 && create > req.GetMaxCreateRevision():
		return false
	}
	return true
}

// sortRange sorts kvs, in key order, as req asks. The sort is stable, so
// keys equal in the target keep their key order in either direction.
func sortRange(req *pb.RangeRequest, kvs []router.KeyValue) {
	order, target := req.GetSortOrder(), req.GetSortTarget()
	if order == pb.RangeRequest_NONE && target != pb.RangeRequest_KEY {
		order = pb.RangeRequest_ASCEND
	}
	if order == pb.RangeRequest_NONE || (order == pb.RangeRequest_ASCEND && target == pb.RangeRequest_KEY) {
		return // already in key order
	}
	var by func(a, b router.KeyValue) int
	switch target {
	case pb.RangeRequest_KEY:
		by = func(a, b router.KeyValue) int { return bytes.Compare(a.Key, b.Key) }
	case pb.RangeRequest_VERSION:
		by = func(a, b router.KeyValue) int { return cmp.Compare(a.Version, b.Version) }
	case pb.RangeRequest_CREATE:
		by = func(a, b router.KeyValue) int { return cmp.Compare(a.CreateRevision, b.CreateRevision) }
	case pb.RangeRequest_MOD:
		by = func(a, b router.KeyValue) int { return cmp.Compare(a.ModRevision, b.ModRevision) }
	case pb.RangeRequest_VALUE:
		by = func(a, b router.KeyValue) int { return bytes.Compare(a.Value, b.Value) }
	default:
		return // refused by checkRange
	}
	if order == pb.RangeRequest_DESCEND {
		asc := by
		by = func(a, b router.KeyValue) int { return asc(b, a) }
	}
	slices.SortStableFunc(kvs, by)
}

// etcdKeyValue converts a key as the router read it to etcd's KeyValue,
// without its value when keysOnly. It shares kv's byte slices.
func etcdKeyValue(kv router.KeyValue, keysOnly bool) *mvccpb.KeyValue {
	out := &mvccpb.KeyValue{
		Key: kv.Key, CreateRevision: int64(kv.CreateRevision), ModRevision: int64(kv.ModRevision),
		Version: int64(kv.Version), Lease: int64(kv.Lease),
	}
	if !keysOnly {
		out.Value = kv.Value
	}
	return out
}
