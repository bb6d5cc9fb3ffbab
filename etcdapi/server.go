package etcdapi

import (
	"context"
	"errors"
	"log/slog"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/flotilla-kv/flotilla/router"
)

// Member is one shardnode serving the etcd API, as MemberList reports it.
type Member struct {
	// ID is the member ID: the node's ID.
	ID uint64
	// Name is the node's name (its ID, or what the operator named it).
	Name string
	// ClientURLs are the etcd API endpoints of the node ("http://host:port"
	// or "https://...").
	ClientURLs []string
	// PeerURLs are the node's Raft endpoints (its Flotilla gRPC address).
	PeerURLs []string
}

// Config configures a Server.
type Config struct {
	// Router reaches the fleet. Required. The Server does not close it.
	Router *router.Client
	// ClusterID goes into every response header.
	ClusterID uint64
	// MemberID goes into every response header: the ID of the node serving
	// the API (its shardnode node ID).
	MemberID uint64
	// Members lists the nodes serving the API (MemberList). Nil: only this
	// member, with SelfURLs.
	Members func(ctx context.Context) ([]Member, error)
	// SelfURLs are this member's client URLs, for MemberList and Status
	// when Members is nil.
	SelfURLs []string
	// Version is reported by Maintenance.Status as the server version.
	Version string
	// Now returns a timestamp of the fleet's timestamp oracle taken after
	// the call began: a revision above every write acknowledged before,
	// which reads of the latest state are made at (see freshRevision).
	// Nil: Router.Now, a call to a node; a shardnode passes its own
	// store's, which shares the oracle calls stamping its writes.
	Now func(ctx context.Context) (uint64, error)
	// LocalResolved reports whether this node holds a replica of every
	// shard of [start, end) (end nil: of the key start alone) that has
	// resolved past rev: the data there at rev is final, so a read at rev
	// from those replicas answers what the leaders would, without a round
	// trip to them. Reads at the fresh revision ask it (reads at a
	// revision the client gives do not: it may be below a compaction a
	// local replica has not applied yet); when it holds they read the
	// node's own replicas (router.Stale, which goes to the local replica
	// first), else they go to the leaders, which resolve the shard first
	// if needed. It must be cheap and safe for concurrent use; an answer
	// that turns stale before the read (the replica was moved away) only
	// costs the router a retry on another replica. Nil: reads go to the
	// leaders, unless serializable.
	LocalResolved func(start, end []byte, rev uint64) bool
	// Local reports this member's own Raft and storage figures for
	// Maintenance.Status (see LocalStatus). Nil: Status reports zeros.
	Local func(ctx context.Context) (LocalStatus, error)
	// WatchProgressInterval is how long a watcher created with
	// progress_notify may go without a response before it gets a progress
	// response (etcd's --experimental-watch-progress-notify-interval).
	// Zero: DefaultWatchProgressInterval.
	WatchProgressInterval time.Duration
	// Logger receives the server's debug and warning logs. Nil: discarded.
	Logger *slog.Logger
}

// Server serves the etcd v3 API (KV, Watch, Lease, Cluster and
// Maintenance; Auth answers Unimplemented) over a router.Client.
type Server struct {
	cfg Config
	r   *router.Client
	log *slog.Logger
}

// New returns a Server for cfg.
func New(cfg Config) (*Server, error) {
	if cfg.Router == nil {
		return nil, errors.New("etcdapi: Config.Router is required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Server{cfg: cfg, r: cfg.Router, log: cfg.Logger}, nil
}

// Register registers the etcd services on g.
func (s *Server) Register(g *grpc.Server) {
	pb.RegisterKVServer(g, &kvServer{s: s})
	pb.RegisterWatchServer(g, &watchServer{s: s, progressInterval: s.cfg.WatchProgressInterval})
	pb.RegisterLeaseServer(g, &leaseServer{s: s})
	pb.RegisterClusterServer(g, &clusterServer{s: s})
	pb.RegisterMaintenanceServer(g, &maintenanceServer{s: s})
	pb.RegisterAuthServer(g, &authServer{})
}

// header returns a response header at revision rev.
func (s *Server) header(rev uint64) *pb.ResponseHeader {
	return &pb.ResponseHeader{ClusterId: s.cfg.ClusterID, MemberId: s.cfg.MemberID, Revision: int64(rev)}
}

// toStatus maps an error of the router to the gRPC status an etcd client
// expects: etcd's own errors (clientv3 recognises them by their message)
// where there is one, the router's status otherwise.
func toStatus(err error) error {
	if err == nil {
		return nil
	}
	var ce *router.CompactedError
	var fe *router.FutureRevisionError
	switch {
	case errors.As(err, &ce):
		return rpctypes.ErrGRPCCompacted
	case errors.As(err, &fe):
		return rpctypes.ErrGRPCFutureRev
	case errors.Is(err, context.DeadlineExceeded):
		return rpctypes.ErrGRPCTimeout
	case errors.Is(err, context.Canceled):
		return status.Error(codes.Canceled, err.Error())
	}
	if st, ok := status.FromError(err); ok {
		return st.Err()
	}
	return status.Error(codes.Unknown, err.Error())
}

// authServer answers every Auth RPC Unimplemented: Flotilla secures the
// API with mutual TLS, not etcd's users and roles.
type authServer struct{ pb.UnimplementedAuthServer }
