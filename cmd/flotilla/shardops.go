package main

import (
	"context"
	"fmt"
	"io"
	"strconv"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "github.com/flotilla-kv/flotilla/rpc/flotillapb"
)

// The operations placement runs for an operator: shard split, shard move
// (placement's SplitShard and MoveReplica, run as operators and answered
// when done) and node forget (ForgetNode).

// operatorTimeout is the default --timeout of the commands that wait for
// an operator: a move copies the shard's data to the new replica.
const operatorTimeout = 2 * time.Minute

// longerTimeout makes d the default of cmd's --timeout.
func longerTimeout(cmd *cobra.Command, d time.Duration) {
	f := cmd.Flags().Lookup("timeout")
	_ = f.Value.Set(d.String())
	f.DefValue = d.String()
}

// placementError gives the exit status the CLI documents to a status
// placement answered with: NOT_FOUND (an unknown shard or node) exits 3;
// UNAVAILABLE and DEADLINE_EXCEEDED exit 4 as they are; the rest, a
// refusal that says why (FAILED_PRECONDITION, INVALID_ARGUMENT), exits 1.
func placementError(err error) error {
	if status.Code(err) == codes.NotFound {
		return fmt.Errorf("%s (%w)", status.Convert(err).Message(), errNotFound)
	}
	if s, ok := status.FromError(err); ok && s.Code() != codes.Unavailable && s.Code() != codes.DeadlineExceeded {
		return fmt.Errorf("%s: %s", s.Code(), s.Message())
	}
	return err
}

func newShardSplitCmd() *cobra.Command {
	var c common
	var key string
	cmd := placementCmd(&c, "split [flags] SHARD [--key K]", "split SHARD in two, at its middle key or at --key",
		`flotilla shard split [flags] SHARD [--key K]: have placement split SHARD in two: SHARD keeps [start, K) and a new shard, with a replica beside each of SHARD's, takes [K, end). Without --key the shard's leader picks the middle key of its data. Placement runs the split as an operator (the status page lists it as manual-split) and answers once it applied; the command then prints both shards. Exits 1 when the split is refused (a key outside the shard, a shard of one key, another operator changing the shard: the message says which), 3 for an unknown shard.`, nArgs(1), writeFormats...)
	cmd.Flags().StringVar(&key, "key", "", "the first key of the new right-hand shard (default: the middle key the leader picks)")
	longerTimeout(cmd, operatorTimeout)
	cmd.RunE = run(func(ctx context.Context, cmd *cobra.Command, pos []string, out io.Writer) error {
		ctx, pc, done, err := c.askPlacement(ctx, cmd)
		if err != nil {
			return err
		}
		defer done()
		id, err := shardArg(pos[0])
		if err != nil {
			return err
		}
		resp, err := pc.SplitShard(ctx, &pb.SplitShardRequest{ShardId: id, SplitKey: []byte(key)})
		if err != nil {
			return placementError(err)
		}
		if c.out.isJSON() {
			return printProto(out, resp)
		}
		l, r := resp.GetLeft(), resp.GetRight()
		fmt.Fprintf(out, "shard %d split at %q: shard %d %s, shard %d %s\n", id, r.GetStart(),
			l.GetShardId(), keyRange(l.GetStart(), l.GetEnd()), r.GetShardId(), keyRange(r.GetStart(), r.GetEnd()))
		return nil
	})
	return cmd
}

func newShardMoveCmd() *cobra.Command {
	var c common
	var from, to uint64
	cmd := placementCmd(&c, "move [flags] SHARD --from NODE --to NODE", "move SHARD's replica from one node to another",
		`flotilla shard move [flags] SHARD --from N --to M: have placement move SHARD's replica on node N to node M: it adds a replica on M (a learner, caught up by a snapshot, then a voter), then removes the one on N, handing its leadership away first if it leads. Placement runs the move as an operator (the status page lists it as manual-move) and answers once both changes applied. Placement's balancing may move replicas again later; 'flotilla drain' is the way to empty a node. Exits 1 when the move is refused (N holds no replica of SHARD, M holds one already or is down or draining, another operator changes the shard: the message says which), 3 for an unknown shard or node.`, nArgs(1), writeFormats...)
	cmd.Flags().Uint64Var(&from, "from", 0, "the node, by ID as 'flotilla nodes' lists them, whose replica of SHARD moves (required)")
	cmd.Flags().Uint64Var(&to, "to", 0, "the node, by ID, that gets the new replica (required)")
	longerTimeout(cmd, operatorTimeout)
	cmd.RunE = run(func(ctx context.Context, cmd *cobra.Command, pos []string, out io.Writer) error {
		if err := c.check(cmd); err != nil {
			return err
		}
		id, err := shardArg(pos[0])
		if err != nil {
			return err
		}
		if from == 0 || to == 0 {
			return usagef("--from NODE and --to NODE are both required")
		}
		if from == to {
			return usagef("--from and --to name the same node (%d)", from)
		}
		ctx, pc, done, err := c.askPlacement(ctx, cmd)
		if err != nil {
			return err
		}
		defer done()
		resp, err := pc.MoveReplica(ctx, &pb.MoveReplicaRequest{ShardId: id, FromNodeId: from, ToNodeId: to})
		if err != nil {
			return placementError(err)
		}
		if c.out.isJSON() {
			return printProto(out, resp)
		}
		fmt.Fprintf(out, "shard %d: replica moved from node %d to node %d (new replica %d)\n", id, from, to, resp.GetReplicaId())
		return nil
	})
	return cmd
}

// nodeLong is the usage text of flotilla node.
const nodeLong = `flotilla node SUBCOMMAND [flags] NODE: operations on one node, through placement:

  forget NODE   remove a node that will never return from placement's catalogue

'flotilla nodes' lists the nodes; 'flotilla drain NODE' empties a live one.`

func newNodeCmd() *cobra.Command {
	return groupCmd("node SUBCOMMAND [flags] NODE", "operations on one node: forget", nodeLong, newNodeForgetCmd())
}

func newNodeForgetCmd() *cobra.Command {
	var c common
	cmd := placementCmd(&c, "forget [flags] NODE", "remove a dead NODE from placement's catalogue once its replicas were replaced",
		`flotilla node forget [flags] NODE: remove NODE, gone for good, from placement's catalogue, so that 'flotilla nodes', the status page and the node gauges stop listing it as down. Placement refuses (exit 1, saying why) while NODE is up, or while any shard's descriptor still names a replica on it: placement replaces those once the node has been down for its --down-after; wait for 'flotilla shards' to show none on it. Its ID is never handed out again; a node that does come back with it registers again, and its stale replicas are collected. Exits 3 for an unknown node.`, nArgs(1), writeFormats...)
	cmd.RunE = run(func(ctx context.Context, cmd *cobra.Command, pos []string, out io.Writer) error {
		if err := c.check(cmd); err != nil {
			return err
		}
		id, err := strconv.ParseUint(pos[0], 10, 64)
		if err != nil || id == 0 {
			return usagef("NODE must be a positive node ID, as 'flotilla nodes' lists them, got %q", pos[0])
		}
		ctx, pc, done, err := c.askPlacement(ctx, cmd)
		if err != nil {
			return err
		}
		defer done()
		if _, err := pc.ForgetNode(ctx, &pb.ForgetNodeRequest{NodeId: id}); err != nil {
			return placementError(err)
		}
		if c.out.isJSON() {
			return printJSON(out, map[string]any{"node": id, "forgotten": true})
		}
		fmt.Fprintf(out, "node %d forgotten\n", id)
		return nil
	})
	return cmd
}
