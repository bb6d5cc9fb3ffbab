package router

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/flotilla-kv/flotilla/internal/keyfmt"
	pb "github.com/flotilla-kv/flotilla/rpc/flotillapb"
)

// call is one API call on its way through the retry loop.
type call struct {
	op  string // for error messages: "get", "put", ...
	key []byte // the routing key
	// write marks a write: it takes a lane and carries its ClientID and Seq.
	write bool
	// conflictOnLock ends the call with ErrConflict when it meets the lock
	// of a transaction that is still running, instead of waiting for it.
	conflictOnLock bool
	consistency    Consistency
	// send makes one attempt on route r through kv with header hdr. It may
	// return a local error (not a gRPC status), which ends the call.
	send func(ctx context.Context, kv pb.KVClient, r *route, hdr *pb.RequestHeader) error
}

// needsLeader reports whether the call must reach the shard's leader.
func (cl *call) needsLeader() bool { return cl.write || cl.consistency != Stale }

// attemptState is what one call learns across its attempts.
type attemptState struct {
	// tried holds the nodes that failed this call (unreachable, or answered
	// that they do not serve the shard); they are skipped until every
	// replica has been tried, and then the route is reloaded.
	tried map[nodeID]bool
	// leaderless holds the nodes that answered that they know no leader (an
	// election is under way): they go last, and the route stays.
	leaderless map[nodeID]bool
	// stale is the route the last attempt invalidated, to share its reload.
	stale *route
	// waits counts the retries that waited, for the backoff's exponent.
	waits int
	// maybeApplied: some attempt of this write may have applied.
	maybeApplied bool
	// outageSince is when this call began to find outageShard without a
	// leader it could reach (for a stale read, without a replica it could
	// reach); zero until then, and again once a replica shows it has one.
	outageSince time.Time
	outageShard shardID
}

// The maps of attemptState are made on first use: most calls succeed at
// once and never need them.

func (st *attemptState) markTried(n nodeID) {
	if st.tried == nil {
		st.tried = map[nodeID]bool{}
	}
	st.tried[n] = true
}

func (st *attemptState) markLeaderless(n nodeID) {
	if st.leaderless == nil {
		st.leaderless = map[nodeID]bool{}
	}
	st.leaderless[n] = true
}

// verdict is what the retry loop does after a failed attempt.
type verdict struct {
	// final ends the call with the error.
	final bool
	// err, when set, replaces the attempt's error as the one the call
	// ends with (a typed error, *CompactedError, made from its status).
	err error
	// reason is why it retries; wait makes it back off first, for at least
	// floor.
	reason RetryReason
	wait   bool
	floor  time.Duration
	// election marks a wait for a shard to elect a leader, and brief a
	// wait for a transaction's lock to go: either backs off at most
	// Config.ElectionBackoffMax.
	election, brief bool
	// outage: the attempt found the shard without a leader this call can
	// reach (a replica knows none, or names one that cannot be reached, or
	// the node itself could not be reached or did not answer in time).
	// alive: a node answered as a reachable leader does, or named one.
	// Neither: the attempt tells nothing either way (a stale route, no
	// route, an ambiguous answer). Config.ElectionWait bounds the time
	// from the first outage to the last, unbroken by alive.
	outage, alive bool
}

// do runs cl: route, attempt, classify the failure, retry, until the
// attempt succeeds, the error is final, the retries run out, or ctx ends.
// A write holds one lane for the whole call, so every attempt carries the
// same ClientID and Seq.
func (c *Client) do(ctx context.Context, cl *call) error {
	if c.closed.Load() {
		return ErrClosed
	}
	var (
		l   *lane
		seq uint64
	)
	if cl.write {
		var err error
		if l, err = c.lanes.take(ctx, c.closing); err != nil {
			return fmt.Errorf("router: %s %s: waiting for a write lane: %w", cl.op, keyfmt.Quote(cl.key), err)
		}
		defer c.lanes.put(l)
		seq = l.next()
	}
	var st attemptState
	var lastErr error
	for attempt := 0; ; attempt++ {
		var (
			v     verdict
			shard shardID
		)
		r, err := c.locate(ctx, cl.key, st.stale)
		st.stale = nil
		switch {
		case err != nil:
			// Nothing that could tell where the key lives answered: no
			// point in asking again at once.
			var ue *unreachableError
			v = verdict{reason: RetryNoRoute, wait: true, final: errors.As(err, &ue)}
		default:
			shard = r.id()
			node, addr, ok := c.pickTarget(r, cl, &st)
			if !ok {
				// Every replica failed this call, or none has a known
				// address: start over from a fresh route.
				c.cache.invalidate(r)
				st.stale = r
				clear(st.tried)
				if lastErr == nil {
					lastErr = fmt.Errorf("%w: no reachable replica of shard %d", ErrNoRoute, r.id())
				}
				v = verdict{reason: RetryUnavailable, wait: true, outage: true}
				break
			}
			var sent bool
			sent, err = c.attempt(ctx, cl, r, node, addr, l, seq)
			if err == nil {
				if cl.needsLeader() && node != r.leaderNode {
					// The node served what only a leader serves: it is the
					// leader now. Without this, a route whose leader was
					// cleared (it timed out, say, while paused) would send
					// every later call to the first voter again.
					c.cache.setLeader(r.id(), r.replicaOn(node), node)
				}
				return nil
			}
			v = c.classify(ctx, cl, r, node, err, sent, &st)
		}
		if err != nil {
			lastErr = err
		}
		if v.err != nil {
			lastErr = v.err
		}
		if v.final || ctx.Err() != nil || c.closed.Load() {
			return c.failure(ctx, cl, &st, lastErr, nil)
		}
		outageLeft := time.Duration(-1) // no outage under way, or no bound
		switch {
		case v.outage:
			now := time.Now()
			if st.outageSince.IsZero() || st.outageShard != shard {
				st.outageSince, st.outageShard = now, shard
			}
			if c.cfg.ElectionWait > 0 {
				waited := now.Sub(st.outageSince)
				if waited >= c.cfg.ElectionWait {
					return c.failure(ctx, cl, &st, lastErr, &ShardUnavailableError{ShardID: uint64(shard), For: waited, Stale: !cl.needsLeader()})
				}
				outageLeft = c.cfg.ElectionWait - waited
			}
		case v.alive:
			st.outageSince = time.Time{}
		}
		if attempt >= c.cfg.MaxRetries {
			return c.failure(ctx, cl, &st, lastErr, ErrRetriesExhausted)
		}
		c.stats.retries[v.reason].Add(1)
		if v.wait {
			maxDelay := c.cfg.BackoffMax
			if v.election || v.brief {
				maxDelay = min(maxDelay, c.cfg.ElectionBackoffMax)
			}
			d := backoffDelay(st.waits, c.cfg.BackoffBase, maxDelay, v.floor)
			if outageLeft >= 0 {
				// Try once more as the election wait ends, not after it.
				d = min(d, outageLeft)
			}
			st.waits++
			if err := wait(ctx, c.closing, d); err != nil {
				return c.failure(ctx, cl, &st, lastErr, nil)
			}
		}
	}
}

// failure builds the error that ends cl: the cause (ErrRetriesExhausted,
// a *ShardUnavailableError, ErrClosed or the context's error, when one
// applies), ErrAmbiguous for a write that may have applied, and the last
// attempt's error. The cause comes before the last error, so status.Code
// finds a *ShardUnavailableError's Unavailable first. The key is cut by
// keyfmt.Quote.
func (c *Client) failure(ctx context.Context, cl *call, st *attemptState, last error, cause error) error {
	switch {
	case c.closed.Load():
		cause = ErrClosed
	case ctx.Err() != nil:
		cause = ctx.Err()
	}
	key := keyfmt.Quote(cl.key)
	if cl.write && st.maybeApplied {
		c.stats.ambiguous.Add(1)
		if cause != nil {
			return fmt.Errorf("router: %s %s: %w: %w: %w", cl.op, key, ErrAmbiguous, cause, last)
		}
		return fmt.Errorf("router: %s %s: %w: %w", cl.op, key, ErrAmbiguous, last)
	}
	if cause != nil {
		if last == nil || errors.Is(last, cause) {
			return fmt.Errorf("router: %s %s: %w", cl.op, key, cause)
		}
		return fmt.Errorf("router: %s %s: %w: %w", cl.op, key, cause, last)
	}
	return fmt.Errorf("router: %s %s: %w", cl.op, key, last)
}

// attempt sends cl once to node at addr for route r. It reports whether
// the request may have reached the node (sent.go): false only when it
// surely did not.
func (c *Client) attempt(ctx context.Context, cl *call, r *route, node nodeID, addr string, l *lane, seq uint64) (sent bool, err error) {
	kv, err := c.conns.kvOf(node, addr, c.cfg.Local)
	if err != nil {
		if errors.Is(err, ErrClosed) {
			return false, err
		}
		// An address gRPC cannot use: as good as an unreachable node.
		return false, status.Error(codes.Unavailable, err.Error())
	}
	hdr := &pb.RequestHeader{ShardId: uint64(r.id()), Epoch: r.desc.GetEpoch(), Consistency: cl.consistency.proto()}
	if l != nil {
		hdr.ClientId, hdr.Seq = l.clientID, seq
	}
	if c.cfg.AttemptTimeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.cfg.AttemptTimeout)
		defer cancel()
	}
	rec := &sendRecord{}
	err = cl.send(withSendRecord(ctx, rec), kv, r, hdr)
	return rec.maybeSent(), err
}

// pickTarget chooses the node to send cl to: for a call that needs the
// leader, the cached leader, else the voters in descriptor order; for a
// stale read, the local node's replica (Config.Local) when the route has
// one, else every replica from a random one. Nodes this call found
// unreachable are skipped; nodes whose connection is failing, and then
// nodes that said they know no leader, go last. It returns false when no
// candidate is left (or none has a known address). The local node is
// never failing: no connection carries its calls.
func (c *Client) pickTarget(r *route, cl *call, st *attemptState) (nodeID, string, bool) {
	const (
		healthy = iota
		failing
		leaderless
		unusable
	)
	rank := func(n nodeID) (string, int) {
		if n == 0 || st.tried[n] {
			return "", unusable
		}
		addr, ok := c.addrs.get(n)
		switch {
		case !ok:
			return "", unusable
		case st.leaderless[n]:
			return addr, leaderless
		case !isLocal(c.cfg.Local, n) && c.conns.failing(addr):
			return addr, failing
		}
		return addr, healthy
	}
	if cl.needsLeader() {
		if addr, rk := rank(r.leaderNode); rk == healthy {
			return r.leaderNode, addr, true
		}
	}
	if !cl.needsLeader() && c.cfg.Local != nil {
		if local := nodeID(c.cfg.Local.ID); r.hasNode(local) {
			if addr, rk := rank(local); rk == healthy {
				return local, addr, true
			}
		}
	}
	reps := r.desc.GetReplicas()
	offset := 0
	if !cl.needsLeader() && len(reps) > 0 {
		offset = rand.IntN(len(reps))
	}
	best, bestAddr, bestRank := nodeID(0), "", unusable
	for i := range reps {
		rep := reps[(offset+i)%len(reps)]
		if rep.GetLearner() && cl.needsLeader() {
			continue
		}
		n := nodeID(rep.GetNodeId())
		if addr, rk := rank(n); rk < bestRank {
			best, bestAddr, bestRank = n, addr, rk
		}
	}
	if bestRank == leaderless {
		// Every candidate said it knows no leader: go round them again.
		clear(st.leaderless)
	}
	return best, bestAddr, bestRank != unusable
}

// classify reads a failed attempt's error (the typed details of its gRPC
// status, see common.proto), updates the cache, and tells the loop what to
// do next. sent is whether the request may have reached the node: a write
// that surely did not can not have applied, whatever the error.
func (c *Client) classify(ctx context.Context, cl *call, r *route, node nodeID, err error, sent bool, st *attemptState) verdict {
	s, isStatus := status.FromError(err)
	if !isStatus {
		return verdict{final: true} // a local error (ErrCrossShardTxn, ...)
	}
	if cl.write && sent && mayHaveApplied(s) {
		st.maybeApplied = true
	}
	if ctx.Err() != nil || c.closed.Load() {
		// The call's own deadline or cancellation, or Close, ended it; the
		// cache learns nothing from an attempt cut short.
		return verdict{final: true}
	}
	for _, d := range s.Details() {
		switch d := d.(type) {
		case *pb.NotLeader:
			return c.onNotLeader(r, node, d, st)
		case *pb.EpochNotMatch:
			return c.onEpochNotMatch(r, node, d)
		case *pb.ShardNotFound:
			// The node does not host the shard (any more): the route's
			// membership is stale.
			st.markTried(node)
			c.cache.invalidate(r)
			st.stale = r
			return verdict{reason: RetryShardNotFound, wait: true}
		case *pb.KeyNotInShard:
			if cur := d.GetCurrent(); cur != nil && validateRoute(&pb.Route{Shard: cur}, nil) == nil {
				c.cache.insert(newRoute(cur, r.leaderReplica, r.leaderNode))
			}
			c.cache.invalidate(r)
			st.stale = r
			return verdict{reason: RetryKeyNotInShard, wait: true}
		case *pb.Busy:
			// Only a leader answers Busy (its Raft dropped the proposal).
			return verdict{reason: RetryBusy, wait: true, floor: time.Duration(d.GetRetryAfterMs()) * time.Millisecond, alive: true}
		case *pb.Compacted:
			return verdict{final: true, err: &CompactedError{ShardID: d.GetShardId(), CompactRevision: d.GetCompactRevision()}}
		case *pb.FutureRevision:
			return verdict{final: true, err: &FutureRevisionError{ShardID: d.GetShardId(), Revision: d.GetRevision(), CurrentRevision: d.GetCurrentRevision()}}
		case *pb.Locked:
			return c.onLocked(ctx, cl, d)
		case *pb.WriteConflict:
			return verdict{final: true, err: fmt.Errorf("%w: %s was written at %d, after the transaction started",
				ErrConflict, keyfmt.Quote(d.GetKey()), d.GetRevision())}
		case *pb.TxnAborted:
			return verdict{final: true, err: fmt.Errorf("%w: the transaction was rolled back (its locks outlived their TTL)", ErrConflict)}
		case *pb.Ambiguous:
			// The node lost leadership with the write in its log. The retry
			// carries the same ClientID and Seq, so it applies at most once;
			// the next attempt learns the new leader through NotLeader.
			c.cache.clearLeader(r.id(), node)
			return verdict{reason: RetryAmbiguous, wait: true}
		}
	}
	switch s.Code() {
	case codes.Unavailable, codes.DeadlineExceeded, codes.Canceled:
		// Unreachable, the connection broke, the node is starting or
		// stopping, or the attempt's own timeout passed (the call's context
		// is still alive): try the next replica at once.
		st.markTried(node)
		c.cache.clearLeader(r.id(), node)
		return verdict{reason: RetryUnavailable, outage: true}
	}
	return verdict{final: true}
}

// mayHaveApplied reports whether a write answered with s, once it may have
// reached the node, may have applied: the node said so (Ambiguous;
// ShardNotFound, when the replica was removed with the write pending), or
// the answer was lost (the connection, a deadline, a cancellation) or is
// not one the protocol defines. A refusal (NotLeader, EpochNotMatch,
// KeyNotInShard, Busy) comes before the write enters the log. The caller
// asks only for writes that may have reached the node: gRPC answers
// Unavailable, DeadlineExceeded or Canceled also for calls that never got
// a connection, and those surely did not apply (sent.go).
func mayHaveApplied(s *status.Status) bool {
	for _, d := range s.Details() {
		switch d.(type) {
		case *pb.Ambiguous, *pb.ShardNotFound:
			return true
		case *pb.NotLeader, *pb.EpochNotMatch, *pb.KeyNotInShard, *pb.Busy:
			return false // refused before it entered the log
		case *pb.Locked, *pb.WriteConflict, *pb.TxnAborted:
			return false // refused as it applied, writing nothing
		}
	}
	switch s.Code() {
	case codes.Unavailable, codes.DeadlineExceeded, codes.Canceled, codes.Unknown, codes.Internal, codes.DataLoss:
		return true
	}
	return false
}

// onNotLeader follows a NotLeader's hint at once when it names another
// replica that looks reachable. When the hint names a node whose
// connection is failing (the old leader is gone and the replicas have not
// elected a new one yet), or there is no hint, it backs off. A hinted node
// this call found unreachable before is given another chance after the
// backoff, since a live replica still believes in it.
func (c *Client) onNotLeader(r *route, node nodeID, d *pb.NotLeader, st *attemptState) verdict {
	leader := nodeID(d.GetLeaderNodeId())
	c.addrs.set(leader, d.GetLeaderAddress())
	switch {
	case leader == 0 || leader == node:
		// An election is under way: ask the other replicas, then again.
		c.cache.clearLeader(r.id(), node)
		st.markLeaderless(node)
	case !r.hasNode(leader):
		// The leader is on a node our route does not know: membership
		// changed. Reload the route.
		c.cache.invalidate(r)
		st.stale = r
		return verdict{reason: RetryNotLeader, wait: true, alive: true}
	default:
		clear(st.leaderless) // an election ended
		c.cache.setLeader(r.id(), d.GetLeaderReplicaId(), leader)
		addr, known := c.addrs.get(leader)
		if known && !st.tried[leader] && (isLocal(c.cfg.Local, leader) || !c.conns.failing(addr)) {
			return verdict{reason: RetryNotLeader, alive: true}
		}
		delete(st.tried, leader)
	}
	// Wait for an election: a replica answered, so the shard is there and
	// a leader is (about to be) elected, unless the shard lost its
	// majority, which Config.ElectionWait bounds; poll for it.
	return verdict{reason: RetryNotLeader, wait: true, election: true, outage: true}
}

// onEpochNotMatch replaces the cached routes with the node's current
// descriptors and retries at once; if they taught nothing new (the node
// lags behind the cache), it backs off instead. A descriptor of a shard
// without a cached leader gets the failed route's leader (or else the node
// that answered) as a guess: after a split the right-hand shard's replicas
// live on the same nodes, and a wrong guess costs one NotLeader redirect.
func (c *Client) onEpochNotMatch(r *route, node nodeID, d *pb.EpochNotMatch) verdict {
	learned := false
	guess := r.leaderNode
	if guess == 0 {
		guess = node
	}
	for _, desc := range d.GetCurrent() {
		if validateRoute(&pb.Route{Shard: desc}, nil) != nil {
			continue
		}
		nr := newRoute(desc, 0, 0)
		prev, cached := c.cache.get(nr.id())
		if !cached || prev.leaderNode == 0 {
			for _, rep := range desc.GetReplicas() {
				if nodeID(rep.GetNodeId()) == guess {
					nr = newRoute(desc, rep.GetReplicaId(), guess)
				}
			}
		}
		if c.cache.insert(nr) && (!cached || nr.supersedes(prev)) {
			learned = true
		}
	}
	return verdict{reason: RetryEpochNotMatch, wait: !learned}
}
