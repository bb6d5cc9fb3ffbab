package main

import (
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/flotilla-kv/flotilla/internal/keys"
	"github.com/flotilla-kv/flotilla/placement/tso"
	"github.com/flotilla-kv/flotilla/rpc"
	pb "github.com/flotilla-kv/flotilla/rpc/flotillapb"
	"github.com/flotilla-kv/flotilla/shard"
)

// placementOracle is the fleet's timestamp oracle as a shard.Oracle: it
// asks placementd. The shard Store batches its writes into one call at a
// time (see shard.Oracle), so this makes one request per batch: with
// framed set, on a framed timestamp connection to the placement leader
// (rpc.TimestampConn: no gRPC, a fraction of the stream's cost on
// placementd, see below); else, or towards a placementd that does not
// serve those, on a stream to it (StreamTimestamps, a fraction of a unary
// call's cost on both sides); else by GetTimestamps, trying each
// placement address in turn until one answers (a follower forwards it to
// the leader). A request whose stream fails is asked again by
// GetTimestamps: a call that starts later, so the timestamps it returns
// are as good for the writes waiting on it; the next request opens a
// stream to the next address.
//
// Why framed connections: placementd is nearly idle but for the oracle,
// and each message of a gRPC stream passes through three of its
// goroutines (HTTP/2 reader, stream handler, writer loop), each hand-off
// a wake-up of an idle process. In the bench's write workload (flotilla
// bench compare --workload write --clients 100, about 18 writes per
// request) on the shared 2-core machine, the stream cost placementd 23
// to 30 µs of CPU per write, where the build before revisions used 2.
type placementOracle struct {
	addrs []string
	dial  func(addr string) (*grpc.ClientConn, error)
	// framed turns on framed timestamp connections, with framedTLS the
	// node's client TLS configuration (nil: plaintext).
	framed    bool
	framedTLS *tls.Config
	mu        struct {
		sync.Mutex
		next int // index in addrs of the address to try first
	}
	// st is the stream or framed connection (at most one is open), held
	// for a whole request: the Store makes one at a time.
	st struct {
		sync.Mutex
		stream  pb.Placement_StreamTimestampsClient
		cancel  context.CancelFunc
		conn    *rpc.TimestampConn
		at      int       // index in addrs of the stream's address
		retryAt time.Time // no stream before then, after a failure
		// streamUntil: a placementd did not serve framed connections,
		// so streams until then.
		streamUntil time.Time
	}
}

var _ shard.WriteOracle = (*placementOracle)(nil)

// streamRetry is how long the oracle asks by GetTimestamps after a
// stream could not be used, before it opens another.
const streamRetry = 100 * time.Millisecond

// framedRetry is how long the oracle uses streams after a placementd
// answered a framed connection as an older build does.
const framedRetry = time.Minute

// Next implements shard.Oracle.
func (o *placementOracle) Next(ctx context.Context, count int) (tso.Timestamp, error) {
	first, _, err := o.NextWrites(ctx, count, 0)
	return first, err
}

// NextWrites implements shard.WriteOracle: GetTimestamps with write_span.
func (o *placementOracle) NextWrites(ctx context.Context, count, writeSpan int) (first, lastWrite tso.Timestamp, err error) {
	if count < 1 || count > tso.LogicalRange || writeSpan < 0 || writeSpan > count {
		return 0, 0, fmt.Errorf("%w: %d (write span %d)", tso.ErrBadCount, count, writeSpan)
	}
	resp, err := o.ask(ctx, &pb.GetTimestampsRequest{Count: uint32(count), WriteSpan: uint32(writeSpan)})
	if err != nil {
		return 0, 0, err
	}
	first, lastWrite = tso.Timestamp(resp.GetFirst()), tso.Timestamp(resp.GetLastWrite())
	if lastWrite == 0 {
		// A placementd that keeps no last write: the batch's last
		// timestamp is at or above every write's, which is always safe.
		lastWrite = first + tso.Timestamp(count) - 1
	}
	return first, lastWrite, nil
}

// LastWrite implements shard.WriteOracle: GetTimestamps with count 0.
func (o *placementOracle) LastWrite(ctx context.Context) (tso.Timestamp, error) {
	resp, err := o.ask(ctx, &pb.GetTimestampsRequest{})
	if err != nil {
		return 0, err
	}
	return tso.Timestamp(resp.GetLastWrite()), nil
}

// ask sends req on the stream, else by GetTimestamps (see placementOracle).
func (o *placementOracle) ask(ctx context.Context, req *pb.GetTimestampsRequest) (*pb.GetTimestampsResponse, error) {
	if resp, ok := o.viaStream(ctx, req); ok {
		return resp, nil
	}
	o.mu.Lock()
	first := o.mu.next
	o.mu.Unlock()
	var err error
	for i := range o.addrs {
		at := (first + i) % len(o.addrs)
		var conn *grpc.ClientConn
		if conn, err = o.dial(o.addrs[at]); err != nil {
			continue
		}
		var resp *pb.GetTimestampsResponse
		resp, err = pb.NewPlacementClient(conn).GetTimestamps(ctx, req)
		if err == nil {
			o.mu.Lock()
			o.mu.next = at
			o.mu.Unlock()
			return resp, nil
		}
		if ctx.Err() != nil || status.Code(err) == codes.InvalidArgument {
			break
		}
	}
	return nil, fmt.Errorf("placement's timestamp oracle: %w", err)
}

// viaStream sends req on the framed connection or the stream, opening
// one if need be. ok is false when it could not answer (none could be
// opened, or it failed: it is dropped, and the next one goes to the next
// address); the caller then asks by GetTimestamps.
func (o *placementOracle) viaStream(ctx context.Context, req *pb.GetTimestampsRequest) (_ *pb.GetTimestampsResponse, ok bool) {
	o.st.Lock()
	defer o.st.Unlock()
	if o.st.stream == nil && o.st.conn == nil {
		if time.Now().Before(o.st.retryAt) || !o.openFramed(ctx) && !o.openStream() {
			return nil, false
		}
	}
	if o.st.conn != nil {
		resp, err := o.st.conn.Ask(ctx, req)
		if err != nil {
			o.dropStream()
			return nil, false
		}
		return resp, true
	}
	// The stream outlives ctx: end it if ctx ends while waiting.
	stop := context.AfterFunc(ctx, o.st.cancel)
	err := o.st.stream.Send(req)
	var resp *pb.GetTimestampsResponse
	if err == nil {
		resp, err = o.st.stream.Recv()
	}
	if !stop() || err != nil {
		o.dropStream()
		return nil, false
	}
	return resp, true
}

// openFramed opens a framed connection to the address after the last
// one's, if the oracle uses them; false if it does not, or the
// placementd there does not serve them (streams for framedRetry then),
// or the dial failed (dropped: the next one goes to the next address).
// The caller holds o.st.
func (o *placementOracle) openFramed(ctx context.Context) bool {
	if !o.framed || time.Now().Before(o.st.streamUntil) {
		return false
	}
	conn, err := rpc.DialTimestamps(ctx, o.addrs[o.st.at%len(o.addrs)], o.framedTLS)
	switch {
	case errors.Is(err, rpc.ErrTimestampsUnsupported):
		o.st.streamUntil = time.Now().Add(framedRetry)
		return false
	case err != nil:
		o.dropStream()
		return false
	}
	o.st.conn = conn
	return true
}

// openStream opens a stream to the address after the last one's.
// The caller holds o.st.
func (o *placementOracle) openStream() bool {
	at := o.st.at % len(o.addrs)
	conn, err := o.dial(o.addrs[at])
	if err != nil {
		o.dropStream()
		return false
	}
	ctx, cancel := context.WithCancel(context.Background())
	stream, err := pb.NewPlacementClient(conn).StreamTimestamps(ctx)
	if err != nil {
		cancel()
		o.dropStream()
		return false
	}
	o.st.stream, o.st.cancel = stream, cancel
	return true
}

// dropStream ends the stream, if any, and moves on to the next address
// for the next one. The caller holds o.st.
func (o *placementOracle) dropStream() {
	o.closeLocked()
	o.st.at++
	o.st.retryAt = time.Now().Add(streamRetry)
}

// close ends the stream or framed connection.
func (o *placementOracle) close() {
	o.st.Lock()
	defer o.st.Unlock()
	o.closeLocked()
}

// closeLocked ends the stream or framed connection, if any. The caller
// holds o.st.
func (o *placementOracle) closeLocked() {
	if o.st.cancel != nil {
		o.st.cancel()
	}
	if o.st.conn != nil {
		_ = o.st.conn.Close()
	}
	o.st.stream, o.st.cancel, o.st.conn = nil, nil, nil
}

// nodeOracleStore is the tso.Store of a node run without placement: the
// oracle's window lives in the node's own Pebble, synced, so the node's
// revisions keep increasing across its restarts. Such a node's revisions
// follow real time among its own writes only: a fleet of several nodes
// needs placementd's oracle.
type nodeOracleStore struct{ db *pebble.DB }

// Load implements tso.Store.
func (s nodeOracleStore) Load(context.Context) (tso.Timestamp, error) {
	v, closer, err := s.db.Get(keys.NodeOracleLimit)
	if errors.Is(err, pebble.ErrNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	defer closer.Close()
	if len(v) != 8 {
		return 0, fmt.Errorf("the node's oracle window is %d bytes, want 8", len(v))
	}
	return tso.Timestamp(binary.BigEndian.Uint64(v)), nil
}

// Save implements tso.Store. The oracle saves one limit at a time and
// only higher ones, so a plain write keeps the highest.
func (s nodeOracleStore) Save(_ context.Context, limit tso.Timestamp) error {
	return s.db.Set(keys.NodeOracleLimit, binary.BigEndian.AppendUint64(nil, uint64(limit)), pebble.Sync)
}
