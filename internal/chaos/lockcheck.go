package chaos

import (
	"cmp"
	"fmt"
	"slices"
)

// This file is the mutual-exclusion check: the lock clients' holds of a
// cycle's Mutex, and their writes to the fenced register, against each
// other (see "The lock clients" in doc.go).

// How a hold ended (LockHold.End).
const (
	// HoldUnlocked: the client stopped acting, then Unlock succeeded.
	HoldUnlocked = "unlocked"
	// HoldUnlockFailed: the client stopped acting, then Unlock failed
	// (the session was closed after it, which releases the lock).
	HoldUnlockFailed = "unlock-failed"
	// HoldLost: the session's Done closed while the client held the lock;
	// it stopped acting when it saw it.
	HoldLost = "lost"
	// HoldFenced: the fenced register held a higher fence than the
	// hold's: the client refused to write and stopped acting, then
	// unlocked.
	HoldFenced = "fenced"
)

// LockHold is one acquisition of a cycle's Mutex by a lock client, as the
// client saw it. Times are on the history's clock.
type LockHold struct {
	Client int
	// Hold counts the client's acquisitions in the cycle, from 0.
	Hold  int
	Lease uint64 // the session's lease
	Fence uint64 // Mutex.Revision: the holder key's CreateRevision
	// Call is when Lock was called, Acquired when it returned, Released
	// when the client stopped acting under the lock (before it called
	// Unlock, or when it saw its session end or a higher fence).
	Call, Acquired, Released int64
	End                      string
}

func (h LockHold) String() string {
	return fmt.Sprintf("l%d.h%d [%.3fs lock, %.3fs acquired, %.3fs released] lease=%x fence=%d %s",
		h.Client, h.Hold, float64(h.Call)/1e9, float64(h.Acquired)/1e9, float64(h.Released)/1e9, h.Lease, h.Fence, h.End)
}

// LockSession is one session of a lock client. Lost: its lease ended
// without the harness ending it: its Done closed before the harness
// closed it, or the lease was not found when the harness went to close it.
type LockSession struct {
	Client int
	Lease  uint64
	Lost   bool
	How    string // how it ended, for the record
}

// LockRun is what a cycle's lock clients recorded: their holds, their
// sessions, and every operation on the fenced register (Op.Client is the
// lock client; values are fencedValue's; final reads included). The
// caller owns the slices.
type LockRun struct {
	Holds    []LockHold
	Sessions []LockSession
	Register []Op
}

// fencedValue is the value a hold writes to the fenced register: the
// fence first, then who wrote it; unique in a cycle.
func fencedValue(fence uint64, client, hold, seq int) string {
	return fmt.Sprintf("f%d.l%d.h%d.n%d", fence, client, hold, seq)
}

// parseFenced returns the fence and writer of a register value.
func parseFenced(v string) (fence uint64, client, hold int, ok bool) {
	var seq int
	n, err := fmt.Sscanf(v, "f%d.l%d.h%d.n%d", &fence, &client, &hold, &seq)
	return fence, client, hold, err == nil && n == 4 && fencedValue(fence, client, hold, seq) == v
}

// LockReport is the outcome of CheckLocks.
type LockReport struct {
	Acquisitions int // holds
	Sessions     int
	LostSessions int
	Writes       int // acknowledged swaps of the fenced register
	Fenced       int // holds that ended refusing a higher fence
	Violations   []string
}

// holdID names a hold: a client and its count.
type holdID struct{ client, hold int }

// registerObs is one acknowledged sight of the fenced register: the
// value it held at a revision.
type registerObs struct {
	rev   uint64
	value string
	write bool // a swap at rev, not a read
	op    Op
}

// CheckLocks checks a cycle's lock record and returns what it found. Its
// own violations are:
//
//   - Unique fences: no two holds have the same fence.
//   - Fences in real-time order: a hold whose Lock was called after
//     another's Lock returned has the higher fence.
//   - The fenced register in revision order: every acknowledged sight of
//     it (a read's value at the read's revision, a swap's value at the
//     swap's revision, the value a failed CAS found at its revision) is a
//     value some hold wrote, carrying that hold's fence; and from one
//     sight to the next, by revision, the fence never decreases and the
//     writer changes only to a hold with a strictly higher fence. So the
//     fences of successive holds strictly increase in the order the
//     register saw them, and once it saw a fence, no write of a lower one
//     took effect (nor an older write of unknown outcome).
//   - Exclusion and hand-over in fence order: of any two holds, the one
//     with the lower fence (the earlier holder) must have been released
//     before the other was acquired (its Released at or before the
//     other's Acquired), unless it was lost: its session is lost (see
//     LockSession) and it is the last hold of that session (a later hold
//     of the same session proves the lease outlived the earlier one). So
//     two holds whose [Acquired, Released] intervals overlap are a
//     violation unless the lower fence's was lost, and so is a hold that
//     began after a higher fence's hold ended (a lost holder may be told
//     of its hold late). When the exception applies, the register must
//     not show a write of the earlier holder at a revision above the
//     first sight of the later holder's writes: it refused the stale
//     holder's writes from then on.
//
// The register's operations are also checked as one key by Check
// (linearizability, and acknowledged writes against the final read);
// its violations and lost writes are reported here too. Safe for
// concurrent use on distinct runs.
func CheckLocks(run LockRun) LockReport {
	r := LockReport{Acquisitions: len(run.Holds), Sessions: len(run.Sessions)}
	var out []string
	failf := func(format string, args ...any) { out = append(out, fmt.Sprintf(format, args...)) }

	lost := map[uint64]bool{}
	for _, s := range run.Sessions {
		if s.Lost {
			r.LostSessions++
			lost[s.Lease] = true
		}
	}
	holds := map[holdID]LockHold{}
	lastOfLease := map[uint64]LockHold{}
	byFence := map[uint64]LockHold{}
	for _, h := range run.Holds {
		holds[holdID{h.Client, h.Hold}] = h
		if l, ok := lastOfLease[h.Lease]; !ok || h.Acquired > l.Acquired {
			lastOfLease[h.Lease] = h
		}
		if h.End == HoldFenced {
			r.Fenced++
		}
		if o, ok := byFence[h.Fence]; ok {
			failf("lock: two holds have fence %d: %s and %s", h.Fence, o, h)
		}
		byFence[h.Fence] = h
	}
	wasLost := func(h LockHold) bool {
		return lost[h.Lease] && lastOfLease[h.Lease].Hold == h.Hold && lastOfLease[h.Lease].Client == h.Client
	}

	// Fences in real-time order.
	for _, a := range run.Holds {
		for _, b := range run.Holds {
			if a.Acquired < b.Call && a.Fence >= b.Fence {
				failf("lock: fence went backwards in real time: %s returned before %s was called", a, b)
			}
		}
	}

	// The fenced register in revision order.
	var obs []registerObs
	for _, o := range run.Register {
		if o.Outcome != OK || o.Revision == 0 {
			continue // no effect, or no revision to place it at
		}
		switch {
		case o.Kind == OpCAS && o.Swapped:
			r.Writes++
			obs = append(obs, registerObs{rev: o.Revision, value: o.Value, write: true, op: o})
		case o.Kind == OpCAS && o.Current != "":
			obs = append(obs, registerObs{rev: o.Revision, value: o.Current, op: o})
		case o.Kind == OpGet && o.Out != "":
			obs = append(obs, registerObs{rev: o.Revision, value: o.Out, op: o})
		}
	}
	slices.SortStableFunc(obs, func(a, b registerObs) int {
		if c := cmp.Compare(a.rev, b.rev); c != 0 {
			return c
		}
		switch {
		case a.write && !b.write:
			return -1
		case b.write && !a.write:
			return 1
		}
		return 0
	})
	first, last := map[holdID]uint64{}, map[holdID]uint64{}
	var prev *registerObs
	var prevID holdID
	var prevFence uint64
	for i := range obs {
		ob := &obs[i]
		fence, client, hold, ok := parseFenced(ob.value)
		id := holdID{client, hold}
		h, known := holds[id]
		switch {
		case !ok:
			failf("lock: register value %q at revision %d is not a fenced value: %s", ob.value, ob.rev, ob.op)
			continue
		case !known:
			failf("lock: register value %q at revision %d names no hold: %s", ob.value, ob.rev, ob.op)
			continue
		case h.Fence != fence:
			failf("lock: register value %q at revision %d carries fence %d, its hold's is %d: %s", ob.value, ob.rev, fence, h.Fence, ob.op)
			continue
		}
		if _, ok := first[id]; !ok {
			first[id] = ob.rev
		}
		last[id] = ob.rev
		if prev != nil && (fence < prevFence || (fence == prevFence && id != prevID)) {
			failf("lock: the fenced register went from fence %d (%q, revision %d: %s) to fence %d (%q, revision %d: %s)",
				prevFence, prev.value, prev.rev, prev.op, fence, ob.value, ob.rev, ob.op)
		}
		prev, prevID, prevFence = ob, id, fence
	}

	// Exclusion, and holds in fence order. A lost holder whose write the
	// register took after successors' is reported once, with the first
	// such successor.
	type overwrite struct {
		l  LockHold
		lf uint64
	}
	overwrites := map[holdID]overwrite{}
	for i, a := range run.Holds {
		for _, b := range run.Holds[i+1:] {
			e, l := a, b
			if b.Fence < a.Fence {
				e, l = b, a
			}
			if e.Fence == l.Fence || e.Released <= l.Acquired {
				continue
			}
			switch {
			case wasLost(e):
			case e.Acquired < l.Released:
				failf("lock: two holders at once, the earlier (lower fence) not lost: %s and %s", e, l)
				continue
			default:
				failf("lock: holds out of fence order, the lower fence's not lost: %s began after %s ended", e, l)
				continue
			}
			ei, li := holdID{e.Client, e.Hold}, holdID{l.Client, l.Hold}
			if lf, ok := first[li]; ok && last[ei] > lf {
				if o, ok := overwrites[ei]; !ok || lf < o.lf {
					overwrites[ei] = overwrite{l, lf}
				}
			}
		}
	}
	for _, e := range run.Holds {
		ei := holdID{e.Client, e.Hold}
		if o, ok := overwrites[ei]; ok {
			failf("lock: the register took a write of lost holder %s at revision %d, after its successor %s wrote at revision %d",
				e, last[ei], o.l, o.lf)
		}
	}

	reg := Check(run.Register, "", "lock")
	for _, v := range reg.Violations {
		failf("lock: fenced register: %s", v)
	}
	for _, l := range reg.Lost {
		failf("lock: fenced register: %s", l)
	}
	r.Violations = out
	return r
}
