package sim

import (
	"strings"
	"testing"
)

// TestBankChecksCatchPlantedBugs plants a bug for each kind of anomaly
// the bank's checks (bankcheck.go) must catch, in the bank's
// coordinators, and requires the simulator to report it with the
// check's own words in one of the first seeds of an engine run, and the
// same seed to pass the bank's checks without it.
func TestBankChecksCatchPlantedBugs(t *testing.T) {
	for _, tc := range []struct {
		name string
		bug  simBug
		want []string // one of them in a violation
	}{
		{"lost update: no write-conflict check for writes after the reads", bugBankNoWriteConflict,
			[]string{"but transfer"}},
		{"reads ignore locks", bugBankReadsIgnoreLocks, []string{"bank: audit at"}},
		{"a resolver rolls back a committed transaction's secondary", bugBankResolverRollsBackCommitted,
			[]string{"bank: transfer"}},
		{"a resolver rolls back an async transaction whose keys all hold their locks", bugBankAsyncRollsBackLocked,
			[]string{"bank: transfer"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for seed := uint64(1); seed <= 5; seed++ {
				res := runSeed(t, Config{Seed: seed, Steps: 600, bug: tc.bug})
				for _, v := range res.Violations {
					for _, w := range tc.want {
						if strings.Contains(v, w) {
							t.Logf("seed %d: caught (%d violations): %.300s", seed, len(res.Violations), v)
							clean := runSeed(t, Config{Seed: seed, Steps: 600})
							for _, v := range clean.Violations {
								if strings.HasPrefix(v, "bank:") {
									t.Fatalf("seed %d without the bug: %s", seed, v)
								}
							}
							return
						}
					}
				}
				t.Logf("seed %d: not caught; violations: %.300q", seed, res.Violations)
			}
			t.Fatalf("no seed reported the planted bug (want a violation containing one of %q)", tc.want)
		})
	}
}
