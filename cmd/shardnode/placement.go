package main

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/flotilla-kv/flotilla/internal/cpustat"
	"github.com/flotilla-kv/flotilla/internal/keys"
	"github.com/flotilla-kv/flotilla/internal/telemetry"
	"github.com/flotilla-kv/flotilla/multiraft"
	pb "github.com/flotilla-kv/flotilla/rpc/flotillapb"
	"github.com/flotilla-kv/flotilla/rpc/pbconv"
	"github.com/flotilla-kv/flotilla/shard"
)

// resolver knows the address of every node: the --peers given at start,
// then whatever placement reports in heartbeat answers. Safe for
// concurrent use.
type resolver struct {
	mu sync.RWMutex
	m  map[multiraft.NodeID]string
}

func newResolver(static map[multiraft.NodeID]string) *resolver {
	return &resolver{m: static}
}

// Resolve implements rpc.Resolver.
func (r *resolver) Resolve(n multiraft.NodeID) (string, error) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	if a, ok := r.m[n]; ok {
		return a, nil
	}
	return "", fmt.Errorf("no address known for node %d", n)
}

// nodes returns every node whose address is known, in ascending order.
func (r *resolver) nodes() []multiraft.NodeID {
	r.mu.RLock()
	defer r.mu.RUnlock()
	out := make([]multiraft.NodeID, 0, len(r.m))
	for n := range r.m {
		out = append(out, n)
	}
	slices.Sort(out)
	return out
}

func (r *resolver) update(addrs map[uint64]string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for id, a := range addrs {
		if a != "" {
			r.m[multiraft.NodeID(id)] = a
		}
	}
}

// reporter registers the node with placement (with its capacity) and
// heartbeats every interval: node stats (the bytes of user data it
// stores over all its replicas, its load, the p99 latency of the KV
// requests it served and the CPU it used since the last heartbeat, the
// leases it counts time for) and, for every replica, what placement needs
// to rebuild its view (the descriptor, size and load of the shards this
// node leads).
type reporter struct {
	self      multiraft.NodeID
	addr      string
	labels    *pb.NodeLabels
	addrs     []string
	interval  time.Duration
	engine    *multiraft.Engine
	store     *shard.Store
	resolver  *resolver
	dial      func(addr string) (*grpc.ClientConn, error)
	logger    *slog.Logger
	next      int // index in addrs of the placement address to try first
	lastApply map[multiraft.GroupID]uint64
	// leases returns how many leases the node counts time for (those
	// whose home shards it leads): the lessor's Count. Nil reports 0.
	leases func() int
	// capacity is the bytes of user data the node offers (--capacity, or
	// its filesystem's size: capacityBytes); 0 is unknown.
	capacity uint64
	// requests holds the latencies of the KV requests served since the
	// last heartbeat; nil reports none.
	requests *telemetry.LatencyWindow
	// cpu reads the process's CPU time so far (cpustat.Process when nil);
	// lastCPU and lastAt are its reading at the last heartbeat.
	cpu     func() time.Duration
	lastCPU time.Duration
	lastAt  time.Time
}

// capacityBytes is the capacity the node reports: --capacity if given,
// else the size of the filesystem holding the data directory (0, which
// placement reads as unknown, when that cannot be read).
func capacityBytes(cfg Config, logger *slog.Logger) uint64 {
	if cfg.Capacity > 0 {
		return uint64(cfg.Capacity)
	}
	size, err := telemetry.DiskSize(cfg.DataDir)
	if err != nil {
		logger.Warn("reading the data directory's filesystem size for the default --capacity; reporting none", "err", err)
		return 0
	}
	return size
}

func (r *reporter) client() (pb.PlacementClient, error) {
	conn, err := r.dial(r.addrs[r.next%len(r.addrs)])
	if err != nil {
		return nil, err
	}
	return pb.NewPlacementClient(conn), nil
}

// call runs f against placement, moving on to the next address when one
// does not answer.
func (r *reporter) call(ctx context.Context, f func(pb.PlacementClient) error) error {
	var err error
	for range r.addrs {
		var c pb.PlacementClient
		if c, err = r.client(); err == nil {
			if err = f(c); err == nil || status.Code(err) == codes.NotFound || status.Code(err) == codes.InvalidArgument {
				return err
			}
		}
		r.next++
	}
	return err
}

func (r *reporter) register(ctx context.Context) error {
	return r.call(ctx, func(c pb.PlacementClient) error {
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		_, err := c.RegisterNode(cctx, &pb.RegisterNodeRequest{NodeId: uint64(r.self), Address: r.addr, Labels: r.labels, CapacityBytes: r.capacity})
		return err
	})
}

// run registers, then heartbeats until ctx ends. Failures are logged and
// retried; placement being away never stops the node from serving.
func (r *reporter) run(ctx context.Context) {
	t := time.NewTicker(r.interval)
	defer t.Stop()
	registered := false
	for {
		if !registered {
			if err := r.register(ctx); err != nil {
				r.logger.Warn("registering with placement", "err", err)
			} else {
				registered = true
				r.logger.Info("registered with placement", "placement", strings.Join(r.addrs, ","))
			}
		}
		if registered {
			req := r.report(ctx)
			err := r.call(ctx, func(c pb.PlacementClient) error {
				cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
				defer cancel()
				resp, err := c.Heartbeat(cctx, req)
				if err == nil {
					r.resolver.update(resp.GetAddresses())
				}
				return err
			})
			if status.Code(err) == codes.NotFound {
				registered = false // placement lost its catalogue: register again
			} else if err != nil {
				r.logger.Debug("heartbeat failed", "err", err)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// report builds one heartbeat.
func (r *reporter) report(ctx context.Context) *pb.HeartbeatRequest {
	req := &pb.HeartbeatRequest{NodeId: uint64(r.self)}
	if r.leases != nil {
		req.Leases = uint64(r.leases())
	}
	if r.requests != nil {
		p99, _ := r.requests.Take(0.99)
		req.RequestP99Seconds = p99.Seconds()
	}
	req.CpuCores = r.cpuCores(time.Now())
	// The node's bytes: every replica's user data, whether it leads or
	// not. User data is keyed by the user key alone and a node's replicas
	// never overlap, so one estimate over the whole user key space counts
	// each replica's once (and the data of a removed replica until its
	// collection deletes it: it is on the disk still).
	lo, hi := keys.UserSpan(nil, nil)
	if n, err := r.engine.DB().EstimateDiskUsage(lo, hi); err == nil {
		req.UsedBytes = n
	}
	if r.lastApply == nil {
		r.lastApply = map[multiraft.GroupID]uint64{}
	}
	seen := make(map[multiraft.GroupID]uint64, len(r.lastApply))
	var total float64
	for _, g := range r.engine.Summaries() {
		rep := &pb.ReplicaReport{ShardId: uint64(g.Group), ReplicaId: uint64(g.Replica), Applied: g.Applied}
		// Write load: entries applied per second since the last report.
		if prev, ok := r.lastApply[g.Group]; ok && g.Applied >= prev {
			rep.Load = float64(g.Applied-prev) / r.interval.Seconds()
		}
		seen[g.Group] = g.Applied
		total += rep.Load
		if g.Leading {
			if d, err := r.store.Descriptor(g.Group); err == nil {
				rep.Leader = true
				rep.Shard = pbconv.DescriptorToProto(d)
				lo, hi := keys.UserSpan(d.Start, d.End)
				if n, err := r.engine.DB().EstimateDiskUsage(lo, hi); err == nil {
					rep.ApproximateBytes = n
				}
				if n, err := r.store.StoredKeys(g.Group, shard.KeyCountLimit); err == nil && n < shard.KeyCountLimit {
					rep.ApproximateKeys = uint64(n)
				}
				sctx, cancel := context.WithTimeout(ctx, time.Second)
				if st, err := r.engine.Status(sctx, g.Group); err == nil {
					for id, pr := range st.Progress {
						if id != g.Replica && pr.Match+64 < st.Commit {
							rep.LaggingReplicaIds = append(rep.LaggingReplicaIds, uint64(id))
						}
					}
				}
				cancel()
			}
		}
		req.Replicas = append(req.Replicas, rep)
	}
	r.lastApply = seen
	req.Load = total
	return req
}

// cpuCores returns the CPU the process used since the last call, in cores
// (0 at the first call), and remembers now's reading.
func (r *reporter) cpuCores(now time.Time) float64 {
	read := r.cpu
	if read == nil {
		read = cpustat.Process
	}
	used := read()
	var cores float64
	if wall := now.Sub(r.lastAt); !r.lastAt.IsZero() && wall > 0 && used >= r.lastCPU {
		cores = float64(used-r.lastCPU) / float64(wall)
	}
	r.lastCPU, r.lastAt = used, now
	return cores
}
