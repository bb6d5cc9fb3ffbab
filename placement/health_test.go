package placement

import (
	"context"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/flotilla-kv/flotilla/multiraft"
	"github.com/flotilla-kv/flotilla/placement/schedule"
	pb "github.com/flotilla-kv/flotilla/rpc/flotillapb"
	"github.com/flotilla-kv/flotilla/rpc/pbconv"
	"github.com/flotilla-kv/flotilla/shard"
)

// healthFixture is a service whose catalogue registers nodes and whose
// clock the test moves.
type healthFixture struct {
	t   *testing.T
	s   *Service
	now time.Time
}

func newHealthFixture(t *testing.T, nodes int, cfg Config) *healthFixture {
	f := &healthFixture{t: t, now: time.Unix(1000, 0)}
	cfg.Now = func() time.Time { return f.now }
	f.s = newService(cfg, &Catalogue{}, nil)
	c := &catalogue{nodes: map[multiraft.NodeID]NodeRecord{}, counters: map[uint64]uint64{}}
	for id := multiraft.NodeID(1); id <= multiraft.NodeID(nodes); id++ {
		c.nodes[id] = NodeRecord{ID: id, Address: "n"}
	}
	c.settings.Bootstrapped = true
	f.s.cat.cur.Store(c)
	return f
}

// shardOn is shard id with replica id*10+n on each node n, led from the
// first.
func shardOn(id uint64, nodes ...uint64) shard.Descriptor {
	d := shard.Descriptor{ShardID: shard.ShardID(id), Start: []byte{byte(id)}, End: []byte{byte(id + 1)}, Epoch: shard.Epoch{Version: 1, ConfVer: 1}}
	for _, n := range nodes {
		d.Replicas = append(d.Replicas, multiraft.Replica{ReplicaID: multiraft.ReplicaID(id*10 + n), NodeID: multiraft.NodeID(n)})
	}
	return d
}

// beat records a heartbeat of node at the fixture's time, as the leader of
// the shards in led and a follower of nothing else.
func (f *healthFixture) beat(node uint64, led ...shard.Descriptor) {
	req := &pb.HeartbeatRequest{NodeId: node}
	for _, d := range led {
		req.Replicas = append(req.Replicas, &pb.ReplicaReport{ShardId: uint64(d.ShardID), ReplicaId: uint64(d.ShardID)*10 + node, Leader: true, Shard: pbconv.DescriptorToProto(d)})
	}
	f.s.view.heartbeat(req, f.now)
}

func (f *healthFixture) status() *pb.ClusterStatus {
	f.t.Helper()
	cs := &pb.ClusterStatus{}
	if err := f.s.fillHealth(cs); err != nil {
		f.t.Fatal(err)
	}
	return cs
}

// TestHealthCountsLiveVoters: a shard with a replica on a node silent for
// three heartbeat intervals is under-replicated at once, long before
// --down-after; one with two of three there is unavailable too. (The
// status used to count descriptors with fewer replicas than the
// replication factor, or with a lagging replica, so a stopped node showed
// nothing until its replicas lagged or were replaced.)
func TestHealthCountsLiveVoters(t *testing.T) {
	f := newHealthFixture(t, 4, Config{HeartbeatInterval: time.Second, DownAfter: time.Minute})
	a, b, c := shardOn(1, 1, 2, 3), shardOn(2, 1, 2, 4), shardOn(3, 1, 3, 4)
	beatAll := func(nodes ...uint64) {
		for _, n := range nodes {
			switch n {
			case 1:
				f.beat(1, a, b, c)
			default:
				f.beat(n)
			}
		}
	}
	beatAll(1, 2, 3, 4)
	if cs := f.status(); cs.GetShards() != 3 || cs.GetUnderReplicated() != 0 || cs.GetUnavailable() != 0 || cs.GetBlockedShards() != 0 {
		t.Fatalf("healthy fleet: %v", cs)
	}
	// Node 4 stops. Two heartbeat intervals later it is not down yet.
	for range 2 {
		f.now = f.now.Add(time.Second)
		beatAll(1, 2, 3)
	}
	if cs := f.status(); cs.GetUnderReplicated() != 0 {
		t.Fatalf("node 4 silent for 2 intervals: %v", cs)
	}
	// The third: shards 2 and 3 have two live voters of three.
	f.now = f.now.Add(time.Second)
	beatAll(1, 2, 3)
	if cs := f.status(); cs.GetUnderReplicated() != 2 || cs.GetUnavailable() != 0 {
		t.Fatalf("node 4 silent for 3 intervals: under-replicated %d unavailable %d, want 2 and 0", cs.GetUnderReplicated(), cs.GetUnavailable())
	}
	// Node 3 stops too: shard 3 has one live voter, no quorum.
	for range 3 {
		f.now = f.now.Add(time.Second)
		beatAll(1, 2)
	}
	cs := f.status()
	if cs.GetUnderReplicated() != 3 || cs.GetUnavailable() != 1 || cs.GetBlockedShards() != 1 {
		t.Fatalf("nodes 3 and 4 silent: %v", cs)
	}
	if g := cs.GetBlocked(); len(g) != 1 || g[0].GetNeed() != "repair" || g[0].GetShards() != 1 || g[0].GetShardIds()[0] != 3 || g[0].GetWaiting() {
		t.Fatalf("blocked groups: %v", g)
	}
}

// TestHealthSaysWhyRepairAndDrainCannotHappen: with as many nodes as the
// replication factor, a dead node's replicas and a draining node's have
// nowhere to go; the status and the drain's answer say so.
func TestHealthSaysWhyRepairAndDrainCannotHappen(t *testing.T) {
	f := newHealthFixture(t, 3, Config{HeartbeatInterval: time.Second, DownAfter: 3 * time.Second})
	shards := []shard.Descriptor{shardOn(1, 1, 2, 3), shardOn(2, 1, 2, 3)}
	f.beat(1, shards...)
	f.beat(2)
	f.beat(3)
	// Node 1 drains (as the catalogue records it).
	cat := f.s.cat.load()
	n := cat.nodes[1]
	n.Draining = true
	cat.nodes[1] = n
	resp, err := f.s.drainOutlook(1)
	if err != nil {
		t.Fatal(err)
	}
	if resp.GetShards() != 2 || len(resp.GetBlocked()) != 1 || resp.GetBlocked()[0].GetReason() != "no live node without a replica of the shard" {
		t.Fatalf("drain outlook: %v", resp)
	}
	n.Draining = false
	cat.nodes[1] = n
	// Node 3 dies: past DownAfter its replicas have nowhere to go.
	for range 5 {
		f.now = f.now.Add(time.Second)
		f.beat(1, shards...)
		f.beat(2)
	}
	cs := f.status()
	if cs.GetUnderReplicated() != 2 || cs.GetBlockedShards() != 2 || len(cs.GetBlocked()) != 1 {
		t.Fatalf("node 3 dead: %v", cs)
	}
	if g := cs.GetBlocked()[0]; g.GetNeed() != "repair" || g.GetWaiting() || g.GetReason() != "no live node without a replica of the shard" {
		t.Fatalf("node 3 dead: blocked %v", g)
	}
}

// TestNewLeaderCountsUnheardDrainingNodeDown: a draining node that a new
// placement leader has not heard from is down in the new leader's counts
// (cluster summary, GetClusterStatus, gauges), in its banner and for its
// scheduler, as a draining node silent for three heartbeat intervals is
// for the old leader. (Its state says draining and its last heartbeat
// reads 0 ms ago, so the counts used to call it up.) A draining node
// heard from less than a millisecond ago is up.
func TestNewLeaderCountsUnheardDrainingNodeDown(t *testing.T) {
	old := newStatusFleet(t, 3)
	cat := old.s.cat.load()
	n := cat.nodes[3]
	n.Draining = true
	cat.nodes[3] = n
	old.beat(1, 2, 3)
	if a := old.status(); a.Cluster.NodesDown != 0 {
		t.Fatalf("old leader: a draining node that heartbeats at this instant counted down: %d down, problems %s", a.Cluster.NodesDown, a.describe())
	}

	// Leadership moves to another replica: the same catalogue, a view
	// empty of heartbeats. Nodes 1 and 2 heartbeat to it; node 3 does not.
	old.s.engine.(*fakeEngine).set(false, 2)
	nw := newStatusFleet(t, 3)
	nw.s.cat.cur.Store(cat)
	nw.now = old.now
	nw.beat(1, 2)
	a := nw.status()
	down, err := a.problem(ProblemNodesDown)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(down.NodeIDs, []uint64{3}) || !strings.Contains(down.Text, "never heard from") {
		t.Errorf("new leader's banner: nodes down %v (%q), want [3] never heard from", down.NodeIDs, down.Text)
	}
	if a.Cluster.NodesDown != 1 {
		t.Errorf("new leader's summary counts %d nodes down, want 1 (node 3, draining and never heard from)", a.Cluster.NodesDown)
	}
	cs, err := nw.s.clusterStatus(t.Context(), &pb.ClusterStatusRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if cs.GetNodesUp() != 2 || cs.GetNodesDown() != 1 {
		t.Errorf("new leader's GetClusterStatus: %d up, %d down; want 2 up, 1 down", cs.GetNodesUp(), cs.GetNodesDown())
	}
	_, _, _, upGauge, downGauge, _ := nw.s.Telemetry()
	if upGauge() != 2 || downGauge() != 1 {
		t.Errorf("new leader's gauges: %d up, %d down; want 2 and 1", upGauge(), downGauge())
	}
	// The scheduler's view, which the counts must agree with.
	cl, _ := nw.s.clusterOf(nw.now, nil)
	for _, sn := range cl.Nodes {
		if want := sn.ID == 3; (sn.State == schedule.NodeDown) != want {
			t.Errorf("new leader's scheduler: node %d state %v, down want %v", sn.ID, sn.State, want)
		}
	}

	// Once node 3 heartbeats to the new leader it is draining and up.
	nw.beat(3)
	if a := nw.status(); a.Cluster.NodesDown != 0 {
		t.Errorf("new leader: node 3 heartbeated and still counts down: %d down, problems %s", a.Cluster.NodesDown, a.describe())
	}
}

// TestStatusPageChartAxisSpansTheSeries loads the status page in headless
// Chromium (Debian's chromium package; skipped without it) over a fleet
// that heartbeated for 3 minutes: the charts' time axis spans 5 minutes,
// not the hour in which 3 minutes of points were a sliver at the right
// edge; over one that heartbeated for 20 minutes it spans 30. (Each fleet
// is loaded once, after its heartbeats: its clock is not locked, so it
// must not move while the page's requests read it.)
func TestStatusPageChartAxisSpansTheSeries(t *testing.T) {
	browser, err := exec.LookPath("chromium")
	if err != nil {
		t.Skip("chromium is not installed ('make browser-deps' installs it)")
	}
	// axis returns the time labels of the load chart of a fleet that
	// heartbeated every second for d.
	axis := func(d time.Duration) string {
		f := newStatusFleet(t, 3)
		for range int(d / time.Second) {
			f.tick(1, 2, 3)
		}
		// Read in process first: the fleet is healthy, and the race
		// detector sees the clock written before the handlers that
		// Chromium's requests run read it (the socket write of this
		// request orders them; Chromium's own requests would not).
		if a := f.status(); a.Cluster.NodesDown != 0 {
			t.Fatalf("%d nodes down: %s", a.Cluster.NodesDown, a.describe())
		}
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		out, err := exec.CommandContext(ctx, browser, "--headless", "--no-sandbox", "--disable-gpu",
			"--virtual-time-budget=3000", "--dump-dom", f.url+"/").Output()
		if err != nil {
			t.Fatalf("chromium --dump-dom: %v", err)
		}
		svg := regexp.MustCompile(`(?s)<svg id="chart-load".*?</svg>`).FindString(string(out))
		var labels []string
		for _, m := range regexp.MustCompile(`<text[^>]*>(-\d+ min|now)</text>`).FindAllStringSubmatch(svg, -1) {
			labels = append(labels, m[1])
		}
		return strings.Join(labels, " ")
	}
	if got, want := axis(3*time.Minute), "-5 min -4 min -3 min -2 min -1 min now"; got != want {
		t.Errorf("after 3 minutes the load chart's axis reads %q, want %q", got, want)
	}
	if got, want := axis(20*time.Minute), "-30 min -25 min -20 min -15 min -10 min -5 min now"; got != want {
		t.Errorf("after 20 minutes the load chart's axis reads %q, want %q", got, want)
	}
}
