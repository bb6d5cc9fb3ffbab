package bench

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/flotilla-kv/flotilla/internal/launch"
	"github.com/flotilla-kv/flotilla/internal/poll"
	pb "github.com/flotilla-kv/flotilla/rpc/flotillapb"
)

// readyTimeout bounds each server's start: a loaded machine may take a
// while.
const readyTimeout = 60 * time.Second

// startFlotilla starts the Flotilla fleet of a bench run in dir
// (internal/launch, as the demo's): 3 shardnodes and, with shards > 0, a
// placementd that creates that many shards at bootstrap; with shards == 0
// the nodes run alone, knowing each other through --peers, and shards are
// made through the Admin service. binDir holds the binaries (see
// launch.FindBinary). The servers log warnings only and run in process
// groups of their own, so a Ctrl-C at the terminal reaches the bench,
// which then kills them. The caller closes the fleet.
func startFlotilla(ctx context.Context, dir, binDir string, shards int, nodeArgs ...string) (*launch.Fleet, error) {
	o := launch.Options{Dir: dir, BinDir: binDir, Nodes: 3, LogLevel: "warn", NodeArgs: nodeArgs,
		ReadyTimeout: readyTimeout, OwnProcessGroup: true}
	if shards > 0 {
		o.PlacementReplicas, o.Shards, o.ReplicationFactor = 1, shards, 3
	}
	f, err := launch.Start(ctx, o)
	if err != nil {
		return nil, fmt.Errorf("bench: flotilla fleet: %w", binaryHint(err))
	}
	return f, nil
}

// findBinary returns where the fleet's binary name is (see
// launch.FindBinary), saying how to get it when it is nowhere.
func findBinary(binDir, name string) error {
	_, err := launch.FindBinary(binDir, name)
	return binaryHint(err)
}

// binaryHint adds to a missing binary's error how to make it.
func binaryHint(err error) error {
	if errors.Is(err, launch.ErrNotFound) {
		return fmt.Errorf("%w (run 'make build', or pass --bin)", err)
	}
	return err
}

// procs returns every server process of f (placementd included: it
// serves routes and heartbeats, so its CPU is the system's too).
func procs(f *launch.Fleet) []Proc {
	var ps []Proc
	for _, n := range append(f.Placements(), f.Nodes()...) {
		ps = append(ps, Proc{Name: n.Name, PID: n.PID()})
	}
	return ps
}

// admin returns an Admin client of shardnode id of f.
func admin(f *launch.Fleet, id uint64) (pb.AdminClient, error) {
	c, err := f.Node(id).Conn()
	if err != nil {
		return nil, err
	}
	return pb.NewAdminClient(c), nil
}

// waitLeaders waits until placement lists at least shards shards, each
// with a leader, and the leaders are balanced over the nodes (the most
// and fewest leaders on a node differ by at most one), so that the
// balancer does not move leaders during the measurement. Unbalanced
// leaders after balanceWait (0: do not wait for balance) are accepted;
// the returned note then says so.
func waitLeaders(ctx context.Context, f *launch.Fleet, shards int, balanceWait time.Duration) (string, error) {
	lctx, cancel := context.WithTimeout(ctx, 90*time.Second)
	err := f.WaitLeaders(lctx, shards)
	cancel()
	if err != nil {
		return "", fmt.Errorf("bench: flotilla shards: %w", err)
	}
	if balanceWait <= 0 {
		return "", nil
	}
	var spread string
	err = poll.Until(ctx, balanceWait, 200*time.Millisecond, func(ctx context.Context) error {
		per, _, err := f.Leaders(ctx)
		if err != nil {
			return err
		}
		led, lo, hi := 0, shards, 0
		for _, n := range f.Nodes() {
			led += per[n.ID]
			lo, hi = min(lo, per[n.ID]), max(hi, per[n.ID])
		}
		spread = fmt.Sprint(per)
		if led < shards {
			return fmt.Errorf("%d of %d shards have a leader", led, shards)
		}
		if hi-lo > 1 {
			return fmt.Errorf("leaders per node %s", spread)
		}
		return nil
	})
	if err != nil && ctx.Err() == nil {
		return fmt.Sprintf("leaders not balanced after %s: %s", balanceWait, spread), nil
	}
	return "", ctx.Err()
}
