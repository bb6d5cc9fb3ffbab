package launch

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/flotilla-kv/flotilla/internal/poll"
	pb "github.com/flotilla-kv/flotilla/rpc/flotillapb"
)

// ErrNoPlacement is returned by the placement queries of a fleet that has
// no placement replica.
var ErrNoPlacement = errors.New("launch: the fleet has no placement service")

// leadersInterval is how often WaitLeaders asks placement.
const leadersInterval = 100 * time.Millisecond

// Leaders asks placement for its shards and returns how many there are
// and how many each shardnode leads, by node ID, as placement last heard
// from the nodes' heartbeats (shards without a known leader count in
// shards only). Any placement client does: the demo's, the bench's, a
// chaos test's over containers.
func Leaders(ctx context.Context, pc pb.PlacementClient) (perNode map[uint64]int, shards int, err error) {
	resp, err := pc.ListShards(ctx, &pb.ListShardsRequest{})
	if err != nil {
		return nil, 0, err
	}
	perNode = map[uint64]int{}
	for _, s := range resp.GetShards() {
		if l := s.GetRoute().GetLeaderNodeId(); l != 0 {
			perNode[l]++
		}
	}
	return perNode, len(resp.GetShards()), nil
}

// Leaders asks the fleet's placement service (each replica in turn until
// one answers) as the package function Leaders does.
func (f *Fleet) Leaders(ctx context.Context) (perNode map[uint64]int, shards int, err error) {
	if len(f.placement) == 0 {
		return nil, 0, ErrNoPlacement
	}
	var errs []error
	for _, p := range f.placement {
		conn, err := p.Conn()
		if err == nil {
			perNode, shards, err = Leaders(ctx, pb.NewPlacementClient(conn))
			if err == nil {
				return perNode, shards, nil
			}
		}
		errs = append(errs, fmt.Errorf("%s: %w", p.Name, err))
	}
	return nil, 0, errors.Join(errs...)
}

// WaitLeaders waits until placement lists at least shards shards and
// every one of them has a leader; ctx bounds the wait. The error names
// how far it got and where the logs are.
func (f *Fleet) WaitLeaders(ctx context.Context, shards int) error {
	err := poll.Until(ctx, 0, leadersInterval, func(ctx context.Context) error {
		perNode, n, err := f.Leaders(ctx)
		if err != nil {
			return err
		}
		return AllLed(perNode, n, shards)
	})
	if err != nil {
		return fmt.Errorf("launch: waiting for shard leaders: %w (logs in %s)", err, f.Dir)
	}
	return nil
}

// AllLed returns nil if placement lists at least want shards and every
// one has a leader (perNode and shards as Leaders returns them), else an
// error that says how many have one.
func AllLed(perNode map[uint64]int, shards, want int) error {
	led := 0
	for _, c := range perNode {
		led += c
	}
	if shards < want || led < shards {
		return fmt.Errorf("%d of %d shards have a leader", led, max(shards, want))
	}
	return nil
}
