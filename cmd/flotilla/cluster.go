package main

import (
	"context"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	pb "github.com/flotilla-kv/flotilla/rpc/flotillapb"
)

func printProto(out io.Writer, m proto.Message) error {
	b, err := protojson.MarshalOptions{Multiline: true, UseProtoNames: true, EmitUnpopulated: true}.Marshal(m)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintln(out, string(b))
	return err
}

func runStatus(ctx context.Context, args []string, out io.Writer) error {
	var c common
	if _, err := parse(newFlags("status", &c, false), args, "flotilla status [flags]: cluster status from placement", 0); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	pc, done, err := c.placementClient()
	if err != nil {
		return err
	}
	defer done()
	cs, err := pc.GetClusterStatus(ctx, &pb.ClusterStatusRequest{})
	if err != nil {
		return err
	}
	if c.json {
		return printProto(out, cs)
	}
	printStatus(out, cs)
	return nil
}

func printStatus(out io.Writer, cs *pb.ClusterStatus) {
	fmt.Fprintf(out, "placement leader: %s (replicas: %s)\n", cs.GetPlacementLeaderAddress(), strings.Join(cs.GetPlacementAddresses(), ", "))
	fmt.Fprintf(out, "bootstrapped: %v   nodes up: %d   down: %d   shards: %d   under-replicated: %d\n",
		cs.GetBootstrapped(), cs.GetNodesUp(), cs.GetNodesDown(), cs.GetShards(), cs.GetUnderReplicated())
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

func errSuffix(e string) string {
	if e == "" {
		return ""
	}
	return " (" + e + ")"
}

func runNodes(ctx context.Context, args []string, out io.Writer) error {
	var c common
	if _, err := parse(newFlags("nodes", &c, false), args, "flotilla nodes [flags]: list the registered nodes", 0); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	pc, done, err := c.placementClient()
	if err != nil {
		return err
	}
	defer done()
	resp, err := pc.ListNodes(ctx, &pb.ListNodesRequest{})
	if err != nil {
		return err
	}
	if c.json {
		return printProto(out, resp)
	}
	printNodes(out, resp.GetNodes())
	return nil
}

func printNodes(out io.Writer, nodes []*pb.Node) {
	rows := make([][]string, 0, len(nodes))
	for _, n := range nodes {
		rows = append(rows, []string{
			strconv.FormatUint(n.GetNodeId(), 10), n.GetAddress(), stateName(n.GetState()), n.GetLabels().GetZone(),
			strconv.Itoa(int(n.GetReplicas())), strconv.Itoa(int(n.GetLeaders())),
			(time.Duration(n.GetLastHeartbeatMsAgo()) * time.Millisecond).String(),
		})
	}
	table(out, "NODE\tADDRESS\tSTATE\tZONE\tREPLICAS\tLEADERS\tLAST HEARTBEAT", rows)
}

func stateName(s pb.NodeState) string {
	return strings.ToLower(strings.TrimPrefix(s.String(), "NODE_STATE_"))
}

func runShards(ctx context.Context, args []string, out io.Writer) error {
	var c common
	fs := newFlags("shards", &c, false)
	node := fs.Uint64("node", 0, "only shards with a replica on this node")
	if _, err := parse(fs, args, "flotilla shards [flags]: list shards, their ranges, replicas and leaders", 0); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	pc, done, err := c.placementClient()
	if err != nil {
		return err
	}
	defer done()
	resp, err := pc.ListShards(ctx, &pb.ListShardsRequest{NodeId: *node})
	if err != nil {
		return err
	}
	if c.json {
		return printProto(out, resp)
	}
	printShards(out, resp.GetShards())
	return nil
}

func printShards(out io.Writer, shards []*pb.ShardStatus) {
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
	table(out, "SHARD\tRANGE\tEPOCH\tREPLICAS (* leads)\tLEADER\tBYTES", rows)
}

func keyRange(start, end []byte) string {
	e := "+inf"
	if len(end) > 0 {
		e = fmt.Sprintf("%q", end)
	}
	return fmt.Sprintf("[%q, %s)", start, e)
}

func runDrain(ctx context.Context, args []string, out io.Writer) error {
	var c common
	fs := newFlags("drain", &c, false)
	undo := fs.Bool("undo", false, "stop draining the node")
	pos, err := parse(fs, args, "flotilla drain [flags] NODE: move every replica and leadership off NODE", 1)
	if err != nil {
		return err
	}
	id, err := strconv.ParseUint(pos[0], 10, 64)
	if err != nil || id == 0 {
		return fmt.Errorf("NODE must be a positive node ID, got %q", pos[0])
	}
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	pc, done, err := c.placementClient()
	if err != nil {
		return err
	}
	defer done()
	if _, err := pc.DrainNode(ctx, &pb.DrainNodeRequest{NodeId: id, Drain: !*undo}); err != nil {
		return err
	}
	if c.json {
		return printJSON(out, map[string]any{"node": id, "draining": !*undo})
	}
	if *undo {
		fmt.Fprintf(out, "node %d: no longer draining\n", id)
	} else {
		fmt.Fprintf(out, "node %d: draining; watch 'flotilla nodes' until it holds no replicas\n", id)
	}
	return nil
}
