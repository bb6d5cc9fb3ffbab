package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/flotilla-kv/flotilla/internal/readable"
	pb "github.com/flotilla-kv/flotilla/rpc/flotillapb"
)

// statusLong is the usage text of flotilla status.
const statusLong = `flotilla status [flags]: cluster status from placement

Prints the placement leader, the nodes up and down, the leases the nodes
that are up count (flotilla nodes shows each node's), and the shards:
under-replicated (fewer live voters than the replication factor; a voter
on a node silent for three heartbeat intervals is not live, long before
placement's --down-after starts repairing it), unavailable (live voters
not a quorum: the shard serves nothing until its nodes return), lagging
(a replica behind its leader). Then one line per group of shards that
placement cannot repair or drain, and why ("blocked: ..."), or whose
repair or drain waits for the per-node limits ("waiting: ..."), and the
recent operators. The status page and placementd's /metrics show the same
counts. -w json prints placement's ClusterStatus, IDs and counts as numbers.`

// placementCmd makes a command that asks placement, with the common
// flags and -w formats (the default first).
func placementCmd(c *common, use, short, long string, args cobra.PositionalArgs, formats ...string) *cobra.Command {
	cmd := &cobra.Command{Use: use, Short: short, Long: long, Args: args}
	c.register(cmd, false, false)
	c.out.register(cmd, formats[0], "", formats...)
	return cmd
}

func newStatusCmd() *cobra.Command {
	var c common
	cmd := placementCmd(&c, "status [flags]", "cluster status from placement: nodes, shards, problems, recent operators", statusLong,
		noArgs, formatTable, formatJSON)
	cmd.RunE = run(func(ctx context.Context, cmd *cobra.Command, _ []string, out io.Writer) error {
		ctx, pc, done, err := c.askPlacement(ctx, cmd)
		if err != nil {
			return err
		}
		defer done()
		cs, err := pc.GetClusterStatus(ctx, &pb.ClusterStatusRequest{})
		if err != nil {
			return err
		}
		if c.out.isJSON() {
			return printProto(out, cs)
		}
		printStatus(out, cs)
		return nil
	})
	return cmd
}

func printStatus(out io.Writer, cs *pb.ClusterStatus) {
	fmt.Fprintf(out, "placement leader: %s (replicas: %s)\n", cs.GetPlacementLeaderAddress(), strings.Join(cs.GetPlacementAddresses(), ", "))
	fmt.Fprintf(out, "bootstrapped: %v   nodes up: %d   down: %d   shards: %d   leases: %d   under-replicated: %d   unavailable: %d   lagging: %d\n",
		cs.GetBootstrapped(), cs.GetNodesUp(), cs.GetNodesDown(), cs.GetShards(), cs.GetLeases(), cs.GetUnderReplicated(), cs.GetUnavailable(), cs.GetLagging())
	for _, b := range cs.GetBlocked() {
		fmt.Fprintln(out, blockedLine(b))
	}
	ops := cs.GetRecentOperators()
	if len(ops) == 0 {
		return
	}
	fmt.Fprintln(out, "recent operators:")
	rows := make([][]string, 0, len(ops))
	for _, op := range ops[max(0, len(ops)-10):] {
		rows = append(rows, []string{strconv.FormatUint(op.GetId(), 10), op.GetKind(), strconv.FormatUint(op.GetShardId(), 10), op.GetState(), op.GetDescription() + errSuffix(op.GetError())})
	}
	table(out, "ID\tKIND\tSHARD\tSTATE\tDESCRIPTION", rows)
}

// blockedLine formats a group of shards placement cannot repair or drain,
// as the status page does (and schedule.Blocked.String):
//
//	blocked: 16 shards: cannot repair: no live node without a replica of the shard (s1 s2 s3 s4 s5 ...)
//	waiting: 2 shards: drain waits: per-node limits reached by operators in flight (s7 s9)
func blockedLine(b *pb.BlockedShards) string {
	var sb strings.Builder
	noun := "shards"
	if b.GetShards() == 1 {
		noun = "shard"
	}
	if b.GetWaiting() {
		fmt.Fprintf(&sb, "waiting: %d %s: %s waits: %s (", b.GetShards(), noun, b.GetNeed(), b.GetReason())
	} else {
		fmt.Fprintf(&sb, "blocked: %d %s: cannot %s: %s (", b.GetShards(), noun, b.GetNeed(), b.GetReason())
	}
	for i, id := range b.GetShardIds() {
		if i > 0 {
			sb.WriteByte(' ')
		}
		fmt.Fprintf(&sb, "s%d", id)
	}
	if int(b.GetShards()) > len(b.GetShardIds()) {
		sb.WriteString(" ...")
	}
	sb.WriteByte(')')
	return sb.String()
}

func errSuffix(e string) string {
	if e == "" {
		return ""
	}
	return " (" + e + ")"
}

func newNodesCmd() *cobra.Command {
	var c common
	cmd := placementCmd(&c, "nodes [flags]", "list the registered nodes",
		"flotilla nodes [flags]: list the registered nodes: a table of each node's ID, address, state, zone, replicas, leaders, "+
			"leases and last heartbeat; -w simple: the same, one node a line, fields separated by \", \"; -w json: placement's answer, "+
			"IDs and counts as numbers", noArgs, formatTable, formatSimple, formatJSON)
	cmd.RunE = run(func(ctx context.Context, cmd *cobra.Command, _ []string, out io.Writer) error {
		ctx, pc, done, err := c.askPlacement(ctx, cmd)
		if err != nil {
			return err
		}
		defer done()
		resp, err := pc.ListNodes(ctx, &pb.ListNodesRequest{})
		if err != nil {
			return err
		}
		switch c.out.format {
		case formatJSON:
			return printProto(out, resp)
		case formatSimple:
			simpleRows(out, nodeRows(resp.GetNodes()))
			return nil
		}
		printNodes(out, resp.GetNodes())
		return nil
	})
	return cmd
}

// simpleRows prints rows as -w simple does: one a line, its fields
// separated by ", ", as etcdctl's simple member list is.
func simpleRows(out io.Writer, rows [][]string) {
	for _, r := range rows {
		fmt.Fprintln(out, strings.Join(r, ", "))
	}
}

func printNodes(out io.Writer, nodes []*pb.Node) {
	table(out, "NODE\tADDRESS\tSTATE\tZONE\tREPLICAS\tLEADERS\tLEASES\tLAST HEARTBEAT", nodeRows(nodes))
}

// nodeRows are the rows of printNodes.
func nodeRows(nodes []*pb.Node) [][]string {
	rows := make([][]string, 0, len(nodes))
	for _, n := range nodes {
		rows = append(rows, []string{
			strconv.FormatUint(n.GetNodeId(), 10), n.GetAddress(), stateName(n.GetState()), n.GetLabels().GetZone(),
			strconv.Itoa(int(n.GetReplicas())), strconv.Itoa(int(n.GetLeaders())), strconv.FormatUint(n.GetLeases(), 10),
			heartbeatAge(n.GetLastHeartbeatMsAgo()),
		})
	}
	return rows
}

// heartbeatAge prints a node's last_heartbeat_ms_ago: "never" for 0
// (placement's leader has not heard from the node; a heartbeat under a
// millisecond old reads 1), else how long ago, as the status page says it.
func heartbeatAge(ms uint64) string {
	if ms == 0 {
		return "never"
	}
	return readable.Duration(time.Duration(ms)*time.Millisecond) + " ago"
}

func stateName(s pb.NodeState) string {
	return strings.ToLower(strings.TrimPrefix(s.String(), "NODE_STATE_"))
}

func newShardsCmd() *cobra.Command {
	var c common
	var node uint64
	cmd := placementCmd(&c, "shards [flags]", "list shards with their ranges, replicas and leaders",
		"flotilla shards [flags]: list shards: a table of each shard's ID, key range, epoch, replicas (* marks the leader), "+
			"leader and approximate bytes; -w simple: the same, one shard a line, fields separated by \", \"; -w json: placement's "+
			"answer, IDs and counts as numbers, keys in base64", noArgs, formatTable, formatSimple, formatJSON)
	cmd.Flags().Uint64Var(&node, "node", 0, "only shards with a replica on this node")
	cmd.RunE = run(func(ctx context.Context, cmd *cobra.Command, _ []string, out io.Writer) error {
		ctx, pc, done, err := c.askPlacement(ctx, cmd)
		if err != nil {
			return err
		}
		defer done()
		resp, err := pc.ListShards(ctx, &pb.ListShardsRequest{NodeId: node})
		if err != nil {
			return err
		}
		switch c.out.format {
		case formatJSON:
			return printProto(out, resp)
		case formatSimple:
			simpleRows(out, shardRows(resp.GetShards()))
			return nil
		}
		printShards(out, resp.GetShards())
		return nil
	})
	return cmd
}

func printShards(out io.Writer, shards []*pb.ShardStatus) {
	table(out, "SHARD\tRANGE\tEPOCH\tREPLICAS (* leads)\tLEADER\tBYTES", shardRows(shards))
}

// shardRows are the rows of printShards.
func shardRows(shards []*pb.ShardStatus) [][]string {
	rows := make([][]string, 0, len(shards))
	for _, s := range shards {
		d := s.GetRoute().GetShard()
		var reps []string
		for _, r := range d.GetReplicas() {
			tag := ""
			if r.GetReplicaId() == s.GetRoute().GetLeaderReplicaId() {
				tag = "*"
			}
			if r.GetLearner() {
				tag += "(learner)"
			}
			reps = append(reps, fmt.Sprintf("n%d%s", r.GetNodeId(), tag))
		}
		rows = append(rows, []string{
			strconv.FormatUint(d.GetShardId(), 10), keyRange(d.GetStart(), d.GetEnd()),
			fmt.Sprintf("v%d/c%d", d.GetEpoch().GetVersion(), d.GetEpoch().GetConfVer()),
			strings.Join(reps, " "), fmt.Sprintf("n%d", s.GetRoute().GetLeaderNodeId()),
			strconv.FormatUint(s.GetApproximateBytes(), 10),
		})
	}
	return rows
}

func keyRange(start, end []byte) string {
	e := "+inf"
	if len(end) > 0 {
		e = fmt.Sprintf("%q", end)
	}
	return fmt.Sprintf("[%q, %s)", start, e)
}

// errDrainBlocked is returned by runDrain when the drain cannot complete;
// what stands in the way was printed.
var errDrainBlocked = errors.New("the drain cannot complete")

func newDrainCmd() *cobra.Command {
	var c common
	var undo bool
	cmd := placementCmd(&c, "drain [flags] NODE", "move every replica and leadership off NODE (--undo to stop)", `flotilla drain [flags] NODE: move every replica and leadership off NODE

Placement moves NODE's leaderships to other replicas, then each of its
replicas to a node that holds none of that shard (added there before it is
removed here). When some replicas have nowhere to go (every other live node
holds one already, e.g. 3 nodes with replication factor 3, or they are
full), the answer says so and the command exits 1: the leaderships still
move away and the node stays draining until you add a node or run
'flotilla drain --undo NODE'. Otherwise watch 'flotilla nodes' until NODE
holds no replicas, then stop it.`, nArgs(1), writeFormats...)
	cmd.Flags().BoolVar(&undo, "undo", false, "stop draining the node: placement stops moving its replicas, and leader balance gives it leaderships again")
	cmd.RunE = run(func(ctx context.Context, cmd *cobra.Command, pos []string, out io.Writer) error {
		if err := c.check(cmd); err != nil {
			return err
		}
		id, err := strconv.ParseUint(pos[0], 10, 64)
		if err != nil || id == 0 {
			return usagef("NODE must be a positive node ID, got %q", pos[0])
		}
		return drain(ctx, &c, out, id, undo)
	})
	return cmd
}

// drain is flotilla drain of node id.
func drain(ctx context.Context, c *common, out io.Writer, id uint64, undo bool) error {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	pc, done, err := c.placementClient()
	if err != nil {
		return err
	}
	defer done()
	resp, err := pc.DrainNode(ctx, &pb.DrainNodeRequest{NodeId: id, Drain: !undo})
	if err != nil {
		return err
	}
	blocked := 0
	for _, b := range resp.GetBlocked() {
		blocked += int(b.GetShards())
	}
	if c.out.isJSON() {
		groups := make([]map[string]any, 0, len(resp.GetBlocked()))
		for _, b := range resp.GetBlocked() {
			groups = append(groups, map[string]any{"need": b.GetNeed(), "reason": b.GetReason(), "shards": b.GetShards(), "shard_ids": b.GetShardIds()})
		}
		if err := printJSON(out, map[string]any{"node": id, "draining": !undo, "shards": resp.GetShards(),
			"can_complete": blocked == 0, "blocked": groups}); err != nil {
			return err
		}
	}
	switch {
	case c.out.isJSON():
	case undo:
		fmt.Fprintf(out, "node %d: no longer draining\n", id)
	case blocked == 0:
		fmt.Fprintf(out, "node %d: draining %d shards; watch 'flotilla nodes' until it holds no replicas\n", id, resp.GetShards())
	default:
		fmt.Fprintf(out, "node %d: draining, but the drain cannot complete: its leaderships move away, but replicas of %d shards have nowhere to go:\n", id, blocked)
		for _, b := range resp.GetBlocked() {
			fmt.Fprintf(out, "  %s\n", blockedLine(b))
		}
		fmt.Fprintf(out, "add a node for them, or stop draining with 'flotilla drain --undo %d'\n", id)
	}
	if blocked > 0 {
		return fmt.Errorf("node %d: %w: %d of its %d shards cannot move off it", id, errDrainBlocked, blocked, resp.GetShards())
	}
	return nil
}
