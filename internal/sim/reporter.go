package sim

import (
	"context"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/flotilla-kv/flotilla/multiraft"
	pb "github.com/flotilla-kv/flotilla/rpc/flotillapb"
	"github.com/flotilla-kv/flotilla/rpc/pbconv"
	"github.com/flotilla-kv/flotilla/shard"
)

// The heartbeat reporter of a simulated shardnode, as cmd/shardnode's
// reporter does it: register with placement, then every heartbeat
// interval report the node's replicas (for the shards it leads: the
// descriptor, size, keys, load and lagging replicas), trying the next
// placement address when one does not answer and registering again when
// placement answers NotFound (its catalogue was lost). It runs as an
// actor of the node. Keep it in step with cmd/shardnode/placement.go.

// reporter is one node's reporter.
type reporter struct {
	n         *node
	next      int // index of the placement address to try first
	lastApply map[multiraft.GroupID]uint64
}

// runReporter is the reporter's loop; it ends when the node crashes.
func (n *node) runReporter() {
	r := &reporter{n: n}
	ctx := context.Background()
	registered := false
	for {
		if !registered {
			registered = r.register(ctx) == nil
		}
		if registered {
			req := r.report(ctx)
			err := r.call(func(c placementClient) error {
				cctx, cancel := n.s.actors.withTimeout(ctx, 5*time.Second)
				defer cancel()
				_, err := c.Heartbeat(cctx, req)
				return err
			})
			if status.Code(err) == codes.NotFound {
				registered = false
			}
			if err == nil {
				n.s.stats.Heartbeats++
			}
		}
		n.s.actors.sleep(ctx, heartbeatInterval)
	}
}

// call runs f against placement, moving on to the next address when one
// does not answer.
func (r *reporter) call(f func(placementClient) error) error {
	s := r.n.s
	var err error
	for range s.pnodes {
		to := s.pnodes[r.next%len(s.pnodes)]
		if err = f(placementClient{s: s, from: r.n, to: to}); err == nil ||
			status.Code(err) == codes.NotFound || status.Code(err) == codes.InvalidArgument {
			return err
		}
		r.next++
	}
	return err
}

func (r *reporter) register(ctx context.Context) error {
	n := r.n
	return r.call(func(c placementClient) error {
		cctx, cancel := n.s.actors.withTimeout(ctx, 5*time.Second)
		defer cancel()
		_, err := c.RegisterNode(cctx, &pb.RegisterNodeRequest{NodeId: uint64(n.id), Address: n.addr})
		if err == nil {
			n.s.tracef("n%d registered with placement", n.id)
		}
		return err
	})
}

// report builds one heartbeat. The statuses of the shards it leads are
// asked for all at once, then awaited.
func (r *reporter) report(ctx context.Context) *pb.HeartbeatRequest {
	n := r.n
	req := &pb.HeartbeatRequest{NodeId: uint64(n.id)}
	if r.lastApply == nil {
		r.lastApply = map[multiraft.GroupID]uint64{}
	}
	seen := make(map[multiraft.GroupID]uint64, len(r.lastApply))
	var total float64
	type led struct {
		rep *pb.ReplicaReport
		fut *multiraft.Future
		me  multiraft.ReplicaID
	}
	var leading []led
	for _, g := range n.e.Summaries() {
		rep := &pb.ReplicaReport{ShardId: uint64(g.Group), ReplicaId: uint64(g.Replica), Applied: g.Applied}
		if prev, ok := r.lastApply[g.Group]; ok && g.Applied >= prev {
			rep.Load = float64(g.Applied-prev) / heartbeatInterval.Seconds()
		}
		seen[g.Group] = g.Applied
		total += rep.Load
		if g.Leading {
			if d, err := n.store.Descriptor(g.Group); err == nil {
				rep.Leader = true
				rep.Shard = pbconv.DescriptorToProto(d)
				rep.ApproximateBytes = n.dataBytes(d)
				if k, err := n.store.StoredKeys(g.Group, shard.KeyCountLimit); err == nil && k < shard.KeyCountLimit {
					rep.ApproximateKeys = uint64(k)
				}
				req.UsedBytes += rep.ApproximateBytes
				leading = append(leading, led{rep: rep, fut: n.e.StatusFuture(g.Group), me: g.Replica})
			}
		}
		req.Replicas = append(req.Replicas, rep)
	}
	sctx, cancel := n.s.actors.withTimeout(ctx, time.Second)
	defer cancel()
	for _, l := range leading {
		v, err := n.s.actors.wait(sctx, l.fut)
		if err != nil {
			continue
		}
		st := v.(multiraft.Status)
		for _, id := range sortedReplicaIDs(st.Progress) {
			if pr := st.Progress[id]; id != l.me && pr.Match+64 < st.Commit {
				l.rep.LaggingReplicaIds = append(l.rep.LaggingReplicaIds, uint64(id))
			}
		}
	}
	r.lastApply = seen
	req.Load = total
	return req
}

// sortedReplicaIDs returns m's keys in order.
func sortedReplicaIDs[V any](m map[multiraft.ReplicaID]V) []multiraft.ReplicaID {
	ids := make([]multiraft.ReplicaID, 0, len(m))
	for id := range m {
		ids = append(ids, id)
	}
	for i := 1; i < len(ids); i++ {
		for j := i; j > 0 && ids[j] < ids[j-1]; j-- {
			ids[j], ids[j-1] = ids[j-1], ids[j]
		}
	}
	return ids
}
