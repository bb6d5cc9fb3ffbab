package chaos

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
)

// bankSim builds bank records by hand: a serial bank whose every
// transfer commits at the next revision, and audits of its state.
type bankSim struct {
	run  BankRun
	cur  []BankRead // each account's latest committed value
	rev  uint64
	next int
}

func newBankSim(accounts int) *bankSim {
	s := &bankSim{run: BankRun{Accounts: accounts, Initial: bankInitial}, rev: 10}
	for range accounts {
		s.cur = append(s.cur, BankRead{Balance: bankInitial, Tag: bankInitTag, Rev: 3})
	}
	return s
}

// transfer records a transfer from the current state; when it commits
// (OK, or Unknown with applied) the state moves on.
func (s *bankSim) transfer(from, to, amount int, outcome Outcome, applied bool) *BankTransfer {
	s.next++
	t := BankTransfer{ID: fmt.Sprintf("t%d", s.next), From: from, To: to, Amount: amount,
		Read: [2]BankRead{s.cur[from], s.cur[to]}, Outcome: outcome, Start: s.rev}
	if outcome == OK || outcome == Unknown && applied {
		s.rev++
		if outcome == OK {
			t.Commit = s.rev
		}
		s.cur[from] = BankRead{Balance: t.wrote(from), Tag: t.ID, Rev: s.rev}
		s.cur[to] = BankRead{Balance: t.wrote(to), Tag: t.ID, Rev: s.rev}
	}
	s.run.Transfers = append(s.run.Transfers, t)
	return &s.run.Transfers[len(s.run.Transfers)-1]
}

func (s *bankSim) audit(final bool) *BankAudit {
	s.run.Audits = append(s.run.Audits, BankAudit{Start: s.rev, Final: final, Accounts: append([]BankRead(nil), s.cur...)})
	return &s.run.Audits[len(s.run.Audits)-1]
}

// cleanBank is a random serial bank of n transfers with an audit after
// each, some conflicts and some of unknown outcome (applied or not).
func cleanBank(seed uint64, n int) *bankSim {
	rng := rand.New(rand.NewPCG(seed, 1))
	s := newBankSim(6)
	for range n {
		from := rng.IntN(6)
		to := (from + 1 + rng.IntN(5)) % 6
		outcome, applied := OK, false
		switch p := rng.Float64(); {
		case p < 0.15:
			outcome = Failed
		case p < 0.3:
			outcome, applied = Unknown, p < 0.22
		}
		s.transfer(from, to, 1+rng.IntN(20), outcome, applied)
		s.audit(false)
	}
	s.audit(true)
	return s
}

func TestBankCheckCleanRunsPass(t *testing.T) {
	for seed := range uint64(20) {
		s := cleanBank(seed, 60)
		rep := CheckBank(s.run)
		if len(rep.Violations) > 0 {
			t.Fatalf("seed %d: clean bank reported: %v", seed, rep.Violations)
		}
		if rep.Committed == 0 || rep.Audits != 61 || rep.Lost != 0 {
			t.Fatalf("seed %d: report %+v", seed, rep)
		}
	}
	if !plantedBankCaught(cleanBank(7, 40).run) {
		t.Fatal("a committed transfer recorded as failed went unreported")
	}
	// Unknown transfers applied are counted; ones read by nobody are not.
	s := newBankSim(3)
	s.transfer(0, 1, 5, Unknown, true)
	s.transfer(1, 2, 5, Unknown, false)
	s.audit(true)
	if rep := CheckBank(s.run); len(rep.Violations) > 0 || rep.UnknownApplied != 1 || rep.Unknown != 2 {
		t.Fatalf("unknown transfers: %+v", rep)
	}
}

// wantBankViolation checks that rep has a violation containing want.
func wantBankViolation(t *testing.T, name string, rep BankReport, want string) {
	t.Helper()
	for _, v := range rep.Violations {
		if strings.Contains(v, want) {
			return
		}
	}
	t.Errorf("%s: no violation containing %q; got %q", name, want, rep.Violations)
}

func TestBankCheckCatchesPlantedBugs(t *testing.T) {
	t.Run("money created by a lost update", func(t *testing.T) {
		s := newBankSim(3)
		s.transfer(0, 1, 10, OK, true)
		// t2 reads account 0 as it was before t1 (a stale snapshot that
		// still committed): account 0 ends with t1's debit undone.
		stale := s.cur[0]
		t2 := s.transfer(0, 2, 5, OK, true)
		t2.Read[0] = BankRead{Balance: bankInitial, Tag: bankInitTag, Rev: 3}
		s.cur[0] = BankRead{Balance: t2.wrote(0), Tag: t2.ID, Rev: stale.Rev + 1}
		s.audit(true)
		rep := CheckBank(s.run)
		wantBankViolation(t, "created", rep, "sums to 310, want 300")
		wantBankViolation(t, "created", rep, "acknowledged transfer t1 lost")
		if rep.Lost != 1 {
			t.Errorf("lost = %d, want 1", rep.Lost)
		}
	})
	t.Run("acknowledged transfer lost, total intact", func(t *testing.T) {
		s := newBankSim(3)
		s.transfer(0, 1, 10, OK, true)
		before := append([]BankRead(nil), s.cur...)
		s.transfer(1, 2, 7, OK, true)
		s.cur = before // the fleet forgot t2 on both accounts
		s.audit(true)
		rep := CheckBank(s.run)
		wantBankViolation(t, "lost", rep, "acknowledged transfer t2 lost")
		for _, v := range rep.Violations {
			if strings.Contains(v, "sums to") {
				t.Errorf("the total was intact, yet: %s", v)
			}
		}
	})
	t.Run("failed transfer took effect", func(t *testing.T) {
		s := newBankSim(3)
		s.transfer(0, 1, 10, OK, true)
		s.audit(true)
		s.run.Transfers[0].Outcome, s.run.Transfers[0].Commit = Failed, 0
		wantBankViolation(t, "failed", CheckBank(s.run), "failed transfer t1 took effect")
	})
	t.Run("half a transfer", func(t *testing.T) {
		s := newBankSim(3)
		s.transfer(0, 1, 10, Unknown, true)
		s.cur[1] = BankRead{Balance: bankInitial, Tag: bankInitTag, Rev: 3} // account 1 never got it
		s.audit(true)
		rep := CheckBank(s.run)
		wantBankViolation(t, "half", rep, "took effect on one account only")
		wantBankViolation(t, "half", rep, "sums to 290")
	})
	t.Run("fractured audit", func(t *testing.T) {
		s := newBankSim(3)
		s.transfer(0, 1, 10, OK, true)
		a := s.audit(false)
		a.Accounts[1] = BankRead{Balance: bankInitial, Tag: bankInitTag, Rev: 3} // saw t1 on 0 only
		s.audit(true)
		wantBankViolation(t, "fractured", CheckBank(s.run), "is fractured: it saw t1 on account 0 but not on account 1")
	})
	t.Run("audit from the future", func(t *testing.T) {
		s := newBankSim(3)
		a := s.audit(false)
		s.transfer(0, 1, 10, OK, true)
		copy(a.Accounts, s.cur) // an audit that started before t1, yet saw it
		s.audit(true)
		wantBankViolation(t, "future", CheckBank(s.run), "above the start")
	})
	t.Run("stale audit", func(t *testing.T) {
		s := newBankSim(3)
		s.transfer(0, 1, 10, OK, true)
		a := s.audit(false)
		a.Accounts[0] = BankRead{Balance: bankInitial, Tag: bankInitTag, Rev: 3}
		a.Accounts[1] = BankRead{Balance: bankInitial, Tag: bankInitTag, Rev: 3}
		s.audit(true)
		wantBankViolation(t, "stale", CheckBank(s.run), "at or below the start")
	})
	t.Run("garbage and wrong revisions", func(t *testing.T) {
		s := newBankSim(3)
		s.transfer(0, 1, 10, OK, true)
		a := s.audit(false)
		a.Accounts[2] = BankRead{Balance: 100, Tag: "nobody", Rev: 4}
		s.audit(true).Accounts[0].Rev++
		rep := CheckBank(s.run)
		wantBankViolation(t, "garbage", rep, "written by no transfer")
		wantBankViolation(t, "revision", rep, "elsewhere")
	})
	t.Run("no final read", func(t *testing.T) {
		s := newBankSim(3)
		s.transfer(0, 1, 10, OK, true)
		s.audit(false)
		wantBankViolation(t, "final", CheckBank(s.run), "no final read")
	})
}

func TestBankValueRoundTrip(t *testing.T) {
	b, tag, err := parseBankValue(bankValue(-7, "c3.t1.9"))
	if err != nil || b != -7 || tag != "c3.t1.9" {
		t.Fatalf("round trip: %d %q %v", b, tag, err)
	}
	for _, bad := range []string{"", "12", "x/t", "5/"} {
		if _, _, err := parseBankValue(bad); err == nil {
			t.Errorf("parseBankValue(%q) accepted it", bad)
		}
	}
	keys := bankKeys(2)
	for j, k := range keys {
		if got := int(k[0]) * initialShards / 256; got != j {
			t.Errorf("account %d's key %q falls in initial shard %d", j, k, got)
		}
	}
	for j, k := range listAppendKeys(2) {
		if got := int(k[0]) * initialShards / 256; got != j {
			t.Errorf("list %d's key %q falls in initial shard %d", j, k, got)
		}
	}
}
