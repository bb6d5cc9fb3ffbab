package sim

import (
	"bytes"
	"errors"
	"fmt"
	"time"

	"github.com/cockroachdb/pebble/v2"

	"github.com/flotilla-kv/flotilla/internal/keys"
	"github.com/flotilla-kv/flotilla/multiraft"
	"github.com/flotilla-kv/flotilla/placement/tso"
	"github.com/flotilla-kv/flotilla/shard"
)

// shardBackend runs the real shard state machine: commands are
// shard.Commands with a client ID and sequence number, so a write whose
// outcome is ambiguous can be retried and applies at most once.
type shardBackend struct {
	newSM multiraft.NewStateMachineFunc
	// rev is the revision of the last write encoded: the simulation's
	// oracle, which stamps every attempt anew, in the simulation's one
	// order of events (so revisions follow its real time, as the fleet's
	// oracle makes them). Its physical part is the step, a millisecond of
	// oracle time.
	rev  uint64
	step func() int
}

// simEpoch is the epoch of every shard's initial descriptor. Version
// changes with splits (clients route with the Version they know, see
// split.go); ConfVer changes with membership changes, and requests other
// than splits do not compare it.
var simEpoch = shard.Epoch{ConfVer: 1, Version: 1}

// shardConfig is the Config of every shard state machine of a run. Its
// retention is 200 ms of revisions, which the run's revisions (see
// shardBackend.encode) cover in 200 steps: a run prunes history many
// times over. Transactions' outcome records are kept 500 ms (500 steps,
// six times the bank's lock TTL) past their start, so the collector
// (historygc.go) removes those of a run's transactions during it, in
// engine and fleet runs alike. That relies on every lock being resolved
// within the retention (shard/gc.go), which the lock sweeper
// (locksweep.go) provides: before it, fleet seeds 16, 56 and 60 (of 100)
// collected the outcome of a transaction whose secondary lock a down or
// cut-off node held, and the lock, which no reader met in time, stayed
// to the end (ErrTxnForgotten to its resolvers, "locks left"); fleet
// runs had to keep records 10 s.
var shardConfig = shard.Config{HistoryRetention: 200 * time.Millisecond, TxnRecordRetention: 500 * time.Millisecond}

// shardConfig returns the Config of the run's shard state machines.
func (s *simulation) shardConfig() shard.Config { return shardConfig }

// newShardBackend returns the backend of a run whose current step step
// returns.
func newShardBackend(step func() int) *shardBackend {
	return &shardBackend{newSM: shard.NewStateMachineFunc(shardConfig), step: step}
}

func (b *shardBackend) newStateMachine(g multiraft.GroupID, r multiraft.ReplicaID, rd pebble.Reader) (multiraft.StateMachine, error) {
	return b.newSM(g, r, rd)
}

// descriptor is g's initial descriptor: the group's key span, as
// groupSpan.
func shardDescriptor(g multiraft.GroupID, m multiraft.Membership) shard.Descriptor {
	return shard.Descriptor{
		ShardID:  g,
		Start:    []byte(fmt.Sprintf("g%05d/", g)),
		End:      []byte(fmt.Sprintf("g%05d0", g)),
		Epoch:    simEpoch,
		Replicas: m.Clone().Replicas,
	}
}

func (b *shardBackend) initGroup(g multiraft.GroupID, m multiraft.Membership) func(*pebble.Batch) error {
	return shard.InitialState(shardDescriptor(g, m))
}

func (b *shardBackend) exactlyOnce() bool { return true }

// nextRevision returns a new revision of the run's oracle.
func (b *shardBackend) nextRevision() uint64 {
	b.rev = max(b.rev+1, uint64(tso.Compose(int64(b.step()), 0)))
	return b.rev
}

func (b *shardBackend) encode(client, seq uint64, _ multiraft.GroupID, version uint64, kind opKind, ops []kvOp) []byte {
	b.nextRevision()
	c := shard.Command{Header: shard.Header{ClientID: client, Seq: seq, Epoch: shard.Epoch{ConfVer: simEpoch.ConfVer, Version: version}}, Revision: b.rev}
	// Every other batch and CAS (by the sequence number, so a retry is
	// encoded as its first attempt was) is a transaction (shard.KindTxn)
	// meaning the same: its apply, its result with a read, and the client
	// table's record of that result go through the run's faults too.
	asTxn := seq%2 == 1
	switch {
	case kind == opBatch && asTxn:
		c.Kind, c.Txn = shard.KindTxn, &shard.Txn{}
		for _, o := range ops {
			op := shard.TxnOp{Kind: shard.TxnPut, Key: []byte(o.key), Value: []byte(o.value)}
			if o.op == cmdDelete {
				op = shard.TxnOp{Kind: shard.TxnDelete, Key: []byte(o.key)}
			}
			c.Txn.Then = append(c.Txn.Then, op)
		}
	case kind == opBatch:
		c.Kind = shard.KindBatch
		for _, o := range ops {
			c.Ops = append(c.Ops, shard.Op{Delete: o.op == cmdDelete, Key: []byte(o.key), Value: []byte(o.value)})
		}
	case ops[0].op == cmdCAS && asTxn:
		o := ops[0]
		cmp := shard.Compare{Key: []byte(o.key), Target: shard.CompareValue, Op: shard.CompareEqual, Value: []byte(o.expect)}
		if o.expect == "" {
			cmp = shard.Compare{Key: []byte(o.key), Target: shard.CompareVersion, Op: shard.CompareEqual}
		}
		c.Kind, c.Txn = shard.KindTxn, &shard.Txn{
			Compares: []shard.Compare{cmp},
			Then:     []shard.TxnOp{{Kind: shard.TxnPut, Key: []byte(o.key), Value: []byte(o.value)}},
			Else:     []shard.TxnOp{{Kind: shard.TxnRange, Key: []byte(o.key)}},
		}
	default:
		o := ops[0]
		c.Key = []byte(o.key)
		switch o.op {
		case cmdPut:
			c.Kind, c.Value = shard.KindPut, []byte(o.value)
		case cmdDelete:
			c.Kind = shard.KindDelete
		case cmdCAS:
			c.Kind, c.Value = shard.KindCompareAndSwap, []byte(o.value)
			if o.expect == "" {
				c.ExpectAbsent = true
			} else {
				c.Expected = []byte(o.expect)
			}
		}
	}
	return c.AppendEncoded(nil)
}

func (b *shardBackend) result(res any, ops []kvOp) (casResult, error) {
	switch r := res.(type) {
	case *shard.Result:
		if r.Txn != nil && len(ops) == 1 && ops[0].op == cmdCAS {
			cas := casResult{ok: r.Txn.Succeeded}
			if !cas.ok {
				if len(r.Txn.Ops) != 1 {
					return casResult{}, fmt.Errorf("a failed CAS transaction answered %d op results", len(r.Txn.Ops))
				}
				if kvs := r.Txn.Ops[0].KVs; len(kvs) == 1 {
					cas.cur = string(kvs[0].Value)
				}
			}
			return cas, nil
		}
		if len(ops) == 1 && ops[0].op == cmdCAS {
			cas := casResult{ok: r.Succeeded}
			if !r.Succeeded && r.Found {
				cas.cur = string(r.Value)
			}
			return cas, nil
		}
		if !r.Succeeded {
			return casResult{}, errors.New("write did not succeed")
		}
		return casResult{}, nil
	case error:
		if errors.Is(r, shard.ErrEpochNotMatch) || errors.Is(r, shard.ErrKeyNotInShard) {
			return casResult{}, fmt.Errorf("%w: %w", errWrongShard, r)
		}
		if errors.Is(r, shard.ErrStaleRevision) {
			return casResult{}, fmt.Errorf("%w: %w", errRestamp, r)
		}
		return casResult{}, r
	}
	return casResult{}, fmt.Errorf("unexpected result %T %v", res, res)
}

func (b *shardBackend) read(r pebble.Reader, k string) string {
	kv, _, err := shard.ReadAt(r, []byte(k), keys.MaxRevision)
	must(err)
	return string(kv.Value)
}

// dataSpans: the user keys of g's descriptor in r (none if r holds no
// descriptor of g) and g's shard-local keys (descriptor, client table).
func (b *shardBackend) dataSpans(g multiraft.GroupID, r pebble.Reader) [][2][]byte {
	slo, shi := keys.ShardPrefix(uint64(g))
	d, ok := readDescriptor(r, g)
	if !ok {
		return [][2][]byte{{slo, shi}}
	}
	lo, hi := keys.UserSpan(d.Start, d.End)
	return [][2][]byte{{lo, hi}, {slo, shi}}
}

func (b *shardBackend) owns(r pebble.Reader, g multiraft.GroupID, k string) bool {
	d, ok := readDescriptor(r, g)
	return ok && d.ContainsKey([]byte(k))
}

// readDescriptor reads g's descriptor as r holds it.
func readDescriptor(r pebble.Reader, g multiraft.GroupID) (shard.Descriptor, bool) {
	v, closer, err := r.Get(keys.ShardKey(uint64(g), keys.ShardDescriptor))
	if errors.Is(err, pebble.ErrNotFound) {
		return shard.Descriptor{}, false
	}
	must(err)
	defer closer.Close()
	d, err := shard.DecodeDescriptor(bytes.Clone(v))
	if err != nil {
		panic(fmt.Sprintf("sim: group %d: corrupt descriptor %x: %v", g, v, err))
	}
	return d, true
}
