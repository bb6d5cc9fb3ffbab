package main

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	flt "github.com/flotilla-kv/flotilla/internal/fleet"
	"github.com/flotilla-kv/flotilla/internal/testutil"
	pb "github.com/flotilla-kv/flotilla/rpc/flotillapb"
)

// TestCLIThroughOutages drives a fleet of 3 placementd replicas and 3
// shardnodes with the CLI as a user would, through the outages of issue
// 13: flags after arguments, a reversed scan range and a 5 KiB key; the
// inspection commands with placement 1 paused; key-value commands with
// all of placement down (routes from --nodes, or a prompt error naming
// placement); and a write to a shard whose majority is dead (Unavailable
// naming the shard within the router's election wait, not an ambiguous
// outcome after 9 s).
func TestCLIThroughOutages(t *testing.T) {
	bin := flt.Binary(t, "flotilla")
	f := flt.New(t, 3, "--heartbeat-interval", "250ms")
	f.AddPlacement(3, "--heartbeat-interval", "250ms", "--schedule-interval", "250ms", "--initial-shards", "4")
	f.StartPlacement()
	f.Start()
	env := []string{"FLOTILLA_PLACEMENT=" + f.PlacementAddrs()}
	cli := func(args ...string) (string, int, time.Duration) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, bin, args...)
		cmd.Env = append(cmd.Environ(), env...)
		start := time.Now()
		out, err := cmd.CombinedOutput()
		el := time.Since(start)
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return string(out), ee.ExitCode(), el
		}
		if err != nil {
			t.Fatal(err)
		}
		return string(out), 0, el
	}
	began := time.Now()
	testutil.Eventually(t, time.Minute, func() error {
		if out, code, _ := cli("put", "hello", "world"); code != 0 {
			return fmt.Errorf("put: exit %d: %s", code, out)
		}
		return nil
	})

	t.Logf("%s: the fleet took a write", time.Since(began).Round(time.Millisecond))
	// Flags after the arguments, and "--".
	if out, code, _ := cli("get", "hello", "--consistency", "lease"); code != 0 || strings.TrimSpace(out) != "world" {
		t.Fatalf("get hello --consistency lease: exit %d\n%s", code, out)
	}
	if out, code, _ := cli("put", "--", "-dash", "--value"); code != 0 {
		t.Fatalf("put -- -dash --value: exit %d\n%s", code, out)
	}
	if out, code, _ := cli("get", "-dash", "--json"); code == 0 {
		t.Fatalf("get -dash: a key that looks like a flag was accepted without --:\n%s", out)
	}
	if out, code, _ := cli("get", "--json", "--", "-dash"); code != 0 || !strings.Contains(out, `"value": "`+b64([]byte("--value"))+`"`) {
		t.Fatalf("get --json -- -dash: exit %d\n%s", code, out)
	}
	// A reversed range is refused.
	if out, code, _ := cli("scan", "--start", "m", "--end", "a"); code != 2 || !strings.Contains(out, `--end "a" sorts before --start "m"`) {
		t.Fatalf("scan --start m --end a: exit %d, want 2\n%s", code, out)
	}
	// A 5 KiB key is refused without repeating it.
	big := strings.Repeat("k", 5<<10)
	if out, code, _ := cli("put", big, "v"); code != 1 || len(out) > 600 || !strings.Contains(out, `..." (5120 bytes)`) {
		t.Fatalf("put of a 5 KiB key: exit %d, %d bytes of output\n%.600s", code, len(out), out)
	}

	// A placement follower paused, and listed first: every inspection
	// command answers through the others, well before its 10 s timeout
	// (it used to ask the first address only). Then, the follower resumed,
	// the leader killed: they answer once the others have elected a new
	// one.
	out, code, _ := cli("status", "--json")
	m := regexp.MustCompile(`"placement_leader_address":\s*"([^"]+)"`).FindStringSubmatch(out)
	if code != 0 || m == nil {
		t.Fatalf("status --json: exit %d\n%s", code, out)
	}
	var leader, follower *flt.Node
	var order []string
	for _, id := range []uint64{1, 2, 3} {
		switch p := f.Placement[id]; {
		case p.Addr == m[1]:
			leader = p
		case follower == nil:
			follower = p
			order = append([]string{p.Addr}, order...)
			continue
		}
		order = append(order, f.Placement[id].Addr)
	}
	env = []string{"FLOTILLA_PLACEMENT=" + strings.Join(order, ",")}
	follower.Pause()
	for _, stage := range []string{"a follower paused", "the leader killed instead"} {
		if stage != "a follower paused" {
			follower.Resume()
			leader.Kill()
		}
		for _, args := range [][]string{{"nodes"}, {"shards"}, {"status"}, {"drain", "--undo", "3"}} {
			out, code, el := cli(args...)
			t.Logf("flotilla %s with %s: exit %d in %s", strings.Join(args, " "), stage, code, el.Round(time.Millisecond))
			if code != 0 || el > 8*time.Second {
				t.Fatalf("flotilla %s with %s: exit %d after %s\n%s", strings.Join(args, " "), stage, code, el, out)
			}
		}
	}

	// All of placement down: routes come from the nodes given, and without
	// any, the error comes at once and names placement.
	for _, p := range f.Placement {
		p.Kill()
	}
	t.Logf("%s: placement killed", time.Since(began).Round(time.Millisecond))
	out, code, el := cli("get", "hello", "--timeout", "20s")
	if code != exitUnavailable || el > 8*time.Second || !strings.Contains(out, "placement (") || !strings.Contains(out, f.Placement[2].Addr) {
		t.Fatalf("get without placement or --nodes: exit %d after %s, want %d (unreachable) at once naming placement\n%s", code, el, exitUnavailable, out)
	}
	if out, code, _ := cli("get", "hello", "--nodes", f.Nodes[1].Addr); code != 0 || strings.TrimSpace(out) != "world" {
		t.Fatalf("get --nodes while placement is down: exit %d\n%s", code, out)
	}

	// Nodes 1 and 2 killed: every shard has lost its majority. Take a
	// shard node 3 does not lead (an idle leader keeps believing it leads
	// until a request wakes it, and a write it took into its log would be
	// ambiguous, rightly): no write can enter its log. A put there fails as
	// unavailable, naming the shard, within the router's election wait.
	t.Logf("%s: killing nodes 1 and 2", time.Since(began).Round(time.Millisecond))
	f.Nodes[1].Kill()
	f.Nodes[2].Kill()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	info, err := pb.NewAdminClient(f.Nodes[3].Conn()).GetNodeInfo(ctx, &pb.NodeInfoRequest{})
	if err != nil {
		t.Fatal(err)
	}
	var key string
	for _, si := range info.GetShardInfos() {
		if !si.GetIsLeader() {
			key = string(si.GetShard().GetStart()) + "0"
			t.Logf("shard %d, led by node %d before the kill; key %q", si.GetShard().GetShardId(), si.GetLeaderNodeId(), key)
			break
		}
	}
	if key == "" {
		t.Fatal("node 3 led every shard")
	}
	out, code, el = cli("put", key, "again", "--nodes", f.Nodes[3].Addr, "--timeout", "30s")
	t.Logf("put with 2 of 3 nodes dead: exit %d in %s: %s", code, el.Round(time.Millisecond), strings.TrimSpace(out))
	if code != exitUnavailable || !regexp.MustCompile(`router: shard \d+ unavailable: no leader reachable for`).MatchString(out) ||
		strings.Contains(out, "outcome unknown") || el > 9*time.Second {
		t.Fatalf("put to a shard without a majority: exit %d after %s, want Unavailable naming the shard within the election wait\n%s", code, el, out)
	}
}
