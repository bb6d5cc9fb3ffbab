package placement

import (
	"bytes"
	"encoding/json"
	"testing"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/flotilla-kv/flotilla/multiraft"
)

func openDB(t *testing.T) *pebble.DB {
	db, err := pebble.Open("", &pebble.Options{FS: vfs.NewMem()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func apply(t *testing.T, db *pebble.DB, c *catalogue, cmd command) any {
	t.Helper()
	b, _ := json.Marshal(cmd)
	batch := db.NewIndexedBatch()
	res := c.Apply(&multiraft.ApplyContext{Batch: batch}, multiraft.Entry{Cmd: b})
	if err := batch.Commit(pebble.Sync); err != nil {
		t.Fatal(err)
	}
	return res
}

func TestCatalogueCommandsSurviveReloadAndSnapshot(t *testing.T) {
	db := openDB(t)
	c, err := newCatalogue(db)
	if err != nil {
		t.Fatal(err)
	}
	// A node with a configured ID, then one asking for an ID: the
	// allocator never hands out the configured one.
	if got := apply(t, db, c, command{Op: "register", Node: &NodeRecord{ID: 5, Address: "a:1"}}); got != uint64(5) {
		t.Fatalf("register 5 = %v", got)
	}
	if got := apply(t, db, c, command{Op: "register", Node: &NodeRecord{Address: "b:1"}}); got != uint64(6) {
		t.Fatalf("register without ID = %v, want 6", got)
	}
	first := apply(t, db, c, command{Op: "alloc", Kind: CounterShard, Count: 10}).(uint64)
	second := apply(t, db, c, command{Op: "alloc", Kind: CounterShard, Count: 10}).(uint64)
	if second != first+10 {
		t.Fatalf("ID blocks overlap: %d then %d", first, second)
	}
	apply(t, db, c, command{Op: "drain", ID: 5, On: true})
	apply(t, db, c, command{Op: "bootstrapped"})
	if _, ok := apply(t, db, c, command{Op: "drain", ID: 99, On: true}).(error); !ok {
		t.Fatal("draining an unknown node succeeded")
	}
	if _, ok := apply(t, db, c, command{Op: "bogus"}).(error); !ok {
		t.Fatal("unknown command applied")
	}

	check := func(name string, c *catalogue) {
		t.Helper()
		n, ok := c.Node(5)
		if !ok || !n.Draining || n.Address != "a:1" {
			t.Fatalf("%s: node 5 = %+v %v", name, n, ok)
		}
		if len(c.Nodes()) != 2 || !c.Settings().Bootstrapped || c.counters[CounterShard] != second+10 {
			t.Fatalf("%s: catalogue %+v", name, c)
		}
	}
	reloaded, err := newCatalogue(db)
	if err != nil {
		t.Fatal(err)
	}
	check("reloaded", reloaded)

	var snap bytes.Buffer
	if err := c.Snapshot(db, &snap); err != nil {
		t.Fatal(err)
	}
	other := openDB(t)
	b := other.NewBatch()
	if err := c.Restore(b, bytes.NewReader(snap.Bytes())); err != nil {
		t.Fatal(err)
	}
	if err := b.Commit(pebble.Sync); err != nil {
		t.Fatal(err)
	}
	restored, err := newCatalogue(other)
	if err != nil {
		t.Fatal(err)
	}
	check("restored", restored)

	// Any damage to the image is refused.
	damaged := append([]byte(nil), snap.Bytes()...)
	damaged[len(damaged)/2] ^= 1
	if err := c.Restore(other.NewBatch(), bytes.NewReader(damaged)); err == nil {
		t.Fatal("damaged snapshot restored")
	}
	if err := c.Restore(other.NewBatch(), bytes.NewReader(snap.Bytes()[:snap.Len()-3])); err == nil {
		t.Fatal("truncated snapshot restored")
	}
}
