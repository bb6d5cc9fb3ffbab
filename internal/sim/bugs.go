package sim

import (
	"hash/fnv"

	"github.com/cockroachdb/pebble/v2"

	"github.com/flotilla-kv/flotilla/multiraft"
)

// simBug is a bug planted on purpose, so the tests can show that the
// checks catch each kind of failure (a checker that cannot fail proves
// nothing). Only tests set it.
type simBug int

const (
	noBug simBug = iota
	// bugStaleReads serves linearizable and lease reads from any replica
	// without a read barrier (a stale read), and records them as
	// linearizable.
	bugStaleReads
	// bugDropWrites acknowledges some puts without applying them, on
	// every replica: acknowledged writes are lost.
	bugDropWrites
	// bugDiverge skips some puts on node 3's replicas only: replicas at the
	// same applied index differ.
	bugDiverge
	// bugPanic makes the state machine panic on some put, as a broken
	// invariant would.
	bugPanic
)

// buggyBackend plants bugDropWrites, bugDiverge or bugPanic into the kv
// backend.
type buggyBackend struct {
	kvBackend
	bug simBug
}

func (b buggyBackend) newStateMachine(g multiraft.GroupID, r multiraft.ReplicaID, rd pebble.Reader) (multiraft.StateMachine, error) {
	return &buggySM{
		kvSM: kvSM{group: g},
		drop: b.bug == bugDropWrites || (b.bug == bugDiverge && uint64(r)&0xffff == 3),
		fail: b.bug == bugPanic,
	}, nil
}

type buggySM struct {
	kvSM
	drop, fail bool
}

// Apply skips one put in eight (by value) when the replica drops writes.
func (s *buggySM) Apply(ac *multiraft.ApplyContext, e multiraft.Entry) any {
	if ops := decodeCmd(e.Cmd); s.drop && len(ops) == 1 && ops[0].op == cmdPut {
		h := fnv.New32a()
		h.Write([]byte(ops[0].value))
		if h.Sum32()%8 == 0 {
			return nil
		}
	}
	if ops := decodeCmd(e.Cmd); s.fail && len(ops) == 1 && ops[0].value == "c0.20" {
		panic("sim: planted panic")
	}
	return s.kvSM.Apply(ac, e)
}
