package bench

import (
	"bytes"
	"context"
	"errors"
	"math/rand/v2"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestEvenBoundariesSplitLikeBootstrap(t *testing.T) {
	b := EvenBoundaries(16)
	if len(b) != 15 || !bytes.Equal(b[0], []byte{0x10}) || !bytes.Equal(b[14], []byte{0xf0}) {
		t.Fatalf("16 shards: %x", b)
	}
	b = EvenBoundaries(3)
	if len(b) != 2 || !bytes.Equal(b[0], []byte{0x55, 0x55}) || !bytes.Equal(b[1], []byte{0xaa, 0xaa}) {
		t.Fatalf("3 shards: %x", b)
	}
}

// shardOf returns the index of the shard of bounds holding k.
func shardOf(bounds [][]byte, k []byte) int {
	return sort.Search(len(bounds), func(j int) bool { return bytes.Compare(bounds[j], k) > 0 })
}

func TestKeyGroupsPickOneOrTwoShards(t *testing.T) {
	bounds := EvenBoundaries(8)
	g, err := newKeyGroups(1000, 16, bounds)
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	next := func() uint64 { return rng.Uint64N(1000) }
	for _, two := range []bool{false, true} {
		for range 2000 {
			a, b := g.pick(next, rng.IntN, two)
			sa, sb := shardOf(bounds, Key(nil, a, 16)), shardOf(bounds, Key(nil, b, 16))
			if a == b || (sa != sb) != two {
				t.Fatalf("two shards %v: picked %d (shard %d) and %d (shard %d)", two, a, sa, b, sb)
			}
		}
	}
	if _, err := newKeyGroups(3, 16, bounds); err == nil || !strings.Contains(err.Error(), "--keys") {
		t.Errorf("3 keys over 8 shards: %v", err)
	}
}

// txnDriver is a Driver whose KVs are TxnKVs in memory: it records every
// transaction's keys, and fails one transfer in ten with ErrTxnConflict.
type txnDriver struct {
	mu   sync.Mutex
	ops  map[string][][]string
	seen int
}

func (d *txnDriver) System() string { return "fake" }
func (d *txnDriver) Client(int) KV  { return d }
func (d *txnDriver) Close() error   { return nil }
func (d *txnDriver) ErrorKind(err error) string {
	if errors.Is(err, ErrTxnConflict) {
		return "conflict"
	}
	return "other"
}
func (d *txnDriver) Put(context.Context, []byte, []byte) error      { return nil }
func (d *txnDriver) Get(context.Context, []byte) (bool, error)      { return true, nil }
func (d *txnDriver) Scan(context.Context, []byte, int) (int, error) { return 0, nil }
func (d *txnDriver) Batch(_ context.Context, k [][]byte, _ []byte) error {
	return d.record("batch", k)
}
func (d *txnDriver) TxnPut(_ context.Context, k [][]byte, _ []byte) error {
	return d.record("txn", k)
}
func (d *txnDriver) Transfer(_ context.Context, k [][]byte, _ []byte) error {
	return d.record("transfer", k)
}

func (d *txnDriver) record(kind string, keys [][]byte) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	var ks []string
	for _, k := range keys {
		ks = append(ks, string(k))
	}
	d.ops[kind] = append(d.ops[kind], ks)
	d.seen++
	if kind == "transfer" && d.seen%10 == 0 {
		return ErrTxnConflict
	}
	return nil
}

func TestTxnWorkloadsRunTheirShape(t *testing.T) {
	bounds := EvenBoundaries(4)
	for _, tc := range []struct {
		workload, kind string
		twoShards      bool
	}{
		{WorkloadBatch, "batch", false},
		{WorkloadTxn, "txn", false},
		{WorkloadTransfer1, "transfer", false},
		{WorkloadTransfer2, "transfer", true},
	} {
		d := &txnDriver{ops: map[string][][]string{}}
		cfg := Config{Workload: tc.workload, Clients: 4, Keys: 200, Ops: 300, Seed: 7}
		res, err := Run(context.Background(), cfg, d, RunOptions{ShardBoundaries: bounds})
		if err != nil {
			t.Fatalf("%s: %v", tc.workload, err)
		}
		if res.Ops != 300 || res.OpsByKind["txn"] != 300 {
			t.Errorf("%s: %d ops (%v), want 300 txn", tc.workload, res.Ops, res.OpsByKind)
		}
		if tc.kind == "transfer" && res.ErrorsByKind["conflict"] == 0 {
			t.Errorf("%s: conflicts not counted: %v", tc.workload, res.ErrorsByKind)
		}
		if len(d.ops) != 1 || len(d.ops[tc.kind]) < 300 {
			t.Fatalf("%s: ran %v", tc.workload, d.ops)
		}
		for _, ks := range d.ops[tc.kind] {
			if len(ks) != TxnKeys || ks[0] == ks[1] {
				t.Fatalf("%s: keys %q", tc.workload, ks)
			}
			if two := shardOf(bounds, []byte(ks[0])) != shardOf(bounds, []byte(ks[1])); two != tc.twoShards {
				t.Fatalf("%s: keys %x on two shards: %v", tc.workload, ks, two)
			}
		}
		if d := cfg.Describe(); !strings.Contains(d, txnShapes[tc.workload].what) {
			t.Errorf("%s: description %q", tc.workload, d)
		}
		if want := tc.kind == "transfer"; cfg.withDefaults().Preload != want {
			t.Errorf("%s: preload %v, want %v", tc.workload, !want, want)
		}
	}
	// A driver without the capability is refused before anything runs.
	_, err := Run(context.Background(), Config{Workload: WorkloadTxn, Duration: time.Second}, newWatchDriver(), RunOptions{})
	if !errors.Is(err, ErrTxnUnsupported) {
		t.Errorf("a driver without TxnKV: %v", err)
	}
}
