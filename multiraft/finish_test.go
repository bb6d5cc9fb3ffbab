package multiraft

import (
	"fmt"
	"strconv"
	"testing"

	"github.com/cockroachdb/pebble/v2"
)

// finishingSM is a testSM that counts the commands it applied and, in
// FinishApply, writes the running count under the key "finished" into the
// round's batch.
type finishingSM struct {
	testSM
	applied  int           // commands applied so far
	batch    *pebble.Batch // the batch of the round's Apply calls
	finishes int
}

func (s *finishingSM) Apply(ac *ApplyContext, e Entry) any {
	if s.batch != nil && s.batch != ac.Batch {
		panic("multiraft: Apply in a new batch before FinishApply ended the last one")
	}
	s.batch = ac.Batch
	s.applied++
	return s.testSM.Apply(ac, e)
}

func (s *finishingSM) FinishApply(ac *ApplyContext) {
	if s.batch != nil && s.batch != ac.Batch {
		panic(fmt.Sprintf("multiraft: FinishApply of group %d with another batch than its Apply calls", s.group))
	}
	s.batch = nil
	s.finishes++
	if err := ac.Batch.Set(s.key("finished"), strconv.AppendInt(nil, int64(s.applied), 10), nil); err != nil {
		panic(err)
	}
}

// TestApplyFinisher checks that the engine calls FinishApply after a
// round's Apply calls of a group, with their batch, and that what it
// writes commits with them on every replica.
func TestApplyFinisher(t *testing.T) {
	sms := map[NodeID]*finishingSM{}
	c := newCluster(t, 3, func(cfg *Config) {
		n := cfg.NodeID
		cfg.NewStateMachine = func(g GroupID, _ ReplicaID, _ pebble.Reader) (StateMachine, error) {
			sms[n] = &finishingSM{testSM: testSM{group: g}}
			return sms[n], nil
		}
	})
	c.createGroup(1, 1, 2, 3)
	leader := c.leader(1)
	const writes = 5
	for i := range writes {
		if _, err := c.propose(leader, 1, fmt.Sprintf("k%d=v", i)); err != nil {
			t.Fatal(err)
		}
	}
	for n := NodeID(1); n <= 3; n++ {
		v, ok := getKey(t, c.dbs[n], 1, "finished")
		for i := 0; i < 100 && v != strconv.Itoa(writes); i++ {
			c.tick(1) // a follower learns of the last commit
			v, ok = getKey(t, c.dbs[n], 1, "finished")
		}
		if !ok || v != strconv.Itoa(writes) {
			t.Fatalf("node %d: finished = %q (found %v), want %d", n, v, ok, writes)
		}
		if sm := sms[n]; sm.finishes == 0 || sm.batch != nil {
			t.Fatalf("node %d: %d FinishApply calls, batch left %v", n, sm.finishes, sm.batch != nil)
		}
	}
}
