package main

import (
	"context"
	"fmt"
	"hash/fnv"
	"log/slog"
	"net"
	"strings"
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
