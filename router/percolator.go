package router

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/flotilla-kv/flotilla/internal/keyfmt"
	pb "github.com/flotilla-kv/flotilla/rpc/flotillapb"
)

// Transactions across shards
//
// Client.Txn starts a transaction; its first read takes a fresh
// revision, its start: its reads (Get, Scan) see the fleet at that
// revision, one consistent snapshot, plus the transaction's own writes,
// which it buffers (Put, Delete). Commit sends them as Percolator with async commit
// (shard/percolator.go has the argument): a prewrite on every shard the
// transaction writes, each locking the keys there and refused if one was
// written after the start (ErrConflict) or is locked by another live
// transaction (ErrConflict too: no waiting); the prewrite of the primary
// key (the first key written, in key order) lists all the others. Once
// every prewrite applied the transaction is committed, at the highest
// prewrite revision, and Commit returns: the commit of the primary
// (which records the outcome) and then of the other shards follows in
// the background (asynccommit.go), and any reader that meets a lock
// first commits it. A transaction of more than 257 keys (or 64 KiB of
// keys) does not list them: its commit point is the commit of the
// primary, which Commit waits for. A transaction whose writes all fall
// on one shard commits in one Raft command instead (a one-phase
// prewrite); if it read nothing, that command carries no start either,
// and the transaction costs what a Batch costs (see blind below).
//
// Isolation: snapshot isolation. Two transactions that write the same
// key never both commit; a transaction that only reads a key does not
// stop another from writing it (write skew is possible) unless it asked
// for Serializable, which also locks every key it read with Get (not the
// gaps a Scan saw: phantoms stay possible) so that a write to one after
// the start fails the commit. A read-only transaction is always
// consistent: one snapshot.
//
// Outcomes: Commit returns the commit revision, ErrConflict (nothing was
// written: start again), or an error that wraps ErrAmbiguous when the
// outcome is unknown (read the keys to know). A prewrite that fails
// leaves the outcome open (its answer may be lost with the lock
// written), so Commit then records the rollback on the primary's shard
// before it returns; if a reader already rolled the transaction
// forward, Commit returns its commit revision, and if that rollback's
// answer is lost too, ErrAmbiguous. Any other error means nothing was
// written. A client that goes away mid-commit leaves locks; the first
// reader or writer that meets one after its TTL (WithLockTTL, default
// 5 s) rolls the transaction forward if every key the primary lists is
// locked (or its primary committed), else back.

// ErrConflict: a transaction could not commit because a key it writes
// (or, with Serializable, read) was written after it started, or is
// locked by another transaction that is still running, or its own locks
// outlived their TTL and a reader rolled it back. Nothing it wrote is
// visible; start a new transaction to try again. The router never
// retries a transaction by itself.
var ErrConflict = errors.New("router: transaction conflict")

// errTxnDone: Txn methods after Commit or Rollback.
var errTxnDone = errors.New("router: transaction already committed or rolled back")

// defaultLockTTL is how long a transaction's locks protect it after its
// start before a reader may roll it back.
const defaultLockTTL = 5 * time.Second

// TxnOption configures a transaction.
type TxnOption func(*txnOptions)

type txnOptions struct {
	ttl          time.Duration
	serializable bool
	// goneAfterAnswer (tests only) drops what Commit leaves to do in the
	// background once it answered, as a client that goes away then would.
	goneAfterAnswer bool
}

// WithLockTTL sets how long after its start a transaction's locks hold
// off readers and writers that meet them; past it, they roll the
// transaction back. A commit that takes longer fails with ErrConflict.
func WithLockTTL(d time.Duration) TxnOption {
	return func(o *txnOptions) { o.ttl = d }
}

// Serializable makes Commit also check the keys the transaction read with
// Get: a write to one after the start fails the commit with ErrConflict.
func Serializable() TxnOption {
	return func(o *txnOptions) { o.serializable = true }
}

// Txn is a transaction across shards (see the notes above). Its methods
// may be called from several goroutines, but a transaction is meant to
// be used by one.
type Txn struct {
	c    *Client
	opts txnOptions

	mu sync.Mutex
	// start is the start revision, 0 until the first read (or Start)
	// fetches it.
	start  uint64
	writes map[string]*pb.Mutation // by key; the latest write of each
	reads  map[string]struct{}     // keys read by Get, with Serializable
	done   bool
}

// Txn starts a transaction. It sends nothing: the first read takes the
// start revision, from an oracle call made then (which started after
// this call did, so the snapshot holds everything committed before the
// transaction began), and a transaction that only writes may never need
// one (see blind).
func (c *Client) Txn(_ context.Context, opts ...TxnOption) (*Txn, error) {
	o := txnOptions{ttl: defaultLockTTL}
	for _, f := range opts {
		f(&o)
	}
	if o.ttl <= 0 {
		return nil, status.Error(codes.InvalidArgument, "router: a transaction's lock TTL must be above zero")
	}
	return &Txn{c: c, opts: o, writes: map[string]*pb.Mutation{}, reads: map[string]struct{}{}}, nil
}

// Start returns the transaction's start revision, at which it reads: the
// one its first read took, or, if no read did yet, one fetched now from
// the oracle within ctx, which its reads then use; an error if that fetch
// failed (nothing is set: the next call or read fetches again). A
// transaction that ended without one (it committed blind, see blind, or
// was rolled back before any read) has none: 0 and no error.
func (t *Txn) Start(ctx context.Context) (uint64, error) {
	t.mu.Lock()
	done, start := t.done, t.start
	t.mu.Unlock()
	if start != 0 || done {
		return start, nil
	}
	return t.startRev(ctx)
}

// startRev returns the start revision, fetching it on the first call.
// Two first calls racing may both fetch one; the first to return wins,
// and either came from an oracle call that started after Txn was called.
func (t *Txn) startRev(ctx context.Context) (uint64, error) {
	t.mu.Lock()
	start := t.start
	t.mu.Unlock()
	if start != 0 {
		return start, nil
	}
	rev, err := t.c.Now(ctx)
	if err != nil {
		return 0, err
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.start == 0 {
		t.start = rev
	}
	return t.start, nil
}

// Get reads key as of the start, or as the transaction wrote it.
func (t *Txn) Get(ctx context.Context, key []byte) (GetResult, error) {
	start, err := t.startRev(ctx)
	if err != nil {
		return GetResult{}, err
	}
	t.mu.Lock()
	if t.done {
		t.mu.Unlock()
		return GetResult{}, errTxnDone
	}
	w, ok := t.writes[string(key)]
	if !ok && t.opts.serializable {
		t.reads[string(key)] = struct{}{}
	}
	t.mu.Unlock()
	if ok {
		res := GetResult{KV: KeyValue{Key: key}, Revision: start}
		if w.GetOp() == pb.Mutation_PUT {
			res.Found, res.KV.Value = true, bytes.Clone(w.GetValue())
		}
		return res, nil
	}
	return t.c.GetAt(ctx, key, start)
}

// Scan reads [start, end) as of the transaction's start, with its own
// writes applied, at most limit pairs (limit <= 0: all). Keys the
// transaction wrote carry no revisions (they have none yet).
func (t *Txn) Scan(ctx context.Context, start, end []byte, limit int) ([]KeyValue, error) {
	at, err := t.startRev(ctx)
	if err != nil {
		return nil, err
	}
	t.mu.Lock()
	if t.done {
		t.mu.Unlock()
		return nil, errTxnDone
	}
	var mine []*pb.Mutation
	deletes := 0
	for _, w := range t.writes {
		if bytes.Compare(w.GetKey(), start) >= 0 && (len(end) == 0 || bytes.Compare(w.GetKey(), end) < 0) {
			mine = append(mine, w)
			if w.GetOp() == pb.Mutation_DELETE {
				deletes++
			}
		}
	}
	t.mu.Unlock()
	fetch := limit
	if limit > 0 {
		fetch += deletes // each delete may hide one stored pair
	}
	res, err := t.c.ScanAt(ctx, start, end, fetch, at)
	if err != nil {
		return nil, err
	}
	slices.SortFunc(mine, func(a, b *pb.Mutation) int { return bytes.Compare(a.GetKey(), b.GetKey()) })
	out := make([]KeyValue, 0, len(res.KVs)+len(mine))
	i := 0
	for _, kv := range res.KVs {
		for ; i < len(mine) && bytes.Compare(mine[i].GetKey(), kv.Key) < 0; i++ {
			if mine[i].GetOp() == pb.Mutation_PUT {
				out = append(out, KeyValue{Key: bytes.Clone(mine[i].GetKey()), Value: bytes.Clone(mine[i].GetValue())})
			}
		}
		if i < len(mine) && bytes.Equal(mine[i].GetKey(), kv.Key) {
			if mine[i].GetOp() == pb.Mutation_PUT {
				out = append(out, KeyValue{Key: kv.Key, Value: bytes.Clone(mine[i].GetValue())})
			}
			i++
			continue
		}
		out = append(out, kv)
	}
	// Buffered puts past the last stored pair count only if the scan was
	// not cut: beyond its last pair, unread stored keys could sort first.
	if limit <= 0 || len(res.KVs) < fetch {
		for ; i < len(mine); i++ {
			if mine[i].GetOp() == pb.Mutation_PUT {
				out = append(out, KeyValue{Key: bytes.Clone(mine[i].GetKey()), Value: bytes.Clone(mine[i].GetValue())})
			}
		}
	}
	if limit > 0 && len(out) > limit {
		out = out[:limit]
	}
	return out, nil
}

// Put sets key to value when the transaction commits.
func (t *Txn) Put(key, value []byte) error {
	return t.buffer(&pb.Mutation{Op: pb.Mutation_PUT, Key: bytes.Clone(key), Value: append([]byte{}, value...)})
}

// Delete deletes key when the transaction commits.
func (t *Txn) Delete(key []byte) error {
	return t.buffer(&pb.Mutation{Op: pb.Mutation_DELETE, Key: bytes.Clone(key)})
}

func (t *Txn) buffer(m *pb.Mutation) error {
	if len(m.GetKey()) == 0 {
		return status.Error(codes.InvalidArgument, "router: a transaction wrote the empty key")
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.done {
		return errTxnDone
	}
	t.writes[string(m.GetKey())] = m
	return nil
}

// Rollback ends the transaction without writing anything. Nothing is
// sent before Commit, so there is nothing to undo.
func (t *Txn) Rollback(context.Context) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.done = true
	return nil
}

// Commit writes the transaction's writes atomically and returns the
// revision they carry (the start, for a transaction that wrote nothing).
// See the notes above for its errors.
//
// A transaction that read nothing before Commit (blind) has no snapshot
// to protect, so it needs no start revision. On one shard it commits as
// a one-phase prewrite without one: the shard writes it at the revision
// it stamps on the command, as it does a Batch, and refuses it only if
// another transaction locks one of its keys (shard/percolator.go,
// applyBlindOnePhase). Snapshot isolation holds as if it started just
// below its commit revision, where no write to its keys can fall: the
// command applies whole, and a lock (a write that may commit at or above
// its prewrite) refuses it. The revision order is the shard's stamp, as
// for any write; and this saves Commit the oracle call a start would
// cost. On several shards the prewrites' locks are named by a start, so
// Commit fetches one then, after every write was buffered: any revision
// taken after the transaction began is as good a start for writes it
// did not read.
func (t *Txn) Commit(ctx context.Context) (uint64, error) {
	t.mu.Lock()
	if t.done {
		t.mu.Unlock()
		return 0, errTxnDone
	}
	t.done = true
	muts := make([]*pb.Mutation, 0, len(t.writes)+len(t.reads))
	for _, w := range t.writes {
		muts = append(muts, w)
	}
	if len(muts) > 0 {
		for k := range t.reads {
			if _, ok := t.writes[k]; !ok {
				muts = append(muts, &pb.Mutation{Op: pb.Mutation_LOCK, Key: []byte(k)})
			}
		}
	}
	start := t.start
	t.mu.Unlock()
	if len(muts) == 0 {
		return t.startRev(ctx) // read-only: one snapshot, nothing to commit
	}
	slices.SortFunc(muts, func(a, b *pb.Mutation) int { return bytes.Compare(a.GetKey(), b.GetKey()) })
	ctx, cancel := t.c.callContext(ctx)
	defer cancel()
	rev, rest, err := t.c.commitTxnUntilAnswer(ctx, &start, t.opts.ttl, muts)
	t.mu.Lock()
	t.start = start
	t.mu.Unlock()
	if rest != nil && !t.opts.goneAfterAnswer {
		t.c.goBackground(rest)
	}
	return rev, err
}

// txnGroup is the mutations of a transaction on one shard.
type txnGroup struct {
	muts []*pb.Mutation
}

func (g *txnGroup) keys() [][]byte {
	out := make([][]byte, len(g.muts))
	for i, m := range g.muts {
		out[i] = m.GetKey()
	}
	return out
}

// errRegroup: a transaction step found its shard split under it; its
// keys are grouped again by the current routes.
var errRegroup = errors.New("router: transaction keys span shards")

// regroupAttempts bounds how often one step is regrouped after splits.
const regroupAttempts = 8

// groupByShard groups muts (sorted by key) by the shard the route cache
// says owns each now.
func (c *Client) groupByShard(ctx context.Context, muts []*pb.Mutation) ([]*txnGroup, error) {
	var groups []*txnGroup
	var cur *route
	for _, m := range muts {
		if cur == nil || !cur.contains(m.GetKey()) {
			r, err := c.locate(ctx, m.GetKey(), nil)
			if err != nil {
				return nil, err
			}
			cur = r
			groups = append(groups, &txnGroup{})
		}
		g := groups[len(groups)-1]
		g.muts = append(g.muts, m)
	}
	return groups, nil
}

// withinRoute refuses with errRegroup keys that r does not hold.
func withinRoute(r *route, keys [][]byte) error {
	for _, k := range keys {
		if !r.contains(k) {
			return fmt.Errorf("%w: %s is not in shard %d", errRegroup, keyfmt.Quote(k), r.id())
		}
	}
	return nil
}

// txnMeta is what every step of one transaction carries.
type txnMeta struct {
	start   uint64
	primary []byte
	ttl     time.Duration
	// async: the transaction commits asynchronously; secondaries are its
	// keys but the primary, which the primary's prewrite lists.
	async       bool
	secondaries [][]byte
}

// commitTxn runs the commit of a transaction (see the notes above). What
// remains to do once the client is answered (the commit of the locks an
// async commit leaves, the rollback of a failed transaction's) runs in
// the background, which Close waits for.
func (c *Client) commitTxn(ctx context.Context, start uint64, ttl time.Duration, muts []*pb.Mutation) (uint64, error) {
	rev, rest, err := c.commitTxnUntilAnswer(ctx, &start, ttl, muts)
	if rest != nil {
		c.goBackground(rest)
	}
	return rev, err
}

// commitTxnUntilAnswer runs the commit of a transaction up to the
// client's answer, and returns what remains to do after it (or nil).
// *start is the transaction's start revision, or 0 for one that read
// nothing (blind, see Txn.Commit): a one-shard commit then goes without,
// and a commit across shards fetches one and sets *start.
func (c *Client) commitTxnUntilAnswer(ctx context.Context, start *uint64, ttl time.Duration, muts []*pb.Mutation) (uint64, func(), error) {
	groups, err := c.groupByShard(ctx, muts)
	if err != nil {
		return 0, nil, err
	}
	m := &txnMeta{start: *start, primary: muts[0].GetKey(), ttl: ttl}
	if len(groups) == 1 {
		rev, err := c.prewrite(ctx, m, groups[0].muts, true)
		if !errors.Is(err, errRegroup) {
			return rev, nil, err
		}
		// The shard split under it: commit in two phases instead.
	}
	if m.start == 0 {
		if m.start, err = c.now(ctx); err != nil {
			return 0, nil, err
		}
		*start = m.start
	}
	if m.async = asyncCommits(muts); m.async {
		for _, mu := range muts[1:] {
			m.secondaries = append(m.secondaries, mu.GetKey())
		}
	}
	revs := make([]uint64, len(groups))
	errs := make([]error, len(groups))
	var wg sync.WaitGroup
	for i, g := range groups {
		wg.Go(func() {
			revs[i], errs[i] = c.prewriteGroup(ctx, m, g.muts)
		})
	}
	wg.Wait()
	commit := uint64(0)
	for i, err := range errs {
		if err == nil {
			commit = max(commit, revs[i])
			continue
		}
		if m.async {
			return c.abortAsync(m, muts, err)
		}
		// Nothing is committed: roll back what was locked (a resolver
		// would, after the TTL), the primary first, so that the
		// transaction can never commit.
		c.rollbackTxn(m, muts)
		return 0, nil, err
	}
	if m.async {
		// Every prewrite applied: the transaction is committed at commit.
		return commit, func() { c.finishCommit(m, commit, muts) }, nil
	}

	// The commit point: the primary's shard.
	if err := c.commitKeys(ctx, m, commit, muts, true); err != nil {
		if errors.Is(err, ErrConflict) {
			c.rollbackTxn(m, muts)
			return 0, nil, err
		}
		// Whether the commit applied is unknown; ask the primary.
		resp, cerr := c.checkTxn(ctx, m.start, m.primary)
		switch {
		case cerr == nil && resp.GetStatus() == pb.CheckTxnResponse_COMMITTED && resp.GetCommit() == commit:
		case cerr == nil && resp.GetStatus() == pb.CheckTxnResponse_ROLLED_BACK:
			c.rollbackTxn(m, muts)
			return 0, nil, fmt.Errorf("%w: rolled back while committing: %w", ErrConflict, err)
		default:
			return 0, nil, fmt.Errorf("%w: committing a transaction: %w", ErrAmbiguous, err)
		}
	}
	// Committed. The other shards' locks are committed now, or by the
	// readers that meet them first.
	_ = c.commitKeys(ctx, m, commit, muts, false)
	return commit, nil, nil
}

// prewriteGroup prewrites muts, which the route cache placed on one
// shard, regrouping them if that shard split. It returns the highest
// prewrite revision.
func (c *Client) prewriteGroup(ctx context.Context, m *txnMeta, muts []*pb.Mutation) (uint64, error) {
	for range regroupAttempts {
		rev, err := c.prewrite(ctx, m, muts, false)
		if !errors.Is(err, errRegroup) {
			return rev, err
		}
		groups, err := c.groupByShard(ctx, muts)
		if err != nil {
			return 0, err
		}
		if len(groups) > 1 {
			top := uint64(0)
			for _, g := range groups {
				rev, err := c.prewriteGroup(ctx, m, g.muts)
				if err != nil {
					return 0, err
				}
				top = max(top, rev)
			}
			return top, nil
		}
	}
	return 0, fmt.Errorf("%w: prewrite: shards kept splitting under it", ErrRetriesExhausted)
}

// prewrite sends one prewrite of muts (one shard's) and returns its
// revision. A one-phase prewrite is an exactly-once write. With async
// commit, the prewrite that holds the primary lists the secondaries.
func (c *Client) prewrite(ctx context.Context, m *txnMeta, muts []*pb.Mutation, onePhase bool) (uint64, error) {
	keys := make([][]byte, len(muts))
	var secondaries [][]byte
	for i, mu := range muts {
		keys[i] = mu.GetKey()
		if m.async && bytes.Equal(keys[i], m.primary) {
			secondaries = m.secondaries
		}
	}
	var resp *pb.PrewriteResponse
	err := c.do(ctx, &call{op: "prewrite", key: keys[0], write: onePhase, conflictOnLock: true,
		send: func(ctx context.Context, kv pb.KVClient, r *route, hdr *pb.RequestHeader) error {
			if err := withinRoute(r, keys); err != nil {
				return err
			}
			var err error
			resp, err = kv.Prewrite(ctx, &pb.PrewriteRequest{Header: hdr, Start: m.start, Primary: m.primary,
				TtlMs: uint64(m.ttl.Milliseconds()), Mutations: muts, OnePhase: onePhase,
				Async: m.async && !onePhase, Secondaries: secondaries})
			return err
		}})
	if err != nil {
		return 0, err
	}
	return resp.GetRevision(), nil
}

// commitKeys commits the locks of muts at commit: with primaryOnly the
// keys on the primary's shard (which records the outcome), else the
// others.
func (c *Client) commitKeys(ctx context.Context, m *txnMeta, commit uint64, muts []*pb.Mutation, primaryOnly bool) error {
	return c.stepKeys(ctx, m.primary, muts, primaryOnly, func(ctx context.Context, kv pb.KVClient, hdr *pb.RequestHeader, keys [][]byte) error {
		_, err := kv.CommitTxn(ctx, &pb.CommitTxnRequest{Header: hdr, Start: m.start, Primary: m.primary, Commit: commit, Keys: keys})
		return err
	})
}

// rollbackKeys removes the locks of muts: with primaryOnly the keys on
// the primary's shard (which records the outcome), else the others.
func (c *Client) rollbackKeys(ctx context.Context, m *txnMeta, muts []*pb.Mutation, primaryOnly bool) error {
	return c.stepKeys(ctx, m.primary, muts, primaryOnly, func(ctx context.Context, kv pb.KVClient, hdr *pb.RequestHeader, keys [][]byte) error {
		_, err := kv.RollbackTxn(ctx, &pb.RollbackTxnRequest{Header: hdr, Start: m.start, Primary: m.primary, Keys: keys})
		return err
	})
}

// rollbackTxn removes the locks of muts, the primary's shard first, with
// a context of its own: a failure leaves them to the resolvers.
func (c *Client) rollbackTxn(m *txnMeta, muts []*pb.Mutation) {
	ctx, cancel := c.callContext(c.base)
	defer cancel()
	if c.rollbackKeys(ctx, m, muts, true) == nil {
		_ = c.rollbackKeys(ctx, m, muts, false)
	}
}

// stepKeys sends send for the keys of muts on the primary's shard (with
// primaryOnly) or for the others, one call per shard, regrouping after
// splits.
func (c *Client) stepKeys(ctx context.Context, primary []byte, muts []*pb.Mutation, primaryOnly bool,
	send func(ctx context.Context, kv pb.KVClient, hdr *pb.RequestHeader, keys [][]byte) error) error {
	for range regroupAttempts {
		pr, err := c.locate(ctx, primary, nil)
		if err != nil {
			return err
		}
		groups, err := c.groupByShard(ctx, muts)
		if err != nil {
			return err
		}
		var firstErr error
		for _, g := range groups {
			gk := g.keys()
			if pr.contains(gk[0]) != primaryOnly {
				continue
			}
			err := c.do(ctx, &call{op: "txn-step", key: gk[0],
				send: func(ctx context.Context, kv pb.KVClient, r *route, hdr *pb.RequestHeader) error {
					if err := withinRoute(r, gk); err != nil {
						return err
					}
					if primaryOnly && !r.contains(primary) {
						return fmt.Errorf("%w: the primary left shard %d", errRegroup, r.id())
					}
					return send(ctx, kv, hdr, gk)
				}})
			if err != nil && firstErr == nil {
				firstErr = err
			}
		}
		if !errors.Is(firstErr, errRegroup) {
			return firstErr
		}
	}
	return fmt.Errorf("%w: shards kept splitting under a transaction", ErrRetriesExhausted)
}

// checkTxn asks the primary's shard for the outcome of the transaction
// started at start (rolling it back if its lock expired or is missing,
// unless it commits asynchronously: then its secondaries decide).
func (c *Client) checkTxn(ctx context.Context, start uint64, primary []byte) (*pb.CheckTxnResponse, error) {
	var resp *pb.CheckTxnResponse
	err := c.do(ctx, &call{op: "check-txn", key: primary,
		send: func(ctx context.Context, kv pb.KVClient, _ *route, hdr *pb.RequestHeader) error {
			var err error
			resp, err = kv.CheckTxn(ctx, &pb.CheckTxnRequest{Header: hdr, Start: start, Primary: primary})
			return err
		}})
	if err != nil {
		return nil, err
	}
	return resp, nil
}

// errLockPending: the lock's transaction is still running.
var errLockPending = errors.New("router: the lock's transaction is still running")

// resolveLock settles the lock l met: it commits the key if the lock's
// transaction committed, removes the lock if it rolled back (or decides
// it first: rolls it back if its TTL ran out, or, for an async commit,
// rolls it forward or back as its secondaries say), or returns
// errLockPending.
func (c *Client) resolveLock(ctx context.Context, l *pb.Locked) error {
	st, commit, err := c.txnOutcome(ctx, l.GetStart(), l.GetPrimary())
	if err != nil {
		return err
	}
	return c.settleLock(ctx, l, st, commit)
}

// settleLock commits l's key at commit (st committed) or removes l (st
// rolled back), or returns errLockPending (any other st).
func (c *Client) settleLock(ctx context.Context, l *pb.Locked, st pb.CheckTxnResponse_Status, commit uint64) error {
	keys := [][]byte{l.GetKey()}
	var send func(ctx context.Context, kv pb.KVClient, hdr *pb.RequestHeader) error
	switch st {
	case pb.CheckTxnResponse_COMMITTED:
		send = func(ctx context.Context, kv pb.KVClient, hdr *pb.RequestHeader) error {
			_, err := kv.CommitTxn(ctx, &pb.CommitTxnRequest{Header: hdr, Start: l.GetStart(), Primary: l.GetPrimary(), Commit: commit, Keys: keys})
			return err
		}
	case pb.CheckTxnResponse_ROLLED_BACK:
		send = func(ctx context.Context, kv pb.KVClient, hdr *pb.RequestHeader) error {
			_, err := kv.RollbackTxn(ctx, &pb.RollbackTxnRequest{Header: hdr, Start: l.GetStart(), Primary: l.GetPrimary(), Keys: keys})
			return err
		}
	default:
		return errLockPending
	}
	// One key, on whichever shard holds it now; on the primary's shard a
	// commit or rollback of another key records nothing.
	return c.do(ctx, &call{op: "resolve-lock", key: keys[0],
		send: func(ctx context.Context, kv pb.KVClient, _ *route, hdr *pb.RequestHeader) error {
			return send(ctx, kv, hdr)
		}})
}

// onLocked is the retry loop's answer to a Locked refusal: resolve the
// lock, then retry. A call with conflictOnLock (a prewrite) that meets a
// live transaction's lock ends with ErrConflict; any other call waits
// for it (backing off).
func (c *Client) onLocked(ctx context.Context, cl *call, l *pb.Locked) verdict {
	err := c.resolveLock(ctx, l)
	switch {
	case err == nil:
		return verdict{reason: RetryLocked, alive: true}
	case errors.Is(err, errLockPending) && cl.conflictOnLock:
		return verdict{final: true, err: fmt.Errorf("%w: %s is locked by the transaction started at %d", ErrConflict, keyfmt.Quote(l.GetKey()), l.GetStart())}
	}
	// A transaction holds its locks for about one round trip to each of
	// its shards: wait briefly.
	return verdict{reason: RetryLocked, wait: true, brief: true, alive: true}
}
