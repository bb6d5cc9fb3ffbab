package sim

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/flotilla-kv/flotilla/lease"
	"github.com/flotilla-kv/flotilla/multiraft"
	"github.com/flotilla-kv/flotilla/shard"
)

// Lease clients: leaseClients actors of the simulator's own (no process:
// no crash or partition reaches them; the nodes they call may be down or
// lead nothing). Each runs cycles: grant a lease with a TTL of
// leaseTTLMin to leaseTTLMax units at the home's leader, attach some of
// its own keys (Attach, then a put carrying the promise, at the key's
// leader), then one of: keep the lease alive (a keepalive every quarter
// TTL for one to three TTLs, then let it lapse), let it lapse, or revoke
// it after a while; it reads its keys now and then, through the read
// fence of the node that serves the read. The next cycle starts at once,
// so a key is often re-attached to a new lease while its old lease still
// runs (the old lease's end must leave it alone). Every call and its
// outcome is recorded for leasecheck.go.
const (
	leaseClients = 4
	leaseTTLMin  = 6
	leaseTTLMax  = 15
	// leaseCallTimeout bounds each call of a lease client.
	leaseCallTimeout = 200 * leaseStep
)

// leaseMode is what a client does with a lease once its keys are attached.
type leaseMode int

const (
	leaseKeep leaseMode = iota
	leaseLapse
	leaseRevoke
)

func (m leaseMode) String() string {
	return [...]string{"keep", "lapse", "revoke"}[m]
}

// simLease is one lease as its client saw it. Steps are the simulator's;
// revs are the oracle's value (the last revision handed out) then.
type simLease struct {
	id     uint64
	client int
	ttl    int // units of leaseTTLUnit
	mode   leaseMode
	// grantCall, grantRet: the grant's call and return; granted: it
	// answered success (otherwise it may or may not exist).
	grantCall, grantRet int
	granted, maybe      bool
	kas                 []leaseCall
	// revoke: the revoke attempts; revokedRev the oracle's value when an
	// acknowledged one returned (0: none).
	revokes    []leaseCall
	revokedRev uint64
	revokedAt  int
	// keys attached by acknowledged or ambiguous puts.
	keys []string
	// Tracking while the lease may live (leasecheck.go): the node that
	// served its home at the last step, the term it led the home in and
	// the home's descriptor, how often any of them changed (homeMoves:
	// the home or its range, by a split), how many steps nobody served
	// it.
	server                       *node
	term                         uint64
	home                         shard.Descriptor
	changes, homeMoves, unserved int
	tracked                      bool
}

// leaseCall is one call of a client about a lease.
type leaseCall struct {
	call, ret int
	ok        bool
	notFound  bool
}

// ttlSteps is l's TTL in steps at the nominal rate.
func (l *simLease) ttlSteps() int { return l.ttl * leaseStepsOf(leaseTTLUnit) }

// leaseRead is a read of a leased key by its client.
type leaseRead struct {
	client    int
	key       string
	call, ret int
	// callRev is the oracle's value when the read began.
	callRev uint64
	found   bool
	kv      shard.KeyValue
}

// leasePut is an attaching put of a client.
type leasePut struct {
	key       string
	lease     uint64
	call, ret int
	acked     bool
	rev       uint64
}

// leaseState is the leases of a run: the clients' records and what the
// storage samples found (leasecheck.go).
type leaseState struct {
	s      *simulation
	rng    *rand.Rand
	leases []*simLease
	reads  []leaseRead
	puts   []leasePut
	// versions: every version of every leased key and lease record the
	// samples found, by key and revision.
	versions map[string]map[uint64]sampledVersion
	// ended: the revision at which each lease's record was written
	// ended, from the samples.
	ended map[uint64]uint64
	// drained: the run's end waited for every lease to end.
	drained bool
	stats   leaseStats
}

type leaseStats struct {
	granted, kept, revoked, reads, fenced, deletes int
	// slack: the most steps an end (not revoked) came after its
	// deadline plus the bound's terms other than leaseSlack (noSlack:
	// no lease expired).
	slack int
}

// noSlack is leaseStats.slack before any lease expired.
const noSlack = -1 << 31

func newLeaseState(s *simulation) *leaseState {
	return &leaseState{
		s: s, rng: rand.New(rand.NewPCG(s.cfg.Seed^0x6c65617365, s.cfg.Seed+0x1ea5e)),
		versions: map[string]map[uint64]sampledVersion{}, ended: map[uint64]uint64{},
		stats: leaseStats{slack: noSlack},
	}
}

// startLeaseClients starts the clients' actors.
func (s *simulation) startLeaseClients() {
	if s.leases == nil {
		return
	}
	for c := range leaseClients {
		s.actors.spawn(nil, fmt.Sprintf("lease client %d", c), func() { s.runLeaseClient(c) })
	}
}

// workloadOn reports whether the workload phase still runs.
func (s *simulation) workloadOn() bool { return s.step < s.cfg.Steps }

// leaseSleep parks the running client for steps steps.
func (s *simulation) leaseSleep(steps int) {
	_ = leaseRuntime{as: s.actors}.Sleep(context.Background(), time.Duration(steps)*leaseStep)
}

// callCtx is a context for one call of a client.
func (s *simulation) callCtx() (context.Context, context.CancelFunc) {
	return leaseRuntime{as: s.actors}.WithTimeout(context.Background(), leaseCallTimeout)
}

func (s *simulation) runLeaseClient(c int) {
	st := s.leases
	s.leaseSleep(1 + st.rng.IntN(50))
	for s.workloadOn() {
		s.leaseCycle(c)
	}
}

// leaseCycle runs one lease of client c.
func (s *simulation) leaseCycle(c int) {
	st := s.leases
	l := &simLease{client: c, ttl: leaseTTLMin + st.rng.IntN(leaseTTLMax-leaseTTLMin+1), mode: leaseMode(st.rng.IntN(3))}
	l.id = s.sm.(*shardBackend).nextRevision()
	l.grantCall = s.step
	st.leases = append(st.leases, l)
	err := s.onHome(l.id, func(ctx context.Context, home shard.ShardID, n *node) error {
		_, _, _, _, err := n.leases.ls.Grant(ctx, home, l.id, int64(l.ttl))
		return err
	})
	l.grantRet = s.step
	// A grant refused before it was proposed surely granted nothing;
	// any other failure may have (its record may commit under the next
	// leader).
	l.maybe = err == nil || !retriable(err)
	if err != nil {
		s.tracef("lease %d (c%d): grant: %v", l.id, c, err)
		s.leaseSleep(5 + st.rng.IntN(20))
		return
	}
	l.granted = true
	st.stats.granted++
	s.tracef("lease %d (c%d): granted ttl %d, %s", l.id, c, l.ttl, l.mode)
	for i := range leasedKeys {
		if st.rng.IntN(3) == 0 {
			continue
		}
		s.leasePut(l, leasedKey(c, i))
	}
	end := s.step + l.ttlSteps()*(1+st.rng.IntN(3))
	revokeAt := s.step + st.rng.IntN(l.ttlSteps()/2+1)
	for s.workloadOn() {
		switch l.mode {
		case leaseKeep:
			if s.step >= end {
				return
			}
			s.leaseSleep(l.ttlSteps() / 4)
			s.keepAlive(l)
		case leaseLapse:
			if s.step >= end {
				return
			}
			s.leaseSleep(1 + st.rng.IntN(l.ttlSteps()/2))
		case leaseRevoke:
			if s.step >= revokeAt {
				s.revoke(l)
				return
			}
			s.leaseSleep(1 + revokeAt - s.step)
		}
		if st.rng.IntN(2) == 0 {
			s.leaseRead(c, leasedKey(c, st.rng.IntN(leasedKeys)))
		}
	}
}

// onHome calls f on the leader of lease id's home, retrying refusals
// (no leader, not ready) a few times.
func (s *simulation) onHome(id uint64, f func(ctx context.Context, home shard.ShardID, n *node) error) error {
	ctx, cancel := s.callCtx()
	defer cancel()
	for attempt := 0; ; attempt++ {
		home, n, err := s.lessorOf(id)
		if err == nil {
			err = f(ctx, home, n)
			if err == nil || !retriable(err) {
				return err
			}
		}
		if attempt == 5 || ctx.Err() != nil {
			return err
		}
		s.leaseSleep(5)
	}
}

// leasePut attaches key to l: Attach at the home, then a put carrying
// the promise at the key's leader.
func (s *simulation) leasePut(l *simLease, key string) {
	st := s.leases
	p := leasePut{key: key, lease: l.id, call: s.step}
	var until uint64
	err := s.onHome(l.id, func(ctx context.Context, home shard.ShardID, n *node) error {
		var err error
		until, err = n.leases.ls.Attach(ctx, home, l.id, []byte(key))
		return err
	})
	if err != nil {
		s.tracef("lease %d: attach %q: %v", l.id, key, err)
		return
	}
	ctx, cancel := s.callCtx()
	defer cancel()
	value := fmt.Sprintf("%d@%d", l.id, s.step)
	l.keys = append(l.keys, key)
	err = leaseFleet{s: s}.retry(ctx, []byte(key), func(id shard.ShardID, to *node) error {
		res, err := leaseStore{n: to}.Execute(ctx, id, &shard.Command{Kind: shard.KindPut, Key: []byte(key), Value: []byte(value), Lease: l.id, LeaseUntil: until})
		if err == nil {
			p.acked, p.rev = true, res.Revision
		}
		return err
	})
	p.ret = s.step
	st.puts = append(st.puts, p)
	s.tracef("lease %d: put %q: %v", l.id, key, err)
}

// keepAlive sends one keepalive for l.
func (s *simulation) keepAlive(l *simLease) {
	k := leaseCall{call: s.step}
	err := s.onHome(l.id, func(ctx context.Context, home shard.ShardID, n *node) error {
		_, err := n.leases.ls.KeepAlive(ctx, home, l.id)
		s.tracef("lease %d: keepalive at s%d on n%d: %v", l.id, home, n.id, err)
		return err
	})
	k.ret, k.ok, k.notFound = s.step, err == nil, errors.Is(err, lease.ErrNotFound)
	l.kas = append(l.kas, k)
	if err == nil {
		s.leases.stats.kept++
	}
}

// revoke revokes l.
func (s *simulation) revoke(l *simLease) {
	k := leaseCall{call: s.step}
	err := s.onHome(l.id, func(ctx context.Context, home shard.ShardID, n *node) error {
		_, _, err := n.leases.ls.Revoke(ctx, home, l.id)
		return err
	})
	k.ret, k.ok, k.notFound = s.step, err == nil, errors.Is(err, lease.ErrNotFound)
	l.revokes = append(l.revokes, k)
	if err == nil {
		l.revokedRev, l.revokedAt = s.sm.(*shardBackend).rev, s.step
		s.leases.stats.revoked++
	}
	s.tracef("lease %d: revoke: %v", l.id, err)
}

// leaseRead reads key linearizably at its leader, through that node's
// read fence (as rpc's KV service does: a key whose lease was not alive
// at the read reads as absent), and records what it returned.
func (s *simulation) leaseRead(c int, key string) {
	st := s.leases
	r := leaseRead{client: c, key: key, call: s.step, callRev: s.sm.(*shardBackend).rev}
	ctx, cancel := s.callCtx()
	defer cancel()
	err := leaseFleet{s: s}.retry(ctx, []byte(key), func(id shard.ShardID, to *node) error {
		ls := leaseStore{n: to}
		if err := ls.barrier(ctx, id, multiraft.ReadLinearizable); err != nil {
			return err
		}
		n, err := ls.live()
		if err != nil {
			return err
		}
		checker := n.leases.checker
		rev := storedRevision(n.db, id)
		kv, found, err := n.store.GetAt(ctx, id, shard.Epoch{}, []byte(key), rev)
		if err != nil {
			return err
		}
		if found && kv.Lease != 0 {
			dead, err := checker.Dead(ctx, []uint64{kv.Lease}, rev, true)
			if err != nil {
				return err
			}
			if dead[kv.Lease] {
				found = false
				st.stats.fenced++
			}
		}
		r.found, r.kv = found, kv
		return nil
	})
	r.ret = s.step
	if err != nil {
		return
	}
	st.stats.reads++
	st.reads = append(st.reads, r)
}
