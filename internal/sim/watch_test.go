package sim

import (
	"strings"
	"testing"
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
		{"a missed event", bugWatchDropsEvent, false, "watch "},
		{"a duplicated event", bugWatchDuplicatesEvent, false, "at or below the progress"},
		{"reordered answers", bugWatchReorders, false, "at or below the progress"},
		{"a write split across answers", bugWatchSplitsWrite, false, "an answer holds part of"},
		{"progress that promises too much", bugWatchProgressAhead, false, "at or below the progress"},
		{"a list older than the watch's start", bugListStale, false, "the key's state before"},
		{"a replica reading at a revision early", bugReadAtStale, false, "reads of "},
		{"fleet: a missed event", bugWatchDropsEvent, true, "watch "},
		{"fleet: a replica reading at a revision early", bugReadAtStale, true, "reads of "},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := Config{Steps: 400, Groups: 8, bug: tc.bug, Fleet: tc.fleet}
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
