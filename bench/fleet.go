package bench

import (
	"context"
	"fmt"
	"path/filepath"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/flotilla-kv/flotilla/internal/ports"
	pb "github.com/flotilla-kv/flotilla/rpc/flotillapb"
)

// FlotillaOptions configures a local Flotilla fleet.
type FlotillaOptions struct {
	// Dir holds every process's data directory and log. Required.
	Dir string
	// BinDir holds shardnode and placementd; empty: next to the running
	// executable, then $PATH.
	BinDir string
	// Nodes is the number of shardnodes. Default 3.
	Nodes int
	// Shards is the number of shards placement creates at bootstrap.
	// Default 16. Ignored without placement.
	Shards int
	// NoPlacement starts the shardnodes alone, each knowing the others
	// through --peers; shards are then created through the Admin service.
	NoPlacement bool
	// NodeArgs are extra flags of every shardnode.
	NodeArgs []string
}

// FlotillaNode is one shardnode of a fleet.
type FlotillaNode struct {
	ID         uint64
	Addr, HTTP string
	proc       *process
}

// Proc returns the node's process, for CPU and memory readings.
func (n *FlotillaNode) Proc() Proc { return n.proc.proc() }

// Kill sends SIGKILL to the node and waits for it to die.
func (n *FlotillaNode) Kill() { n.proc.kill() }

// FlotillaFleet is a running local fleet: placementd (unless NoPlacement)
// and shardnodes, child processes of this one. Stop stops them.
type FlotillaFleet struct {
	Dir string
	// Placement is placementd's gRPC address ("" without placement).
	Placement string
	Nodes     []*FlotillaNode
	placement *process
	conns     []*grpc.ClientConn
}

// StartFlotilla starts placementd and the shardnodes on loopback, as
// `flotilla demo` does, and waits until every process is ready (/readyz).
// On error the processes started so far are stopped.
func StartFlotilla(ctx context.Context, o FlotillaOptions) (*FlotillaFleet, error) {
	if o.Nodes == 0 {
		o.Nodes = 3
	}
	if o.Shards == 0 {
		o.Shards = 16
	}
	sn, err := FindBinary(o.BinDir, "shardnode")
	if err != nil {
		return nil, err
	}
	f := &FlotillaFleet{Dir: o.Dir}
	addrs, err := ports.Free(2 * (o.Nodes + 1))
	if err != nil {
		return nil, err
	}
	var readyz []string
	var peers string
	if o.NoPlacement {
		for i := 1; i <= o.Nodes; i++ {
			if peers != "" {
				peers += ","
			}
			peers += fmt.Sprintf("%d=%s", i, addrs[2*i])
		}
	} else {
		pd, err := FindBinary(o.BinDir, "placementd")
		if err != nil {
			return nil, err
		}
		f.Placement = addrs[0]
		f.placement, err = startProcess(o.Dir, "placementd", pd, "--id", "1", "--listen", addrs[0], "--http", addrs[1],
			"--data-dir", filepath.Join(o.Dir, "placement"), "--initial-shards", fmt.Sprint(o.Shards),
			"--replication-factor", fmt.Sprint(min(3, o.Nodes)), "--log-level", "warn")
		if err != nil {
			return nil, err
		}
		readyz = append(readyz, addrs[1])
	}
	for i := 1; i <= o.Nodes; i++ {
		n := &FlotillaNode{ID: uint64(i), Addr: addrs[2*i], HTTP: addrs[2*i+1]}
		args := []string{"--node-id", fmt.Sprint(i), "--listen", n.Addr, "--http", n.HTTP,
			"--data-dir", filepath.Join(o.Dir, fmt.Sprintf("node%d", i)), "--log-level", "warn"}
		if o.NoPlacement {
			args = append(args, "--peers", peers)
		} else {
			args = append(args, "--placement", f.Placement)
		}
		n.proc, err = startProcess(o.Dir, fmt.Sprintf("shardnode-%d", i), sn, append(args, o.NodeArgs...)...)
		if err != nil {
			f.Stop()
			return nil, err
		}
		f.Nodes = append(f.Nodes, n)
		readyz = append(readyz, n.HTTP)
	}
	for _, a := range readyz {
		if err := poll(ctx, 60*time.Second, 50*time.Millisecond, func(ctx context.Context) error {
			if p := f.exitedProcess(); p != nil {
				return fmt.Errorf("%s exited: %v (log %s)", p.name, p.err, p.logPath)
			}
			return httpOK(ctx, "http://"+a+"/readyz")
		}); err != nil {
			f.Stop()
			return nil, fmt.Errorf("bench: flotilla fleet not ready: %w (logs in %s)", err, o.Dir)
		}
	}
	return f, nil
}

func (f *FlotillaFleet) processes() []*process {
	var ps []*process
	if f.placement != nil {
		ps = append(ps, f.placement)
	}
	for _, n := range f.Nodes {
		ps = append(ps, n.proc)
	}
	return ps
}

func (f *FlotillaFleet) exitedProcess() *process {
	for _, p := range f.processes() {
		if p.exited() {
			return p
		}
	}
	return nil
}

// Procs returns every server process of the fleet (placementd included:
// it serves routes and heartbeats, so its CPU is the system's too).
func (f *FlotillaFleet) Procs() []Proc {
	var ps []Proc
	for _, p := range f.processes() {
		ps = append(ps, p.proc())
	}
	return ps
}

// dial returns a shared client connection to addr, closed by Stop.
func (f *FlotillaFleet) dial(addr string) (*grpc.ClientConn, error) {
	c, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, err
	}
	f.conns = append(f.conns, c)
	return c, nil
}

// Admin returns an Admin client of node n (1-based).
func (f *FlotillaFleet) Admin(n int) (pb.AdminClient, error) {
	c, err := f.dial(f.Nodes[n-1].Addr)
	if err != nil {
		return nil, err
	}
	return pb.NewAdminClient(c), nil
}

// WaitLeaders waits until placement lists at least shards shards, each
// with a leader, and the leaders are balanced over the nodes (the most and
// fewest leaders on a node differ by at most one), so that the balancer
// does not move leaders during the measurement. Unbalanced leaders after
// balanceWait (0: do not wait for balance) are accepted; the returned
// string then says so.
func (f *FlotillaFleet) WaitLeaders(ctx context.Context, shards int, balanceWait time.Duration) (string, error) {
	c, err := f.dial(f.Placement)
	if err != nil {
		return "", err
	}
	pc := pb.NewPlacementClient(c)
	leaders := func(ctx context.Context) (map[uint64]int, error) {
		resp, err := pc.ListShards(ctx, &pb.ListShardsRequest{})
		if err != nil {
			return nil, err
		}
		per := map[uint64]int{}
		have := 0
		for _, s := range resp.GetShards() {
			if l := s.GetRoute().GetLeaderNodeId(); l != 0 {
				per[l]++
				have++
			}
		}
		if have < shards {
			return nil, fmt.Errorf("%d of %d shards have a leader", have, shards)
		}
		return per, nil
	}
	if err := poll(ctx, 90*time.Second, 100*time.Millisecond, func(ctx context.Context) error {
		_, err := leaders(ctx)
		return err
	}); err != nil {
		return "", fmt.Errorf("bench: flotilla shards: %w (logs in %s)", err, f.Dir)
	}
	if balanceWait <= 0 {
		return "", nil
	}
	var spread string
	err = poll(ctx, balanceWait, 200*time.Millisecond, func(ctx context.Context) error {
		per, err := leaders(ctx)
		if err != nil {
			return err
		}
		lo, hi := shards, 0
		for _, n := range f.Nodes {
			lo, hi = min(lo, per[n.ID]), max(hi, per[n.ID])
		}
		spread = fmt.Sprint(per)
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

// Stop kills every process of the fleet (SIGKILL: the bench discards the
// data, so a graceful hand-off of leaderships would only cost time) and
// closes the connections.
func (f *FlotillaFleet) Stop() {
	for _, c := range f.conns {
		_ = c.Close()
	}
	f.conns = nil
	for _, p := range f.processes() {
		p.kill()
	}
}
