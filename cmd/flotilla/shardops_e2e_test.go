package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	flt "github.com/flotilla-kv/flotilla/internal/fleet"
	"github.com/flotilla-kv/flotilla/internal/testutil"
)

// shardsView is what the tests read of 'flotilla shards -w json'.
type shardsView struct {
	Shards []struct {
		Route struct {
			Shard struct {
				ShardID  uint64 `json:"shard_id"`
				Start    []byte `json:"start"`
				End      []byte `json:"end"`
				Replicas []struct {
					ReplicaID uint64 `json:"replica_id"`
					NodeID    uint64 `json:"node_id"`
				} `json:"replicas"`
			} `json:"shard"`
		} `json:"route"`
	} `json:"shards"`
}

// nodesOf returns the nodes holding a replica of shard i of v.
func (v shardsView) nodesOf(i int) []uint64 {
	var out []uint64
	for _, r := range v.Shards[i].Route.Shard.Replicas {
		out = append(out, r.NodeID)
	}
	slices.Sort(out)
	return out
}

// TestShardSplitMoveAndNodeForget runs 'flotilla shard split', 'shard
// move' and 'node forget' against a real fleet of four nodes and checks
// what placement then reports, and the exit statuses of refusals.
func TestShardSplitMoveAndNodeForget(t *testing.T) {
	bin := flt.Binary(t, "flotilla")
	f := flt.New(t, 4, "--heartbeat-interval", "250ms")
	f.AddPlacement(1, "--heartbeat-interval", "250ms", "--schedule-interval", "250ms", "--initial-shards", "2", "--down-after", "5s")
	f.StartPlacement()
	f.Start()
	run := func(args ...string) (string, string, int) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, bin, args...)
		cmd.Env = append(cmd.Environ(), "FLOTILLA_PLACEMENT="+f.PlacementAddrs())
		var out, errOut bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errOut
		err := cmd.Run()
		if ee, ok := err.(*exec.ExitError); ok {
			return out.String(), errOut.String(), ee.ExitCode()
		}
		if err != nil {
			t.Fatal(err)
		}
		return out.String(), errOut.String(), 0
	}
	shards := func() shardsView {
		t.Helper()
		out, errOut, code := run("shards", "-w", "json")
		var v shardsView
		if err := json.Unmarshal([]byte(out), &v); code != 0 || err != nil {
			t.Fatalf("shards -w json: exit %d (%v)\n%s%s", code, err, out, errOut)
		}
		return v
	}
	// retryBusy runs args until placement stops refusing it because
	// another operator (balancing the new fleet) changes the shard.
	retryBusy := func(args ...string) (string, string, int) {
		t.Helper()
		var out, errOut string
		var code int
		testutil.Eventually(t, 60*time.Second, func() error {
			out, errOut, code = run(args...)
			if code == exitError && strings.Contains(errOut, "in flight") {
				return fmt.Errorf("%s: %s", strings.Join(args, " "), errOut)
			}
			return nil
		})
		return out, errOut, code
	}
	var v shardsView
	testutil.Eventually(t, 60*time.Second, func() error {
		v = shards()
		if len(v.Shards) != 2 {
			return fmt.Errorf("%d shards, want 2", len(v.Shards))
		}
		for i := range v.Shards {
			if len(v.nodesOf(i)) != 3 {
				return fmt.Errorf("shard %d on nodes %v", v.Shards[i].Route.Shard.ShardID, v.nodesOf(i))
			}
		}
		return nil
	})

	// Split the shard holding "m" at "m".
	idx := 0
	if !(len(v.Shards[0].Route.Shard.End) == 0 || bytes.Compare([]byte("m"), v.Shards[0].Route.Shard.End) < 0) {
		idx = 1
	}
	id := strconv.FormatUint(v.Shards[idx].Route.Shard.ShardID, 10)
	out, errOut, code := retryBusy("shard", "split", id, "--key", "m")
	if code != 0 || !strings.HasPrefix(out, "shard "+id+" split at \"m\": shard "+id+" [") {
		t.Fatalf("shard split %s --key m: exit %d\n%s%s", id, code, out, errOut)
	}
	testutil.Eventually(t, 30*time.Second, func() error {
		if n := len(shards().Shards); n != 3 {
			return fmt.Errorf("%d shards after the split, want 3", n)
		}
		return nil
	})
	if _, errOut, code := run("shard", "split", id, "--key", "m"); code != exitError || !strings.Contains(errOut, "InvalidArgument") {
		t.Errorf("a split at the shard's own start: exit %d, want %d with InvalidArgument\n%s", code, exitError, errOut)
	}
	if _, errOut, code := run("shard", "split", "99999"); code != exitNotFound || !strings.Contains(errOut, "no leader reports shard 99999") {
		t.Errorf("split of an unknown shard: exit %d, want %d\n%s", code, exitNotFound, errOut)
	}

	// Move a replica of the first shard to a node that holds none. The
	// balancer works on the same fleet: it may change the shard between
	// the listing and the move (an operator in flight, or a replica it
	// just put on the chosen node), so list and move again until the
	// move is judged on a listing it still matches.
	var sid, from, to uint64
	var fromArg, toArg, sidArg string
	testutil.Eventually(t, 60*time.Second, func() error {
		v = shards()
		sid = v.Shards[0].Route.Shard.ShardID
		holders := v.nodesOf(0)
		if len(holders) != 3 {
			return fmt.Errorf("shard %d on nodes %v", sid, holders)
		}
		for n := uint64(1); n <= 4; n++ {
			if !slices.Contains(holders, n) {
				to = n
			}
		}
		from = holders[0]
		fromArg, toArg, sidArg = strconv.FormatUint(from, 10), strconv.FormatUint(to, 10), strconv.FormatUint(sid, 10)
		out, errOut, code = run("shard", "move", sidArg, "--from", fromArg, "--to", toArg)
		if code == exitError && (strings.Contains(errOut, "in flight") || strings.Contains(errOut, "already holds replica")) {
			return fmt.Errorf("shard move %s --from %s --to %s raced the balancer: %s", sidArg, fromArg, toArg, errOut)
		}
		return nil
	})
	if code != 0 || !strings.Contains(out, "replica moved from node "+fromArg+" to node "+toArg) {
		t.Fatalf("shard move %d --from %d --to %d: exit %d\n%s%s", sid, from, to, code, out, errOut)
	}
	testutil.Eventually(t, 30*time.Second, func() error {
		for i, s := range shards().Shards {
			if s.Route.Shard.ShardID == sid {
				if nodes := shards().nodesOf(i); !slices.Contains(nodes, to) || slices.Contains(nodes, from) || len(nodes) != 3 {
					return fmt.Errorf("shard %d on nodes %v after the move from %d to %d", sid, nodes, from, to)
				}
			}
		}
		return nil
	})
	if _, errOut, code := run("shard", "move", sidArg, "--from", fromArg, "--to", toArg); code != exitError || !strings.Contains(errOut, "FailedPrecondition: placement: node "+toArg+" already holds replica") {
		t.Errorf("the same move again: exit %d, want %d (the target holds a replica)\n%s", code, exitError, errOut)
	}
	if _, errOut, code := run("shard", "move", sidArg, "--from", fromArg, "--to", "99"); code != exitNotFound || !strings.Contains(errOut, "node 99 is not registered") {
		t.Errorf("a move to an unknown node: exit %d, want %d\n%s", code, exitNotFound, errOut)
	}
	if _, _, code := run("shard", "move", sidArg, "--from", "1"); code != exitUsage {
		t.Errorf("a move without --to: exit %d, want %d", code, exitUsage)
	}

	// Forget: refused while the node is up, then while shards still name
	// it, then done once placement replaced its replicas.
	if _, errOut, code := run("node", "forget", toArg); code != exitError || !strings.Contains(errOut, "is up") {
		t.Fatalf("forget of a live node: exit %d, want %d saying it is up\n%s", code, exitError, errOut)
	}
	f.Nodes[to].Kill()
	testutil.Eventually(t, 10*time.Second, func() error {
		_, errOut, code := run("node", "forget", toArg)
		if code != exitError || !strings.Contains(errOut, "still holds replicas") {
			return fmt.Errorf("forget of a node just killed: exit %d\n%s", code, errOut)
		}
		return nil
	})
	testutil.Eventually(t, 90*time.Second, func() error {
		out, errOut, code := run("node", "forget", toArg)
		if code != 0 {
			return fmt.Errorf("exit %d: %s%s", code, out, errOut)
		}
		if out != "node "+toArg+" forgotten\n" {
			t.Fatalf("node forget printed %q", out)
		}
		return nil
	})
	out, errOut, code = run("nodes", "-w", "json")
	var listed struct {
		Nodes []struct {
			NodeID uint64 `json:"node_id"`
		} `json:"nodes"`
	}
	if err := json.Unmarshal([]byte(out), &listed); code != 0 || err != nil || len(listed.Nodes) != 3 {
		t.Fatalf("nodes -w json after forgetting node %s: exit %d (%v)\n%s%s", toArg, code, err, out, errOut)
	}
	for _, n := range listed.Nodes {
		if n.NodeID == to {
			t.Errorf("node %d still listed after it was forgotten", to)
		}
	}
	if _, errOut, code := run("node", "forget", toArg); code != exitNotFound {
		t.Errorf("forgetting node %s again: exit %d, want %d\n%s", toArg, code, exitNotFound, errOut)
	}
}
