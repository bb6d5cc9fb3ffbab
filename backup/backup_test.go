package backup

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	flt "github.com/flotilla-kv/flotilla/internal/fleet"
	"github.com/flotilla-kv/flotilla/internal/testutil"
	"github.com/flotilla-kv/flotilla/router"
)

// startFleet starts a fleet of three shardnodes and a placementd with
// four shards, and a router to it.
func startFleet(t *testing.T) *router.Client {
	t.Helper()
	f := flt.New(t, 3, "--heartbeat-interval", "250ms")
	f.AddPlacement(1, "--heartbeat-interval", "250ms", "--schedule-interval", "250ms", "--initial-shards", "4")
	f.StartPlacement()
	f.Start()
	r, err := router.New(testutil.Context(t, 30*time.Second), router.Config{PlacementAddresses: strings.Split(f.PlacementAddrs(), ","), Timeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = r.Close() })
	return r
}

// key spreads i over the four shards (split at first bytes 0x40, 0x80,
// 0xc0).
func key(i int) []byte { return fmt.Appendf(nil, "%c/k%05d", byte(0x20+(i%4)*0x40), i) }

// TestBackupUnderLoadAndRestore backs a fleet up while writers run, and
// restores it into a new fleet: the backup holds exactly the fleet's keys
// at its revision (every write acknowledged before it began included),
// and the new fleet holds exactly the backup's keys.
func TestBackupUnderLoadAndRestore(t *testing.T) {
	src := startFleet(t)
	ctx := testutil.Context(t, 3*time.Minute)
	for i := range 2000 {
		if err := src.Put(ctx, key(i), fmt.Appendf(nil, "v%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	l, err := src.Grant(ctx, 60)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := src.PutLease(ctx, []byte("leased"), []byte("x"), l.ID); err != nil {
		t.Fatal(err)
	}
	// Writers overwrite and add keys while the backup runs.
	var stop atomic.Bool
	var wg sync.WaitGroup
	var acked atomic.Int64
	for w := range 4 {
		wg.Go(func() {
			for j := 0; !stop.Load(); j++ {
				if err := src.Put(ctx, key((j*4+w)%3000), fmt.Appendf(nil, "w%d.%d", w, j)); err == nil {
					acked.Add(1)
				}
			}
		})
	}
	testutil.Eventually(t, 30*time.Second, func() error {
		if n := acked.Load(); n < 200 {
			return fmt.Errorf("%d writes", n)
		}
		return nil
	})
	before, err := src.Now(ctx) // above every write acknowledged so far
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	m, err := Write(ctx, src, dir, Options{PageKeys: 300, FileBytes: 16 << 10})
	if err != nil {
		t.Fatal(err)
	}
	stop.Store(true)
	wg.Wait()
	if m.Revision <= before || len(m.Files) < 2 || m.LeasedKeys != 1 {
		t.Fatalf("manifest %+v: want a revision above %d, several files, one leased key", m, before)
	}
	// The backup is the fleet at its revision, exactly.
	want, err := src.ScanAt(ctx, nil, nil, 0, m.Revision)
	if err != nil {
		t.Fatal(err)
	}
	var got []router.KeyValue
	for _, f := range m.Files {
		if _, err := eachRecord(dir, f, func(kv router.KeyValue) error { got = append(got, kv); return nil }); err != nil {
			t.Fatal(err)
		}
	}
	if err := sameKVs(got, want.KVs); err != nil {
		t.Fatalf("backup vs the fleet at %d: %v", m.Revision, err)
	}
	if m.Keys < 2001 {
		t.Fatalf("%d keys backed up, want at least the 2,001 written before", m.Keys)
	}

	dst := startFleet(t)
	_, n, err := Restore(ctx, dst, dir, RestoreOptions{})
	if err != nil || n != m.Keys {
		t.Fatalf("restore: %d keys, %v", n, err)
	}
	restored, err := dst.Scan(ctx, nil, nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := sameKVs(restored, want.KVs); err != nil {
		t.Fatalf("restored fleet: %v", err)
	}
	// A second restore is refused: the fleet is not empty.
	if _, _, err := Restore(ctx, dst, dir, RestoreOptions{}); err == nil || !strings.Contains(err.Error(), "holds keys") {
		t.Fatalf("restore into a fleet with keys: %v", err)
	}
}

// sameKVs compares keys and values, in order.
func sameKVs(got, want []router.KeyValue) error {
	if len(got) != len(want) {
		return fmt.Errorf("%d keys, want %d", len(got), len(want))
	}
	for i := range got {
		if !bytes.Equal(got[i].Key, want[i].Key) || !bytes.Equal(got[i].Value, want[i].Value) {
			return fmt.Errorf("key %d: %q=%q, want %q=%q", i, got[i].Key, got[i].Value, want[i].Key, want[i].Value)
		}
	}
	return nil
}

// TestVerifyRefusesDamage: a flipped byte, a missing file or a manifest
// that does not match fails Verify, and Restore writes nothing then.
func TestVerifyRefusesDamage(t *testing.T) {
	dir := t.TempDir()
	w := &fileWriter{dir: dir, max: 100}
	for i := range 50 {
		if err := w.add(router.KeyValue{Key: key(i), Value: []byte("value"), ModRevision: uint64(i + 1)}); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.close(); err != nil {
		t.Fatal(err)
	}
	// key(i) cycles through the shards' first bytes: these records are
	// out of key order, which Verify refuses.
	m := Manifest{Format: FormatVersion, Revision: 99, Files: w.files, Keys: w.keys}
	if err := writeManifest(dir, m); err != nil {
		t.Fatal(err)
	}
	if _, err := Verify(dir); !errors.Is(err, errCorrupt) || !strings.Contains(err.Error(), "after") {
		t.Fatalf("keys out of order: %v", err)
	}

	dir = t.TempDir()
	w = &fileWriter{dir: dir, max: 100}
	for i := range 50 {
		if err := w.add(router.KeyValue{Key: fmt.Appendf(nil, "k%03d", i), Value: []byte("value")}); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.close(); err != nil {
		t.Fatal(err)
	}
	m = Manifest{Format: FormatVersion, Revision: 99, Files: w.files, Keys: w.keys}
	if err := writeManifest(dir, m); err != nil {
		t.Fatal(err)
	}
	if _, err := Verify(dir); err != nil {
		t.Fatalf("an intact backup: %v", err)
	}
	path := filepath.Join(dir, m.Files[1].Name)
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	data[len(data)/2] ^= 1
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Verify(dir); !errors.Is(err, errCorrupt) {
		t.Fatalf("a flipped byte: %v", err)
	}
	// Restore verifies before it touches the fleet: a nil router would
	// panic if it got that far.
	if _, n, err := Restore(context.Background(), nil, dir, RestoreOptions{}); !errors.Is(err, errCorrupt) || n != 0 {
		t.Fatalf("restore of a damaged backup: %d keys, %v", n, err)
	}
	if err := os.Remove(filepath.Join(dir, ManifestName)); err != nil {
		t.Fatal(err)
	}
	if _, err := Verify(dir); err == nil || !strings.Contains(err.Error(), "no finished backup") {
		t.Fatalf("no manifest: %v", err)
	}
}
