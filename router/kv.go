package router

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"

	pb "github.com/flotilla-kv/flotilla/rpc/flotillapb"
)

func (c *Client) readOptions(opts []ReadOption) readOptions {
	o := readOptions{consistency: c.cfg.ReadConsistency}
	for _, f := range opts {
		f(&o)
	}
	return o
}

// Get returns the value of key and whether it exists, read at the
// consistency of Config.ReadConsistency or WithConsistency. The caller owns
// the value. Errors: a gRPC status from the node (InvalidArgument for an
// empty or oversized key), ErrRetriesExhausted, ErrNoRoute, ErrClosed, or
// the context's error. GetAt also returns the key's revisions.
func (c *Client) Get(ctx context.Context, key []byte, opts ...ReadOption) ([]byte, bool, error) {
	res, err := c.GetAt(ctx, key, 0, opts...)
	if err != nil || !res.Found {
		return nil, false, err
	}
	return res.KV.Value, true, nil
}

// GetAt reads key as it was at revision rev (every write at or below it,
// none above), or with rev 0 its latest state at the read's consistency,
// as Get does. The result carries the key's revisions and the revision
// the read saw. A read at a revision is final once the shard resolved it,
// so the consistency only chooses where it is sent (a replica that has
// not resolved rev yet redirects to the leader). Errors as for Get, and
// *CompactedError when rev is below the shard's compaction point,
// *FutureRevisionError when it is above every revision handed out (both
// final; errors.As finds them). The caller owns the result.
func (c *Client) GetAt(ctx context.Context, key []byte, rev uint64, opts ...ReadOption) (GetResult, error) {
	ctx, cancel := c.callContext(ctx)
	defer cancel()
	o := c.readOptions(opts)
	var resp *pb.GetResponse
	err := c.do(ctx, &call{op: "get", key: key, consistency: o.consistency,
		send: func(ctx context.Context, kv pb.KVClient, _ *route, hdr *pb.RequestHeader) error {
			var err error
			resp, err = kv.Get(ctx, &pb.GetRequest{Header: hdr, Key: key, Revision: rev})
			return err
		}})
	if err != nil {
		return GetResult{}, err
	}
	res := GetResult{KV: KeyValue{Key: key}, Found: resp.GetFound(), Revision: resp.GetRevision()}
	if res.Found {
		v := resp.GetValue()
		if v == nil {
			v = []byte{}
		}
		res.KV = KeyValue{Key: key, Value: v, CreateRevision: resp.GetCreateRevision(), ModRevision: resp.GetModRevision(), Version: resp.GetVersion(), Lease: resp.GetLease()}
	}
	return res, nil
}

// Put sets key to value. It returns once the write applied on the shard's
// leader (committed by a quorum). It is applied exactly once even when
// retried; an error that errors.Is ErrAmbiguous means it may or may not
// have applied. The Client does not keep key or value after Put returns.
// PutRev also returns the write's revision.
func (c *Client) Put(ctx context.Context, key, value []byte) error {
	_, err := c.PutRev(ctx, key, value)
	return err
}

// PutRev is Put returning the write's revision. A retried write returns
// the revision of its one application.
func (c *Client) PutRev(ctx context.Context, key, value []byte) (WriteResult, error) {
	ctx, cancel := c.callContext(ctx)
	defer cancel()
	return c.put(ctx, key, value, 0, 0)
}

// put writes key with Put's retries, attached to lease (0: none) with
// the lease's promise until (see PutLease).
func (c *Client) put(ctx context.Context, key, value []byte, lease, until uint64) (WriteResult, error) {
	var resp *pb.PutResponse
	err := c.do(ctx, &call{op: "put", key: key, write: true,
		send: func(ctx context.Context, kv pb.KVClient, _ *route, hdr *pb.RequestHeader) error {
			var err error
			resp, err = kv.Put(ctx, &pb.PutRequest{Header: hdr, Key: key, Value: value, Lease: lease, LeaseUntil: until})
			return err
		}})
	if err != nil {
		return WriteResult{}, err
	}
	return WriteResult{Revision: resp.GetRevision()}, nil
}

// Delete deletes key; deleting an absent key succeeds. Errors and
// exactly-once as for Put. DeleteRev also returns the revision.
func (c *Client) Delete(ctx context.Context, key []byte) error {
	_, err := c.DeleteRev(ctx, key)
	return err
}

// DeleteRev is Delete returning the revision it was ordered at.
func (c *Client) DeleteRev(ctx context.Context, key []byte) (WriteResult, error) {
	ctx, cancel := c.callContext(ctx)
	defer cancel()
	res, _, err := c.delete(ctx, key, 0)
	return res, err
}

// delete deletes key with Delete's retries, only if it is attached to
// ifLease when that is set, and reports whether it deleted a version.
func (c *Client) delete(ctx context.Context, key []byte, ifLease uint64) (WriteResult, bool, error) {
	var resp *pb.DeleteResponse
	err := c.do(ctx, &call{op: "delete", key: key, write: true,
		send: func(ctx context.Context, kv pb.KVClient, _ *route, hdr *pb.RequestHeader) error {
			var err error
			resp, err = kv.Delete(ctx, &pb.DeleteRequest{Header: hdr, Key: key, IfLease: ifLease})
			return err
		}})
	if err != nil {
		return WriteResult{}, false, err
	}
	return WriteResult{Revision: resp.GetRevision()}, resp.GetDeleted(), nil
}

// CompareAndSwap sets key to value if it holds expected, or, with
// expectAbsent (expected is then ignored), if it does not exist. A failed
// comparison is not an error: the result says Swapped false and carries
// the key's current state. Retries carry the same ClientID and Seq, so a
// retried CAS returns the outcome of its one application, never the
// failure its own earlier success would cause. Errors as for Put.
func (c *Client) CompareAndSwap(ctx context.Context, key, expected []byte, expectAbsent bool, value []byte) (CASResult, error) {
	ctx, cancel := c.callContext(ctx)
	defer cancel()
	if expectAbsent {
		expected = nil
	}
	var resp *pb.CompareAndSwapResponse
	err := c.do(ctx, &call{op: "cas", key: key, write: true,
		send: func(ctx context.Context, kv pb.KVClient, _ *route, hdr *pb.RequestHeader) error {
			var err error
			resp, err = kv.CompareAndSwap(ctx, &pb.CompareAndSwapRequest{
				Header: hdr, Key: key, Expected: expected, ExpectAbsent: expectAbsent, Value: value})
			return err
		}})
	if err != nil {
		return CASResult{}, err
	}
	res := CASResult{Swapped: resp.GetSucceeded(), Found: resp.GetFound(), Revision: resp.GetRevision()}
	if res.Found {
		res.Current = resp.GetValue()
		if res.Current == nil {
			res.Current = []byte{}
		}
	}
	return res, nil
}

// Batch applies ops atomically and in order (a later op on a key wins).
// Keys of one shard go in one Raft command; keys on several shards are
// committed as a transaction across shards (see Txn) of blind writes,
// which Batch starts again by itself when it conflicts, since nothing it
// wrote depended on a read. Errors and exactly-once as for Put (a batch
// across shards whose commit point's answer was lost ends with
// ErrAmbiguous); ErrEmptyBatch without ops. BatchRev also returns the
// revision, the ModRevision of every key it wrote.
func (c *Client) Batch(ctx context.Context, ops []Op) error {
	_, err := c.BatchRev(ctx, ops)
	return err
}

// BatchRev is Batch returning the batch's one revision, the ModRevision
// of every key it wrote.
func (c *Client) BatchRev(ctx context.Context, ops []Op) (WriteResult, error) {
	if len(ops) == 0 {
		return WriteResult{}, ErrEmptyBatch
	}
	ctx, cancel := c.callContext(ctx)
	defer cancel()
	req := make([]*pb.BatchOp, len(ops))
	for i, o := range ops {
		req[i] = &pb.BatchOp{Key: o.Key, Value: o.Value, Delete: o.Delete}
		if o.Delete {
			req[i].Value = nil
		}
	}
	var resp *pb.BatchResponse
	err := c.do(ctx, &call{op: "batch", key: ops[0].Key, write: true,
		send: func(ctx context.Context, kv pb.KVClient, r *route, hdr *pb.RequestHeader) error {
			for _, o := range ops {
				if !r.contains(o.Key) {
					return errBatchSpansShards
				}
			}
			var err error
			resp, err = kv.Batch(ctx, &pb.BatchRequest{Header: hdr, Ops: req})
			return err
		}})
	if errors.Is(err, errBatchSpansShards) {
		return c.batchAcrossShards(ctx, ops)
	}
	if err != nil {
		return WriteResult{}, err
	}
	return WriteResult{Revision: resp.GetRevision()}, nil
}

// errBatchSpansShards: a Batch's keys are on several shards, by the
// current route; it goes as a transaction instead.
var errBatchSpansShards = errors.New("router: batch spans shards")

// batchAcrossShards commits ops as a transaction of blind writes,
// starting again after a conflict (nothing it writes depends on what it
// read, so a later start is as good).
func (c *Client) batchAcrossShards(ctx context.Context, ops []Op) (WriteResult, error) {
	last := make(map[string]*pb.Mutation, len(ops))
	for _, o := range ops {
		m := &pb.Mutation{Op: pb.Mutation_PUT, Key: o.Key, Value: o.Value}
		if o.Delete {
			m = &pb.Mutation{Op: pb.Mutation_DELETE, Key: o.Key}
		} else if m.Value == nil {
			m.Value = []byte{}
		}
		last[string(o.Key)] = m
	}
	muts := slices.SortedFunc(maps.Values(last), func(a, b *pb.Mutation) int { return bytes.Compare(a.GetKey(), b.GetKey()) })
	var rev uint64
	err := c.againOnConflict(ctx, func() error {
		start, err := c.Now(ctx)
		if err != nil {
			return err
		}
		rev, err = c.commitTxn(ctx, start, defaultLockTTL, muts)
		return err
	})
	if err != nil {
		return WriteResult{}, fmt.Errorf("router: batch across shards: %w", err)
	}
	return WriteResult{Revision: rev}, nil
}
