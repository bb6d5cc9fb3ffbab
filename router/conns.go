package router

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/flotilla-kv/flotilla/internal/framed"
	pb "github.com/flotilla-kv/flotilla/rpc/flotillapb"
)

// maxRecvBytes is the largest response the Client accepts (a Scan page of
// large values); gRPC's default of 4 MiB is too small for a page of 1 MiB
// values.
const maxRecvBytes = 64 << 20

// defaultDialOptions are the Client's own dial options; Config.DialOptions
// come after them and win (stats handlers add up: sendTracker stays). The
// reconnect backoff is much shorter than gRPC's default (1s growing to
// 120s), so a restarted node is used again within a fraction of a second.
func defaultDialOptions() []grpc.DialOption {
	return []grpc.DialOption{
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           backoff.Config{BaseDelay: 50 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: 2 * time.Second},
			MinConnectTimeout: 2 * time.Second,
		}),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(maxRecvBytes)),
		grpc.WithStatsHandler(sendTracker{}), // tells calls that never left from calls that may have
	}
}

// connPool holds one grpc.ClientConn per address, created on first use
// and shared by every request to that address (gRPC multiplexes calls over
// it and reconnects by itself). Safe for concurrent use.
type connPool struct {
	opts []grpc.DialOption
	// batches and batchOps configure the coalescers (Config.BatchesPerNode
	// and Config.MaxBatchOps); batches < 0 turns coalescing off.
	batches, batchOps int
	stats             *counters
	// framed turns the framed KV connections on (framing), with
	// framedTLS.
	framed     bool
	framedTLS  *tls.Config
	framedDial framed.DialFunc
	mu         struct {
		sync.Mutex
		conns map[string]*grpc.ClientConn
		// framed holds the framed KV connections of each address kv was
		// asked for, when framing is on.
		framed map[string]*framedConns
		// kvs holds the KV client of each address kv was asked for.
		kvs map[string]pb.KVClient
		// localKV is Config.Local's client, counted and coalesced as a
		// connection's; built by the first kvOf for the local node.
		localKV pb.KVClient
		closed  bool
	}
}

func newConnPool(opts []grpc.DialOption, batches, batchOps int, stats *counters) *connPool {
	p := &connPool{opts: opts, batches: batches, batchOps: batchOps, stats: stats}
	p.mu.conns = map[string]*grpc.ClientConn{}
	p.mu.kvs = map[string]pb.KVClient{}
	p.mu.framed = map[string]*framedConns{}
	return p
}

// framing turns on framed KV connections (framed.go), dialled with dial
// (nil: the system's dialer) and secured with tlsCfg (nil: plaintext), for
// the addresses kv is asked for from now on.
func (p *connPool) framing(tlsCfg *tls.Config, dial framed.DialFunc) {
	p.framed, p.framedTLS, p.framedDial = true, tlsCfg, dial
}

// wrap counts kv's calls and coalesces them unless coalescing is off.
func (p *connPool) wrap(kv pb.KVClient) pb.KVClient {
	kv = countingKV{KVClient: kv, stats: p.stats}
	if p.batches > 0 {
		kv = coalescedKV{KVClient: kv, b: newCoalescer(kv, p.batches, p.batchOps)}
	}
	return kv
}

// kvOf returns the KV client of node n at addr: local's client when n is
// the local node (local may be nil: no local node; addr is then unused),
// else kv(addr). It fails as kv does.
func (p *connPool) kvOf(n nodeID, addr string, local *LocalNode) (pb.KVClient, error) {
	if !isLocal(local, n) {
		return p.kv(addr)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.mu.closed {
		return nil, ErrClosed
	}
	if p.mu.localKV == nil {
		p.mu.localKV = p.wrap(localSentKV{local.KV})
	}
	return p.mu.localKV, nil
}

// isLocal reports whether n is local's node; false without one.
func isLocal(local *LocalNode, n nodeID) bool { return local != nil && n == nodeID(local.ID) }

// kv returns the KV client of addr: through the address's coalescer unless
// coalescing is off. It fails as get does.
func (p *connPool) kv(addr string) (pb.KVClient, error) {
	p.mu.Lock()
	kv, ok := p.mu.kvs[addr]
	p.mu.Unlock()
	if ok {
		return kv, nil
	}
	conn, err := p.get(addr)
	if err != nil {
		return nil, err
	}
	kv = pb.NewKVClient(conn)
	var f *framedConns
	if p.framed {
		f = newFramedConns(addr, p.framedTLS, p.framedDial, p.stats)
		kv = framedKV{KVClient: kv, f: f}
	}
	kv = p.wrap(kv)
	p.mu.Lock()
	defer p.mu.Unlock()
	if prev, ok := p.mu.kvs[addr]; ok {
		return prev, nil
	}
	if p.mu.closed {
		return nil, ErrClosed
	}
	p.mu.kvs[addr] = kv
	if f != nil {
		p.mu.framed[addr] = f
	}
	return kv, nil
}

// get returns the connection to addr, creating it (without blocking on the
// network) if needed. It fails only for an address gRPC cannot parse, or
// after close.
func (p *connPool) get(addr string) (*grpc.ClientConn, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.mu.closed {
		return nil, ErrClosed
	}
	if c, ok := p.mu.conns[addr]; ok {
		return c, nil
	}
	c, err := grpc.NewClient(addr, p.opts...)
	if err != nil {
		return nil, fmt.Errorf("router: connecting to %q: %w", addr, err)
	}
	p.mu.conns[addr] = c
	return c, nil
}

// failing reports whether the connection to addr exists and is in
// TRANSIENT_FAILURE (its last connection attempt failed), or the last
// dial of a framed KV connection to it failed, so choosing a replica can
// try healthier ones first.
func (p *connPool) failing(addr string) bool {
	p.mu.Lock()
	c, ok := p.mu.conns[addr]
	f := p.mu.framed[addr]
	p.mu.Unlock()
	return ok && c.GetState() == connectivity.TransientFailure || f != nil && f.failing()
}

// close closes every connection; later gets fail with ErrClosed.
func (p *connPool) close() error {
	p.mu.Lock()
	conns, framed := p.mu.conns, p.mu.framed
	p.mu.conns, p.mu.kvs, p.mu.framed, p.mu.localKV, p.mu.closed = nil, nil, nil, nil, true
	p.mu.Unlock()
	for _, f := range framed {
		f.close()
	}
	var errs []error
	for _, c := range conns {
		if err := c.Close(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// addrBook maps node IDs to addresses, learned from routes and NotLeader
// hints; a node's latest address wins. Safe for concurrent use.
type addrBook struct {
	mu struct {
		sync.RWMutex
		addrs map[nodeID]string
	}
}

func newAddrBook() *addrBook {
	b := &addrBook{}
	b.mu.addrs = map[nodeID]string{}
	return b
}

func (b *addrBook) get(n nodeID) (string, bool) {
	b.mu.RLock()
	defer b.mu.RUnlock()
	a, ok := b.mu.addrs[n]
	return a, ok
}

func (b *addrBook) set(n nodeID, addr string) {
	if n == 0 || addr == "" {
		return
	}
	b.mu.RLock()
	same := b.mu.addrs[n] == addr
	b.mu.RUnlock()
	if same {
		return
	}
	b.mu.Lock()
	b.mu.addrs[n] = addr
	b.mu.Unlock()
}

// addresses returns every known address, sorted, without duplicates.
func (b *addrBook) addresses() []string {
	b.mu.RLock()
	out := make([]string, 0, len(b.mu.addrs))
	for _, a := range b.mu.addrs {
		out = append(out, a)
	}
	b.mu.RUnlock()
	slices.Sort(out)
	return slices.Compact(out)
}

func (b *addrBook) setAll(addrs map[uint64]string) {
	for n, a := range addrs {
		b.set(nodeID(n), a)
	}
}

// localSentKV is Config.Local's client as the connection pool uses it: a
// local call has no stats handler to say whether it was sent, and it is
// handed to the node as soon as it is made, so it marks its sendRecord
// (sent.go) first: a failed local write may have applied.
type localSentKV struct{ pb.KVClient }

func (l localSentKV) mark(ctx context.Context) {
	if r := sendRecordOf(ctx); r != nil {
		r.mark()
	}
}

func (l localSentKV) Get(ctx context.Context, in *pb.GetRequest, opts ...grpc.CallOption) (*pb.GetResponse, error) {
	l.mark(ctx)
	return l.KVClient.Get(ctx, in, opts...)
}

func (l localSentKV) Put(ctx context.Context, in *pb.PutRequest, opts ...grpc.CallOption) (*pb.PutResponse, error) {
	l.mark(ctx)
	return l.KVClient.Put(ctx, in, opts...)
}

func (l localSentKV) Delete(ctx context.Context, in *pb.DeleteRequest, opts ...grpc.CallOption) (*pb.DeleteResponse, error) {
	l.mark(ctx)
	return l.KVClient.Delete(ctx, in, opts...)
}

func (l localSentKV) CompareAndSwap(ctx context.Context, in *pb.CompareAndSwapRequest, opts ...grpc.CallOption) (*pb.CompareAndSwapResponse, error) {
	l.mark(ctx)
	return l.KVClient.CompareAndSwap(ctx, in, opts...)
}

func (l localSentKV) Scan(ctx context.Context, in *pb.ScanRequest, opts ...grpc.CallOption) (*pb.ScanResponse, error) {
	l.mark(ctx)
	return l.KVClient.Scan(ctx, in, opts...)
}

func (l localSentKV) Batch(ctx context.Context, in *pb.BatchRequest, opts ...grpc.CallOption) (*pb.BatchResponse, error) {
	l.mark(ctx)
	return l.KVClient.Batch(ctx, in, opts...)
}

func (l localSentKV) Txn(ctx context.Context, in *pb.TxnRequest, opts ...grpc.CallOption) (*pb.TxnResponse, error) {
	l.mark(ctx)
	return l.KVClient.Txn(ctx, in, opts...)
}

func (l localSentKV) Multi(ctx context.Context, in *pb.MultiRequest, opts ...grpc.CallOption) (*pb.MultiResponse, error) {
	l.mark(ctx)
	return l.KVClient.Multi(ctx, in, opts...)
}

func (l localSentKV) Compact(ctx context.Context, in *pb.CompactRequest, opts ...grpc.CallOption) (*pb.CompactResponse, error) {
	l.mark(ctx)
	return l.KVClient.Compact(ctx, in, opts...)
}

func (l localSentKV) LeaseGrant(ctx context.Context, in *pb.LeaseGrantRequest, opts ...grpc.CallOption) (*pb.LeaseGrantResponse, error) {
	l.mark(ctx)
	return l.KVClient.LeaseGrant(ctx, in, opts...)
}

func (l localSentKV) LeaseRevoke(ctx context.Context, in *pb.LeaseRevokeRequest, opts ...grpc.CallOption) (*pb.LeaseRevokeResponse, error) {
	l.mark(ctx)
	return l.KVClient.LeaseRevoke(ctx, in, opts...)
}

func (l localSentKV) LeaseKeepAlive(ctx context.Context, in *pb.LeaseKeepAliveRequest, opts ...grpc.CallOption) (*pb.LeaseKeepAliveResponse, error) {
	l.mark(ctx)
	return l.KVClient.LeaseKeepAlive(ctx, in, opts...)
}

func (l localSentKV) LeaseAttach(ctx context.Context, in *pb.LeaseAttachRequest, opts ...grpc.CallOption) (*pb.LeaseAttachResponse, error) {
	l.mark(ctx)
	return l.KVClient.LeaseAttach(ctx, in, opts...)
}
