package sim

import (
	"fmt"
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

// TestBankAsyncCommitCovered requires the bank's engine runs to take
// every path of async commit (bank.go) somewhere in a few seeds, without
// a bank violation: transfers acknowledged once both prewrites applied,
// transfers rolled back by their coordinator after a failed prewrite,
// and expired async primaries decided by readers both ways.
func TestBankAsyncCommitCovered(t *testing.T) {
	var committed, rolledBack, forward, back int
	for seed := uint64(1); seed <= 4; seed++ {
		res := runSeed(t, Config{Seed: seed, Steps: 600, KeepTrace: true})
		for _, v := range res.Violations {
			if strings.HasPrefix(v, "bank:") {
				t.Fatalf("seed %d: %s", seed, v)
			}
		}
		found := false
		for _, l := range res.Trace {
			var step, c, r, f, b int
			if _, err := fmt.Sscanf(l, "%d bank: async commit: %d transfers committed, %d rolled back by their coordinator; resolvers decided %d forward, %d back",
				&step, &c, &r, &f, &b); err == nil {
				committed, rolledBack, forward, back = committed+c, rolledBack+r, forward+f, back+b
				found = true
			}
		}
		if !found {
			t.Fatalf("seed %d: no async-commit counts in the trace", seed)
		}
	}
	t.Logf("async transfers committed %d, rolled back by their coordinator %d; decided by readers: %d forward, %d back", committed, rolledBack, forward, back)
	if committed == 0 || rolledBack == 0 || forward == 0 || back == 0 {
		t.Fatalf("a path of async commit was not taken: committed %d, rolled back %d, decided forward %d, back %d", committed, rolledBack, forward, back)
	}
}
