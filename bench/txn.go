package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sort"

	"github.com/flotilla-kv/flotilla/internal/launch"
	pb "github.com/flotilla-kv/flotilla/rpc/flotillapb"
)

// The transaction workloads (issue 17): each operation writes TxnKeys
// keys together, all on one shard or on two.
const (
	// WorkloadBatch writes the keys of one shard in one atomic batch:
	// Flotilla's router.Client.Batch (one Raft command); etcd's Txn of
	// puts without compares.
	WorkloadBatch = "batch"
	// WorkloadTxn writes the same keys in a transaction: Flotilla's
	// router.Client.Txn, Put each, Commit (one shard: a one-phase commit);
	// etcd's Txn of puts, as for batch (etcd has one kind of transaction).
	WorkloadTxn = "txn"
	// WorkloadTransfer1 is a transfer between keys of one shard: read
	// both, write both, commit only if neither was written since the
	// read. Flotilla: Txn, Get each, Put each, Commit (ErrConflict
	// otherwise); etcd: one Txn of gets, then a Txn whose compares ask
	// each key's mod revision to be the one read, and whose success
	// branch puts both (a failed compare is a conflict).
	WorkloadTransfer1 = "transfer-1shard"
	// WorkloadTransfer2 is the same transfer between keys of two
	// shards: Flotilla commits it in Percolator's two phases.
	WorkloadTransfer2 = "transfer-2shard"
)

// TxnKeys is the number of keys each transaction workload's operation
// writes: a transfer's two accounts.
const TxnKeys = 2

// txnShape is what a transaction workload's operation does.
type txnShape struct {
	// twoShards: the keys are on two shards (else on one).
	twoShards bool
	// read: the keys are read first (a transfer), so they are preloaded.
	read bool
	// do runs the operation on a TxnKV (a method expression).
	do func(kv TxnKV, ctx context.Context, keys [][]byte, value []byte) error
	// what describes it, for reports.
	what string
}

var txnShapes = map[string]txnShape{
	WorkloadBatch: {do: TxnKV.Batch, what: "atomic batches of 2 puts on one shard"},
	WorkloadTxn:   {do: TxnKV.TxnPut, what: "transactions of 2 puts on one shard"},
	WorkloadTransfer1: {read: true, do: TxnKV.Transfer,
		what: "transfers: read 2 keys of one shard, write both, commit if unchanged"},
	WorkloadTransfer2: {twoShards: true, read: true, do: TxnKV.Transfer,
		what: "transfers: read 2 keys on 2 shards, write both, commit if unchanged"},
}

// TxnKV is the optional capability of a KV that the transaction workloads
// need. Keys are distinct; the implementations must not keep keys or
// value after returning.
type TxnKV interface {
	// Batch writes value at every key atomically in one request.
	Batch(ctx context.Context, keys [][]byte, value []byte) error
	// TxnPut writes value at every key in one transaction.
	TxnPut(ctx context.Context, keys [][]byte, value []byte) error
	// Transfer reads every key, then writes value at each, committing
	// only if none was written since the read; otherwise it writes
	// nothing and returns an error that ErrorKind names "conflict".
	Transfer(ctx context.Context, keys [][]byte, value []byte) error
}

// ErrTxnUnsupported is returned by Run for a transaction workload when
// the Driver's KVs are not TxnKVs.
var ErrTxnUnsupported = errors.New("bench: the driver cannot run transactions (its KV does not implement bench.TxnKV)")

// ErrTxnConflict is what the etcd driver's Transfer returns when a key
// changed between its read and its commit (Flotilla's returns
// router.ErrConflict).
var ErrTxnConflict = errors.New("bench: transaction conflict")

// DefaultTxnShards is how many even first-byte ranges group the keys of
// the transaction workloads when the system has no shards of its own to
// report (etcd): the Flotilla fleet's default shard count, so that both
// systems get operations of the same shape.
const DefaultTxnShards = 16

// EvenBoundaries returns the n-1 start keys of n shards splitting the key
// space evenly on its first two bytes, as placement's bootstrap does.
func EvenBoundaries(n int) [][]byte {
	var b [][]byte
	for i := 1; i < n; i++ {
		v := i * (1 << 16) / n
		if v&0xff == 0 {
			b = append(b, []byte{byte(v >> 8)})
		} else {
			b = append(b, []byte{byte(v >> 8), byte(v)})
		}
	}
	return b
}

// flotillaBoundaries asks f's placement service for the start keys of
// its shards (the first shard's, empty, left out), sorted.
func flotillaBoundaries(ctx context.Context, f *launch.Fleet) ([][]byte, error) {
	var errs []error
	for _, p := range f.Placements() {
		conn, err := p.Conn()
		if err == nil {
			var resp *pb.ListShardsResponse
			if resp, err = pb.NewPlacementClient(conn).ListShards(ctx, &pb.ListShardsRequest{}); err == nil {
				var b [][]byte
				for _, s := range resp.GetShards() {
					if start := s.GetRoute().GetShard().GetStart(); len(start) > 0 {
						b = append(b, start)
					}
				}
				sort.Slice(b, func(i, j int) bool { return bytes.Compare(b[i], b[j]) < 0 })
				return b, nil
			}
		}
		errs = append(errs, fmt.Errorf("%s: %w", p.Name, err))
	}
	return nil, fmt.Errorf("bench: listing the shards: %w", errors.Join(errs...))
}

// keyGroups holds the key indexes of a workload grouped by the shard
// holding them, to pick the keys of one transaction.
type keyGroups struct {
	groups  [][]uint64 // groups of at least two keys
	groupOf []int      // by key index: its group in groups, -1 if none
}

// newKeyGroups groups the indexes [0, keys) of keys of keySize bytes by
// the shard of boundaries (sorted start keys) each falls in. Shards with
// fewer than two keys are left out: a transaction of one shard needs two.
func newKeyGroups(keys, keySize int, boundaries [][]byte) (*keyGroups, error) {
	byShard := make([][]uint64, len(boundaries)+1)
	var k []byte
	for i := range uint64(keys) {
		k = Key(k, i, keySize)
		s := sort.Search(len(boundaries), func(j int) bool { return bytes.Compare(boundaries[j], k) > 0 })
		byShard[s] = append(byShard[s], i)
	}
	g := &keyGroups{groupOf: make([]int, keys)}
	for i := range g.groupOf {
		g.groupOf[i] = -1
	}
	for _, idx := range byShard {
		if len(idx) < 2 {
			continue
		}
		for _, i := range idx {
			g.groupOf[i] = len(g.groups)
		}
		g.groups = append(g.groups, idx)
	}
	if len(g.groups) < 2 {
		return nil, fmt.Errorf("bench: the %d keys fall in %d shards of two keys or more; the transaction workloads need two (raise --keys)", keys, len(g.groups))
	}
	return g, nil
}

// pick returns the indexes of a transaction's two keys: the first drawn
// by next (the workload's key distribution), the second uniformly from
// the same shard or, with twoShards, from another.
func (g *keyGroups) pick(next func() uint64, intN func(int) int, twoShards bool) (uint64, uint64) {
	first := next()
	for g.groupOf[first] < 0 {
		first = next() // a key alone on its shard
	}
	own := g.groupOf[first]
	if twoShards {
		other := intN(len(g.groups) - 1)
		if other >= own {
			other++
		}
		grp := g.groups[other]
		return first, grp[intN(len(grp))]
	}
	grp := g.groups[own]
	for {
		if second := grp[intN(len(grp))]; second != first {
			return first, second
		}
	}
}

// doTxn runs one operation of a transaction workload for client c.
func (r *run) doTxn(ctx context.Context, c *client) error {
	a, b := r.groups.pick(c.keys.Next, c.rng.IntN, r.txn.twoShards)
	c.txnKeys[0] = Key(c.txnKeys[0], a, r.cfg.KeySizeBytes)
	c.txnKeys[1] = Key(c.txnKeys[1], b, r.cfg.KeySizeBytes)
	return r.txn.do(c.kv.(TxnKV), ctx, c.txnKeys[:], c.value)
}
