package chaos

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/flotilla-kv/flotilla/internal/fleet"
	"github.com/flotilla-kv/flotilla/internal/launch"
	"github.com/flotilla-kv/flotilla/internal/testutil"
	pb "github.com/flotilla-kv/flotilla/rpc/flotillapb"
)

// Fleet shape and timing shared by both modes.
const (
	numNodes      = 5
	numPlacement  = 3
	initialShards = 8
	tick          = "50ms"
	heartbeat     = "250ms"
)

// cluster is a running fleet the nemeses act on: placementd replicas and
// shardnodes, by ID. Only the test goroutine calls its methods (they may
// fail the test). Partition is optional (docker mode).
type cluster interface {
	// Nodes and Placements list the IDs, ascending.
	Nodes() []uint64
	Placements() []uint64
	// NodeAddr is the gRPC address of a shardnode, as clients dial it.
	NodeAddr(id uint64) string
	// PlacementAddrs are the placementd gRPC addresses.
	PlacementAddrs() []string

	// KillNode sends SIGKILL; RestartNode starts it again with its data
	// intact and waits until it is ready.
	KillNode(id uint64)
	RestartNode(id uint64)
	// PauseNode freezes the process (SIGSTOP or the cgroup freezer);
	// ResumeNode thaws it.
	PauseNode(id uint64)
	ResumeNode(id uint64)
	KillPlacement(id uint64)
	RestartPlacement(id uint64)

	// Partition cuts the network between the groups (shardnode IDs and
	// placement IDs per side); the host, where clients run, still reaches
	// everyone. Heal removes every cut. CanPartition reports support.
	CanPartition() bool
	Partition(sides []side)
	Heal()

	// SaveLogs copies every process's log into dir.
	SaveLogs(dir string)
}

// side is one side of a network partition.
type side struct {
	Nodes      []uint64
	Placements []uint64
}

func (s side) String() string {
	var parts []string
	for _, n := range s.Nodes {
		parts = append(parts, fmt.Sprintf("n%d", n))
	}
	for _, p := range s.Placements {
		parts = append(parts, fmt.Sprintf("p%d", p))
	}
	return "{" + strings.Join(parts, ",") + "}"
}

// processCluster runs the fleet as processes on loopback (internal/fleet).
type processCluster struct {
	t *testing.T
	f *fleet.Fleet
}

func startProcessCluster(t *testing.T) *processCluster {
	f := fleet.New(t, numNodes, "--tick", tick, "--heartbeat-interval", heartbeat)
	f.AddPlacement(numPlacement, "--tick", tick, "--heartbeat-interval", heartbeat,
		"--schedule-interval", heartbeat, "--initial-shards", fmt.Sprint(initialShards), "--replication-factor", "3")
	f.StartPlacement()
	f.Start()
	return &processCluster{t: t, f: f}
}

func sortedIDs[V any](m map[uint64]V) []uint64 {
	ids := make([]uint64, 0, len(m))
	for id := range m {
		ids = append(ids, id)
	}
	sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
	return ids
}

func (c *processCluster) Nodes() []uint64            { return sortedIDs(c.f.Nodes) }
func (c *processCluster) Placements() []uint64       { return sortedIDs(c.f.Placement) }
func (c *processCluster) NodeAddr(id uint64) string  { return c.f.Nodes[id].Addr }
func (c *processCluster) PlacementAddrs() []string   { return strings.Split(c.f.PlacementAddrs(), ",") }
func (c *processCluster) KillNode(id uint64)         { c.f.Nodes[id].Kill() }
func (c *processCluster) RestartNode(id uint64)      { c.f.Nodes[id].Restart() }
func (c *processCluster) PauseNode(id uint64)        { c.f.Nodes[id].Pause() }
func (c *processCluster) ResumeNode(id uint64)       { c.f.Nodes[id].Resume() }
func (c *processCluster) KillPlacement(id uint64)    { c.f.Placement[id].Kill() }
func (c *processCluster) RestartPlacement(id uint64) { c.f.Placement[id].Restart() }
func (c *processCluster) CanPartition() bool         { return false }
func (c *processCluster) Heal()                      {}
func (c *processCluster) Partition(sides []side) {
	c.t.Fatalf("chaos: process mode cannot partition %v", sides)
}
func (c *processCluster) SaveLogs(dir string) { copyLogs(c.f.Dir, dir) }
func (c *processCluster) String() string      { return "process" }

// copyLogs copies the *.log files of src into dst.
func copyLogs(src, dst string) {
	_ = os.MkdirAll(dst, 0o755)
	logs, _ := filepath.Glob(filepath.Join(src, "*.log"))
	for _, l := range logs {
		if b, err := os.ReadFile(l); err == nil {
			_ = os.WriteFile(filepath.Join(dst, filepath.Base(l)), b, 0o644)
		}
	}
}

// inspector asks placement about the fleet: who leads which shard, which
// placement replica leads. Safe for concurrent use.
type inspector struct {
	addrs []string
	conns []*grpc.ClientConn
}

func newInspector(addrs []string) (*inspector, error) {
	in := &inspector{addrs: addrs}
	for _, a := range addrs {
		c, err := grpc.NewClient(a, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			in.Close()
			return nil, err
		}
		in.conns = append(in.conns, c)
	}
	return in, nil
}

func (in *inspector) Close() {
	for _, c := range in.conns {
		_ = c.Close()
	}
}

// each calls f on each placement replica until one succeeds.
func (in *inspector) each(f func(pb.PlacementClient, context.Context) error) error {
	var errs []string
	for i, c := range in.conns {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		err := f(pb.NewPlacementClient(c), ctx)
		cancel()
		if err == nil {
			return nil
		}
		errs = append(errs, fmt.Sprintf("%s: %v", in.addrs[i], err))
	}
	return fmt.Errorf("chaos: no placement replica answered: %s", strings.Join(errs, "; "))
}

// leaders returns, per shardnode ID, how many shards it leads as
// placement last heard, and the number of shards.
func (in *inspector) leaders() (map[uint64]int, int, error) {
	var (
		perNode map[uint64]int
		shards  int
	)
	err := in.each(func(p pb.PlacementClient, ctx context.Context) error {
		var err error
		perNode, shards, err = launch.Leaders(ctx, p)
		return err
	})
	if err != nil {
		return nil, 0, err
	}
	return perNode, shards, nil
}

// topLeader returns the shardnode leading the most shards among
// candidates (ties: lowest ID), or 0 when placement does not know.
func (in *inspector) topLeader(candidates []uint64) uint64 {
	counts, _, err := in.leaders()
	if err != nil {
		return 0
	}
	best, bestN := uint64(0), -1
	for _, id := range candidates {
		if counts[id] > bestN {
			best, bestN = id, counts[id]
		}
	}
	return best
}

// placementLeader returns the index (0-based, in addrs order) of the
// placement leader, or -1.
func (in *inspector) placementLeader() int {
	var addr string
	err := in.each(func(p pb.PlacementClient, ctx context.Context) error {
		st, err := p.GetClusterStatus(ctx, &pb.ClusterStatusRequest{})
		addr = st.GetPlacementLeaderAddress()
		return err
	})
	if err != nil {
		return -1
	}
	for i, a := range in.addrs {
		if a == addr {
			return i
		}
	}
	return -1
}

// waitBootstrapped waits until placement lists initialShards shards,
// each with a leader.
func (in *inspector) waitBootstrapped(t *testing.T, timeout time.Duration) {
	testutil.Eventually(t, timeout, func() error {
		perNode, shards, err := in.leaders()
		if err != nil {
			return err
		}
		return launch.AllLed(perNode, shards, initialShards)
	})
}
