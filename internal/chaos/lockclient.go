package chaos

import (
	"context"
	"errors"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/flotilla-kv/flotilla/router"
	"github.com/flotilla-kv/flotilla/router/concurrency"
)

// Timing of the lock clients.
const (
	// lockSessionTTL is the lock sessions' lease TTL: short, so that a
	// fault that keeps a lease's home from answering keepalives for
	// longer ends the lease (a lost lock) within a cycle.
	lockSessionTTL = 5 * time.Second
	// lockTimeout bounds a Lock, an Unlock, and the harness's look at a
	// lease before it closes the session.
	lockTimeout = 10 * time.Second
	// lockWritesMax is the most fenced writes a hold makes (at least 1).
	lockWritesMax = 3
	// lockCASAttempts bounds the CAS attempts of one fenced write that
	// finds the register changed under it.
	lockCASAttempts = 3
	// lockStallChance is the chance that a hold stalls (at most one hold
	// per cycle), and lockStall how long: longer than the TTL, so its
	// lease ends and the lock passes on while it stalls (the other clients
	// wait for that lease meanwhile).
	lockStallChance = 0.03
	lockStall       = lockSessionTTL + 3*time.Second
)

// lockers are a cycle's lock clients: goroutines, each with a router and
// a concurrency.Session of its own, taking one Mutex in turn and writing
// the fenced register under it, recording every hold, session, and
// register operation (see "The lock clients" in doc.go). Its methods are
// for the test goroutine.
type lockers struct {
	clk      clock
	prefix   string // the Mutex's prefix
	register string // the fenced register's key
	ctx      context.Context
	cancel   context.CancelFunc
	wg       sync.WaitGroup
	reg      History // the register's operations
	valueID  atomic.Uint64
	stalled  atomic.Bool  // a hold of the cycle stalled
	lockErrs atomic.Int64 // Lock calls that returned an error

	mu struct {
		sync.Mutex
		holds    []LockHold
		sessions []LockSession
	}
}

// startLockers starts one lock client per router (the caller keeps
// ownership of the routers and closes them after halt).
func startLockers(clk clock, routers []*router.Client, prefix, register string, seed uint64) *lockers {
	l := &lockers{clk: clk, prefix: prefix, register: register}
	l.ctx, l.cancel = context.WithCancel(context.Background())
	for i, r := range routers {
		l.wg.Add(1)
		go l.run(i, r, rand.New(rand.NewPCG(seed, uint64(i))))
	}
	return l
}

// halt stops the lock clients (a hold in progress finishes its current
// write and unlocks), closes their sessions, reads the register one last
// time through r, and returns the record.
func (l *lockers) halt(r *router.Client) LockRun {
	l.cancel()
	l.wg.Wait()
	ops := append(l.reg.Ops(), finalReads(l.clk, r, []string{l.register}, -1, time.Minute)...)
	l.mu.Lock()
	defer l.mu.Unlock()
	return LockRun{Holds: append([]LockHold(nil), l.mu.holds...), Sessions: append([]LockSession(nil), l.mu.sessions...), Register: ops}
}

// run is one lock client: session, Lock, fenced writes, Unlock, again,
// until halt.
func (l *lockers) run(id int, r *router.Client, rng *rand.Rand) {
	defer l.wg.Done()
	var s *concurrency.Session
	defer func() {
		if s != nil {
			l.retire(id, r, s)
		}
	}()
	for hold := 0; l.ctx.Err() == nil; {
		if s == nil {
			ctx, cancel := context.WithTimeout(l.ctx, lockTimeout)
			var err error
			s, err = concurrency.NewSession(ctx, r, concurrency.SessionOptions{TTL: lockSessionTTL})
			cancel()
			if err != nil {
				s = nil
				l.pace(rng)
				continue
			}
		}
		m := concurrency.NewMutex(s, l.prefix)
		h := LockHold{Client: id, Hold: hold, Lease: s.Lease(), Call: l.clk.now()}
		ctx, cancel := context.WithTimeout(l.ctx, lockTimeout)
		err := m.Lock(ctx)
		cancel()
		if err != nil {
			if l.ctx.Err() == nil {
				l.lockErrs.Add(1) // not the halt's cancellation
			}
			if errors.Is(err, concurrency.ErrSessionExpired) || ended(s) {
				l.retire(id, r, s)
				s = nil
			}
			l.pace(rng)
			continue
		}
		h.Acquired, h.Fence = l.clk.now(), m.Revision()
		hold++
		stall := rng.Float64() < lockStallChance && l.stalled.CompareAndSwap(false, true)
		keep, orphaned := l.hold(&h, s, m, r, rng, stall)
		l.mu.Lock()
		l.mu.holds = append(l.mu.holds, h)
		l.mu.Unlock()
		if !keep {
			if orphaned {
				l.retireStalled(id, s)
			} else {
				l.retire(id, r, s)
			}
			s = nil
		}
		l.pace(rng)
	}
}

// hold acts under the lock: one to lockWritesMax fenced writes, a short
// wait between them, then Unlock. It stops acting when s ends (as the
// concurrency package requires) or the register holds a higher fence.
// It reports whether s may be used again, and whether it orphaned s.
//
// With stall, it models a holder whose process pauses (a GC pause,
// SIGSTOP) after its first write: its keepalives stop (s.Orphan: the
// lease ends after its TTL, and the lock passes on), it does nothing for
// lockStall, and then, like a resumed process, it makes one more fenced
// write before it looks at Done: the write the fence must refuse if the
// next holder has written. The hold then ends as lost (or fenced).
func (l *lockers) hold(h *LockHold, s *concurrency.Session, m *concurrency.Mutex, r *router.Client, rng *rand.Rand, stall bool) (keep, orphaned bool) {
	if stall {
		if l.fencedWrite(h, r) {
			h.End = HoldFenced
		} else {
			s.Orphan()
			orphaned = true
			select {
			case <-l.ctx.Done():
			case <-time.After(lockStall):
			}
			h.End = HoldLost
			if l.fencedWrite(h, r) {
				h.End = HoldFenced
			}
		}
		h.Released = l.clk.now()
		return false, orphaned
	}
	writes := 1 + rng.IntN(lockWritesMax)
	for n := 0; n < writes && l.ctx.Err() == nil; n++ {
		if n > 0 {
			// Holding the lock: the wait is the workload's pace.
			select {
			case <-s.Done():
			case <-time.After(time.Duration(20+rng.IntN(80)) * time.Millisecond):
			}
		}
		if ended(s) {
			h.End = HoldLost
			break
		}
		if l.fencedWrite(h, r) {
			h.End = HoldFenced
			break
		}
	}
	if h.End == "" && ended(s) {
		h.End = HoldLost
	}
	h.Released = l.clk.now()
	if h.End == HoldLost {
		return false, false
	}
	ctx, cancel := context.WithTimeout(context.Background(), lockTimeout)
	defer cancel()
	if err := m.Unlock(ctx); err != nil {
		if h.End == "" {
			h.End = HoldUnlockFailed
		}
		return false, false // its key may remain: closing the session removes it
	}
	if h.End == "" {
		h.End = HoldUnlocked
	}
	return true, false
}

// fencedWrite writes the register under h's fence: it reads it, and
// swaps in a value carrying h's fence from the value it read (or the one
// a failed swap found), unless that value carries a higher fence: then
// it writes nothing and reports true (refused). An error ends the write
// (an unknown swap may still take effect: the check allows it).
func (l *lockers) fencedWrite(h *LockHold, r *router.Client) (refused bool) {
	get := Op{Client: h.Client, Kind: OpGet, Key: l.register}
	runOp(l.clk, r, &get)
	l.reg.Add(get)
	if get.Outcome != OK {
		return false
	}
	cur := get.Out
	for range lockCASAttempts {
		if f, _, _, ok := parseFenced(cur); ok && f > h.Fence {
			return true
		}
		cas := Op{Client: h.Client, Kind: OpCAS, Key: l.register, Expect: cur,
			Value: fencedValue(h.Fence, h.Client, h.Hold, int(l.valueID.Add(1)))}
		runOp(l.clk, r, &cas)
		l.reg.Add(cas)
		if cas.Outcome != OK || cas.Swapped {
			return false
		}
		cur = cas.Current
	}
	return false
}

// retire ends session s: lost if its Done closed before now, or if its
// lease is gone (or has no time left) before the harness revokes it; then
// it closes it and records it.
func (l *lockers) retire(id int, r *router.Client, s *concurrency.Session) {
	rec := LockSession{Client: id, Lease: s.Lease(), How: "closed by the harness"}
	if ended(s) {
		rec.Lost, rec.How = true, "Done closed"
	} else {
		ctx, cancel := context.WithTimeout(context.Background(), lockTimeout)
		ttl, err := r.TimeToLive(ctx, s.Lease(), false)
		cancel()
		switch {
		case errors.Is(err, router.ErrLeaseNotFound):
			rec.Lost, rec.How = true, "lease not found before the harness closed it"
		case err == nil && ttl.TTL <= 0:
			rec.Lost, rec.How = true, "lease had no TTL left before the harness closed it"
		case err != nil:
			rec.How = "closed by the harness (lease not looked at: " + err.Error() + ")"
		}
	}
	_ = s.Close() // a lease that ended is not an error; a failed revoke lets it expire
	l.mu.Lock()
	l.mu.sessions = append(l.mu.sessions, rec)
	l.mu.Unlock()
}

// retireStalled records the session of a stalled hold, orphaned by it,
// as lost, and closes it.
func (l *lockers) retireStalled(id int, s *concurrency.Session) {
	_ = s.Close()
	l.mu.Lock()
	l.mu.sessions = append(l.mu.sessions, LockSession{Client: id, Lease: s.Lease(), Lost: true, How: "keepalives stopped while its holder stalled"})
	l.mu.Unlock()
}

// pace waits a little between a lock client's attempts, or until halt.
func (l *lockers) pace(rng *rand.Rand) {
	select {
	case <-l.ctx.Done():
	case <-time.After(time.Duration(10+rng.IntN(40)) * time.Millisecond):
	}
}

// ended reports whether s's Done has closed.
func ended(s *concurrency.Session) bool {
	select {
	case <-s.Done():
		return true
	default:
		return false
	}
}
