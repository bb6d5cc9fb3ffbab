package deploy

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/flotilla-kv/flotilla/internal/testutil"
	"github.com/flotilla-kv/flotilla/router"
	pb "github.com/flotilla-kv/flotilla/rpc/flotillapb"
)

// composeFleet is one compose project of deploy/compose.yaml (and
// compose.scale.yaml) brought up by a test.
type composeFleet struct {
	t       *testing.T
	root    string
	command []string // "docker compose" or "docker-compose"
	project string
	subnet  string // first three octets
	ports   map[string]string
}

// TestComposeFleet builds the image, starts the compose fleet (3
// placementd, 5 shardnodes) under a project name of its own, waits until
// placement reports every node up and every shard placed with a leader,
// writes and reads keys through a router on the host, fetches the status
// page, its JSON and every /metrics, checks the dashboard's series against
// those scrapes, adds nodes 6 and 7 with compose.scale.yaml and sees them
// join and receive replicas, and finally removes the project with its
// volumes, also when the test fails.
func TestComposeFleet(t *testing.T) {
	if _, err := exec.LookPath("docker"); err != nil {
		t.Skip("SKIPPED, NOT PASSED: docker is not installed, so the compose fleet test (deploy/compose.yaml) cannot run. Install docker (CI has it) and run `make test-docker`.")
	}
	c := &composeFleet{t: t, root: moduleRoot(), command: composeCommand(t)}
	c.run(15*time.Minute, "make", "docker")

	c.project = fmt.Sprintf("flotilla-test-%d-%d", os.Getpid(), time.Now().UnixNano()%1e6)
	c.ports = map[string]string{"FLOTILLA_STATUS_PORT": freePort(t)}
	for i := 1; i <= 7; i++ {
		c.ports[fmt.Sprintf("FLOTILLA_NODE%d_PORT", i)] = freePort(t)
	}
	t.Cleanup(c.down)
	c.up()

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	conn, err := grpc.NewClient(c.ip(11)+":7000", grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	pc := pb.NewPlacementClient(conn)
	c.waitPlaced(ctx, pc, 5, 16)

	// Keys through the router, from the host.
	placements := []string{c.ip(11) + ":7000", c.ip(12) + ":7000", c.ip(13) + ":7000"}
	r, routerMetrics := observedRouter(ctx, t, placements)
	putGet(ctx, t, r, "compose", 200)

	// The status page and its JSON, on the port published on the host.
	status := "http://127.0.0.1:" + c.ports["FLOTILLA_STATUS_PORT"]
	page := httpGet(t, status+"/")
	if !bytes.Contains(page, []byte("<title>Flotilla placement</title>")) {
		t.Errorf("GET %s/: not the status page:\n%.300s", status, page)
	}
	var js struct {
		Nodes  []struct{ State string } `json:"nodes"`
		Shards []json.RawMessage        `json:"shards"`
	}
	if err := json.Unmarshal(httpGet(t, status+"/api/status"), &js); err != nil {
		t.Fatalf("GET %s/api/status: %v", status, err)
	}
	up := 0
	for _, n := range js.Nodes {
		if n.State == "NODE_STATE_UP" {
			up++
		}
	}
	if up != 5 || len(js.Shards) != 16 {
		t.Errorf("/api/status shows %d nodes up of %d and %d shards, want 5 up and 16 shards", up, len(js.Nodes), len(js.Shards))
	}

	// Every /metrics: nodes on their published ports, placement replicas
	// on the network, the router in this process.
	have := map[string]float64{}
	kvRequests := 0.0
	for i := 1; i <= 5; i++ {
		m := mustScrape(t, "http://127.0.0.1:"+c.ports[fmt.Sprintf("FLOTILLA_NODE%d_PORT", i)]+"/metrics")
		kvRequests += m["flotilla_rpc_server_requests_total"]
		merge(have, m)
	}
	nodesUp := 0.0
	for i := 11; i <= 13; i++ {
		m := mustScrape(t, "http://"+c.ip(i)+":7080/metrics")
		nodesUp = max(nodesUp, m["flotilla_placement_nodes_up"])
		merge(have, m)
	}
	merge(have, mustScrape(t, routerMetrics))
	if kvRequests < 400 {
		t.Errorf("the nodes count %v requests served, want at least the 400 puts and gets", kvRequests)
	}
	if nodesUp != 5 {
		t.Errorf("flotilla_placement_nodes_up = %v on the leader, want 5", nodesUp)
	}
	checkDashboard(t, have)

	// Scale out: nodes 6 and 7 join, placement moves replicas onto them.
	c.compose(3*time.Minute, "up", "-d", "node6", "node7")
	c.waitPlaced(ctx, pc, 7, 16)
	testutil.Eventually(t, 3*time.Minute, func() error {
		resp, err := pc.ListNodes(ctx, &pb.ListNodesRequest{})
		if err != nil {
			return err
		}
		for _, n := range resp.GetNodes() {
			if n.GetNodeId() >= 6 && n.GetReplicas() == 0 {
				return fmt.Errorf("node %d holds no replica yet", n.GetNodeId())
			}
		}
		return nil
	})
	putGet(ctx, t, r, "scaled", 50)
}

// putGet writes n keys through r and reads each back.
func putGet(ctx context.Context, t *testing.T, r *router.Client, prefix string, n int) {
	t.Helper()
	testutil.Eventually(t, 60*time.Second, func() error {
		pctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		defer cancel()
		return r.Put(pctx, []byte(prefix+"-warm"), []byte("up"))
	})
	for i := range n {
		k, v := fmt.Appendf(nil, "%s-%04d", prefix, i), fmt.Appendf(nil, "value-%d", i)
		if err := r.Put(ctx, k, v); err != nil {
			t.Fatalf("put %s: %v", k, err)
		}
		got, found, err := r.Get(ctx, k)
		if err != nil || !found || !bytes.Equal(got, v) {
			t.Fatalf("get %s = %q, found=%v, err=%v; want %q", k, got, found, err, v)
		}
	}
}

// waitPlaced waits until placement reports nodes nodes up, none down, and
// shards shards, none under-replicated, each with a leader.
func (c *composeFleet) waitPlaced(ctx context.Context, pc pb.PlacementClient, nodes, shards int) {
	c.t.Helper()
	testutil.Eventually(c.t, 4*time.Minute, func() error {
		cctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		defer cancel()
		cs, err := pc.GetClusterStatus(cctx, &pb.ClusterStatusRequest{})
		if err != nil {
			return err
		}
		if !cs.GetBootstrapped() || int(cs.GetNodesUp()) != nodes || cs.GetNodesDown() != 0 ||
			int(cs.GetShards()) != shards || cs.GetUnderReplicated() != 0 {
			return fmt.Errorf("bootstrapped=%v nodes up=%d down=%d shards=%d under-replicated=%d; want %d nodes up, %d shards",
				cs.GetBootstrapped(), cs.GetNodesUp(), cs.GetNodesDown(), cs.GetShards(), cs.GetUnderReplicated(), nodes, shards)
		}
		resp, err := pc.ListShards(cctx, &pb.ListShardsRequest{})
		if err != nil {
			return err
		}
		for _, s := range resp.GetShards() {
			if s.GetRoute().GetLeaderNodeId() == 0 || len(s.GetRoute().GetShard().GetReplicas()) != 3 {
				return fmt.Errorf("shard %d: leader node %d, %d replicas", s.GetRoute().GetShard().GetShardId(),
					s.GetRoute().GetLeaderNodeId(), len(s.GetRoute().GetShard().GetReplicas()))
			}
		}
		return nil
	})
}

// up starts the project on a /24 no other network uses, trying a few.
func (c *composeFleet) up() {
	c.t.Helper()
	var last string
	for range 6 {
		c.subnet = fmt.Sprintf("172.30.%d", 10+rand.IntN(240))
		// Only the services of compose.yaml: nodes 6 and 7 join later.
		out, err := c.composeErr(5*time.Minute, "up", "-d", "placement1", "placement2", "placement3",
			"node1", "node2", "node3", "node4", "node5")
		if err == nil {
			c.t.Logf("compose project %s up on %s.0/24", c.project, c.subnet)
			return
		}
		last = out
		if !strings.Contains(out, "overlap") {
			break
		}
		c.compose(2*time.Minute, "down", "-v", "--remove-orphans")
	}
	c.t.Fatalf("compose up: %s", last)
}

// down prints the logs of a failed test, then removes the project's
// containers, network and volumes.
func (c *composeFleet) down() {
	if c.t.Failed() {
		out, _ := c.composeErr(time.Minute, "logs", "--no-color", "--tail=60")
		c.t.Logf("compose logs:\n%s", out)
	}
	if out, err := c.composeErr(3*time.Minute, "down", "-v", "--remove-orphans", "--timeout", "20"); err != nil {
		c.t.Errorf("compose down: %v\n%s", err, out)
	}
}

func (c *composeFleet) ip(host int) string { return fmt.Sprintf("%s.%d", c.subnet, host) }

func (c *composeFleet) compose(timeout time.Duration, args ...string) string {
	c.t.Helper()
	out, err := c.composeErr(timeout, args...)
	if err != nil {
		c.t.Fatalf("%s %s: %v\n%s", strings.Join(c.command, " "), strings.Join(args, " "), err, out)
	}
	return out
}

func (c *composeFleet) composeErr(timeout time.Duration, args ...string) (string, error) {
	full := append(append(c.command[1:len(c.command):len(c.command)],
		"-f", "deploy/compose.yaml", "-f", "deploy/compose.scale.yaml", "-p", c.project), args...)
	env := append(os.Environ(), "FLOTILLA_SUBNET="+c.subnet)
	for k, v := range c.ports {
		env = append(env, k+"="+v)
	}
	return runIn(c.root, env, timeout, c.command[0], full...)
}

func (c *composeFleet) run(timeout time.Duration, name string, args ...string) {
	c.t.Helper()
	if out, err := runIn(c.root, os.Environ(), timeout, name, args...); err != nil {
		c.t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
}

func runIn(dir string, env []string, timeout time.Duration, name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir, cmd.Env = dir, env
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// composeCommand returns `docker compose` if the plugin answers, else
// docker-compose; with neither the test fails, since docker is there.
func composeCommand(t *testing.T) []string {
	if exec.Command("docker", "compose", "version").Run() == nil {
		return []string{"docker", "compose"}
	}
	if p, err := exec.LookPath("docker-compose"); err == nil {
		return []string{p}
	}
	t.Fatal("docker is installed but neither `docker compose` nor `docker-compose` is: install one to run the compose fleet test")
	return nil
}

func moduleRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Dir(filepath.Dir(file))
}

func freePort(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return fmt.Sprint(l.Addr().(*net.TCPAddr).Port)
}

func httpGet(t *testing.T, url string) []byte {
	t.Helper()
	c := http.Client{Timeout: 10 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s %v: %.300s", url, resp.Status, err, b)
	}
	return b
}

func mustScrape(t *testing.T, url string) map[string]float64 {
	t.Helper()
	m, err := scrape(url)
	if err != nil {
		t.Fatal(err)
	}
	return m
}
