package main

import (
	"bytes"
	"context"
	"fmt"
	"hash/fnv"
	"log/slog"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"google.golang.org/grpc"

	"github.com/flotilla-kv/flotilla/etcdapi"
	"github.com/flotilla-kv/flotilla/internal/serve"
	"github.com/flotilla-kv/flotilla/internal/tlsconfig"
	"github.com/flotilla-kv/flotilla/multiraft"
	pb "github.com/flotilla-kv/flotilla/rpc/flotillapb"
	"github.com/flotilla-kv/flotilla/shard"
)

// etcdAPIVersion is the server version the etcd API reports (Status):
// the etcd release whose API (etcdserverpb) it serves.
const etcdAPIVersion = "3.6.0"

// etcdURLsLabel is the node label (NodeLabels.extra) under which a node
// serving the etcd API registers its client URLs with placement,
// comma-separated, so that every node's MemberList can name them.
const etcdURLsLabel = "etcd-client-urls"

// etcdMembersTimeout bounds the placement call behind one MemberList.
const etcdMembersTimeout = 5 * time.Second

// clusterID returns the etcd API's cluster ID for a fleet named name:
// the FNV-1a 64-bit hash of the name. Placement keeps no identity of its
// fleet that nodes learn, so the name (--cluster-name) stands in for one;
// every node of a fleet must be given the same.
func clusterID(name string) uint64 {
	h := fnv.New64a()
	_, _ = h.Write([]byte(name))
	return h.Sum64()
}

// etcdClientURL returns the client URL of an etcd API advertised at
// addr: https with TLS, as etcd writes it.
func etcdClientURL(addr string, tls bool) string {
	if tls {
		return "https://" + addr
	}
	return "http://" + addr
}

// etcdNode is what the node's etcd API needs of the rest of the node.
type etcdNode struct {
	cfg     Config
	store   *shard.Store
	tls     *tlsconfig.Config // nil: plaintext
	leases  *nodeLeases
	engine  *multiraft.Engine
	db      *pebble.DB
	dial    func(addr string) (*grpc.ClientConn, error)
	logger  *slog.Logger
	selfURL string
}

// startEtcd serves the etcd v3 API on cfg.EtcdListen through the node's
// router, with the node's TLS: it returns the gRPC server, with the
// services registered, and its listener, for the caller to serve and to
// stop at shutdown (stopEtcd).
func startEtcd(n etcdNode) (*grpc.Server, net.Listener, error) {
	var members func(context.Context) ([]etcdapi.Member, error)
	if n.cfg.Placement != "" {
		members = n.members
	}
	api, err := etcdapi.New(etcdapi.Config{
		Router:                n.leases.router,
		ClusterID:             clusterID(n.cfg.ClusterName),
		MemberID:              n.cfg.NodeID,
		Members:               members,
		SelfURLs:              []string{n.selfURL},
		Version:               etcdAPIVersion,
		Now:                   n.store.LastWrite,
		LocalResolved:         newLocalReplicas(n.store).resolved,
		Local:                 n.local,
		WatchProgressInterval: n.cfg.EtcdProgressInterval,
		Logger:                n.logger.With("component", "etcdapi"),
	})
	if err != nil {
		return nil, nil, err
	}
	lis, err := net.Listen("tcp", n.cfg.EtcdListen)
	if err != nil {
		return nil, nil, fmt.Errorf("--etcd-listen: %w", err)
	}
	srv := grpc.NewServer(serve.ServerOptions(n.tls.ServerOption())...)
	api.Register(srv)
	return srv, lis, nil
}

// members lists, from placement, the nodes that registered an etcd API
// (etcdURLsLabel): every such node is a member, with its node ID as the
// member ID and its Flotilla gRPC address as its peer URL, whether it is up
// or not, as etcd lists members that are down.
func (n etcdNode) members(ctx context.Context) ([]etcdapi.Member, error) {
	ctx, cancel := context.WithTimeout(ctx, etcdMembersTimeout)
	defer cancel()
	var last error
	for _, addr := range strings.Split(n.cfg.Placement, ",") {
		conn, err := n.dial(addr)
		if err != nil {
			last = err
			continue
		}
		resp, err := pb.NewPlacementClient(conn).ListNodes(ctx, &pb.ListNodesRequest{})
		if err != nil {
			last = err
			continue
		}
		var out []etcdapi.Member
		for _, nd := range resp.GetNodes() {
			urls := nd.GetLabels().GetExtra()[etcdURLsLabel]
			if urls == "" {
				continue
			}
			out = append(out, etcdapi.Member{
				ID: nd.GetNodeId(), Name: fmt.Sprint(nd.GetNodeId()),
				ClientURLs: strings.Split(urls, ","), PeerURLs: []string{etcdClientURL(nd.GetAddress(), n.tls.Enabled())},
			})
		}
		return out, nil
	}
	return nil, fmt.Errorf("asking placement for its nodes: %w", last)
}

// local reports the node's figures for Status: its replicas' applied
// indexes summed (the engine keeps no committed index apart, so both of
// etcd's indexes get that sum), their highest term, and the size of the
// node's Pebble store on disk, all of it reported in use: Pebble reclaims
// space by its own compactions, leaving nothing for etcd's defragment
// (which the API refuses) to reclaim.
func (n etcdNode) local(context.Context) (etcdapi.LocalStatus, error) {
	var st etcdapi.LocalStatus
	for _, g := range n.engine.Summaries() {
		st.RaftIndex += g.Applied
		st.RaftTerm = max(st.RaftTerm, g.Term)
	}
	st.RaftAppliedIndex = st.RaftIndex
	st.DBSizeBytes = int64(n.db.Metrics().DiskSpaceUsage())
	st.DBSizeInUseBytes = st.DBSizeBytes
	return st, nil
}

// localReplicasRefresh is how often at most localReplicas lists the
// node's replicas again after a lookup missed: a miss is either a change
// of the replicas (a split, a move), which the next list catches, or a
// key no replica here holds, which no list would find.
const localReplicasRefresh = time.Second

// localReplicas answers the etcd API's Config.LocalResolved from the
// node's own replicas: their descriptors, listed once and kept sorted by
// start key until a lookup misses, and each replica's resolved revision,
// read live. A kept descriptor never makes a wrong answer: its shard is
// asked at the descriptor's epoch, which a split or a change of replicas
// refuses, and a refusal is a miss. Safe for concurrent use.
type localReplicas struct {
	store *shard.Store
	descs atomic.Pointer[[]shard.Descriptor]
	mu    struct {
		sync.Mutex
		listed time.Time
	}
}

func newLocalReplicas(store *shard.Store) *localReplicas {
	l := &localReplicas{store: store}
	l.list()
	return l
}

// resolved reports whether this node's replicas cover [start, end) (end
// nil: the key start alone), each resolved past rev (see
// etcdapi.Config.LocalResolved).
func (l *localReplicas) resolved(start, end []byte, rev uint64) bool {
	if coversResolved(*l.descs.Load(), start, end, rev, l.resolvedOf) {
		return true
	}
	l.mu.Lock()
	stale := time.Since(l.mu.listed) >= localReplicasRefresh
	if stale {
		l.mu.listed = time.Now()
	}
	l.mu.Unlock()
	if !stale {
		return false
	}
	return coversResolved(l.list(), start, end, rev, l.resolvedOf)
}

// list lists the node's replicas afresh, sorted by start key, and keeps
// the list.
func (l *localReplicas) list() []shard.Descriptor {
	descs := l.store.Descriptors()
	slices.SortFunc(descs, func(a, b shard.Descriptor) int { return bytes.Compare(a.Start, b.Start) })
	l.descs.Store(&descs)
	return descs
}

// resolvedOf returns the revision d's replica on this node resolved, if
// it still has d's epoch; false if it does not, or has no such replica.
func (l *localReplicas) resolvedOf(d *shard.Descriptor) (uint64, bool) {
	// A stale read passes no barrier: it only checks the replica and its
	// epoch and returns at once.
	rev, err := l.store.LatestRevision(context.Background(), d.ShardID, d.Epoch, multiraft.ReadStale)
	return rev, err == nil
}

// coversResolved reports whether descs (disjoint, sorted by start key)
// cover [start, end) (end nil: the key start alone) and resolvedOf says
// each of those covering it resolved past rev.
func coversResolved(descs []shard.Descriptor, start, end []byte, rev uint64, resolvedOf func(*shard.Descriptor) (uint64, bool)) bool {
	key := start
	// The first descriptor that does not end at or before key.
	i, _ := slices.BinarySearchFunc(descs, key, func(d shard.Descriptor, k []byte) int {
		if len(d.End) != 0 && bytes.Compare(d.End, k) <= 0 {
			return -1
		}
		return 1
	})
	for ; i < len(descs); i++ {
		d := &descs[i]
		if !d.ContainsKey(key) {
			return false // a gap: no replica here holds key
		}
		if r, ok := resolvedOf(d); !ok || r < rev {
			return false
		}
		if end == nil || len(d.End) == 0 || bytes.Compare(d.End, end) >= 0 {
			return true
		}
		key = d.End
	}
	return false
}
