package shard

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/flotilla-kv/flotilla/internal/keys"
	"github.com/flotilla-kv/flotilla/internal/pebbleopts"
	"github.com/flotilla-kv/flotilla/multiraft"
	"github.com/flotilla-kv/flotilla/placement/tso"
)

// counterOracle is an Oracle for one process: a counter.
type counterOracle struct{ last atomic.Uint64 }

func (o *counterOracle) Next(_ context.Context, count int) (tso.Timestamp, error) {
	return tso.Timestamp(o.last.Add(uint64(count)) - uint64(count) + 1), nil
}

// newDB opens an in-memory Pebble closed at the end of the test.
func newDB(tb testing.TB) *pebble.DB {
	tb.Helper()
	db, err := pebble.Open("", &pebble.Options{FS: vfs.NewMem(), Logger: quietLogger{tb}, Comparer: pebbleopts.Comparer})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { db.Close() })
	return db
}

// testDesc is shard 1 over ["b", "m") with three replicas.
func testDesc() Descriptor {
	return Descriptor{
		ShardID: 1,
		Start:   []byte("b"),
		End:     []byte("m"),
		Epoch:   Epoch{ConfVer: 3, Version: 2},
		Replicas: []multiraft.Replica{
			{ReplicaID: 1, NodeID: 1},
			{ReplicaID: 2, NodeID: 2},
			{ReplicaID: 3, NodeID: 3, Learner: true},
		},
	}
}

// created records one ApplyContext.CreateGroup call.
type created struct {
	group   multiraft.GroupID
	replica multiraft.ReplicaID
	members multiraft.Membership
}

// harness drives one StateMachine over a DB, one committed batch per entry
// unless told otherwise.
type harness struct {
	tb      testing.TB
	db      *pebble.DB
	cfg     Config
	sm      *StateMachine
	shard   ShardID
	replica multiraft.ReplicaID
	index   uint64
	rev     uint64 // the revision of the last write the harness stamped
	creates []created
	// refuseCreate makes CreateGroup answer false, as the engine does when
	// the node must not host the right-hand replica.
	refuseCreate bool
}

// newHarness bootstraps desc in a fresh DB and loads replica 1's state
// machine.
func newHarness(tb testing.TB, cfg Config, desc Descriptor) *harness {
	tb.Helper()
	h := &harness{tb: tb, db: newDB(tb), cfg: cfg, shard: desc.ShardID, replica: 1, index: 10}
	b := h.db.NewBatch()
	if err := InitialState(desc)(b); err != nil {
		tb.Fatal(err)
	}
	if err := b.Commit(pebble.Sync); err != nil {
		tb.Fatal(err)
	}
	h.reload()
	return h
}

// reload rebuilds the state machine from the DB, as a restart does.
func (h *harness) reload() {
	h.tb.Helper()
	sm, err := NewStateMachine(h.cfg, h.shard, h.replica, h.db)
	if err != nil {
		h.tb.Fatal(err)
	}
	sm.createGroup = func(_ *multiraft.ApplyContext, g multiraft.GroupID, r multiraft.ReplicaID, m multiraft.Membership) bool {
		h.creates = append(h.creates, created{g, r, m.Clone()})
		return !h.refuseCreate
	}
	h.sm = sm
}

func (h *harness) ac(b *pebble.Batch) *multiraft.ApplyContext {
	return &multiraft.ApplyContext{Batch: b, Group: h.shard, Replica: h.replica}
}

// apply applies cmd as the next entry and commits it. A write without a
// revision is stamped with the harness's next one, as a Store would.
func (h *harness) apply(cmd Command) any {
	h.tb.Helper()
	if cmd.Kind.writesData() && cmd.Revision == 0 {
		h.rev++
		cmd.Revision = h.rev
	}
	return h.applyRaw(cmd.AppendEncoded(nil))
}

func (h *harness) applyRaw(data []byte) any {
	h.tb.Helper()
	b := h.db.NewIndexedBatch()
	defer b.Close()
	h.index++
	ac := h.ac(b)
	res := h.sm.Apply(ac, multiraft.Entry{Index: h.index, Term: 1, Cmd: data})
	h.sm.FinishApply(ac)
	if err := b.Commit(pebble.NoSync); err != nil {
		h.tb.Fatal(err)
	}
	return res
}

// mustOK applies cmd and fails unless it returned a *Result.
func (h *harness) mustOK(cmd Command) *Result {
	h.tb.Helper()
	res := h.apply(cmd)
	r, ok := res.(*Result)
	if !ok {
		h.tb.Fatalf("apply %s: got %v, want a result", cmd.Kind, res)
	}
	return r
}

func (h *harness) get(key string) (string, bool) {
	return get(h.tb, h.db, key)
}

// get reads the latest version of key from r.
func get(tb testing.TB, r pebble.Reader, key string) (string, bool) {
	tb.Helper()
	kv, found, err := getAt(r, []byte(key), keys.MaxRevision)
	if err != nil {
		tb.Fatal(err)
	}
	return string(kv.Value), found
}

// dump renders every key and value of r, in order.
func dump(tb testing.TB, r pebble.Reader) string {
	tb.Helper()
	it, err := r.NewIter(nil)
	if err != nil {
		tb.Fatal(err)
	}
	var sb strings.Builder
	for valid := it.First(); valid; valid = it.Next() {
		fmt.Fprintf(&sb, "%x=%x\n", it.Key(), it.Value())
	}
	if err := it.Close(); err != nil {
		tb.Fatal(err)
	}
	return sb.String()
}

// userData renders every version of every user key in r, in order.
func userData(tb testing.TB, r pebble.Reader) string {
	tb.Helper()
	lo, hi := keys.UserSpan(nil, nil)
	it, err := r.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: hi})
	if err != nil {
		tb.Fatal(err)
	}
	var sb strings.Builder
	for valid := it.First(); valid; valid = it.Next() {
		fmt.Fprintf(&sb, "%s=%x\n", keys.FormatKey(it.Key()), it.Value())
	}
	if err := it.Close(); err != nil {
		tb.Fatal(err)
	}
	return sb.String()
}

func hdr(client, seq uint64) Header { return Header{ClientID: client, Seq: seq} }

func put(h Header, k, v string) Command {
	return Command{Kind: KindPut, Header: h, Key: []byte(k), Value: []byte(v)}
}

func del(h Header, k string) Command { return Command{Kind: KindDelete, Header: h, Key: []byte(k)} }

func cas(h Header, k string, expected *string, v string) Command {
	c := Command{Kind: KindCompareAndSwap, Header: h, Key: []byte(k), Value: []byte(v)}
	if expected == nil {
		c.ExpectAbsent = true
	} else {
		c.Expected = []byte(*expected)
	}
	return c
}

func strp(s string) *string { return &s }

func encode(c Command) []byte { return c.AppendEncoded(nil) }

// quietLogger drops Pebble's informational logs and fails on fatal ones.
type quietLogger struct{ tb testing.TB }

func (quietLogger) Infof(string, ...any)           {}
func (quietLogger) Errorf(string, ...any)          {}
func (l quietLogger) Fatalf(f string, args ...any) { l.tb.Fatalf(f, args...) }

// setVersion writes a version of key holding value at revision 1 straight
// into w, as if a write had put it there.
func setVersion(tb testing.TB, w pebble.Writer, key, value string) {
	tb.Helper()
	v := appendVersionValue(nil, versionMeta{create: 1, version: 1}, []byte(value))
	if err := w.Set(keys.MVCCKey([]byte(key), 1), v, nil); err != nil {
		tb.Fatal(err)
	}
}
