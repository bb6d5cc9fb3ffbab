package shard

import (
	"testing"

	"github.com/flotilla-kv/flotilla/multiraft"
)

// countingEngine counts the read barriers started on it; nothing else of
// it is used.
type countingEngine struct {
	Engine
	started map[multiraft.GroupID]int
}

func (e *countingEngine) ReadFuture(group multiraft.GroupID, _ multiraft.ReadMode) *multiraft.Future {
	e.started[group]++
	return new(multiraft.Future)
}

// TestReadBarriersShared: the reads of one batch share one barrier per
// shard and consistency, and only those.
func TestReadBarriersShared(t *testing.T) {
	e := &countingEngine{started: map[multiraft.GroupID]int{}}
	var b ReadBarriers
	a1 := b.future(e, 1, multiraft.ReadLinearizable)
	a2 := b.future(e, 1, multiraft.ReadLinearizable)
	c := b.future(e, 2, multiraft.ReadLinearizable)
	d := b.future(e, 1, multiraft.ReadLease)
	a3 := b.future(e, 1, multiraft.ReadLinearizable)
	if a1 != a2 || a1 != a3 {
		t.Error("reads of shard 1 at one consistency got different barriers")
	}
	if a1 == c || a1 == d || c == d {
		t.Error("reads of another shard or consistency shared a barrier")
	}
	if e.started[1] != 2 || e.started[2] != 1 {
		t.Errorf("barriers started %v, want shard 1 twice (two consistencies) and shard 2 once", e.started)
	}
}
