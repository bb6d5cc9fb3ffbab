package sim

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/flotilla-kv/flotilla/internal/syskeys"
	"github.com/flotilla-kv/flotilla/lease"
	"github.com/flotilla-kv/flotilla/multiraft"
	"github.com/flotilla-kv/flotilla/placement/tso"
	"github.com/flotilla-kv/flotilla/shard"
)

// Leases (shard backend, engine and fleet runs). Every shardnode runs the
// real lease.Lessor, and reads of leased keys go through the real
// lease.Checker, as cmd/shardnode and rpc do; the simulator supplies what
// they run on: a lease.Runtime whose goroutines are actors (actors.go) on
// the virtual clock, a Store and Engine over the node's engine that stamp
// writes with the run's oracle and wait on the engine's futures by
// parking, a Fleet that reaches the leader of any shard in the process
// (a call across a partition, or to a node that is down, fails at once),
// and the run's oracle. Lease clients (leaseclient.go) grant, attach,
// keep alive, let lapse, revoke and read; leasecheck.go checks what they
// saw against what the storage holds.
//
// Time: the lessors count in milliseconds of the oracle's scale, a step
// being one millisecond of lease time at the nominal rate (the oracle's
// physical clock is the step), and their clocks run at the node's rate
// (skew.go), so the oracle runs within the factor of two lease/doc.go
// assumes. TTLs are counted in units of leaseTTLUnit; the lessor looks
// at its leases every leaseInterval and checkpoints every
// leaseCheckpoint (or a quarter of the TTL). An election timeout is 10
// to 20 ticks of 2 steps.
const (
	leaseStep       = time.Millisecond
	leaseTTLUnit    = 10 * time.Millisecond
	leaseInterval   = 5 * time.Millisecond
	leaseCheckpoint = 40 * time.Millisecond
	leaseMinTTL     = 20 * time.Millisecond
)

// leaseKeysStart is where the leased keys (leasedKey) and, above them,
// the system span (lease records and index keys) begin: the watch
// sessions stay below it (their checks know only the clients' writes).
var leaseKeysStart = []byte{0xfe}

// leaseHomeGroup is the group of engine runs that owns the leased keys
// and the system span (fleet runs: placement's shards cover them).
const leaseHomeGroup multiraft.GroupID = 9000

// leasedKeys is how many leased keys each lease client writes.
const leasedKeys = 3

// leasedKey is lease client c's i-th key.
func leasedKey(c, i int) string {
	return fmt.Sprintf("\xfeL%02d/%d", c, i)
}

// leaseStepsOf converts a lease duration to steps, rounding up.
func leaseStepsOf(d time.Duration) int {
	return int((d + leaseStep - 1) / leaseStep)
}

// leaseRuntime is the lease.Runtime of one node's lessor: its goroutines
// are actors of the node's process, its clock the virtual one at the
// lease scale.
type leaseRuntime struct {
	as   *actors
	proc *node
}

func (r leaseRuntime) Go(name string, f func()) { r.as.spawn(r.proc, name, f) }

func (r leaseRuntime) Sleep(ctx context.Context, d time.Duration) error {
	as := r.as
	at := as.s.step + max(1, leaseStepsOf(d))
	as.park(func() bool { return as.s.step >= at || ctx.Err() != nil })
	if as.s.step < at {
		return ctx.Err()
	}
	return nil
}

func (r leaseRuntime) WithTimeout(ctx context.Context, d time.Duration) (context.Context, context.CancelFunc) {
	as := r.as
	c, cancel := context.WithCancelCause(ctx)
	t := &vtimer{at: as.s.step + max(1, leaseStepsOf(d)), cancel: cancel}
	as.timers = append(as.timers, t)
	return c, func() {
		t.dead = true
		cancel(context.Canceled)
	}
}

func (r leaseRuntime) WaitClosed(ctx context.Context, ch <-chan struct{}) error {
	closed := func() bool {
		select {
		case <-ch:
			return true
		default:
			return false
		}
	}
	r.as.park(func() bool { return closed() || ctx.Err() != nil })
	if closed() {
		return nil
	}
	return ctx.Err()
}

// simOracle is the run's oracle as a shard.Oracle.
type simOracle struct{ b *shardBackend }

func (o simOracle) Next(context.Context, int) (tso.Timestamp, error) {
	return tso.Timestamp(o.b.nextRevision()), nil
}

// nodeLeases is a node's lease service for one incarnation.
type nodeLeases struct {
	ls      *lease.Lessor
	checker *lease.Checker
}

// startLeases starts n's lessor (a new incarnation of n).
func (s *simulation) startLeases(n *node) {
	if s.leases == nil || n.store == nil || n.pl != nil {
		return
	}
	rt := leaseRuntime{as: s.actors, proc: n}
	lst := leaseStore{n: n}
	fl := leaseFleet{s: s, from: n}
	or := simOracle{b: s.sm.(*shardBackend)}
	inc := n.incarnation
	cfg := lease.Config{
		Interval: leaseInterval, CheckpointInterval: leaseCheckpoint, MinTTL: leaseMinTTL, TTLUnit: leaseTTLUnit,
		Now:     func() time.Time { return s.leaseNow(n) },
		Logger:  traceLogger(s, fmt.Sprintf("lessor n%d", n.id)),
		Runtime: rt,
	}
	n.leases = &nodeLeases{ls: lease.New(cfg, lst, lst, fl, or), checker: lease.NewChecker(fl, or)}
	ls := n.leases.ls
	s.actors.spawn(n, fmt.Sprintf("lessor n%d.%d", n.id, inc), ls.Run)
}

// leaseNow is n's lessor clock: it runs at n's rate, as its engine's
// ticks do (skew.go), and on under the planted clock bugs.
func (s *simulation) leaseNow(n *node) time.Time {
	return epoch.Add(time.Duration(n.leaseClock) * time.Microsecond)
}

// tickLeaseClocks advances every node's lessor clock by one step at its
// rate (microseconds per step: the rate in permille of a millisecond).
func (s *simulation) tickLeaseClocks() {
	if s.leases == nil {
		return
	}
	for i, n := range s.nodes {
		rate := int64(s.prof.tickRates[i])
		switch s.cfg.bug {
		case bugLeaseClockSlow:
			rate /= 3
		case bugLeaseClockFast:
			rate *= 5
		}
		n.leaseClock += rate
	}
}

// errLeaseUnreachable: the Fleet found no live leader it can reach.
var errLeaseUnreachable = errors.New("sim: no reachable leader")

// leaseStore is lease.Store and lease.Engine over node n's engine and
// store, for n's lessor (and for calls other nodes' lessors and the
// lease clients make of n). Every wait parks the calling actor.
type leaseStore struct{ n *node }

func (st leaseStore) live() (*node, error) {
	if !st.n.up() || st.n.store == nil {
		return nil, fmt.Errorf("%w: n%d is down", multiraft.ErrStopped, st.n.id)
	}
	return st.n, nil
}

func (st leaseStore) Descriptor(id shard.ShardID) (shard.Descriptor, error) {
	n, err := st.live()
	if err != nil {
		return shard.Descriptor{}, err
	}
	return n.store.Descriptor(id)
}

func (st leaseStore) DescriptorsOverlapping(start, end []byte) []shard.Descriptor {
	if !st.n.up() {
		return nil
	}
	return st.n.store.DescriptorsOverlapping(start, end)
}

// Execute stamps a write with the run's oracle (restamping a write
// refused as stale), proposes it and waits for it to apply.
func (st leaseStore) Execute(ctx context.Context, id shard.ShardID, cmd *shard.Command) (*shard.Result, error) {
	s := st.n.s
	for attempt := 0; ; attempt++ {
		n, err := st.live()
		if err != nil {
			return nil, err
		}
		if err := n.e.CheckLeader(id); err != nil {
			return nil, err
		}
		c := *cmd
		if c.Kind != shard.KindSplit {
			c.Revision = s.sm.(*shardBackend).nextRevision()
		}
		f := n.e.ProposeFuture(id, c.AppendEncoded(nil))
		v, err := s.actors.wait(ctx, f)
		if err != nil {
			return nil, err
		}
		switch r := v.(type) {
		case *shard.Result:
			return r, nil
		case error:
			if errors.Is(r, shard.ErrStaleRevision) && attempt < 5 {
				s.stats.Restamped++
				continue
			}
			return nil, r
		}
		return nil, fmt.Errorf("sim: unexpected result %T", v)
	}
}

// barrier waits for a read barrier of group id in mode on n.
func (st leaseStore) barrier(ctx context.Context, id shard.ShardID, mode multiraft.ReadMode) error {
	n, err := st.live()
	if err != nil {
		return err
	}
	_, err = n.s.actors.wait(ctx, n.e.ReadFuture(id, mode))
	return err
}

func (st leaseStore) Scan(ctx context.Context, id shard.ShardID, epoch shard.Epoch, start, end []byte, limit int, mode multiraft.ReadMode) ([]shard.KeyValue, bool, uint64, error) {
	if err := st.barrier(ctx, id, mode); err != nil {
		return nil, false, 0, err
	}
	n, err := st.live()
	if err != nil {
		return nil, false, 0, err
	}
	rev := storedRevision(n.db, id)
	kvs, more, err := n.store.ScanAt(ctx, id, epoch, start, end, limit, rev)
	return kvs, more, rev, err
}

// GetAt resolves id past rev on this replica first if it has not (a
// Resolve stamped by the oracle, which is past every revision handed
// out), so that the store's GetAt never resolves (it would wait off the
// simulator).
func (st leaseStore) GetAt(ctx context.Context, id shard.ShardID, epoch shard.Epoch, key []byte, rev uint64) (shard.KeyValue, bool, error) {
	n, err := st.live()
	if err != nil {
		return shard.KeyValue{}, false, err
	}
	if storedRevision(n.db, id) < rev {
		if _, err := st.Execute(ctx, id, &shard.Command{Kind: shard.KindResolve}); err != nil {
			return shard.KeyValue{}, false, err
		}
		if n, err = st.live(); err != nil {
			return shard.KeyValue{}, false, err
		}
		if got := storedRevision(n.db, id); got < rev {
			return shard.KeyValue{}, false, fmt.Errorf("%w: g%d resolved to %d, below %d", multiraft.ErrProposalDropped, id, got, rev)
		}
	}
	return n.store.GetAt(ctx, id, epoch, key, rev)
}

func (st leaseStore) Summary(id multiraft.GroupID) (multiraft.GroupSummary, bool) {
	if !st.n.up() {
		return multiraft.GroupSummary{}, false
	}
	return st.n.e.Summary(id)
}

func (st leaseStore) CheckLeader(id multiraft.GroupID) error {
	n, err := st.live()
	if err != nil {
		return err
	}
	return n.e.CheckLeader(id)
}

func (st leaseStore) LeaseHeld(id multiraft.GroupID) bool {
	return st.n.up() && st.n.e.LeaseHeld(id)
}

func (st leaseStore) ReadBarrier(ctx context.Context, id multiraft.GroupID, mode multiraft.ReadMode) error {
	return st.barrier(ctx, id, mode)
}

// leaseFleet is lease.Fleet for node from (nil: a lease client, which
// no partition cuts off): it routes each call to the leader of the shard
// owning the key, as the node's router would, and fails at once if that
// leader is down or cut off from the caller.
type leaseFleet struct {
	s    *simulation
	from *node
}

// route returns the shard owning key (the newest descriptor the live
// nodes hold) and its leader, if one is up and reachable.
func (f leaseFleet) route(key []byte) (shard.ShardID, *node, error) {
	s := f.s
	var best *shard.Descriptor
	for _, n := range s.nodes {
		if !n.up() || n.store == nil {
			continue
		}
		for _, d := range n.store.Descriptors() {
			if d.ContainsKey(key) && (best == nil || newerEpoch(d.Epoch, best.Epoch)) {
				best = &d
			}
		}
	}
	if best == nil {
		return 0, nil, fmt.Errorf("%w: no live shard owns %q", errLeaseUnreachable, key)
	}
	for _, n := range s.nodes {
		if !n.up() || n.store == nil || n.e.CheckLeader(best.ShardID) != nil {
			continue
		}
		if f.from != nil && (!f.from.up() || s.net.isBlocked(f.from.id, n.id) || s.net.isBlocked(n.id, f.from.id)) {
			continue
		}
		return best.ShardID, n, nil
	}
	return best.ShardID, nil, fmt.Errorf("%w: shard %d", errLeaseUnreachable, best.ShardID)
}

// retry runs call on the current route of key until it succeeds, fails
// for good or ctx ends; a refusal (no leader, not leader, wrong shard)
// is retried after a few steps.
func (f leaseFleet) retry(ctx context.Context, key []byte, call func(id shard.ShardID, to *node) error) error {
	for attempt := 0; ; attempt++ {
		id, to, err := f.route(key)
		if err == nil {
			err = call(id, to)
			if err == nil || !retriable(err) {
				return err
			}
		}
		if attempt == 8 {
			return err
		}
		if werr := (leaseRuntime{as: f.s.actors}).Sleep(ctx, 5*leaseStep); werr != nil {
			return errors.Join(err, werr)
		}
	}
}

// retriable reports whether err surely means the call did nothing and a
// later one may succeed.
func retriable(err error) bool {
	var nl *multiraft.NotLeaderError
	return errors.As(err, &nl) || errors.Is(err, errLeaseUnreachable) || errors.Is(err, shard.ErrKeyNotInShard) ||
		errors.Is(err, shard.ErrEpochNotMatch) || errors.Is(err, lease.ErrNotReady) || errors.Is(err, multiraft.ErrGroupNotFound)
}

func (f leaseFleet) Put(ctx context.Context, key []byte) error {
	return f.retry(ctx, key, func(id shard.ShardID, to *node) error {
		_, err := leaseStore{n: to}.Execute(ctx, id, &shard.Command{Kind: shard.KindPut, Key: key})
		return err
	})
}

func (f leaseFleet) Delete(ctx context.Context, key []byte, id uint64) (bool, error) {
	var found bool
	err := f.retry(ctx, key, func(g shard.ShardID, to *node) error {
		c := &shard.Command{Kind: shard.KindDelete, Key: key, Lease: id}
		if f.s.cfg.bug == bugLeaseDeleteIgnoresLease {
			c.Lease = 0
		}
		res, err := leaseStore{n: to}.Execute(ctx, g, c)
		if err == nil {
			found = res.Found
		}
		return err
	})
	return found, err
}

func (f leaseFleet) Keys(ctx context.Context, start, end []byte) ([][]byte, error) {
	var out [][]byte
	for {
		var kvs []shard.KeyValue
		var dend []byte
		err := f.retry(ctx, start, func(id shard.ShardID, to *node) error {
			d, err := to.store.Descriptor(id)
			if err != nil {
				return err
			}
			s, e := clampSpanTo(start, end, d.Start, d.End)
			kvs, _, _, err = leaseStore{n: to}.Scan(ctx, id, shard.Epoch{}, s, e, 0, multiraft.ReadLinearizable)
			dend = d.End
			return err
		})
		if err != nil {
			return nil, err
		}
		for _, kv := range kvs {
			out = append(out, kv.Key)
		}
		if len(dend) == 0 || len(end) != 0 && bytes.Compare(dend, end) >= 0 {
			break
		}
		start = dend
	}
	if f.s.cfg.bug == bugLeaseRevokeMissesKeys && len(out) > 0 {
		out = out[:len(out)-1]
	}
	return out, nil
}

// clampSpanTo intersects [start, end) with [lo, hi) (empty ends: +inf).
func clampSpanTo(start, end, lo, hi []byte) ([]byte, []byte) {
	if bytes.Compare(start, lo) < 0 {
		start = lo
	}
	if len(hi) > 0 && (len(end) == 0 || bytes.Compare(end, hi) > 0) {
		end = hi
	}
	return start, end
}

func (f leaseFleet) LeaseOf(ctx context.Context, key []byte) (uint64, error) {
	var l uint64
	err := f.retry(ctx, key, func(id shard.ShardID, to *node) error {
		kvs, _, _, err := leaseStore{n: to}.Scan(ctx, id, shard.Epoch{}, key, append(bytes.Clone(key), 0), 1, multiraft.ReadLinearizable)
		if err == nil && len(kvs) == 1 {
			l = kvs[0].Lease
		}
		return err
	})
	return l, err
}

func (f leaseFleet) Status(ctx context.Context, id, rev uint64) (lease.Status, error) {
	var st lease.Status
	err := f.retry(ctx, syskeys.LeaseRecordKey(id), func(home shard.ShardID, to *node) error {
		if to.leases == nil {
			return errLeaseUnreachable
		}
		var err error
		st, err = to.leases.ls.Status(ctx, home, id, rev)
		return err
	})
	return st, err
}

// lessorOf returns the lessor of the leader of lease id's home and the
// home, for a lease client (no partition cuts clients off).
func (s *simulation) lessorOf(id uint64) (shard.ShardID, *node, error) {
	home, to, err := leaseFleet{s: s}.route(syskeys.LeaseRecordKey(id))
	if err != nil {
		return 0, nil, err
	}
	if to.leases == nil {
		return 0, nil, errLeaseUnreachable
	}
	return home, to, nil
}
