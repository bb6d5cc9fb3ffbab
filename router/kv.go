package router

import (
	"context"
	"fmt"

	"github.com/flotilla-kv/flotilla/internal/keyfmt"
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
// the context's error.
func (c *Client) Get(ctx context.Context, key []byte, opts ...ReadOption) ([]byte, bool, error) {
	ctx, cancel := c.callContext(ctx)
	defer cancel()
	o := c.readOptions(opts)
	var resp *pb.GetResponse
	err := c.do(ctx, &call{op: "get", key: key, consistency: o.consistency,
		send: func(ctx context.Context, kv pb.KVClient, _ *route, hdr *pb.RequestHeader) error {
			var err error
			resp, err = kv.Get(ctx, &pb.GetRequest{Header: hdr, Key: key})
			return err
		}})
	if err != nil {
		return nil, false, err
	}
	if !resp.GetFound() {
		return nil, false, nil
	}
	if resp.GetValue() == nil {
		return []byte{}, true, nil
	}
	return resp.GetValue(), true, nil
}

// Put sets key to value. It returns once the write applied on the shard's
// leader (committed by a quorum). It is applied exactly once even when
// retried; an error that errors.Is ErrAmbiguous means it may or may not
// have applied. The Client does not keep key or value after Put returns.
func (c *Client) Put(ctx context.Context, key, value []byte) error {
	ctx, cancel := c.callContext(ctx)
	defer cancel()
	return c.do(ctx, &call{op: "put", key: key, write: true,
		send: func(ctx context.Context, kv pb.KVClient, _ *route, hdr *pb.RequestHeader) error {
			_, err := kv.Put(ctx, &pb.PutRequest{Header: hdr, Key: key, Value: value})
			return err
		}})
}

// Delete deletes key; deleting an absent key succeeds. Errors and
// exactly-once as for Put.
func (c *Client) Delete(ctx context.Context, key []byte) error {
	ctx, cancel := c.callContext(ctx)
	defer cancel()
	return c.do(ctx, &call{op: "delete", key: key, write: true,
		send: func(ctx context.Context, kv pb.KVClient, _ *route, hdr *pb.RequestHeader) error {
			_, err := kv.Delete(ctx, &pb.DeleteRequest{Header: hdr, Key: key})
			return err
		}})
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
	res := CASResult{Swapped: resp.GetSucceeded(), Found: resp.GetFound()}
	if res.Found {
		res.Current = resp.GetValue()
		if res.Current == nil {
			res.Current = []byte{}
		}
	}
	return res, nil
}

// Batch applies ops atomically and in order. Every key must belong to one
// shard (the one owning ops[0].Key); otherwise it returns
// ErrCrossShardBatch and writes nothing. The check uses the current route,
// and a stale route is refused by the node and healed before the check
// repeats. Errors and exactly-once as for Put; ErrEmptyBatch without ops.
func (c *Client) Batch(ctx context.Context, ops []Op) error {
	if len(ops) == 0 {
		return ErrEmptyBatch
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
	return c.do(ctx, &call{op: "batch", key: ops[0].Key, write: true,
		send: func(ctx context.Context, kv pb.KVClient, r *route, hdr *pb.RequestHeader) error {
			for _, o := range ops {
				if !r.contains(o.Key) {
					return fmt.Errorf("%w: %s is in shard %d [%s, %s), %s is not",
						ErrCrossShardBatch, keyfmt.Quote(ops[0].Key), r.id(), printKey(r.start()), printEnd(r.end()), keyfmt.Quote(o.Key))
				}
			}
			_, err := kv.Batch(ctx, &pb.BatchRequest{Header: hdr, Ops: req})
			return err
		}})
}
