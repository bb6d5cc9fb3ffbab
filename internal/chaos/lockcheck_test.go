package chaos

import (
	"strings"
	"testing"
)

// Hand-made lock histories: a clean one, one with a lost lease handled
// by the fence, and planted bugs, each of which the check must report.

const regKey = "fenced"

// holdOf returns a hold of client c (its hold-th), session lease, fence,
// called at call and held over [acq, rel].
func holdOf(c, hold int, lease, fence uint64, call, acq, rel int64, end string) LockHold {
	return LockHold{Client: c, Hold: hold, Lease: lease, Fence: fence, Call: call, Acquired: acq, Released: rel, End: end}
}

// regCAS is an acknowledged swap of the register by hold h, from expect.
func regCAS(h LockHold, seq int, expect string, call, ret int64, rev uint64) Op {
	return Op{Client: h.Client, Kind: OpCAS, Key: regKey, Expect: expect, Value: fencedValue(h.Fence, h.Client, h.Hold, seq),
		Call: call, Return: ret, Outcome: OK, Swapped: true, Revision: rev}
}

// regGet is an acknowledged read of the register at rev.
func regGet(client int, out string, call, ret int64, rev uint64) Op {
	return Op{Client: client, Kind: OpGet, Key: regKey, Out: out, Call: call, Return: ret, Outcome: OK, Revision: rev}
}

// cleanLocks: three holds of three clients, one after another, each
// writing the register once; every session alive.
func cleanLocks() LockRun {
	a := holdOf(0, 0, 0xa, 10, 0, 10, 20, HoldUnlocked)
	b := holdOf(1, 0, 0xb, 11, 1, 25, 35, HoldUnlocked)
	c := holdOf(2, 0, 0xc, 12, 2, 40, 50, HoldUnlocked)
	va, vb, vc := fencedValue(10, 0, 0, 1), fencedValue(11, 1, 0, 2), fencedValue(12, 2, 0, 3)
	return LockRun{
		Holds:    []LockHold{a, b, c},
		Sessions: []LockSession{{Client: 0, Lease: 0xa}, {Client: 1, Lease: 0xb}, {Client: 2, Lease: 0xc}},
		Register: []Op{
			regGet(0, "", 11, 12, 10),
			regCAS(a, 1, "", 13, 14, 13),
			regGet(1, va, 26, 27, 14),
			regCAS(b, 2, va, 28, 29, 16),
			regGet(2, vb, 41, 42, 17),
			regCAS(c, 3, vb, 43, 44, 18),
			at(final(regKey, vc, 60), 20),
		},
	}
}

// lostLocks: client 0 holds with fence 10 and its lease ends while it
// holds (it is paused, say); client 1 takes the lock with fence 11 while
// client 0 still believes it holds, and writes; client 0's next write
// finds fence 11 and is refused.
func lostLocks() LockRun {
	a := holdOf(0, 0, 0xa, 10, 0, 10, 40, HoldFenced)
	b := holdOf(1, 0, 0xb, 11, 1, 25, 35, HoldUnlocked)
	va, vb := fencedValue(10, 0, 0, 1), fencedValue(11, 1, 0, 2)
	return LockRun{
		Holds:    []LockHold{a, b},
		Sessions: []LockSession{{Client: 0, Lease: 0xa, Lost: true, How: "Done closed"}, {Client: 1, Lease: 0xb}},
		Register: []Op{
			regGet(0, "", 11, 12, 10),
			regCAS(a, 1, "", 13, 14, 13),
			regGet(1, va, 26, 27, 15),
			regCAS(b, 2, va, 28, 29, 16),
			regGet(0, vb, 37, 38, 16), // refused: fence 11 > 10
			at(final(regKey, vb, 60), 20),
		},
	}
}

func TestLockCheckAcceptsCleanRuns(t *testing.T) {
	for name, run := range map[string]LockRun{"clean": cleanLocks(), "lost": lostLocks()} {
		r := CheckLocks(run)
		if len(r.Violations) > 0 {
			t.Errorf("%s: violations in a clean run:\n%s", name, strings.Join(r.Violations, "\n"))
		}
		if r.Acquisitions != len(run.Holds) || r.Writes == 0 {
			t.Errorf("%s: report %+v", name, r)
		}
	}
	if r := CheckLocks(lostLocks()); r.LostSessions != 1 || r.Fenced != 1 {
		t.Errorf("lost run: %d lost sessions, %d fenced-out holds; want 1, 1", r.LostSessions, r.Fenced)
	}
}

func TestLockCheckCatchesPlantedBugs(t *testing.T) {
	for _, tc := range []struct {
		name string
		run  func() LockRun
		want string
	}{
		{"two holders at once, sessions alive", func() LockRun {
			run := cleanLocks()
			run.Holds[1].Acquired = 15 // b acquires while a holds [10, 20]
			return run
		}, "two holders at once, the earlier (lower fence) not lost"},
		{"two holders at once with the same fence", func() LockRun {
			run := cleanLocks()
			run.Holds[1].Acquired, run.Holds[1].Fence = 15, 10
			run.Register = nil
			return run
		}, "two holds have fence 10"},
		{"overlap with a decreasing fence", func() LockRun {
			// b, called after a returned, gets a lower fence and holds
			// while a holds.
			run := cleanLocks()
			run.Holds[1].Call, run.Holds[1].Acquired, run.Holds[1].Fence = 12, 15, 9
			run.Register = nil
			return run
		}, "fence went backwards in real time"},
		{"holds out of fence order, no overlap", func() LockRun {
			// c, queued with a and b, gets the lock last with the lowest
			// fence: it was ahead of them while they held.
			run := cleanLocks()
			run.Holds[2].Fence = 9
			run.Register = nil
			return run
		}, "holds out of fence order"},
		{"register fence goes backwards", func() LockRun {
			// A read at a higher revision sees a's value after b's.
			run := cleanLocks()
			run.Register = append(run.Register, regGet(2, fencedValue(10, 0, 0, 1), 45, 46, 19))
			return run
		}, "the fenced register went from fence 12"},
		{"register takes a stale holder's write", func() LockRun {
			// The lost holder's write applied after its successor's.
			run := lostLocks()
			a := run.Holds[0]
			vb := fencedValue(11, 1, 0, 2)
			run.Register[4] = regCAS(a, 3, vb, 37, 38, 17)
			run.Register[5] = at(final(regKey, fencedValue(10, 0, 0, 3), 60), 20)
			return run
		}, "took a write of lost holder"},
		{"lost session, but not its last hold", func() LockRun {
			// The same session held again later: its lease outlived
			// the overlapping hold, which is then no lost one.
			run := lostLocks()
			run.Holds = append(run.Holds, holdOf(0, 1, 0xa, 12, 45, 50, 55, HoldUnlocked))
			return run
		}, "two holders at once, the earlier (lower fence) not lost"},
		{"register value with a fence not its hold's", func() LockRun {
			run := cleanLocks()
			run.Register[5].Value = fencedValue(13, 2, 0, 3)
			run.Register[6].Out = run.Register[5].Value
			return run
		}, "its hold's is 12"},
		{"register not linearizable", func() LockRun {
			run := cleanLocks()
			run.Register[4].Out = fencedValue(10, 0, 0, 1) // stale read of a's value, same revision order kept
			run.Register[4].Revision = 16
			return run
		}, "fenced register: key \"fenced\": not linearizable"},
	} {
		r := CheckLocks(tc.run())
		found := false
		for _, v := range r.Violations {
			if strings.Contains(v, tc.want) {
				found = true
			}
		}
		if !found {
			t.Errorf("%s: want a violation containing %q, got:\n%s", tc.name, tc.want, strings.Join(r.Violations, "\n"))
		}
	}
}

func TestFencedValueRoundTrip(t *testing.T) {
	v := fencedValue(1234, 3, 7, 99)
	f, c, h, ok := parseFenced(v)
	if !ok || f != 1234 || c != 3 || h != 7 {
		t.Fatalf("parseFenced(%q) = %d, %d, %d, %v", v, f, c, h, ok)
	}
	for _, bad := range []string{"", "c0.1", "f1.l2.h3", "f1.l2.h3.n4x"} {
		if _, _, _, ok := parseFenced(bad); ok {
			t.Errorf("parseFenced(%q) ok", bad)
		}
	}
}
