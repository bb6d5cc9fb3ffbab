package chaos

import (
	"fmt"
	"slices"
)

// BankReport is the result of CheckBank.
type BankReport struct {
	Transfers, Committed, Unknown, Aborted int
	// UnknownApplied counts transfers of unknown outcome found in the
	// accounts' final chains: they did commit.
	UnknownApplied int
	Audits         int
	// Lost counts acknowledged transfers missing from an account's final
	// chain (each is also a violation).
	Lost       int
	Violations []string
}

// CheckBank checks a cycle's bank record (see "The bank" in doc.go):
//
//   - every audit, the final one included, sums to Accounts*Initial, and
//     reads only values some transfer that did not fail (or the initial
//     put) wrote, with the balance that writer wrote;
//   - each account's final chain, from the final audit's value back
//     through the value each writer read, holds every acknowledged
//     transfer of the account (none lost: a transfer overwritten by one
//     that did not read it is missing), no failed one, and only
//     transfers that are in their other account's chain too (both
//     writes or neither);
//   - every value an audit saw is in its account's chain, and the audit
//     saw, for every transfer at or below what it saw of one account,
//     that transfer or a later one in the other account (no fractured
//     snapshot);
//   - revisions: every read of a transfer's value carries the same
//     revision, the commit revision when the transfer was acknowledged;
//     they increase along each chain; and an audit at start S saw in
//     each account the last writer of the chain at or below S.
func CheckBank(run BankRun) BankReport {
	c := bankChecker{run: run, byID: map[string]*BankTransfer{}, rev: map[string]uint64{}}
	return c.check()
}

type bankChecker struct {
	run  BankRun
	rep  BankReport
	byID map[string]*BankTransfer
	// rev is the revision each writer's value was read at (the commit
	// revision of an acknowledged transfer).
	rev map[string]uint64
	// chain[a] lists account a's writers from the initial put to the
	// final value; pos[a] maps a writer's tag to its index in chain[a].
	chain [][]string
	pos   []map[string]int
}

func (c *bankChecker) failf(format string, args ...any) {
	c.rep.Violations = append(c.rep.Violations, fmt.Sprintf(format, args...))
}

func (c *bankChecker) check() BankReport {
	run := c.run
	c.rep.Transfers = len(run.Transfers)
	if run.Setup != "" {
		c.failf("bank: no bank this cycle: %s", run.Setup)
		return c.rep
	}
	for i := range run.Transfers {
		t := &run.Transfers[i]
		switch t.Outcome {
		case OK:
			c.rep.Committed++
		case Unknown:
			c.rep.Unknown++
		default:
			c.rep.Aborted++
		}
		if c.byID[t.ID] != nil {
			panic(fmt.Sprintf("chaos: bank transfer ID %s recorded twice", t.ID))
		}
		c.byID[t.ID] = t
		if t.Outcome == OK {
			c.rev[t.ID] = t.Commit
		}
	}
	for i := range run.Transfers {
		t := &run.Transfers[i]
		for j, a := range []int{t.From, t.To} {
			c.checkRead(fmt.Sprintf("transfer %s", t.ID), a, t.Read[j])
		}
	}
	var final *BankAudit
	for i := range run.Audits {
		a := &run.Audits[i]
		c.rep.Audits++
		c.checkAudit(a)
		if a.Final {
			final = a
		}
	}
	if final == nil {
		c.failf("bank: no final read of the accounts: nothing to check the transfers against")
		return c.rep
	}
	c.buildChains(final)
	c.checkChains()
	for i := range run.Audits {
		c.checkSnapshot(&run.Audits[i])
	}
	return c.rep
}

// checkRead checks one read of account a: its writer exists, touched a,
// did not fail, and wrote the balance read; and its revision agrees with
// every other read of the same writer.
func (c *bankChecker) checkRead(what string, a int, r BankRead) {
	if r.Tag != bankInitTag {
		w := c.byID[r.Tag]
		switch {
		case w == nil:
			c.failf("bank: %s read account %d = %d/%s, written by no transfer (garbage read)", what, a, r.Balance, r.Tag)
			return
		case w.From != a && w.To != a:
			c.failf("bank: %s read account %d = %d/%s, but that transfer was between %d and %d", what, a, r.Balance, r.Tag, w.From, w.To)
			return
		case w.Outcome == Failed:
			c.failf("bank: %s read account %d written by %s, which failed (aborted read): %v", what, a, w.ID, w)
		case w.wrote(a) != r.Balance:
			c.failf("bank: %s read account %d = %d from %s, which wrote %d", what, a, r.Balance, w.ID, w.wrote(a))
		}
	} else if r.Balance != c.run.Initial {
		c.failf("bank: %s read account %d = %d/%s, the initial balance is %d", what, a, r.Balance, r.Tag, c.run.Initial)
	}
	if r.Tag == bankInitTag || r.Rev == 0 {
		return
	}
	if rev, ok := c.rev[r.Tag]; !ok {
		c.rev[r.Tag] = r.Rev
	} else if rev != r.Rev {
		c.failf("bank: %s read %s's value of account %d at revision %d, elsewhere %d (commit or another read)", what, r.Tag, a, r.Rev, rev)
	}
}

// checkAudit checks an audit's reads and its total.
func (c *bankChecker) checkAudit(a *BankAudit) {
	what := fmt.Sprintf("audit at %d", a.Start)
	if a.Final {
		what = fmt.Sprintf("final read at %d", a.Start)
	}
	if len(a.Accounts) != c.run.Accounts {
		panic(fmt.Sprintf("chaos: bank %s has %d accounts, the run %d", what, len(a.Accounts), c.run.Accounts))
	}
	total := 0
	for i, r := range a.Accounts {
		total += r.Balance
		c.checkRead(what, i, r)
	}
	if want := c.run.Accounts * c.run.Initial; total != want {
		c.failf("bank: %s sums to %d, want %d: %v", what, total, want, *a)
	}
}

// buildChains walks each account back from its final value through the
// value each writer read.
func (c *bankChecker) buildChains(final *BankAudit) {
	c.chain = make([][]string, c.run.Accounts)
	c.pos = make([]map[string]int, c.run.Accounts)
	for a := range c.run.Accounts {
		var back []string
		for tag, steps := final.Accounts[a].Tag, 0; ; steps++ {
			back = append(back, tag)
			w := c.byID[tag]
			if tag == bankInitTag || w == nil || (w.From != a && w.To != a) || steps > len(c.run.Transfers) {
				// A garbage tag was reported by checkRead; a loop cannot
				// happen with unique tags, but must not hang the check.
				break
			}
			tag = w.readOf(a).Tag
		}
		slices.Reverse(back)
		if back[0] != bankInitTag {
			c.failf("bank: account %d's final chain does not lead back to the initial balance: %v", a, back)
		}
		c.chain[a] = back
		c.pos[a] = map[string]int{}
		for i, tag := range back {
			if j, dup := c.pos[a][tag]; dup {
				c.failf("bank: account %d's chain holds %s twice (at %d and %d)", a, tag, j, i)
			}
			c.pos[a][tag] = i
		}
	}
}

// checkChains checks every transfer against the final chains.
func (c *bankChecker) checkChains() {
	for _, t := range c.run.Transfers {
		_, inFrom := c.pos[t.From][t.ID]
		_, inTo := c.pos[t.To][t.ID]
		switch {
		case t.Outcome == OK && (!inFrom || !inTo):
			c.rep.Lost++
			c.failf("bank: acknowledged transfer %s lost: in account %d's chain %v, in account %d's %v: %v", t.ID, t.From, inFrom, t.To, inTo, t)
		case t.Outcome == Failed && (inFrom || inTo):
			c.failf("bank: failed transfer %s took effect (in account %d's chain %v, in account %d's %v): %v", t.ID, t.From, inFrom, t.To, inTo, t)
		case inFrom != inTo:
			c.failf("bank: transfer %s took effect on one account only (in account %d's chain %v, in account %d's %v): %v", t.ID, t.From, inFrom, t.To, inTo, t)
		case t.Outcome == Unknown && inFrom:
			c.rep.UnknownApplied++
		}
	}
	for a, ch := range c.chain {
		for i := 1; i < len(ch); i++ {
			prev, cur := c.rev[ch[i-1]], c.rev[ch[i]]
			if prev != 0 && cur != 0 && prev >= cur {
				c.failf("bank: account %d: %s at revision %d follows %s at %d in its chain", a, ch[i], cur, ch[i-1], prev)
			}
		}
	}
}

// checkSnapshot checks that an audit saw one consistent state.
func (c *bankChecker) checkSnapshot(au *BankAudit) {
	seen := make([]int, len(au.Accounts))
	for a, r := range au.Accounts {
		p, ok := c.pos[a][r.Tag]
		if !ok {
			c.failf("bank: audit at %d saw account %d = %d/%s, a value its final chain does not hold (overwritten without being read, or lost)", au.Start, a, r.Balance, r.Tag)
			return
		}
		seen[a] = p
		// The chain's next writer must have committed above the start.
		if next := p + 1; next < len(c.chain[a]) {
			if rev := c.rev[c.chain[a][next]]; rev != 0 && rev <= au.Start {
				c.failf("bank: audit at %d saw account %d = %s, but %s committed at %d, at or below the start", au.Start, a, r.Tag, c.chain[a][next], rev)
			}
		}
		if rev := c.rev[r.Tag]; rev > au.Start {
			c.failf("bank: audit at %d saw account %d = %s, committed at %d, above the start", au.Start, a, r.Tag, rev)
		}
	}
	for a := range au.Accounts {
		for _, tag := range c.chain[a][1 : seen[a]+1] {
			t := c.byID[tag]
			b := t.To
			if b == a {
				b = t.From
			}
			if p, ok := c.pos[b][tag]; ok && seen[b] < p {
				c.failf("bank: audit at %d is fractured: it saw %s on account %d but not on account %d (saw %s there): %v",
					au.Start, tag, a, b, au.Accounts[b].Tag, t)
				return
			}
		}
	}
}

// plantedBankCaught shows CheckBank able to fail on this very record: the
// first acknowledged transfer, recorded as failed instead, must be
// reported (its writes are in the chains, or were read). It returns
// false only when the plant went unnoticed; a record with no
// acknowledged transfer has nothing to plant on.
func plantedBankCaught(run BankRun) bool {
	for i, t := range run.Transfers {
		if t.Outcome != OK {
			continue
		}
		planted := run
		planted.Transfers = slices.Clone(run.Transfers)
		planted.Transfers[i].Outcome, planted.Transfers[i].Commit = Failed, 0
		return len(CheckBank(planted).Violations) > len(CheckBank(run).Violations)
	}
	return true
}
