package main

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strconv"

	"github.com/spf13/cobra"
	"google.golang.org/grpc"

	"github.com/flotilla-kv/flotilla/internal/tlsconfig"
	pb "github.com/flotilla-kv/flotilla/rpc/flotillapb"
)

// shardLong is the usage text of flotilla shard.
const shardLong = `flotilla shard SUBCOMMAND [flags] SHARD: operations on one shard, sent to the
node placement names as its leader (Admin service):

  check SHARD                       the consistency check: every replica computes a checksum of
                                    its data at one log index; exits 1 if they differ or a
                                    replica could not answer
  transfer-leader SHARD --to NODE   move the shard's leadership to its replica on NODE
  split SHARD [--key K]             split the shard in two, at its middle key or at K
                                    (placement runs it and answers once it applied)
  move SHARD --from N --to M        move the shard's replica on node N to node M
                                    (placement adds the new replica, then removes the old)

'flotilla node forget NODE' removes a dead node from placement's catalogue.`

func newShardCmd() *cobra.Command {
	return groupCmd("shard SUBCOMMAND [flags] SHARD",
		"operations on one shard: check (consistency check), transfer-leader, split, move", shardLong,
		newShardCheckCmd(), newShardTransferLeaderCmd(), newShardSplitCmd(), newShardMoveCmd())
}

// shardArg parses the SHARD argument.
func shardArg(s string) (uint64, error) {
	id, err := strconv.ParseUint(s, 10, 64)
	if err != nil || id == 0 {
		return 0, usagef("SHARD must be a positive shard ID, as 'flotilla shards' lists them, got %q", s)
	}
	return id, nil
}

// errNoShard: placement does not know the shard asked for.
var errNoShard = errors.New("no such shard")

// shardAdmin finds shard id in placement's view and returns its route and
// an Admin client of its leader's node, with the closer of both.
func shardAdmin(ctx context.Context, c *common, id uint64) (*pb.Route, pb.AdminClient, func(), error) {
	pc, closePlacement, err := c.placementClient()
	if err != nil {
		return nil, nil, nil, err
	}
	defer closePlacement()
	resp, err := pc.ListShards(ctx, &pb.ListShardsRequest{})
	if err != nil {
		return nil, nil, nil, err
	}
	var route *pb.Route
	for _, s := range resp.GetShards() {
		if s.GetRoute().GetShard().GetShardId() == id {
			route = s.GetRoute()
		}
	}
	if route == nil {
		return nil, nil, nil, fmt.Errorf("shard %d: %w ('flotilla shards' lists them; %w)", id, errNoShard, errNotFound)
	}
	leader := route.GetLeaderNodeId()
	addr := route.GetAddresses()[leader]
	if leader == 0 || addr == "" {
		return nil, nil, nil, fmt.Errorf("shard %d has no leader placement knows of: try again in a few seconds (%w)", id, errUnavailableShard)
	}
	tlsCfg, err := tlsconfig.Load(c.tls)
	if err != nil {
		return nil, nil, nil, err
	}
	conn, err := grpc.NewClient(addr, tlsCfg.DialOption())
	if err != nil {
		return nil, nil, nil, fmt.Errorf("node %d at %s: %w", leader, addr, err)
	}
	return route, pb.NewAdminClient(conn), func() { _ = conn.Close() }, nil
}

// errUnavailableShard: the shard has no leader to send the operation to
// (exitUnavailable).
var errUnavailableShard = fmt.Errorf("shard unavailable: %w", errUnavailable)

func newShardCheckCmd() *cobra.Command {
	var c common
	cmd := placementCmd(&c, "check [flags] SHARD", "consistency check of SHARD: every replica's checksum at one log index",
		"flotilla shard check [flags] SHARD: run the consistency check of SHARD on its leader: it proposes a checksum command, "+
			"so that every replica computes a checksum of its data at the same log index, and collects them. Prints the index, "+
			"then a table of each replica, its node and checksum (or why it could not answer); exits 1 if the checksums differ "+
			"or a replica did not answer. -w json: index, consistent and the checksums (base64).",
		nArgs(1), formatTable, formatJSON)
	cmd.RunE = run(func(ctx context.Context, cmd *cobra.Command, pos []string, out io.Writer) error {
		if err := c.check(cmd); err != nil {
			return err
		}
		id, err := shardArg(pos[0])
		if err != nil {
			return err
		}
		ctx, cancel := context.WithTimeout(ctx, c.timeout)
		defer cancel()
		_, admin, done, err := shardAdmin(ctx, &c, id)
		if err != nil {
			return err
		}
		defer done()
		resp, err := admin.ConsistencyCheck(ctx, &pb.ConsistencyCheckRequest{ShardId: id})
		if err != nil {
			return err
		}
		if c.out.isJSON() {
			err = printProto(out, resp)
		} else {
			verdict := "consistent"
			if !resp.GetConsistent() {
				verdict = "INCONSISTENT"
			}
			fmt.Fprintf(out, "shard %d at index %d: %s\n", id, resp.GetIndex(), verdict)
			rows := make([][]string, 0, len(resp.GetChecksums()))
			for _, rc := range resp.GetChecksums() {
				rows = append(rows, []string{strconv.FormatUint(rc.GetReplicaId(), 10), fmt.Sprintf("n%d", rc.GetNodeId()),
					hex.EncodeToString(rc.GetChecksum()), rc.GetError()})
			}
			table(out, "REPLICA\tNODE\tCHECKSUM\tERROR", rows)
		}
		if err == nil && !resp.GetConsistent() {
			err = &printedError{fmt.Errorf("shard %d: the replicas' checksums differ or one did not answer", id)}
		}
		return err
	})
	return cmd
}

func newShardTransferLeaderCmd() *cobra.Command {
	var c common
	var to uint64
	cmd := placementCmd(&c, "transfer-leader [flags] SHARD --to NODE", "move SHARD's leadership to its replica on NODE",
		"flotilla shard transfer-leader [flags] SHARD --to NODE: ask SHARD's leader (as placement knows it) to hand its "+
			"leadership to the shard's replica on NODE, a voter; it prints once the leader has taken the request, and "+
			"'flotilla shards' shows the new leader after the next heartbeat. Placement's leader balance may move it again "+
			"later; 'flotilla drain' is the way to empty a node.",
		nArgs(1), writeFormats...)
	cmd.Flags().Uint64Var(&to, "to", 0, "the node, by ID as 'flotilla nodes' lists them, whose replica of SHARD is to lead (required)")
	cmd.RunE = run(func(ctx context.Context, cmd *cobra.Command, pos []string, out io.Writer) error {
		if err := c.check(cmd); err != nil {
			return err
		}
		id, err := shardArg(pos[0])
		if err != nil {
			return err
		}
		if to == 0 {
			return usagef("--to NODE is required: the node whose replica is to lead")
		}
		ctx, cancel := context.WithTimeout(ctx, c.timeout)
		defer cancel()
		route, admin, done, err := shardAdmin(ctx, &c, id)
		if err != nil {
			return err
		}
		defer done()
		var replica uint64
		for _, r := range route.GetShard().GetReplicas() {
			if r.GetNodeId() == to {
				replica = r.GetReplicaId()
			}
		}
		if replica == 0 {
			return usagef("node %d holds no replica of shard %d ('flotilla shards' lists them)", to, id)
		}
		if _, err := admin.TransferLeader(ctx, &pb.TransferLeaderRequest{ShardId: id, ToReplicaId: replica}); err != nil {
			return err
		}
		if c.out.isJSON() {
			return printJSON(out, map[string]any{"shard": id, "to_node": to, "to_replica": replica, "ok": true})
		}
		fmt.Fprintf(out, "shard %d: leadership handed to replica %d on node %d\n", id, replica, to)
		return nil
	})
	return cmd
}
