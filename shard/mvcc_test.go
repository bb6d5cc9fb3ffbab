package shard

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/flotilla-kv/flotilla/internal/keys"
	"github.com/flotilla-kv/flotilla/multiraft"
	"github.com/flotilla-kv/flotilla/placement/tso"
)

// at applies cmd at revision rev.
func (h *harness) at(rev uint64, cmd Command) any {
	h.tb.Helper()
	cmd.Revision = rev
	h.rev = max(h.rev, rev)
	return h.applyRaw(cmd.AppendEncoded(nil))
}

// TestVersions: every write keeps the versions before it; a read at a
// revision sees each key's newest version at or below it, with the
// key's create revision, mod revision and version (writes since
// creation); a delete is a tombstone, after which a put creates the key
// anew; a delete of an absent key writes nothing.
func TestVersions(t *testing.T) {
	h := newHarness(t, Config{}, testDesc())
	h.at(10, put(hdr(0, 0), "c", "v1"))
	h.at(20, put(hdr(0, 0), "c", "v2"))
	h.at(30, del(hdr(0, 0), "c"))
	h.at(40, put(hdr(0, 0), "c", "v3"))
	h.at(50, del(hdr(0, 0), "d")) // absent: no version
	h.at(60, Command{Kind: KindBatch, Ops: []Op{{Key: []byte("d"), Value: []byte("d1")}, {Key: []byte("e"), Value: []byte("e1")}}})
	tests := []struct {
		key                  string
		rev                  uint64
		found                bool
		value                string
		create, mod, version uint64
	}{
		{"c", 9, false, "", 0, 0, 0},
		{"c", 10, true, "v1", 10, 10, 1},
		{"c", 25, true, "v2", 10, 20, 2},
		{"c", 30, false, "", 0, 0, 0},
		{"c", 39, false, "", 0, 0, 0},
		{"c", 40, true, "v3", 40, 40, 1},
		{"c", keys.MaxRevision, true, "v3", 40, 40, 1},
		{"d", 59, false, "", 0, 0, 0},
		{"d", 60, true, "d1", 60, 60, 1},
		{"e", 100, true, "e1", 60, 60, 1},
	}
	for _, tc := range tests {
		kv, found, err := ReadAt(h.db, []byte(tc.key), tc.rev)
		if err != nil {
			t.Fatal(err)
		}
		want := KeyValue{Key: []byte(tc.key), Value: []byte(tc.value), CreateRevision: tc.create, ModRevision: tc.mod, Version: tc.version}
		if found != tc.found || found && (!bytes.Equal(kv.Value, want.Value) || kv.CreateRevision != tc.create || kv.ModRevision != tc.mod || kv.Version != tc.version) {
			t.Errorf("%s at %d: %+v, %v; want %+v, %v", tc.key, tc.rev, kv, found, want, tc.found)
		}
	}
	// The delete of the absent d at 50 wrote nothing: d's only version is 60.
	if got := userData(t, h.db); bytes.Count([]byte(got), []byte(`"d"@`)) != 1 {
		t.Fatalf("versions of d:\n%s", got)
	}
	// A scan at a revision sees the keys as they were then.
	for _, c := range []struct {
		rev  uint64
		want string
	}{{15, "c=v1@10"}, {35, ""}, {60, "c=v3@40 d=d1@60 e=e1@60"}, {keys.MaxRevision, "c=v3@40 d=d1@60 e=e1@60"}} {
		var got []string
		err := scanAt(h.db, []byte("b"), []byte("m"), c.rev, func(kv KeyValue) bool {
			got = append(got, fmt.Sprintf("%s=%s@%d", kv.Key, kv.Value, kv.ModRevision))
			return true
		})
		if err != nil {
			t.Fatal(err)
		}
		if s := fmt.Sprint(got); s != "["+c.want+"]" {
			t.Errorf("scan at %d: %s, want [%s]", c.rev, s, c.want)
		}
	}
}

// TestScanSkipsLongHistories: a scan over keys with many versions each
// (more than it steps over before seeking) returns each key once, at the
// revision asked for.
func TestScanSkipsLongHistories(t *testing.T) {
	h := newHarness(t, Config{}, testDesc())
	rev := uint64(0)
	for i := range 3 * skipNexts {
		for _, k := range []string{"c", "d", "e"} {
			rev++
			h.at(rev, put(hdr(0, 0), k, fmt.Sprint(i)))
		}
	}
	for _, at := range []uint64{1, 2, 7, rev - 1, rev} {
		var got []string
		if err := scanAt(h.db, []byte("b"), nil, at, func(kv KeyValue) bool {
			got = append(got, fmt.Sprintf("%s@%d", kv.Key, kv.ModRevision))
			return true
		}); err != nil {
			t.Fatal(err)
		}
		var want []string
		for _, k := range []string{"c", "d", "e"} {
			for r := at; r > 0; r-- {
				if kv, ok, _ := ReadAt(h.db, []byte(k), r); ok && kv.ModRevision == r {
					want = append(want, fmt.Sprintf("%s@%d", k, r))
					break
				}
			}
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("scan at %d: %v, want %v", at, got, want)
		}
	}
}

// TestPruneVersions: every pruneEvery-th write of a key removes the
// versions that no read at its horizon (its revision minus the
// retention) or later can see, and keeps the one a read at the horizon
// sees; a delete prunes too.
func TestPruneVersions(t *testing.T) {
	h := newHarness(t, Config{HistoryRetention: 10 * time.Millisecond}, testDesc())
	ms := func(n uint64) uint64 { return n << tso.LogicalBits }
	versions := func() int { return bytes.Count([]byte(userData(t, h.db)), []byte(`"c"@`)) }
	for i := uint64(1); i <= 12*pruneEvery; i++ {
		h.at(ms(i), put(hdr(0, 0), "c", fmt.Sprint(i)))
	}
	// The write at 96 ms (version 96) pruned to its horizon, 86 ms: 86..96.
	if n := versions(); n != 11 {
		t.Fatalf("%d versions of c left, want 11:\n%s", n, userData(t, h.db))
	}
	for _, c := range []struct {
		at    uint64
		found bool
		want  string
	}{{ms(85), false, ""}, {ms(86), true, "86"}, {ms(90) + 7, true, "90"}, {ms(96), true, "96"}} {
		kv, found, err := ReadAt(h.db, []byte("c"), c.at)
		if err != nil || found != c.found || string(kv.Value) != c.want {
			t.Errorf("c at %d ms: %q, %v, %v; want %q", c.at>>tso.LogicalBits, kv.Value, found, err, c.want)
		}
		if found && kv.Version != kv.ModRevision>>tso.LogicalBits {
			t.Errorf("c at %d ms: version %d", c.at>>tso.LogicalBits, kv.Version)
		}
	}
	// Up to pruneEvery-1 more writes prune nothing; a delete prunes.
	for i := uint64(97); i < 97+pruneEvery-1; i++ {
		h.at(ms(i), put(hdr(0, 0), "c", fmt.Sprint(i)))
	}
	if n := versions(); n != 11+pruneEvery-1 {
		t.Fatalf("%d versions of c, want %d", n, 11+pruneEvery-1)
	}
	h.at(ms(200), del(hdr(0, 0), "c"))
	// Horizon 190 ms: the newest version at or below it (103 ms) and the
	// tombstone stay.
	if n := versions(); n != 2 {
		t.Fatalf("after the delete, %d versions of c, want 2:\n%s", n, userData(t, h.db))
	}
	if _, found, _ := ReadAt(h.db, []byte("c"), ms(200)); found {
		t.Fatal("c found after its delete")
	}
}

// TestStaleRevisionRefused: a write whose revision is not above the
// shard's last write is refused and writes nothing; its exactly-once
// retry returns the recorded result, revision included.
func TestStaleRevisionRefused(t *testing.T) {
	h := newHarness(t, Config{}, testDesc())
	first := h.at(10, put(hdr(7, 1), "c", "v1")).(*Result)
	if first.Revision != 10 {
		t.Fatalf("result at revision %d, want 10", first.Revision)
	}
	before := userData(t, h.db)
	for _, rev := range []uint64{0, 5, 10} {
		res := h.at(rev, put(hdr(7, 2), "c", "v2"))
		if err, ok := res.(error); !ok || !errors.Is(err, ErrStaleRevision) {
			t.Fatalf("write at %d after 10: %v, want ErrStaleRevision", rev, res)
		}
	}
	if userData(t, h.db) != before {
		t.Fatal("a refused write wrote")
	}
	// The retry of the applied write, stamped anew, returns its result.
	if res := h.at(11, put(hdr(7, 1), "c", "v1")).(*Result); res.Revision != 10 {
		t.Fatalf("retry returned revision %d, want the recorded 10", res.Revision)
	}
	h.reload() // the last revision survives a restart
	if res := h.at(10, put(hdr(7, 3), "c", "v3")); !errors.Is(res.(error), ErrStaleRevision) {
		t.Fatalf("after a restart, a write at 10: %v", res)
	}
	// Split and checksum carry none.
	if err := (&Command{Kind: KindChecksum, Revision: 3}).checkLimits(&h.cfg); !errors.Is(err, ErrBadCommand) {
		t.Fatalf("checksum with a revision: %v", err)
	}
}

// newStoreWith opens a node with oracle, bootstraps the one-replica shard
// 1 over ["b", "m") and elects it.
func newStoreWith(t *testing.T, oracle Oracle) (*Store, context.Context) {
	ctx := testCtx(t)
	n := openNodeWith(t, newDB(t), oracle)
	if err := n.store.CreateShard(loneDesc(), 1); err != nil {
		t.Fatal(err)
	}
	n.campaign(ctx, 1)
	return n.store, ctx
}

// gateOracle counts its calls and holds each one until released.
type gateOracle struct {
	mu     sync.Mutex
	calls  []int // counts asked for
	next   uint64
	gate   chan struct{}
	called chan int
}

func (o *gateOracle) Next(_ context.Context, count int) (tso.Timestamp, error) {
	o.called <- count
	<-o.gate
	o.mu.Lock()
	defer o.mu.Unlock()
	o.calls = append(o.calls, count)
	first := o.next + 1
	o.next += uint64(count)
	return tso.Timestamp(first), nil
}

// TestStoreStampsInBatches: the Store has one oracle call out at a time;
// writes that arrive during a call wait for the next, which stamps all of
// them; each write gets its own revision, in arrival order, and its
// result carries it.
func TestStoreStampsInBatches(t *testing.T) {
	o := &gateOracle{gate: make(chan struct{}), called: make(chan int, 16)}
	s, ctx := newStoreWith(t, o)
	first := s.Start(1, &Command{Kind: KindPut, Key: []byte("c"), Value: []byte("0")})
	if n := <-o.called; n != 1 {
		t.Fatalf("first call asked for %d", n)
	}
	// While it is out, five more writes arrive.
	var later []Pending
	for i := range 5 {
		later = append(later, s.Start(1, &Command{Kind: KindPut, Key: []byte{'d', byte('0' + i)}, Value: []byte("x")}))
	}
	o.gate <- struct{}{} // the first call returns
	if n := <-o.called; n != 5 {
		t.Fatalf("second call asked for %d, want the 5 writes that arrived during the first", n)
	}
	o.gate <- struct{}{}
	res, err := first.Wait(ctx)
	if err != nil || res.Revision != 1 {
		t.Fatalf("first write: %+v, %v; want revision 1", res, err)
	}
	for i, p := range later {
		res, err := p.Wait(ctx)
		if err != nil || res.Revision != uint64(2+i) {
			t.Fatalf("write %d: %+v, %v; want revision %d", i, res, err, 2+i)
		}
	}
	if calls, stamped := s.OracleStats(); calls != 2 || stamped != 6 {
		t.Fatalf("oracle stats: %d calls stamped %d writes, want 2 and 6", calls, stamped)
	}
}

// failingOracle fails every call.
type failingOracle struct{}

func (failingOracle) Next(context.Context, int) (tso.Timestamp, error) {
	return 0, errors.New("no oracle")
}

// TestStoreWithoutRevision: when the oracle fails, the write fails with
// ErrNoRevision and nothing enters the log.
func TestStoreWithoutRevision(t *testing.T) {
	s, ctx := newStoreWith(t, failingOracle{})
	if err := s.Put(ctx, 1, Header{}, []byte("c"), []byte("v")); !errors.Is(err, ErrNoRevision) {
		t.Fatalf("put without an oracle: %v, want ErrNoRevision", err)
	}
	if _, found, err := s.Get(ctx, 1, Epoch{}, []byte("c"), multiraft.ReadLinearizable); found || err != nil {
		t.Fatalf("get after the failed put: %v, %v", found, err)
	}
}

// TestMetaAfterRestart: a key's meta read back from Pebble, after a
// restart emptied the state machine's memory, continues where the
// remembered one left off, and so does a state machine that has forgotten
// it (more keys written than it remembers).
func TestMetaAfterRestart(t *testing.T) {
	h := newHarness(t, Config{}, testDesc())
	for rev := uint64(1); rev <= 3; rev++ {
		h.at(rev, put(hdr(0, 0), "c", fmt.Sprint(rev)))
	}
	h.reload()
	h.at(4, put(hdr(0, 0), "c", "4"))
	for i := range metaCacheKeys + 10 {
		h.at(uint64(5+i), put(hdr(0, 0), fmt.Sprintf("d%05d", i), "x"))
	}
	h.at(uint64(5+metaCacheKeys+10), put(hdr(0, 0), "c", "5"))
	kv, found, err := ReadAt(h.db, []byte("c"), keys.MaxRevision)
	if err != nil || !found || kv.Version != 5 || kv.CreateRevision != 1 || string(kv.Value) != "5" {
		t.Fatalf("c after a restart and many other keys: %+v, %v, %v; want version 5, created at 1", kv, found, err)
	}
	if len(h.sm.metas) > metaCacheKeys {
		t.Fatalf("%d metas in memory, the bound is %d", len(h.sm.metas), metaCacheKeys)
	}
}

// TestKeyValueClone: a clone shares no byte with what it copied, in one
// allocation, and appending to its key leaves its value alone.
func TestKeyValueClone(t *testing.T) {
	key, value := []byte("key"), []byte("value")
	kv := KeyValue{Key: key, Value: value, ModRevision: 7}
	c := kv.clone()
	key[0], value[0] = 'X', 'X'
	if string(c.Key) != "key" || string(c.Value) != "value" || c.ModRevision != 7 {
		t.Fatalf("clone = %q %q %d after the source changed", c.Key, c.Value, c.ModRevision)
	}
	_ = append(c.Key, "!!!!!"...)
	if string(c.Value) != "value" {
		t.Fatalf("appending to the key changed the value: %q", c.Value)
	}
	if e := (KeyValue{Key: []byte("k"), Value: []byte{}}).clone(); e.Value == nil || len(e.Value) != 0 {
		t.Fatalf("an empty value cloned as %#v", e.Value)
	}
	if n := testing.AllocsPerRun(100, func() { c = kv.clone() }); n != 1 {
		t.Errorf("clone allocates %v times, want 1", n)
	}
}
