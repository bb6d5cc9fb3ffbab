// Package etcdapi serves the etcd v3 gRPC API (the etcdserverpb services,
// same package and service names, so unmodified etcd clients connect) over
// a router.Client, so that etcdctl, clientv3, etcd's benchmark tool and the
// Kubernetes API server's etcd3 storage work against a Flotilla fleet. A
// shardnode serves it on --etcd-listen through its own router; an
// application can embed it: New(Config{Router: r, ...}).Register(grpcServer).
//
// # Revisions
//
// etcd revisions are Flotilla revisions: the oracle timestamps every write
// carries. They order writes in real time across shards, as etcd's single
// counter does, but they are sparse: a write's revision is not its
// predecessor's plus one, and nothing is written at most revisions. Clients
// that only compare revisions, read at them and watch from them (clientv3,
// Kubernetes) are unaffected; arithmetic on them ("the next write will be
// at R+1") does not hold.
//
// A read of the latest state (Range without a revision, not serializable)
// reads at the revision Config.Now answers from the oracle after the
// request arrived (on a shardnode the last write's, shard.Store.LastWrite,
// as etcd's current revision; otherwise a fresh one), at which every
// shard of the range is read once it resolved it: the answer is one snapshot across shards that sees every
// write acknowledged before the request, and its header revision is at
// least the revision of any such write. A shard's own resolved revision,
// what the router's single-shard latest reads answer at, is only as new as
// that shard's last write; a client that wrote on another shard and then
// reads with "not older than" that write's revision (Kubernetes does) must
// not be told an older revision. The cost is an oracle call shared with
// the node's writes, and a Resolve entry on a shard that has not written
// since that revision (shared by the reads waiting on the same shard).
// Serializable reads skip both and read any replica's latest state.
//
// A shard's data at a revision its replica resolved past is final, on
// every replica alike, so a read at a revision need not go to the
// leaders: where Config.LocalResolved says this node's own replicas of
// the range resolved past the revision (a shardnode asks its store), the
// read goes to them (router.Stale, local replica first) and costs no
// round trip to another node; otherwise it goes to the leaders, which
// resolve first if needed. Either way the answer is the same.
//
// # Writes and transactions
//
// Put is a router put (a one-key transaction when it returns the previous
// version or keeps the value or lease). Txn is router.Transact: a
// compare-then-else transaction, on one shard in one Raft command at one
// revision, exactly once; across shards a transaction across shards
// (router/txncross.go: atomic at one revision, compares locked until the
// commit; a ranged compare or delete sees its range at the start; a put
// with a lease is refused with Unimplemented). Compares that need no read
// (on the reserved span, or against a negative number) are decided here.
// DeleteRange of a range deletes shard by shard, each part atomic at its
// own revision.
//
// # Watch
//
// Each watcher of a stream follows one router.Watch of its range (every
// event exactly once, in revision order, across shards, splits and leader
// changes); see watch.go for progress requests and notifications.
//
// # Errors
//
// Errors are etcd's own statuses (rpctypes: ErrCompacted, ErrFutureRev,
// ErrLeaseNotFound, ErrEmptyKey, ErrDuplicateKey, ...), which clientv3
// recognises by their messages; the router's other errors pass with their
// gRPC codes. RPCs the fleet does not serve (Auth, membership changes,
// Defragment, Snapshot, Hash, MoveLeader, Downgrade) answer Unimplemented
// naming the RPC.
package etcdapi
