package sim

import (
	"crypto/sha256"
	"strings"
	"testing"

	"github.com/flotilla-kv/flotilla/shard"
)

// TestWatchChecksCatchPlantedBugs plants a bug in what the watches and
// reads at a revision deliver, for each of their checks (watchcheck.go,
// readsat.go), and requires some seed to report it; the same seed must
// pass without the bug, so it is the planted bug that is caught.
func TestWatchChecksCatchPlantedBugs(t *testing.T) {
	for _, tc := range []struct {
		name  string
		bug   simBug
		fleet bool
		want  string // in a violation
	}{
		{"part of a write missed", bugWatchDropsEvent, false, "an answer holds part of"},
		{"a write missed: the next event's version is off", bugWatchDropsWrite, false, "the key's state before"},
		{"a write missed: the state at progress is not the read's", bugWatchDropsWrite, false, "the watch's state is"},
		{"a duplicated event", bugWatchDuplicatesEvent, false, "at or below the progress"},
		{"reordered answers", bugWatchReorders, false, "at or below the progress"},
		{"a write split across answers", bugWatchSplitsWrite, false, "an answer holds part of"},
		{"progress that promises too much", bugWatchProgressAhead, false, "at or below the progress"},
		{"a list older than the watch's start", bugListStale, false, "the key's state before"},
		{"a replica reading at a revision early", bugReadAtStale, false, "reads of "},
		{"fleet: a write missed", bugWatchDropsWrite, true, "watch "},
		{"fleet: a replica reading at a revision early", bugReadAtStale, true, "reads of "},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := Config{Steps: 400, Groups: 8, bug: tc.bug, Fleet: tc.fleet, NoLeases: true}
			if tc.fleet {
				cfg.Steps, cfg.Groups = 0, 0
			}
			for seed := uint64(1); seed <= 10; seed++ {
				cfg.Seed = seed
				res := runSeed(t, cfg)
				caught := ""
				for _, v := range res.Violations {
					if strings.Contains(v, tc.want) {
						caught = v
						break
					}
				}
				if caught == "" {
					continue
				}
				t.Logf("seed %d: caught (%d violations): %.300s", seed, len(res.Violations), caught)
				cfg.bug = noBug
				if res := runSeed(t, cfg); res.Failed() || res.Stats.WatchEvents == 0 {
					t.Fatalf("seed %d without the bug: violations %q, lost %q, %d watch events", seed, res.Violations, res.Lost, res.Stats.WatchEvents)
				}
				return
			}
			t.Fatalf("no seed reported the planted bug (want a violation containing %q)", tc.want)
		})
	}
}

// TestWatchCoverageVerdicts checks the end-of-run coverage check
// (checkKeyCovered) on hand-made sessions: a write that applied at a
// revision a session covered must show in it, and one that changed
// nothing must not. (In runs, a missed write is usually caught earlier,
// by the next event's version or a read at a revision.)
func TestWatchCoverageVerdicts(t *testing.T) {
	put := func(rev uint64, k, v string, ver uint64) shard.Event {
		return shard.Event{KV: shard.KeyValue{Key: []byte(k), Value: []byte(v), ModRevision: rev, CreateRevision: 10, Version: ver}}
	}
	del := func(rev uint64, k string) shard.Event {
		return shard.Event{Delete: true, KV: shard.KeyValue{Key: []byte(k), ModRevision: rev}}
	}
	w := func(rev uint64, o kvOp) *issued {
		return &issued{client: 1, seq: rev, kind: opPut, ops: []kvOp{o}, revs: []uint64{rev}, acked: true, ackRev: rev}
	}
	for _, tc := range []struct {
		name     string
		writes   []*issued
		events   []shard.Event
		progress uint64
		want     string // "": no violation
	}{
		{"every write shows", []*issued{w(20, kvOp{op: cmdPut, key: "a", value: "x"}), w(30, kvOp{op: cmdDelete, key: "a"})},
			[]shard.Event{put(20, "a", "x", 2), del(30, "a")}, 40, ""},
		{"an acknowledged put missed", []*issued{w(20, kvOp{op: cmdPut, key: "a", value: "x"}), w(30, kvOp{op: cmdPut, key: "a", value: "y"})},
			[]shard.Event{put(20, "a", "x", 2)}, 40, "missed c1.30"},
		{"beyond progress, not missed", []*issued{w(20, kvOp{op: cmdPut, key: "a", value: "x"}), w(30, kvOp{op: cmdPut, key: "a", value: "y"})},
			[]shard.Event{put(20, "a", "x", 2)}, 29, ""},
		{"a delete of a missing key changes nothing", []*issued{w(20, kvOp{op: cmdDelete, key: "a"}), w(30, kvOp{op: cmdDelete, key: "a"})},
			[]shard.Event{del(20, "a")}, 40, ""},
		{"a failed CAS shows", []*issued{{client: 1, seq: 20, kind: opCAS, ops: []kvOp{{op: cmdCAS, key: "a", expect: "q", value: "x"}}, revs: []uint64{20}, acked: true, ackRev: 20}},
			[]shard.Event{put(20, "a", "x", 2)}, 40, "did not change"},
		{"an ambiguous write another watch saw", []*issued{{client: 1, seq: 20, kind: opPut, ops: []kvOp{{op: cmdPut, key: "a", value: "x"}}, revs: []uint64{20}, ambiguous: true, seenAt: 20}},
			nil, 40, "missed c1.20"},
		{"an ambiguous write nobody saw", []*issued{{client: 1, seq: 20, kind: opPut, ops: []kvOp{{op: cmdPut, key: "a", value: "x"}}, revs: []uint64{20}, ambiguous: true}},
			nil, 40, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := &simulation{trace: sha256.New(), watch: &watchState{writes: map[uint64]*issued{}}}
			for _, wr := range tc.writes {
				s.watch.writes[wr.revs[0]] = wr
				s.watch.attempts = append(s.watch.attempts, wr.revs[0])
			}
			m := &keyModel{baseLive: true, baseKV: shard.KeyValue{Value: []byte("v0"), ModRevision: 10, CreateRevision: 10, Version: 1}}
			m.live, m.kv = m.baseLive, m.baseKV
			for _, ev := range tc.events {
				m.apply(ev)
			}
			ss := &watchSession{id: 1, base: 10, keys: []string{"a"}, models: map[string]*keyModel{"a": m},
				pieces: []*watchPiece{{start: []byte("a"), end: []byte("b"), progress: tc.progress}}}
			s.watch.sessions = []*watchSession{ss}
			s.checkWatches()
			switch {
			case tc.want == "" && len(s.violations) > 0:
				t.Fatalf("violations %q, want none", s.violations)
			case tc.want != "" && (len(s.violations) != 1 || !strings.Contains(s.violations[0], tc.want)):
				t.Fatalf("violations %q, want one containing %q", s.violations, tc.want)
			}
		})
	}
}

// TestWatchBugSeeds replays seeds on which the watch checks found bugs in
// the shard package's watch (doc.go, "Bugs these checks found"): fleet
// seed 71 (a removal between a publication and Next dropped an answer;
// fixed in bbe9401), engine seed 544 and fleet seed 31 (a watcher kept
// going over a range a snapshot that skipped a split took away from its
// replica; fixed in 40c3ca9). They run without leases, as they did when
// the bugs were found.
func TestWatchBugSeeds(t *testing.T) {
	for _, cfg := range []Config{{Seed: 71, Fleet: true, NoLeases: true}, {Seed: 544, NoLeases: true}, {Seed: 31, Fleet: true, NoLeases: true}} {
		res := runSeed(t, cfg)
		for _, v := range res.Violations {
			t.Errorf("seed %d (fleet %v): %s", cfg.Seed, cfg.Fleet, v)
		}
		if res.Stats.WatchEvents == 0 {
			t.Errorf("seed %d (fleet %v): no watch events", cfg.Seed, cfg.Fleet)
		}
	}
}
