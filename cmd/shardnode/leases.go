package main

import (
	"context"
	"log/slog"
	"strings"
	"time"

	"google.golang.org/grpc"

	"github.com/flotilla-kv/flotilla/internal/tlsconfig"
	"github.com/flotilla-kv/flotilla/lease"
	"github.com/flotilla-kv/flotilla/multiraft"
	"github.com/flotilla-kv/flotilla/router"
	"github.com/flotilla-kv/flotilla/rpc"
	"github.com/flotilla-kv/flotilla/shard"
)

// nodeLeases is the node's lease service: the lessor for the leases whose
// home shards it leads, the read fence, and the router both use to reach
// the rest of the fleet (a lease's keys and index keys may be anywhere).
type nodeLeases struct {
	*lease.Lessor
	checker *lease.Checker
	router  *router.Client
}

// startLeases builds the node's router (to placement when the node has
// it, and to every node it knows) and lessor, sets the lessor on kvSrv,
// and starts the lessor. The router reaches this node through kvSrv's
// local client (no gRPC), and serves its stale reads from this node's
// replicas when it holds one; its watches still use gRPC, so the local
// client needs no fallback. kvSrv gets its leases before the lessor runs
// and before the router is returned: a local call reads them.
func startLeases(cfg Config, peers map[multiraft.NodeID]string, tlsCfg *tlsconfig.Config, store *shard.Store, engine *multiraft.Engine, oracle shard.Oracle, kvSrv *rpc.KVServer, logger *slog.Logger) (*nodeLeases, error) {
	rcfg := router.Config{Timeout: 10 * time.Second, Local: &router.LocalNode{ID: cfg.NodeID, KV: kvSrv.LocalClient(nil)}}
	if cfg.Placement != "" {
		rcfg.PlacementAddresses = strings.Split(cfg.Placement, ",")
	}
	for _, a := range peers {
		rcfg.NodeAddresses = append(rcfg.NodeAddresses, a)
	}
	if tlsCfg.Enabled() {
		rcfg.DialOptions = []grpc.DialOption{tlsCfg.DialOption()}
		rcfg.FramedTLS = tlsCfg.ClientTLS()
	}
	// No route warm-up: the rest of the fleet may not be up yet, and every
	// call loads the routes it misses.
	warm, cancel := context.WithCancel(context.Background())
	cancel()
	rc, err := router.New(warm, rcfg)
	if err != nil {
		return nil, err
	}
	f := leaseFleet{rc}
	ls := lease.New(lease.Config{Logger: logger, CheckpointInterval: cfg.LeaseCheckpoint}, store, engine, f, oracle)
	nl := &nodeLeases{Lessor: ls, checker: lease.NewChecker(f, oracle), router: rc}
	kvSrv.SetLeases(nl)
	go ls.Run()
	return nl, nil
}

// close stops the lessor and the router.
func (n *nodeLeases) close() {
	n.Lessor.Close()
	_ = n.router.Close()
}

// Status implements rpc.Leases.
func (n *nodeLeases) Status(ctx context.Context, home shard.ShardID, id, rev uint64) (bool, uint64, uint64, error) {
	st, err := n.Lessor.Status(ctx, home, id, rev)
	return st.Alive, st.Until, st.Ended, err
}

// Dead implements rpc.Leases.
func (n *nodeLeases) Dead(ctx context.Context, ids []uint64, rev uint64, latest bool) (map[uint64]bool, error) {
	return n.checker.Dead(ctx, ids, rev, latest)
}

// leaseFleet is lease.Fleet over the node's router.
type leaseFleet struct{ rc *router.Client }

func (f leaseFleet) Put(ctx context.Context, key []byte) error {
	return f.rc.Put(ctx, key, nil)
}

func (f leaseFleet) Delete(ctx context.Context, key []byte, id uint64) (bool, error) {
	if id == 0 {
		err := f.rc.Delete(ctx, key)
		return err == nil, err
	}
	return f.rc.DeleteIfLease(ctx, key, id)
}

func (f leaseFleet) Keys(ctx context.Context, start, end []byte) ([][]byte, error) {
	kvs, err := f.rc.ScanSystem(ctx, start, end)
	if err != nil {
		return nil, err
	}
	keys := make([][]byte, len(kvs))
	for i := range kvs {
		keys[i] = kvs[i].Key
	}
	return keys, nil
}

func (f leaseFleet) LeaseOf(ctx context.Context, key []byte) (uint64, error) {
	res, err := f.rc.GetAt(ctx, key, 0)
	if err != nil || !res.Found {
		return 0, err
	}
	return res.KV.Lease, nil
}

func (f leaseFleet) Status(ctx context.Context, id, rev uint64) (lease.Status, error) {
	alive, until, ended, err := f.rc.LeaseStatus(ctx, id, rev)
	return lease.Status{Alive: alive, Until: until, Ended: ended}, err
}
