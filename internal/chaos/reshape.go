package chaos

import (
	"bytes"
	"context"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "github.com/flotilla-kv/flotilla/rpc/flotillapb"
)

// The reshaper: shard splits and replica moves asked of placement, as an
// operator would (flotilla shard split|move), while the nemeses run.

// Reshaper timing. reshapeCallTimeout bounds one SplitShard or
// MoveReplica (it answers once the operator applied: a move copies the
// shard to its new replica), reshapeAttemptTimeout one placement
// replica's answer within it (a follower forwards to the leader; a killed
// leader leaves the forwarded call hanging until this passes, then the
// next replica is asked), reshapeListTimeout a ListShards.
const (
	reshapeCallTimeout    = 30 * time.Second
	reshapeAttemptTimeout = 15 * time.Second
	reshapeListTimeout    = 5 * time.Second
)

// ReshapeCounts is what the reshaper did: splits and moves placement
// applied (Done) and those it did not (Refused: any error, placement's
// refusals as well as no answer in time), and the refusals by gRPC code.
type ReshapeCounts struct {
	SplitsDone, SplitsRefused int
	MovesDone, MovesRefused   int
	// ByCode counts refusals by "split:" or "move:" and status code
	// ("move:FailedPrecondition").
	ByCode map[string]int
	// First holds the first refusal's message of each ByCode key, for
	// the summary.
	First map[string]string
}

// sub returns the counts done since before (ByCode left out).
func (c ReshapeCounts) sub(before ReshapeCounts) ReshapeCounts {
	return ReshapeCounts{
		SplitsDone: c.SplitsDone - before.SplitsDone, SplitsRefused: c.SplitsRefused - before.SplitsRefused,
		MovesDone: c.MovesDone - before.MovesDone, MovesRefused: c.MovesRefused - before.MovesRefused,
	}
}

// String is the form of the cycle and summary lines: done/refused.
func (c ReshapeCounts) String() string {
	return fmt.Sprintf("splits=%d/%d moves=%d/%d", c.SplitsDone, c.SplitsRefused, c.MovesDone, c.MovesRefused)
}

// codes returns the refusals by code, sorted, as "move:FailedPrecondition=3 ...".
func (c ReshapeCounts) codes() string {
	keys := make([]string, 0, len(c.ByCode))
	for k := range c.ByCode {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var s []string
	for _, k := range keys {
		s = append(s, fmt.Sprintf("%s=%d", k, c.ByCode[k]))
	}
	if len(s) == 0 {
		return "none"
	}
	return strings.Join(s, " ")
}

// reshaper splits shards at keys between the current cycle's keys and
// moves random replicas to nodes that hold none, through placement's admin
// API, on its own goroutine, until stopped. Every error is counted, never
// fatal: under faults placement refuses often (an operator in flight, a
// node down, no leader). Its methods are safe for concurrent use.
type reshaper struct {
	in        *inspector
	nodes     []uint64
	interval  time.Duration
	splitGap  time.Duration
	maxShards int
	rng       *rand.Rand // only the reshaper's goroutine uses it

	// keys is the current cycle's workload keys (KV, bank, list-append),
	// set by the test goroutine at the start of each cycle.
	keys atomic.Pointer[[]string]
	// next is the index of the placement replica to ask first: the last
	// that answered.
	next atomic.Int64

	mu struct {
		sync.Mutex
		counts ReshapeCounts
		shards int
	}
	stop chan struct{}
	done chan struct{}
}

// startReshaper starts a reshaper acting every interval: a move each
// time, and a split every splitGap (at least interval) while placement
// lists fewer than maxShards shards.
func startReshaper(in *inspector, nodes []uint64, interval, splitGap time.Duration, maxShards int, seed uint64) *reshaper {
	rs := &reshaper{
		in: in, nodes: slices.Clone(nodes), interval: interval, splitGap: max(splitGap, interval), maxShards: maxShards,
		rng:  rand.New(rand.NewPCG(seed, 0x72657368)),
		stop: make(chan struct{}), done: make(chan struct{}),
	}
	rs.mu.counts.ByCode = map[string]int{}
	rs.mu.counts.First = map[string]string{}
	go rs.run()
	return rs
}

// setKeys makes keys (not modified afterwards) those the next splits
// fall between.
func (rs *reshaper) setKeys(keys []string) {
	k := slices.Clone(keys)
	slices.Sort(k)
	rs.keys.Store(&k)
}

// counts returns the counts so far, and the shard count placement last
// listed.
func (rs *reshaper) counts() (ReshapeCounts, int) {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	c := rs.mu.counts
	c.ByCode = maps.Clone(rs.mu.counts.ByCode)
	c.First = maps.Clone(rs.mu.counts.First)
	return c, rs.mu.shards
}

// halt stops the reshaper and waits for its call in flight to end.
func (rs *reshaper) halt() {
	close(rs.stop)
	<-rs.done
}

func (rs *reshaper) run() {
	defer close(rs.done)
	t := time.NewTicker(rs.interval)
	defer t.Stop()
	lastSplit := time.Time{}
	for {
		select {
		case <-rs.stop:
			return
		case <-t.C:
		}
		shards, err := rs.listShards()
		if err != nil {
			continue // no placement answer: try again next tick
		}
		rs.mu.Lock()
		rs.mu.shards = len(shards)
		rs.mu.Unlock()
		if len(shards) < rs.maxShards && time.Since(lastSplit) >= rs.splitGap {
			lastSplit = time.Now()
			rs.split(shards)
		}
		rs.move(shards)
	}
}

// split asks placement to split a shard between two of the cycle's keys
// that it holds, or, when every pair is apart already, the shard holding
// the most keys at the middle key its leader picks.
func (rs *reshaper) split(shards []*pb.Descriptor) {
	var keys []string
	if p := rs.keys.Load(); p != nil {
		keys = *p
	}
	id, key := pickSplit(shards, keys, rs.rng)
	if id == 0 {
		return
	}
	rs.record("split", rs.call(func(ctx context.Context, pc pb.PlacementClient) error {
		_, err := pc.SplitShard(ctx, &pb.SplitShardRequest{ShardId: id, SplitKey: key})
		return err
	}))
}

// move asks placement to move a random replica of a random shard to a
// random node holding none of the shard's replicas.
func (rs *reshaper) move(shards []*pb.Descriptor) {
	id, from, to := pickMove(shards, rs.nodes, rs.rng)
	if id == 0 {
		return
	}
	rs.record("move", rs.call(func(ctx context.Context, pc pb.PlacementClient) error {
		_, err := pc.MoveReplica(ctx, &pb.MoveReplicaRequest{ShardId: id, FromNodeId: from, ToNodeId: to})
		return err
	}))
}

// record counts the outcome of one split or move.
func (rs *reshaper) record(what string, err error) {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	c := &rs.mu.counts
	switch {
	case what == "split" && err == nil:
		c.SplitsDone++
	case what == "split":
		c.SplitsRefused++
	case err == nil:
		c.MovesDone++
	default:
		c.MovesRefused++
	}
	if err != nil {
		k := what + ":" + status.Code(err).String()
		if c.ByCode[k]++; c.ByCode[k] == 1 {
			c.First[k] = status.Convert(err).Message()
		}
	}
}

// listShards returns the shards placement lists.
func (rs *reshaper) listShards() ([]*pb.Descriptor, error) {
	var shards []*pb.Descriptor
	err := rs.callWithin(reshapeListTimeout, func(ctx context.Context, pc pb.PlacementClient) error {
		resp, err := pc.ListShards(ctx, &pb.ListShardsRequest{})
		if err != nil {
			return err
		}
		shards = shards[:0]
		for _, s := range resp.GetShards() {
			if d := s.GetRoute().GetShard(); d != nil {
				shards = append(shards, d)
			}
		}
		return nil
	})
	return shards, err
}

// call runs f within reshapeCallTimeout.
func (rs *reshaper) call(f func(context.Context, pb.PlacementClient) error) error {
	return rs.callWithin(reshapeCallTimeout, f)
}

// callWithin runs f against the placement replicas, first the one that
// answered last, moving to the next when one answers Unavailable or
// DeadlineExceeded (no leader, or a forwarded call that hung) as the CLI
// does; any other answer is final. It gives up after timeout.
func (rs *reshaper) callWithin(timeout time.Duration, f func(context.Context, pb.PlacementClient) error) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	n := len(rs.in.conns)
	for i := 0; ; i++ {
		idx := (int(rs.next.Load()) + i) % n
		actx, acancel := context.WithTimeout(ctx, reshapeAttemptTimeout)
		err := f(actx, pb.NewPlacementClient(rs.in.conns[idx]))
		acancel()
		if err == nil {
			rs.next.Store(int64(idx))
			return nil
		}
		if c := status.Code(err); c != codes.Unavailable && c != codes.DeadlineExceeded {
			rs.next.Store(int64(idx))
			return err
		}
		if ctx.Err() != nil {
			return err
		}
		if i%n == n-1 { // a whole round without an answer: let an election end
			select {
			case <-ctx.Done():
				return err
			case <-time.After(200 * time.Millisecond):
			}
		}
	}
}

// holds reports whether d's range holds key.
func holds(d *pb.Descriptor, key []byte) bool {
	return bytes.Compare(d.GetStart(), key) <= 0 && (len(d.GetEnd()) == 0 || bytes.Compare(key, d.GetEnd()) < 0)
}

// pickSplit chooses a split: a shard and the key that starts its new
// right-hand half, so that two neighbouring keys of keys (sorted) that
// the shard holds end up on two shards. When no shard holds two of them,
// it picks the shard holding the most (or any shard) and no key: its
// leader picks the middle key. It returns 0 when there are no shards.
func pickSplit(shards []*pb.Descriptor, keys []string, rng *rand.Rand) (uint64, []byte) {
	if len(shards) == 0 {
		return 0, nil
	}
	type pair struct {
		shard uint64
		key   []byte
	}
	var pairs []pair
	perShard := map[uint64]int{}
	for i, k := range keys {
		for _, d := range shards {
			if !holds(d, []byte(k)) {
				continue
			}
			perShard[d.GetShardId()]++
			if i+1 < len(keys) && keys[i+1] != k && holds(d, []byte(keys[i+1])) {
				pairs = append(pairs, pair{d.GetShardId(), []byte(keys[i+1])})
			}
			break
		}
	}
	if len(pairs) > 0 {
		p := pairs[rng.IntN(len(pairs))]
		return p.shard, p.key
	}
	best, bestN := shards[rng.IntN(len(shards))].GetShardId(), 0
	for _, d := range shards {
		if n := perShard[d.GetShardId()]; n > bestN {
			best, bestN = d.GetShardId(), n
		}
	}
	return best, nil
}

// pickMove chooses a move: a random shard, one of its voters at random,
// and a random node of nodes holding no replica of it. It returns 0 when
// no shard has a voter and a node without a replica.
func pickMove(shards []*pb.Descriptor, nodes []uint64, rng *rand.Rand) (shard, from, to uint64) {
	for _, i := range rng.Perm(len(shards)) {
		d := shards[i]
		var voters, free []uint64
		for _, r := range d.GetReplicas() {
			if !r.GetLearner() {
				voters = append(voters, r.GetNodeId())
			}
		}
		for _, n := range nodes {
			if !slices.ContainsFunc(d.GetReplicas(), func(r *pb.Replica) bool { return r.GetNodeId() == n }) {
				free = append(free, n)
			}
		}
		if len(voters) == 0 || len(free) == 0 {
			continue
		}
		return d.GetShardId(), voters[rng.IntN(len(voters))], free[rng.IntN(len(free))]
	}
	return 0, 0, 0
}
