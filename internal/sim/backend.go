package sim

import (
	"fmt"

	"github.com/cockroachdb/pebble/v2"

	"github.com/flotilla-kv/flotilla/internal/keys"
	"github.com/flotilla-kv/flotilla/multiraft"
)

// backend is the replicated state machine under test and how the
// workload speaks to it: how a group starts, how a client's writes become
// a command, what a command's result means and where a key's value lives.
type backend interface {
	// newStateMachine is the engine's NewStateMachineFunc.
	newStateMachine(g multiraft.GroupID, r multiraft.ReplicaID, rd pebble.Reader) (multiraft.StateMachine, error)
	// initGroup returns what CreateGroup writes into the new group's first
	// batch (nil for nothing).
	initGroup(g multiraft.GroupID, m multiraft.Membership) func(*pebble.Batch) error
	// exactlyOnce reports whether a command applies at most once however
	// often it is proposed, so a write may be retried after an ambiguous
	// outcome.
	exactlyOnce() bool
	// encode builds the command of one client request. client and seq
	// identify the request (seq increases per client); version is the
	// Version of g's descriptor the client routed with (split.go).
	encode(client, seq uint64, g multiraft.GroupID, version uint64, kind opKind, ops []kvOp) []byte
	// result interprets what Apply returned for a command of ops: for a
	// single CAS its outcome. An error means the state machine refused
	// the command: errWrongShard if it was routed with an outdated
	// descriptor (after a split; it wrote nothing), anything else is
	// never expected.
	result(res any, ops []kvOp) (casResult, error)
	// read returns the value of user key k in r ("" when absent).
	read(r pebble.Reader, k string) string
	// dataSpans are the Pebble spans replicas of g must agree on, as r
	// (a node's Pebble) describes g.
	dataSpans(g multiraft.GroupID, r pebble.Reader) [][2][]byte
	// owns reports whether g's replica whose state r holds owns user key
	// k (a split may have moved it to another group).
	owns(r pebble.Reader, g multiraft.GroupID, k string) bool
}

// kvBackend runs the simulator's own state machine, kvSM.
type kvBackend struct{}

func (kvBackend) newStateMachine(g multiraft.GroupID, r multiraft.ReplicaID, rd pebble.Reader) (multiraft.StateMachine, error) {
	return newKVSM(g, r, rd)
}

func (kvBackend) initGroup(multiraft.GroupID, multiraft.Membership) func(*pebble.Batch) error {
	return nil
}

func (kvBackend) exactlyOnce() bool { return false }

func (kvBackend) encode(_, _ uint64, _ multiraft.GroupID, _ uint64, _ opKind, ops []kvOp) []byte {
	return encodeCmd(ops)
}

func (kvBackend) result(res any, ops []kvOp) (casResult, error) {
	if len(ops) == 1 && ops[0].op == cmdCAS {
		if r, ok := res.(casResult); ok {
			return r, nil
		}
	} else if res == nil {
		return casResult{}, nil
	}
	return casResult{}, fmt.Errorf("unexpected result %T %v", res, res)
}

func (kvBackend) read(r pebble.Reader, k string) string {
	return getString(r, keys.MVCCKey([]byte(k), 0))
}

func (kvBackend) dataSpans(g multiraft.GroupID, _ pebble.Reader) [][2][]byte {
	lo, hi := groupSpan(g)
	return [][2][]byte{{lo, hi}}
}

// owns: kv groups never split.
func (kvBackend) owns(pebble.Reader, multiraft.GroupID, string) bool { return true }
