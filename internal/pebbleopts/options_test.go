package pebbleopts

import (
	"fmt"
	"testing"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
)

// filterHits writes four overlapping tables with opts, reads 200 keys that
// none of them holds, and returns how often a filter spared a table.
func filterHits(t *testing.T, opts *pebble.Options) int64 {
	t.Helper()
	opts.FS = vfs.NewMem()
	opts.DisableAutomaticCompactions = true
	db, err := pebble.Open("", opts)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for table := range 4 {
		for i := range 500 {
			key := fmt.Appendf(nil, "k%05d", i*4+table)
			if err := db.Set(key, []byte("value"), pebble.NoSync); err != nil {
				t.Fatal(err)
			}
		}
		if err := db.Flush(); err != nil {
			t.Fatal(err)
		}
	}
	if n := db.Metrics().Levels[0].TablesCount; n != 4 {
		t.Fatalf("L0 holds %d tables, want 4", n)
	}
	for i := range 200 {
		if _, _, err := db.Get(fmt.Appendf(nil, "k%05dx", i*10)); err != pebble.ErrNotFound {
			t.Fatalf("Get of an absent key: %v, want ErrNotFound", err)
		}
	}
	return db.Metrics().Filter.Hits
}

func TestOptionsFilterL0(t *testing.T) {
	logger := pebble.DefaultLogger
	// 200 reads of absent keys over 4 tables: 800 table probes, of which
	// a 1% false-positive filter lets through about 8.
	if hits := filterHits(t, Options(logger, 0)); hits < 700 {
		t.Errorf("with Options the filters spared %d of 800 table reads, want at least 700", hits)
	}
	// Pebble's defaults have no filter on L0: the same reads open every table.
	if hits := filterHits(t, &pebble.Options{Logger: logger}); hits != 0 {
		t.Errorf("with Pebble's defaults the filters spared %d table reads, want 0", hits)
	}
}

func TestOptionsCache(t *testing.T) {
	logger := pebble.DefaultLogger
	if got := Options(logger, 0).CacheSize; got != DefaultBlockCacheBytes {
		t.Errorf("default cache %d bytes, want %d", got, DefaultBlockCacheBytes)
	}
	if got := Options(logger, 1<<20).CacheSize; got != 1<<20 {
		t.Errorf("cache %d bytes, want %d", got, 1<<20)
	}
}
