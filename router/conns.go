package router

import (
	"errors"
	"fmt"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/credentials/insecure"
)

// maxRecvBytes is the largest response the Client accepts (a Scan page of
// large values); gRPC's default of 4 MiB is too small for a page of 1 MiB
// values.
const maxRecvBytes = 64 << 20

// defaultDialOptions are the Client's own dial options; Config.DialOptions
// come after them and win. The reconnect backoff is much shorter than
// gRPC's default (1s growing to 120s), so a restarted node is used again
// within a fraction of a second.
func defaultDialOptions() []grpc.DialOption {
	return []grpc.DialOption{
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           backoff.Config{BaseDelay: 50 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: 2 * time.Second},
			MinConnectTimeout: 2 * time.Second,
		}),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(maxRecvBytes)),
	}
}

// connPool holds one grpc.ClientConn per address, created on first use
// and shared by every request to that address (gRPC multiplexes calls over
// it and reconnects by itself). Safe for concurrent use.
type connPool struct {
	opts []grpc.DialOption
	mu   struct {
		sync.Mutex
		conns  map[string]*grpc.ClientConn
		closed bool
	}
}

func newConnPool(opts []grpc.DialOption) *connPool {
	p := &connPool{opts: opts}
	p.mu.conns = map[string]*grpc.ClientConn{}
	return p
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
// TRANSIENT_FAILURE (its last connection attempt failed), so choosing a
// replica can try healthier ones first.
func (p *connPool) failing(addr string) bool {
	p.mu.Lock()
	c, ok := p.mu.conns[addr]
	p.mu.Unlock()
	return ok && c.GetState() == connectivity.TransientFailure
}

// close closes every connection; later gets fail with ErrClosed.
func (p *connPool) close() error {
	p.mu.Lock()
	conns := p.mu.conns
	p.mu.conns, p.mu.closed = nil, true
	p.mu.Unlock()
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

func (b *addrBook) setAll(addrs map[uint64]string) {
	for n, a := range addrs {
		b.set(nodeID(n), a)
	}
}
