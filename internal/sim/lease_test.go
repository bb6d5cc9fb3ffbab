package sim

import (
	"strings"
	"testing"
)

// TestLeaseChecksCatchPlantedBugs plants a bug for each lease check
// (leasecheck.go) and requires the simulator to report it, with the
// check's own words, in one of the first seeds of an engine run.
func TestLeaseChecksCatchPlantedBugs(t *testing.T) {
	for _, tc := range []struct {
		name string
		bug  simBug
		want string // in a violation
	}{
		{"1: lessor clocks at a third of the rate", bugLeaseClockSlow, "lease: readable after deadline plus bound"},
		{"2: lessor clocks five times as fast", bugLeaseClockFast, "lease: kept alive in time but"},
		{"3: the end's delete ignores the lease", bugLeaseDeleteIgnoresLease, "lease: deleted while"},
		{"4: a lease's index scan loses a key", bugLeaseRevokeMissesKeys, "lease: revoke of lease"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for seed := uint64(1); seed <= 5; seed++ {
				res := runSeed(t, Config{Seed: seed, Steps: 600, bug: tc.bug})
				for _, v := range res.Violations {
					if strings.Contains(v, tc.want) {
						t.Logf("seed %d: caught (%d violations): %.300s", seed, len(res.Violations), v)
						return
					}
				}
				t.Logf("seed %d: not caught; violations: %.300q", seed, res.Violations)
			}
			t.Fatalf("no seed reported the planted bug (want a violation containing %q)", tc.want)
		})
	}
}
