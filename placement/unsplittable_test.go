package placement

import (
	"testing"
	"time"

	"github.com/flotilla-kv/flotilla/shard"
)

// TestUnsplittableUntilTheLeaderCountsMoreKeys is the repair loop a
// simulator seed found: a shard of one key whose history grows was asked
// to split again each time its size doubled, though no split can divide
// one key. A refusal now holds while the leader reports one key, however
// large the shard grows, and ends when it reports two; with no count
// reported, the size rule stands.
func TestUnsplittableUntilTheLeaderCountsMoreKeys(t *testing.T) {
	now := time.Unix(1000, 0)
	cat, err := newCatalogue(openDB(t))
	if err != nil {
		t.Fatal(err)
	}
	s := newService(Config{HeartbeatInterval: time.Second}, &Catalogue{}, nil)
	s.cat.cur.Store(cat)
	c := &coordinator{core: s.core, orphans: map[shard.ShardID]time.Time{}}
	c.mu.flights = map[shard.ShardID]*flight{}
	c.mu.unsplittable = map[shard.ShardID]int64{1: 0} // the leader refused a split
	d := replicas(1, 1, 2, 3)
	report := func(bytes, keys uint64) bool {
		t.Helper()
		beat := leaderBeat(d)
		beat.Replicas[0].ApproximateBytes, beat.Replicas[0].ApproximateKeys = bytes, keys
		s.view.heartbeat(beat, now)
		for _, sh := range c.cluster(now).Shards {
			if sh.Descriptor.ShardID == 1 {
				return sh.Unsplittable
			}
		}
		t.Fatal("shard 1 is not in the cluster")
		return false
	}
	for _, size := range []uint64{400, 900, 4000, 1 << 20} {
		if !report(size, 1) {
			t.Fatalf("one key in %d bytes: splittable again", size)
		}
	}
	if report(1<<20, 2) {
		t.Fatal("two keys reported: still unsplittable")
	}

	// With no count (the shard has too many keys to count, or an older
	// node), a refusal holds until the size doubles.
	c.mu.unsplittable[1] = 0
	if !report(1000, 0) || !report(2000, 0) {
		t.Fatal("no count: splittable again before the size doubled")
	}
	if report(2001, 0) {
		t.Fatal("no count: still unsplittable after the size doubled")
	}
}
