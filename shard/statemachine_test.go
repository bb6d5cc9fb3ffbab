package shard

import (
	"errors"
	"testing"

	"github.com/flotilla-kv/flotilla/internal/keys"
	"github.com/flotilla-kv/flotilla/multiraft"
)

// TestNewStateMachineRefusesCorruptState: stored state that does not decode
// fails the constructor (the engine then refuses to open the group) rather
// than serving from a guess.
func TestNewStateMachineRefusesCorruptState(t *testing.T) {
	good := testDesc()
	other := testDesc()
	other.ShardID = 2
	tests := []struct {
		name string
		key  []byte
		val  []byte
	}{
		{"garbage-descriptor", keys.ShardKey(1, keys.ShardDescriptor), []byte{1, 2, 3}},
		{"descriptor-of-another-shard", keys.ShardKey(1, keys.ShardDescriptor), other.AppendEncoded(nil)},
		{"garbage-client-record", keys.ShardClientKey(1, 7), []byte{9}},
		{"short-client-key", keys.ShardClientKey(1, 7)[:15], appendClientRecord(nil, 1, 1, &Result{Succeeded: true, Revision: 1})},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			db := newDB(t)
			if err := db.Set(keys.ShardKey(1, keys.ShardDescriptor), good.AppendEncoded(nil), nil); err != nil {
				t.Fatal(err)
			}
			if err := db.Set(tc.key, tc.val, nil); err != nil {
				t.Fatal(err)
			}
			if _, err := NewStateMachine(Config{}, 1, 1, db); !errors.Is(err, ErrBadDescriptor) {
				t.Fatalf("got %v", err)
			}
		})
	}
}

func TestClientKeyMatchesLayout(t *testing.T) {
	sm, err := NewStateMachine(Config{}, 0x0102030405060708, 1, newDB(t))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := sm.clientKey(0xa0b0c0d0e0f00010), keys.ShardClientKey(0x0102030405060708, 0xa0b0c0d0e0f00010); string(got) != string(want) {
		t.Fatalf("clientKey %x, keys.ShardClientKey %x", got, want)
	}
	if sm.ShardID() != 0x0102030405060708 || sm.ReplicaID() != 1 {
		t.Fatal("identity")
	}
}

// TestStoreRechecksAfterRead drives the checks a read makes after reading
// Pebble: the descriptor must still cover the range, and the replica must
// still be live.
func TestStoreRechecksAfterRead(t *testing.T) {
	db := newDB(t)
	desc := testDesc()
	b := db.NewBatch()
	if err := InitialState(desc)(b); err != nil {
		t.Fatal(err)
	}
	if err := b.Commit(nil); err != nil {
		t.Fatal(err)
	}
	s, err := NewStore(Config{}, &counterOracle{})
	if err != nil {
		t.Fatal(err)
	}
	m, err := s.StateMachineFunc()(1, 1, db)
	if err != nil {
		t.Fatal(err)
	}
	sm := m.(*StateMachine)
	if err := s.stillServes(sm, []byte("h"), nil, true); err != nil {
		t.Fatal(err)
	}
	narrower := desc.Clone()
	narrower.End = []byte("g")
	sm.desc.Store(&narrower) // a split applied meanwhile
	if err := s.stillServes(sm, []byte("h"), nil, true); !errors.Is(err, ErrKeyNotInShard) {
		t.Fatalf("point read after a split: %v", err)
	}
	if err := s.stillServes(sm, []byte("c"), []byte("h"), false); !errors.Is(err, ErrKeyNotInShard) {
		t.Fatalf("range read after a split: %v", err)
	}
	if err := s.stillServes(sm, []byte("c"), []byte("f"), false); err != nil {
		t.Fatalf("range still covered: %v", err)
	}
	// A replacement (after a snapshot) makes the old state machine stale.
	if _, err := s.StateMachineFunc()(1, 1, db); err != nil {
		t.Fatal(err)
	}
	if err := s.stillServes(sm, []byte("c"), nil, true); !errors.Is(err, ErrShardNotFound) {
		t.Fatalf("replaced state machine: %v", err)
	}
	// Destroy unregisters the live one, and only it.
	live := s.mu.shards[1]
	destroy := func(sm *StateMachine) {
		b := db.NewBatch()
		defer b.Close()
		sm.Destroy(b)
	}
	destroy(sm)
	if s.mu.shards[1] != live {
		t.Fatal("destroying a replaced state machine unregistered its successor")
	}
	destroy(live)
	if _, err := s.Descriptor(1); !errors.Is(err, ErrShardNotFound) {
		t.Fatalf("descriptor after destroy: %v", err)
	}
	var _ multiraft.StateMachine = live
}
