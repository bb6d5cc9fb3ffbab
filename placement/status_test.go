package placement

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/flotilla-kv/flotilla/internal/readable"
	"github.com/flotilla-kv/flotilla/multiraft"
	pb "github.com/flotilla-kv/flotilla/rpc/flotillapb"
	"github.com/flotilla-kv/flotilla/rpc/pbconv"
	"github.com/flotilla-kv/flotilla/shard"
)

// statusFleet is a placement service that leads (a fakeEngine), whose
// nodes heartbeat the shards of layout as the test says, on the clock the
// test moves, and whose /api/status a test server answers.
type statusFleet struct {
	*healthFixture
	url    string
	layout []shard.Descriptor
	// sizes is each shard's size as its leader reports it.
	sizes map[shard.ShardID]uint64
	// lagging is the replicas each shard's leader reports behind.
	lagging map[shard.ShardID][]multiraft.ReplicaID
	// leader is the node leading each shard.
	leader map[shard.ShardID]uint64
	// load is the requests/s each node reports.
	load map[uint64]float64
}

// newStatusFleet registers nodes 1..nodes and lays out two shards, [""
// "m") and ["m", +inf), each with a replica on nodes 1, 2 and 3 (replica
// id*10+node), led from node 1 and node 2 respectively.
func newStatusFleet(t *testing.T, nodes int) *statusFleet {
	f := &statusFleet{healthFixture: newHealthFixture(t, nodes, Config{HeartbeatInterval: time.Second, DownAfter: time.Minute}),
		sizes: map[shard.ShardID]uint64{1: 1000, 2: 300}, lagging: map[shard.ShardID][]multiraft.ReplicaID{},
		leader: map[shard.ShardID]uint64{1: 1, 2: 2}, load: map[uint64]float64{}}
	eng := &fakeEngine{}
	eng.set(true, 1)
	f.s.engine = eng
	f.s.cat.load().settings.Bootstrapped = true
	left, right := shardOn(1, 1, 2, 3), shardOn(2, 1, 2, 3)
	left.Start, left.End, right.Start, right.End = nil, []byte("m"), []byte("m"), nil
	f.layout = []shard.Descriptor{left, right}
	mux := http.NewServeMux()
	RegisterHTTP(mux, f.s)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	f.url = srv.URL
	return f
}

// beat has each of nodes heartbeat every replica of the layout it hosts,
// as the leader of the shards f.leader says it leads.
func (f *statusFleet) beat(nodes ...uint64) {
	for _, n := range nodes {
		req := &pb.HeartbeatRequest{NodeId: n, Load: f.load[n]}
		for _, d := range f.layout {
			for _, r := range d.Replicas {
				if uint64(r.NodeID) != n {
					continue
				}
				rep := &pb.ReplicaReport{ShardId: uint64(d.ShardID), ReplicaId: uint64(r.ReplicaID)}
				if f.leader[d.ShardID] == n {
					rep.Leader, rep.Shard, rep.ApproximateBytes = true, pbconv.DescriptorToProto(d), f.sizes[d.ShardID]
					for _, l := range f.lagging[d.ShardID] {
						rep.LaggingReplicaIds = append(rep.LaggingReplicaIds, uint64(l))
					}
					req.UsedBytes += rep.ApproximateBytes // as shardnode reports: the shards it leads
				}
				req.Replicas = append(req.Replicas, rep)
			}
		}
		f.s.view.heartbeat(req, f.now)
	}
}

// tick moves the clock by a heartbeat interval, and the nodes of alive
// heartbeat.
func (f *statusFleet) tick(alive ...uint64) {
	f.now = f.now.Add(f.s.cfg.HeartbeatInterval)
	f.beat(alive...)
}

// statusAnswer is what the tests read of /api/status.
type statusAnswer struct {
	Cluster struct {
		NodesDown       int `json:"nodes_down"`
		UnderReplicated int `json:"under_replicated"`
		Unavailable     int `json:"unavailable"`
	} `json:"cluster"`
	Nodes []struct {
		NodeID   string `json:"node_id"`
		Replicas int    `json:"replicas"`
		Leaders  int    `json:"leaders"`
	} `json:"nodes"`
	Shards []json.RawMessage `json:"shards"`
	Health StatusPageHealth  `json:"health"`
}

func (f *statusFleet) status() statusAnswer {
	f.t.Helper()
	resp, err := http.Get(f.url + "/api/status")
	if err != nil {
		f.t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		f.t.Fatalf("GET /api/status: %d %v\n%s", resp.StatusCode, err, body)
	}
	var a statusAnswer
	if err := json.Unmarshal(body, &a); err != nil {
		f.t.Fatalf("GET /api/status: %v\n%s", err, body)
	}
	if len(a.Health.Nodes) != len(a.Nodes) || len(a.Health.Shards) != len(a.Shards) {
		f.t.Fatalf("health has %d nodes and %d shards, the page %d and %d", len(a.Health.Nodes), len(a.Health.Shards), len(a.Nodes), len(a.Shards))
	}
	return a
}

// problem returns the problem of kind, or an error naming every problem.
func (a statusAnswer) problem(kind string) (Problem, error) {
	for _, p := range a.Health.Problems {
		if p.Kind == kind {
			return p, nil
		}
	}
	return Problem{}, errors.New("no " + kind + " problem among " + a.describe())
}

func (a statusAnswer) describe() string {
	var lines []string
	for _, p := range a.Health.Problems {
		lines = append(lines, p.Severity+" "+p.Kind+": "+p.Text)
	}
	return "[" + strings.Join(lines, "; ") + "]"
}

func (a statusAnswer) node(t *testing.T, id uint64) NodeFigures {
	t.Helper()
	for _, n := range a.Health.Nodes {
		if n.NodeID == id {
			return n
		}
	}
	t.Fatalf("node %d not in the health figures", id)
	return NodeFigures{}
}

// TestStatusHealthyFleet: every node heartbeats and every shard has its
// three voters: no problem, the state is ok, and each node's bytes count
// every replica it holds, not only the shards it leads.
func TestStatusHealthyFleet(t *testing.T) {
	f := newStatusFleet(t, 3)
	f.beat(1, 2, 3)
	a := f.status()
	if a.Health.State != StateOK || len(a.Health.Problems) != 0 {
		t.Fatalf("healthy fleet: state %q, problems %s", a.Health.State, a.describe())
	}
	for id := uint64(1); id <= 3; id++ {
		n := a.node(t, id)
		if n.ReplicaBytes != 1300 || n.ReplicasInDescriptors != 2 || n.Down || n.Stale {
			t.Errorf("node %d figures %+v, want 1300 bytes from 2 replicas, not down", id, n)
		}
	}
	for _, s := range a.Health.Shards {
		if len(s.Unhealthy) != 0 {
			t.Errorf("shard %d: unhealthy %v in a healthy fleet", s.ShardID, s.Unhealthy)
		}
	}
}

// TestStatusKilledNode: a node silent for three heartbeat intervals is
// down at once; the banner says so and counts its shards
// under-replicated, its replica and leader counts are marked stale, and
// each shard names it once as down even when the leader also reports its
// replica lagging. A second death takes the quorum of both shards away.
func TestStatusKilledNode(t *testing.T) {
	f := newStatusFleet(t, 4)
	f.beat(1, 2, 3, 4)
	// Shard 1's leader also reports node 3's replica behind: that replica
	// is in unhealthy_replica_ids twice once node 3 is down.
	f.lagging[1] = []multiraft.ReplicaID{13}
	for range 2 {
		f.tick(1, 2, 4)
	}
	a := f.status()
	if a.Health.State != SeverityNotice {
		t.Fatalf("two intervals after node 3 stopped: state %q, problems %s; want only the lagging notice", a.Health.State, a.describe())
	}
	if _, err := a.problem(ProblemShardsLagging); err != nil {
		t.Fatal(err)
	}
	f.tick(1, 2, 4)
	a = f.status()
	if a.Health.State != SeverityCritical {
		t.Fatalf("node 3 down: state %q, want critical; problems %s", a.Health.State, a.describe())
	}
	down, err := a.problem(ProblemNodesDown)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(down.NodeIDs, []uint64{3}) || !strings.Contains(down.Text, "1 node down: n3 (silent 3.0 s)") {
		t.Errorf("nodes-down problem %+v, want node 3 silent 3.0 s", down)
	}
	under, err := a.problem(ProblemUnderReplicated)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(under.ShardIDs, []uint64{1, 2}) || under.Severity != SeverityWarning || a.Cluster.UnderReplicated != 2 {
		t.Errorf("under-replicated problem %+v (cluster counts %d), want shards 1 and 2", under, a.Cluster.UnderReplicated)
	}
	if _, err := a.problem(ProblemShardsUnavailable); err == nil {
		t.Errorf("one node of three down: a shard shown unavailable: %s", a.describe())
	}
	if a.Health.Problems[0].Severity != SeverityCritical {
		t.Errorf("the worst problem is not first: %s", a.describe())
	}
	n3 := a.node(t, 3)
	if !n3.Down || !n3.Stale || n3.ReplicasInDescriptors != 2 {
		t.Errorf("node 3 figures %+v, want down, stale, in 2 descriptors", n3)
	}
	if n4 := a.node(t, 4); n4.Stale || n4.ReplicaBytes != 0 {
		t.Errorf("node 4 figures %+v, want live and no bytes", n4)
	}
	for _, s := range a.Health.Shards {
		want := []UnhealthyReplica{{ReplicaID: s.ShardID*10 + 3, NodeID: 3, Why: "down"}}
		if !slices.Equal(s.Unhealthy, want) {
			t.Errorf("shard %d unhealthy %+v, want %+v (once, though also lagging)", s.ShardID, s.Unhealthy, want)
		}
		if s.Stale || s.Unavailable {
			t.Errorf("shard %d stale %v, unavailable %v, though its leader's node is up and it has a quorum", s.ShardID, s.Stale, s.Unavailable)
		}
	}

	// Node 2 stops too: both shards keep one live voter of three.
	for range 3 {
		f.tick(1, 4)
	}
	a = f.status()
	unavail, err := a.problem(ProblemShardsUnavailable)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(unavail.ShardIDs, []uint64{1, 2}) || a.Cluster.Unavailable != 2 {
		t.Errorf("unavailable problem %+v (cluster counts %d), want shards 1 and 2", unavail, a.Cluster.Unavailable)
	}
	if down, _ := a.problem(ProblemNodesDown); !slices.Equal(down.NodeIDs, []uint64{2, 3}) {
		t.Errorf("nodes down %v, want [2 3]", down.NodeIDs)
	}
	// Neither shard has a quorum: whatever leader they show (node 1, up,
	// and node 2, down) can commit nothing, and their figures are stale.
	for _, s := range a.Health.Shards {
		if !s.Unavailable || !s.Stale {
			t.Errorf("shard %d: unavailable %v, stale %v; want both", s.ShardID, s.Unavailable, s.Stale)
		}
	}
}

// TestStatusRepeatingAndStuckOperators: a repair loop (the same operator
// kind on the same shard, again and again, each finishing "done") shows
// as a warning though every shard looks healthy, and so does an operator
// running for longer than half the operator timeout.
func TestStatusRepeatingAndStuckOperators(t *testing.T) {
	f := newStatusFleet(t, 3)
	f.beat(1, 2, 3)
	for i := range 3 {
		op := f.s.ops.start("repair", 2, "repair s2: add n3, remove n1", f.now)
		f.tick(1, 2, 3)
		var err error
		if i == 2 {
			err = errors.New("removing replica 21: stale view")
		}
		f.s.ops.finish(op, err, f.now)
		if i < 2 {
			if a := f.status(); a.Health.State != StateOK {
				t.Fatalf("after %d repairs: state %q, problems %s", i+1, a.Health.State, a.describe())
			}
		}
	}
	a := f.status()
	if a.Health.State != SeverityWarning {
		t.Fatalf("repair loop: state %q, want warning; problems %s", a.Health.State, a.describe())
	}
	loop, err := a.problem(ProblemOperatorsRepeating)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(loop.ShardIDs, []uint64{2}) || !strings.Contains(loop.Text, "repair of s2 3 times (1 failed; last: repair s2: add n3, remove n1): removing replica 21: stale view") {
		t.Errorf("repeating problem %+v", loop)
	}
	if _, err := a.problem(ProblemOperatorsFailed); err == nil {
		t.Errorf("the loop's failure is shown again on its own: %s", a.describe())
	}
	// The loop leaves the window: no problem.
	f.now = f.now.Add(10 * time.Minute)
	f.beat(1, 2, 3)
	if a := f.status(); a.Health.State != StateOK {
		t.Fatalf("ten minutes later: state %q, problems %s", a.Health.State, a.describe())
	}

	// A balance operator that does not finish.
	f.s.ops.start("balance-leader", 1, "balance-leader s1: transfer to n2", f.now)
	for range 60 {
		f.tick(1, 2, 3)
	}
	if a := f.status(); a.Health.State != StateOK {
		t.Fatalf("an operator running for 60 s of a 2 min timeout: state %q, problems %s", a.Health.State, a.describe())
	}
	f.tick(1, 2, 3)
	a = f.status()
	stuck, err := a.problem(ProblemOperatorsStuck)
	if err != nil {
		t.Fatal(err)
	}
	if stuck.Severity != SeverityWarning || !strings.Contains(stuck.Text, "1 operator running for longer than 1 min: #4 balance-leader of s1 running for 1 min 1 s") {
		t.Errorf("stuck problem %+v", stuck)
	}
}

// TestStatusBlockedAndUnowned: with as many nodes as the replication
// factor, a dead node's replicas cannot be repaired, and the banner says
// why; a range of keys no leader reports is critical too.
func TestStatusBlockedAndUnowned(t *testing.T) {
	f := newStatusFleet(t, 3)
	f.beat(1, 2, 3)
	for range 61 {
		f.tick(1, 2)
	}
	a := f.status()
	blocked, err := a.problem(ProblemPlacementBlocked)
	if err != nil {
		t.Fatal(err)
	}
	if blocked.Severity != SeverityCritical || blocked.Text != "placement cannot repair 2 shards: no live node without a replica of the shard (s1 s2)" {
		t.Errorf("blocked problem %+v", blocked)
	}

	// Shard 2 is gone from a new leader's view (no leader reports it).
	g := newStatusFleet(t, 3)
	g.layout = g.layout[:1]
	g.beat(1, 2, 3)
	a = g.status()
	gap, err := a.problem(ProblemKeysUnowned)
	if err != nil {
		t.Fatal(err)
	}
	if gap.Severity != SeverityCritical || !strings.Contains(gap.Text, `["m", +inf)`) {
		t.Errorf("unowned keys problem %+v", gap)
	}
}

func TestUnowned(t *testing.T) {
	route := func(start, end string) *pb.ShardStatus {
		d := &pb.Descriptor{Start: []byte(start)}
		if end != "" {
			d.End = []byte(end)
		}
		return &pb.ShardStatus{Route: &pb.Route{Shard: d}}
	}
	for _, tc := range []struct {
		shards []*pb.ShardStatus
		want   []string
	}{
		{nil, []string{`["", +inf)`}},
		{[]*pb.ShardStatus{route("", "")}, nil},
		{[]*pb.ShardStatus{route("", "c"), route("c", "")}, nil},
		{[]*pb.ShardStatus{route("b", "c"), route("d", "")}, []string{`["", "b")`, `["c", "d")`}},
		{[]*pb.ShardStatus{route("", "c"), route("c", "f")}, []string{`["f", +inf)`}},
	} {
		if got := unowned(tc.shards); !slices.Equal(got, tc.want) {
			t.Errorf("unowned(%v) = %q, want %q", tc.shards, got, tc.want)
		}
	}
}

// TestStatusSilentDrainingNodeIsDown: a draining node that stops
// heartbeating still shows as draining, but it is down in the cluster's
// count of nodes as it is in the banner (the count used to call it up
// because its state is not NODE_STATE_DOWN).
func TestStatusSilentDrainingNodeIsDown(t *testing.T) {
	f := newStatusFleet(t, 3)
	cat := f.s.cat.load()
	n := cat.nodes[3]
	n.Draining = true
	cat.nodes[3] = n
	f.beat(1, 2, 3)
	a := f.status()
	if a.Cluster.NodesDown != 0 {
		t.Fatalf("a draining node still heartbeating counted down: %d down, problems %s", a.Cluster.NodesDown, a.describe())
	}
	for range 3 {
		f.tick(1, 2)
	}
	a = f.status()
	down, err := a.problem(ProblemNodesDown)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(down.NodeIDs, []uint64{3}) {
		t.Errorf("banner's nodes down %v, want [3]", down.NodeIDs)
	}
	if a.Cluster.NodesDown != 1 {
		t.Errorf("cluster summary counts %d nodes down, want 1 (the silent draining node 3) as the banner does", a.Cluster.NodesDown)
	}
	cs, err := f.s.clusterStatus(t.Context(), &pb.ClusterStatusRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if cs.GetNodesUp() != 2 || cs.GetNodesDown() != 1 {
		t.Errorf("GetClusterStatus: %d up, %d down; want 2 up, 1 down", cs.GetNodesUp(), cs.GetNodesDown())
	}
	_, _, _, upGauge, downGauge, _ := f.s.Telemetry()
	if upGauge() != 2 || downGauge() != 1 {
		t.Errorf("gauges: %d up, %d down; want 2 and 1", upGauge(), downGauge())
	}
}

// readableDurations are times with what readable.Duration and the page's
// duration print for them: every unit, each boundary, rounding across one.
var readableDurations = []struct {
	d    time.Duration
	want string
}{
	{0, "0 ms"},
	{-time.Second, "0 ms"},
	{time.Millisecond, "1 ms"},
	{999 * time.Millisecond, "999 ms"},
	{time.Second, "1.0 s"},
	{12345 * time.Millisecond, "12.3 s"},
	{59949 * time.Millisecond, "59.9 s"},
	{59950 * time.Millisecond, "1 min"},
	{time.Minute, "1 min"},
	{61 * time.Second, "1 min 1 s"},
	{4*time.Minute + 10*time.Second + 400*time.Millisecond, "4 min 10 s"},
	{10 * time.Minute, "10 min"},
	{59*time.Minute + 59*time.Second + 600*time.Millisecond, "1 h"},
	{2*time.Hour + 5*time.Minute + 20*time.Second, "2 h 5 min"},
	{23*time.Hour + 59*time.Minute + 40*time.Second, "1 d"},
	{3*24*time.Hour + 4*time.Hour + 10*time.Minute, "3 d 4 h"},
}

func TestReadableDuration(t *testing.T) {
	for _, tc := range readableDurations {
		if got := readable.Duration(tc.d); got != tc.want {
			t.Errorf("readable.Duration(%v) = %q, want %q", tc.d, got, tc.want)
		}
	}
}

// chromiumDOM returns the DOM of url after headless Chromium (Debian's
// chromium package) ran its scripts; the test is skipped without it.
func chromiumDOM(t *testing.T, url string) string {
	t.Helper()
	browser, err := exec.LookPath("chromium")
	if err != nil {
		t.Skip("chromium is not installed ('make browser-deps' installs it)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, browser, "--headless", "--no-sandbox", "--disable-gpu",
		"--virtual-time-budget=3000", "--dump-dom", url).Output()
	if err != nil {
		t.Fatalf("chromium --dump-dom: %v", err)
	}
	return string(out)
}

// TestStatusPageDurationMatchesGo runs the page's own duration function
// (cut out of the embedded page) in headless Chromium on every time of
// readableDurations: the page prints each as the banner (Go) does.
func TestStatusPageDurationMatchesGo(t *testing.T) {
	fn := regexp.MustCompile(`(?ms)^function duration\(ms\) \{.*?^\}`).Find(statusPage)
	if fn == nil {
		t.Fatal("no function duration(ms) in web/status.html")
	}
	var calls strings.Builder
	for i, tc := range readableDurations {
		fmt.Fprintf(&calls, "out(%d, duration(%d));\n", i, tc.d.Milliseconds())
	}
	page := "<!doctype html><html><body><ul id=\"out\"></ul><script>\n" + string(fn) + `
function out(i, s) {
  const li = document.createElement("li");
  li.id = "d" + i;
  li.textContent = s;
  document.getElementById("out").appendChild(li);
}
` + calls.String() + "</script></body></html>"
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		io.WriteString(w, page)
	}))
	defer srv.Close()
	dom := chromiumDOM(t, srv.URL)
	for i, tc := range readableDurations {
		m := regexp.MustCompile(fmt.Sprintf(`<li id="d%d">([^<]*)</li>`, i)).FindStringSubmatch(dom)
		if m == nil {
			t.Fatalf("the page printed nothing for %v:\n%s", tc.d, dom)
		}
		if m[1] != tc.want {
			t.Errorf("page's duration(%d) = %q, want %q (as Go prints it)", tc.d.Milliseconds(), m[1], tc.want)
		}
	}
}

// TestStatusPageShowsHeartbeatTimes loads the status page in headless
// Chromium over a fleet whose nodes 2 and 3 have been silent for 4 min
// 11 s and whose node 1 heartbeated 1.2 s ago: the banner and the nodes
// table print those times in minutes and seconds, not in milliseconds.
// Neither shard has a quorum left: shard 1's leader (node 1, up) shows
// "no quorum", shard 2's (node 3) "down", and their bytes and load are
// greyed as stale.
func TestStatusPageShowsHeartbeatTimes(t *testing.T) {
	f := newStatusFleet(t, 3)
	f.leader[2] = 3
	f.beat(1, 2, 3)
	f.now = f.now.Add(250 * time.Second)
	f.beat(1)
	f.now = f.now.Add(1200 * time.Millisecond)
	// Read in process first, so the race detector sees the clock written
	// before the page's requests read it (see
	// TestStatusPageChartAxisSpansTheSeries).
	a := f.status()
	down, err := a.problem(ProblemNodesDown)
	if err != nil {
		t.Fatal(err)
	}
	const silent = "n2 (silent 4 min 11 s), n3 (silent 4 min 11 s)"
	if !strings.Contains(down.Text, silent) {
		t.Errorf("nodes-down problem %q, want %s", down.Text, silent)
	}
	dom := chromiumDOM(t, f.url+"/")
	if !strings.Contains(dom, silent) {
		t.Errorf("the banner does not say %s:\n%s", silent, regexp.MustCompile(`(?s)<div id="banner".*?</div>`).FindString(dom))
	}
	table := regexp.MustCompile(`(?s)<table id="nodes">.*?</table>`).FindString(dom)
	rows := regexp.MustCompile(`<tr><td>(\d+)</td>.*?</tr>`).FindAllStringSubmatch(table, -1)
	last := regexp.MustCompile(`<td[^>]*>([^<]*)</td></tr>`)
	want := map[string]string{"1": "1.2 s ago", "2": "4 min 11 s ago (stale; in 2 descriptors)", "3": "4 min 11 s ago (stale; in 2 descriptors)"}
	if len(rows) != len(want) {
		t.Fatalf("%d node rows, want %d:\n%s", len(rows), len(want), table)
	}
	for _, r := range rows {
		m := last.FindStringSubmatch(r[0])
		if m == nil || m[1] != want[r[1]] {
			t.Errorf("node %s's last heartbeat cell %q, want %q", r[1], m, want[r[1]])
		}
	}
	if strings.Contains(table, " ms ago") {
		t.Errorf("the nodes table still shows milliseconds:\n%s", table)
	}
	shards := regexp.MustCompile(`(?s)<table id="shards">.*?</table>`).FindString(dom)
	for _, want := range []string{
		`<td class="down">n1 (no quorum)</td><td class="num stale">1000 B</td><td class="num stale">0.0</td>`,
		`<td class="down">n3 (down)</td><td class="num stale">300 B</td><td class="num stale">0.0</td>`,
	} {
		if !strings.Contains(shards, want) {
			t.Errorf("the shards table lacks %s:\n%s", want, shards)
		}
	}
}
