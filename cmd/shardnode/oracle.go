package main

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"

	"github.com/cockroachdb/pebble/v2"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/flotilla-kv/flotilla/internal/keys"
	"github.com/flotilla-kv/flotilla/placement/tso"
	pb "github.com/flotilla-kv/flotilla/rpc/flotillapb"
	"github.com/flotilla-kv/flotilla/shard"
)

// placementOracle is the fleet's timestamp oracle as a shard.Oracle: it
// asks placementd (GetTimestamps), trying each placement address in turn
// until one answers. The shard Store batches its writes into one call at
// a time (see shard.Oracle), so this makes one request per batch.
type placementOracle struct {
	addrs []string
	dial  func(addr string) (*grpc.ClientConn, error)
	mu    struct {
		sync.Mutex
		next int // index in addrs of the address to try first
	}
}

var _ shard.Oracle = (*placementOracle)(nil)

// Next implements shard.Oracle.
func (o *placementOracle) Next(ctx context.Context, count int) (tso.Timestamp, error) {
	if count < 1 || count > tso.LogicalRange {
		return 0, fmt.Errorf("%w: %d", tso.ErrBadCount, count)
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
		resp, err = pb.NewPlacementClient(conn).GetTimestamps(ctx, &pb.GetTimestampsRequest{Count: uint32(count)})
		if err == nil {
			o.mu.Lock()
			o.mu.next = at
			o.mu.Unlock()
			return tso.Timestamp(resp.GetFirst()), nil
		}
		if ctx.Err() != nil || status.Code(err) == codes.InvalidArgument {
			break
		}
	}
	return 0, fmt.Errorf("placement's timestamp oracle: %w", err)
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
