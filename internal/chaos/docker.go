package chaos

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/flotilla-kv/flotilla/internal/launch"
)

// dockerLabel marks every container, network and image the harness
// makes; its value is the owning test process's PID, so a later run can
// remove what a killed run left behind.
const dockerLabel = "flotilla-chaos-owner"

// dockerCluster runs the fleet in containers of an image built FROM
// scratch (deploy/Dockerfile) over static binaries from this checkout,
// on a bridge network of its own with fixed addresses. The host, where
// the clients run, reaches every container directly. Partitions are
// iptables DROP rules inside the containers' network namespaces (entered
// with nsenter), so they cut node from node but never the host from a
// node: clients can still talk to a minority.
type dockerCluster struct {
	t      *testing.T
	prefix string
	image  string
	net    string
	subnet string // "10.X.Y."
	// cut lists the containers that carry partition rules.
	cut map[string]bool
}

func moduleRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

// docker runs the docker CLI and returns its trimmed output.
func docker(args ...string) (string, error) {
	out, err := exec.Command("docker", args...).CombinedOutput()
	s := strings.TrimSpace(string(out))
	if err != nil {
		return s, fmt.Errorf("docker %s: %v: %s", strings.Join(args, " "), err, s)
	}
	return s, nil
}

func (c *dockerCluster) must(args ...string) string {
	c.t.Helper()
	out, err := docker(args...)
	if err != nil {
		c.t.Fatal(err)
	}
	return out
}

// removeOrphans removes the resources of earlier runs whose process is
// gone.
func removeOrphans() {
	for _, kind := range []string{"container", "network"} {
		args := []string{kind, "ls", "--filter", "label=" + dockerLabel, "--format", `{{.ID}} {{.Label "` + dockerLabel + `"}}`}
		if kind == "container" {
			args = append(args, "-a")
		}
		out, err := docker(args...)
		if err != nil {
			continue
		}
		for _, line := range strings.Split(out, "\n") {
			f := strings.Fields(line)
			if len(f) != 2 {
				continue
			}
			pid, _ := strconv.Atoi(f[1])
			if pid > 0 && syscall.Kill(pid, 0) == nil {
				continue // its owner still runs
			}
			if kind == "container" {
				_, _ = docker("rm", "-f", "-v", f[0])
			} else {
				_, _ = docker("network", "rm", f[0])
			}
		}
	}
}

// removeOrphanImages removes the images (fchaos-<pid>:img) of earlier
// runs whose process is gone.
func removeOrphanImages() {
	out, err := docker("images", "--format", "{{.Repository}}")
	if err != nil {
		return
	}
	for _, repo := range strings.Fields(out) {
		pid, err := strconv.Atoi(strings.TrimPrefix(repo, "fchaos-"))
		if !strings.HasPrefix(repo, "fchaos-") || err != nil || pid == os.Getpid() || syscall.Kill(pid, 0) == nil {
			continue
		}
		_, _ = docker("rmi", "-f", repo+":img")
	}
}

func startDockerCluster(t *testing.T) cluster {
	removeOrphans()
	removeOrphanImages()
	pid := os.Getpid()
	c := &dockerCluster{t: t, prefix: fmt.Sprintf("fchaos-%d", pid), cut: map[string]bool{}}
	c.image = c.prefix + ":img"
	t.Cleanup(c.destroy)

	// The image: static binaries of this checkout, deploy/Dockerfile.
	bin := t.TempDir()
	build := exec.Command("go", "build", "-trimpath", "-o", bin+"/", "./cmd/shardnode", "./cmd/placementd", "./cmd/flotilla")
	build.Dir = moduleRoot()
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("chaos: building static binaries: %v\n%s", err, out)
	}
	c.must("build", "-q", "--label", fmt.Sprintf("%s=%d", dockerLabel, pid), "-t", c.image,
		"-f", filepath.Join(moduleRoot(), "deploy", "Dockerfile"), bin)

	// A network of our own, on a free /24.
	c.net = c.prefix + "-net"
	var err error
	for try := 0; try < 20; try++ {
		a, b := 200+rand.IntN(50), rand.IntN(250)
		c.subnet = fmt.Sprintf("10.%d.%d.", a, b)
		if _, err = docker("network", "create", "--label", fmt.Sprintf("%s=%d", dockerLabel, pid),
			"--subnet", c.subnet+"0/24", c.net); err == nil {
			break
		}
	}
	if err != nil {
		t.Fatalf("chaos: no free subnet for the docker network: %v", err)
	}

	var peers, placement []string
	for _, id := range c.Placements() {
		peers = append(peers, fmt.Sprintf("%d=%s", id, c.placementAddr(id)))
		placement = append(placement, c.placementAddr(id))
	}
	for _, id := range c.Placements() {
		ip := c.placementIP(id)
		c.run(c.placementName(id), ip, "/placementd", "--id", fmt.Sprint(id), "--listen", ip+":7000",
			"--http", ip+":7080", "--data-dir", "/data", "--peers", strings.Join(peers, ","),
			"--tick", tick, "--heartbeat-interval", heartbeat, "--schedule-interval", heartbeat,
			"--initial-shards", fmt.Sprint(initialShards), "--replication-factor", "3")
	}
	for _, id := range c.Placements() {
		c.waitReady(c.placementName(id), c.placementIP(id)+":7080")
	}
	var nodePeers []string
	for _, id := range c.Nodes() {
		nodePeers = append(nodePeers, fmt.Sprintf("%d=%s", id, c.NodeAddr(id)))
	}
	for _, id := range c.Nodes() {
		ip := c.nodeIP(id)
		c.run(c.nodeName(id), ip, "/shardnode", "--node-id", fmt.Sprint(id), "--listen", ip+":7100",
			"--http", ip+":7180", "--data-dir", "/data", "--peers", strings.Join(nodePeers, ","),
			"--placement", strings.Join(placement, ","), "--tick", tick, "--heartbeat-interval", heartbeat)
	}
	for _, id := range c.Nodes() {
		c.waitReady(c.nodeName(id), c.nodeIP(id)+":7180")
	}
	return c
}

func (c *dockerCluster) run(name, ip string, cmd ...string) {
	args := []string{"run", "-d", "--name", name, "--hostname", name, "--network", c.net, "--ip", ip,
		"--label", fmt.Sprintf("%s=%d", dockerLabel, os.Getpid()), c.image}
	c.must(append(args, cmd...)...)
}

// waitReady waits until the container answers /readyz, failing the test
// with its last log lines if it exits first.
func (c *dockerCluster) waitReady(name, httpAddr string) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	var asked time.Time
	exited := func() error {
		// docker inspect is a process of its own: ask once a second.
		if time.Since(asked) < time.Second {
			return nil
		}
		asked = time.Now()
		if st, _ := docker("inspect", "-f", "{{.State.Status}}", name); st == "exited" {
			logs, _ := docker("logs", "--tail", "50", name)
			return fmt.Errorf("chaos: container %s exited while starting:\n%s", name, logs)
		}
		return nil
	}
	if err := launch.WaitHTTP(ctx, "http://"+httpAddr+"/readyz", exited); err != nil {
		c.t.Fatal(err)
	}
}

func (c *dockerCluster) destroy() {
	out, _ := docker("ps", "-aq", "--filter", "label="+fmt.Sprintf("%s=%d", dockerLabel, os.Getpid()))
	if out != "" {
		_, _ = docker(append([]string{"rm", "-f", "-v"}, strings.Fields(out)...)...)
	}
	if c.net != "" {
		_, _ = docker("network", "rm", c.net)
	}
	_, _ = docker("rmi", "-f", c.image)
}

func (c *dockerCluster) nodeName(id uint64) string      { return fmt.Sprintf("%s-n%d", c.prefix, id) }
func (c *dockerCluster) placementName(id uint64) string { return fmt.Sprintf("%s-p%d", c.prefix, id) }
func (c *dockerCluster) nodeIP(id uint64) string        { return fmt.Sprintf("%s%d", c.subnet, 10+id) }
func (c *dockerCluster) placementIP(id uint64) string   { return fmt.Sprintf("%s%d", c.subnet, 20+id) }
func (c *dockerCluster) placementAddr(id uint64) string { return c.placementIP(id) + ":7000" }

func (c *dockerCluster) Nodes() []uint64 {
	ids := make([]uint64, numNodes)
	for i := range ids {
		ids[i] = uint64(i + 1)
	}
	return ids
}

func (c *dockerCluster) Placements() []uint64 {
	ids := make([]uint64, numPlacement)
	for i := range ids {
		ids[i] = uint64(i + 1)
	}
	return ids
}

func (c *dockerCluster) NodeAddr(id uint64) string { return c.nodeIP(id) + ":7100" }

func (c *dockerCluster) PlacementAddrs() []string {
	var out []string
	for _, id := range c.Placements() {
		out = append(out, c.placementAddr(id))
	}
	return out
}

func (c *dockerCluster) KillNode(id uint64) { c.must("kill", "-s", "KILL", c.nodeName(id)) }

func (c *dockerCluster) RestartNode(id uint64) {
	c.must("start", c.nodeName(id))
	c.waitReady(c.nodeName(id), c.nodeIP(id)+":7180")
}

func (c *dockerCluster) PauseNode(id uint64)  { c.must("pause", c.nodeName(id)) }
func (c *dockerCluster) ResumeNode(id uint64) { c.must("unpause", c.nodeName(id)) }

func (c *dockerCluster) KillPlacement(id uint64) { c.must("kill", "-s", "KILL", c.placementName(id)) }

func (c *dockerCluster) RestartPlacement(id uint64) {
	c.must("start", c.placementName(id))
	c.waitReady(c.placementName(id), c.placementIP(id)+":7080")
}

func (c *dockerCluster) CanPartition() bool { return true }

// Partition drops, inside each running container of each side, every
// packet from and to the containers of the other sides.
func (c *dockerCluster) Partition(sides []side) {
	type member struct{ name, ip string }
	members := make([][]member, len(sides))
	for i, s := range sides {
		for _, id := range s.Nodes {
			members[i] = append(members[i], member{c.nodeName(id), c.nodeIP(id)})
		}
		for _, id := range s.Placements {
			members[i] = append(members[i], member{c.placementName(id), c.placementIP(id)})
		}
	}
	for i, ms := range members {
		var others []string
		for j, side := range members {
			if j != i {
				for _, m := range side {
					others = append(others, m.ip)
				}
			}
		}
		for _, m := range ms {
			var rules []string
			for _, ip := range others {
				rules = append(rules,
					fmt.Sprintf("iptables -w -A INPUT -s %s -j DROP", ip),
					fmt.Sprintf("iptables -w -A OUTPUT -d %s -j DROP", ip))
			}
			if c.inNetns(m.name, strings.Join(rules, " && ")) {
				c.cut[m.name] = true
			}
		}
	}
}

// Heal removes every partition rule.
func (c *dockerCluster) Heal() {
	for name := range c.cut {
		c.inNetns(name, "iptables -w -F INPUT && iptables -w -F OUTPUT")
		delete(c.cut, name)
	}
}

// inNetns runs a shell command in the network namespace of a running
// container; it reports false when the container is not running (its
// namespace is gone, and a restart makes a new one without rules).
func (c *dockerCluster) inNetns(name, script string) bool {
	c.t.Helper()
	out, err := docker("inspect", "-f", "{{.State.Running}} {{.State.Pid}}", name)
	if err != nil {
		c.t.Fatal(err)
	}
	f := strings.Fields(out)
	if len(f) != 2 || f[0] != "true" || f[1] == "0" {
		return false
	}
	cmd := exec.Command("nsenter", "-t", f[1], "-n", "--", "sh", "-c", script)
	if b, err := cmd.CombinedOutput(); err != nil {
		c.t.Fatalf("chaos: nsenter %s (%s): %v: %s", name, script, err, b)
	}
	return true
}

func (c *dockerCluster) SaveLogs(dir string) {
	_ = os.MkdirAll(dir, 0o755)
	names := []string{}
	for _, id := range c.Nodes() {
		names = append(names, c.nodeName(id))
	}
	for _, id := range c.Placements() {
		names = append(names, c.placementName(id))
	}
	for _, n := range names {
		out, _ := exec.Command("docker", "logs", n).CombinedOutput()
		_ = os.WriteFile(filepath.Join(dir, n+".log"), out, 0o644)
	}
}
