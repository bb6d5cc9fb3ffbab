package launch

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/flotilla-kv/flotilla/internal/ports"
)

// Fleet is a local fleet: shardnodes that know each other's addresses
// and, optionally, placementd replicas they report to, all child
// processes of this one on loopback ports (internal/ports), each with a
// data directory and a log in Dir.
//
// New, Add and AddPlacement change the fleet's membership: call them from
// one goroutine, before the processes they affect start. Everything else
// (the node lists, starts, kills, Conn) is safe for concurrent use once
// the membership is set.
type Fleet struct {
	// Dir is Options.Dir.
	Dir string

	opts      Options
	bins      map[string]string // binary name → path
	nodes     []*Node           // shardnodes, by ID-1
	placement []*Node           // placementd replicas, by ID-1
	tls       *fleetTLS         // nil: plaintext
}

// New prepares a fleet as o describes (creating Dir, and with o.TLS the
// certificates) without starting any process. Validation reports every
// problem of o at once.
func New(o Options) (*Fleet, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	if o.ReadyTimeout == 0 {
		o.ReadyTimeout = DefaultReadyTimeout
	}
	if err := os.MkdirAll(o.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("launch: %w", err)
	}
	f := &Fleet{Dir: o.Dir, opts: o, bins: map[string]string{}}
	if o.TLS {
		if err := f.EnableTLS(); err != nil {
			return nil, err
		}
	}
	if o.PlacementReplicas > 0 {
		if err := f.AddPlacement(o.PlacementReplicas, o.placementArgs()...); err != nil {
			return nil, err
		}
	}
	for range o.Nodes {
		if _, err := f.Add(o.NodeArgs...); err != nil {
			return nil, err
		}
	}
	return f, nil
}

// Start prepares the fleet o describes and starts it (Fleet.Start): every
// process runs and answers /readyz when it returns. On error the
// processes started so far are killed.
func Start(ctx context.Context, o Options) (*Fleet, error) {
	f, err := New(o)
	if err != nil {
		return nil, err
	}
	if err := f.Start(ctx); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// binary returns the path of name, looked up once per fleet.
func (f *Fleet) binary(name string) (string, error) {
	if p, ok := f.bins[name]; ok {
		return p, nil
	}
	p, err := FindBinary(f.opts.BinDir, name)
	if err != nil {
		return "", err
	}
	f.bins[name] = p
	return p, nil
}

// Add prepares one more shardnode (the next ID) with extra flags args,
// without starting it; every node learns its address on its next start.
func (f *Fleet) Add(args ...string) (*Node, error) {
	bin, err := f.binary("shardnode")
	if err != nil {
		return nil, err
	}
	want := 2
	if f.opts.Etcd {
		want = 3
	}
	addrs, err := ports.Free(want)
	if err != nil {
		return nil, err
	}
	id := uint64(len(f.nodes) + 1)
	n := &Node{
		Process: Process{
			Name: fmt.Sprintf("shardnode-%d", id), Bin: bin,
			LogPath:         filepath.Join(f.Dir, fmt.Sprintf("shardnode-%d.log", id)),
			OwnProcessGroup: f.opts.OwnProcessGroup,
		},
		ID: id, Addr: addrs[0], HTTP: addrs[1],
		DataDir: filepath.Join(f.Dir, fmt.Sprintf("node%d", id)),
		Args:    append([]string(nil), args...),
		fleet:   f, placementd: false,
	}
	if f.opts.Etcd {
		n.etcd = addrs[2]
	}
	f.nodes = append(f.nodes, n)
	return n, nil
}

// AddPlacement prepares n placementd replicas (IDs 1..n, knowing each
// other) with extra flags args, without starting them; shardnodes started
// afterwards report to them. A fleet has one placement service: a second
// call is an error. A single replica is named placementd (log
// placementd.log, data in placement/), replicas of three placementd-ID.
func (f *Fleet) AddPlacement(n int, args ...string) error {
	if len(f.placement) > 0 {
		return errors.New("launch: the fleet has its placement replicas already")
	}
	bin, err := f.binary("placementd")
	if err != nil {
		return err
	}
	addrs, err := ports.Free(2 * n)
	if err != nil {
		return err
	}
	if a := f.opts.PlacementAddr; a != "" {
		if l, err := net.Listen("tcp", a); err == nil {
			l.Close()
			addrs[0] = a
		}
	}
	for i := range n {
		id := uint64(i + 1)
		name, data := "placementd", "placement"
		if n > 1 {
			name, data = fmt.Sprintf("placementd-%d", id), fmt.Sprintf("placement-%d", id)
		}
		f.placement = append(f.placement, &Node{
			Process: Process{
				Name: name, Bin: bin, LogPath: filepath.Join(f.Dir, name+".log"),
				OwnProcessGroup: f.opts.OwnProcessGroup,
			},
			ID: id, Addr: addrs[2*i], HTTP: addrs[2*i+1],
			DataDir: filepath.Join(f.Dir, data),
			Args:    append([]string(nil), args...),
			fleet:   f, placementd: true,
		})
	}
	return nil
}

// Nodes returns the shardnodes in ID order. The slice is the caller's;
// the Nodes are the fleet's.
func (f *Fleet) Nodes() []*Node { return append([]*Node(nil), f.nodes...) }

// Node returns shardnode id, or nil if there is none.
func (f *Fleet) Node(id uint64) *Node {
	if id < 1 || id > uint64(len(f.nodes)) {
		return nil
	}
	return f.nodes[id-1]
}

// Placements returns the placementd replicas in ID order (none without
// placement).
func (f *Fleet) Placements() []*Node { return append([]*Node(nil), f.placement...) }

// PlacementAddrs returns the placementd replicas' gRPC addresses, in ID
// order: what router.Config.PlacementAddresses and --placement take.
func (f *Fleet) PlacementAddrs() []string {
	addrs := make([]string, len(f.placement))
	for i, p := range f.placement {
		addrs[i] = p.Addr
	}
	return addrs
}

// peers returns the --peers value of nodes: ID=address, comma-separated.
func peers(nodes []*Node) string {
	parts := make([]string, len(nodes))
	for i, n := range nodes {
		parts[i] = fmt.Sprintf("%d=%s", n.ID, n.Addr)
	}
	return strings.Join(parts, ",")
}

// Start starts every process that is not running, placement first, and
// waits until each answers /readyz (each within Options.ReadyTimeout).
// The processes start at once, so nodes wait for placement in parallel.
func (f *Fleet) Start(ctx context.Context) error {
	all := append(f.Placements(), f.nodes...)
	if err := startAll(all); err != nil {
		return err
	}
	return f.waitReady(ctx, all)
}

// StartPlacement starts every placementd replica that is not running and
// waits until each is ready.
func (f *Fleet) StartPlacement(ctx context.Context) error {
	if err := startAll(f.placement); err != nil {
		return err
	}
	return f.waitReady(ctx, f.placement)
}

// StartNodes starts every shardnode that is not running and waits until
// each is ready.
func (f *Fleet) StartNodes(ctx context.Context) error {
	if err := startAll(f.nodes); err != nil {
		return err
	}
	return f.waitReady(ctx, f.nodes)
}

func startAll(nodes []*Node) error {
	for _, n := range nodes {
		if !n.Running() {
			if err := n.Start(); err != nil {
				return err
			}
		}
	}
	return nil
}

// waitReady waits for each of nodes in turn, each within
// Options.ReadyTimeout.
func (f *Fleet) waitReady(ctx context.Context, nodes []*Node) error {
	for _, n := range nodes {
		if err := n.waitReadyWithin(ctx, f.opts.ReadyTimeout); err != nil {
			return err
		}
	}
	return nil
}

// all returns every process, placement first.
func (f *Fleet) all() []*Node { return append(f.Placements(), f.nodes...) }

// Stop stops the fleet gracefully: SIGTERM to every running process,
// shardnodes first (they hand their leaderships over while placement
// still answers), then waits for each, killing one that has not exited
// within timeout. It returns, joined, an error per process that exited
// with an error or had to be killed, and closes the fleet's connections.
func (f *Fleet) Stop(timeout time.Duration) error {
	all := f.all()
	for i := len(all) - 1; i >= 0; i-- {
		all[i].Terminate()
	}
	var errs []error
	for _, n := range all {
		if n.latest() == nil {
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		err := n.Wait(ctx)
		cancel()
		switch {
		case errors.Is(err, context.DeadlineExceeded):
			n.Signal(syscall.SIGKILL)
			_ = n.Wait(context.Background())
			errs = append(errs, fmt.Errorf("%s did not stop in time: killed", n.Name))
		case err != nil:
			errs = append(errs, fmt.Errorf("%s exited: %w", n.Name, err))
		}
	}
	f.closeConns()
	return errors.Join(errs...)
}

// Close kills every process (SIGKILL), waits until they are gone and
// closes the fleet's connections: the end of a fleet whose data is thrown
// away (tests, the bench), where a graceful stop would only cost time.
func (f *Fleet) Close() {
	for _, n := range f.all() {
		_ = n.Kill(context.Background())
	}
	f.closeConns()
}

func (f *Fleet) closeConns() {
	for _, n := range f.all() {
		n.closeConn()
	}
}
