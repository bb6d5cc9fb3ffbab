package router

import (
	"fmt"
	"strconv"
	"strings"
	"testing"

	"github.com/cockroachdb/datadriven"

	pb "github.com/flotilla-kv/flotilla/rpc/flotillapb"
)

// TestRouteCache runs the scripts in testdata/cache. Commands:
//
//	new size=N                      a new cache (the default has size 100)
//	insert                          insert one route per input line, print
//	  shard=1 start=a end=m ver=1 conf=1 leader=2 nodes=1,2,3
//	                                whether each went in, then the cache
//	lookup key=k                    the route containing k, or "miss"
//	invalidate shard=1 ver=1 conf=1 invalidate the cache's route of shard 1
//	                                unless it is newer than v<conf>.<ver>
//	set-leader shard=1 node=2       set (or, with clear, forget) a leader
//	epoch-not-match shard=1 ver=1 node=3
//	  shard=1 start=a end=f ver=2   handle an EpochNotMatch answered by node 3
//	                                to a request routed with the given route
//	dump                            the cache in key order, and evictions
//
// Regenerate the expected output with go test -run TestRouteCache -rewrite.
func TestRouteCache(t *testing.T) {
	datadriven.Walk(t, "testdata/cache", func(t *testing.T, path string) {
		c := newRouteCache(100)
		datadriven.RunTest(t, path, func(t *testing.T, td *datadriven.TestData) string {
			switch td.Cmd {
			case "new":
				var size int
				td.ScanArgs(t, "size", &size)
				c = newRouteCache(size)
				return ""
			case "insert":
				var b strings.Builder
				for _, line := range strings.Split(strings.TrimSpace(td.Input), "\n") {
					r := parseRoute(t, line)
					if c.insert(r) {
						fmt.Fprintf(&b, "inserted s%d\n", r.id())
					} else {
						fmt.Fprintf(&b, "refused s%d\n", r.id())
					}
				}
				return b.String() + dumpCache(c)
			case "lookup":
				var key string
				td.ScanArgs(t, "key", &key)
				if r, ok := c.lookup([]byte(key)); ok {
					return r.String()
				}
				return "miss"
			case "invalidate":
				r := parseRoute(t, td.CmdArgs)
				return fmt.Sprintf("removed=%t\n%s", c.invalidate(r), dumpCache(c))
			case "set-leader":
				var id, node uint64
				td.ScanArgs(t, "shard", &id)
				td.ScanArgs(t, "node", &node)
				if td.HasArg("clear") {
					c.clearLeader(shardID(id), nodeID(node))
				} else {
					c.setLeader(shardID(id), node*100+id, nodeID(node))
				}
				return dumpCache(c)
			case "epoch-not-match":
				cl := &Client{cache: c}
				var node uint64
				td.ScanArgs(t, "node", &node)
				used := parseRoute(t, td.CmdArgs)
				enm := &pb.EpochNotMatch{}
				for _, line := range strings.Split(strings.TrimSpace(td.Input), "\n") {
					enm.Current = append(enm.Current, parseRoute(t, line).desc)
				}
				v := cl.onEpochNotMatch(used, nodeID(node), enm)
				return fmt.Sprintf("retry at once=%t\n%s", !v.wait, dumpCache(c))
			case "dump":
				return dumpCache(c)
			}
			t.Fatalf("unknown command %q", td.Cmd)
			return ""
		})
	})
}

func dumpCache(c *routeCache) string {
	var b strings.Builder
	for _, r := range c.routes() {
		b.WriteString(r.String())
		b.WriteByte('\n')
	}
	if n := c.evictions.Load(); n > 0 {
		fmt.Fprintf(&b, "evictions=%d\n", n)
	}
	if b.Len() == 0 {
		return "empty\n"
	}
	return b.String()
}

// parseRoute builds a route from "shard=1 start=a end=m ver=1 conf=1
// leader=2 nodes=1,2,3" (a line) or the same as command arguments.
// Replica IDs are node*100+shard. Defaults: empty start and end, ver and
// conf 1, nodes 1,2,3, no leader.
func parseRoute(t testing.TB, spec any) *route {
	fields := map[string]string{}
	switch s := spec.(type) {
	case string:
		for _, f := range strings.Fields(s) {
			k, v, _ := strings.Cut(f, "=")
			fields[k] = v
		}
	case []datadriven.CmdArg:
		for _, a := range s {
			fields[a.Key] = strings.Join(a.Vals, ",")
		}
	}
	num := func(k string, def uint64) uint64 {
		v, ok := fields[k]
		if !ok {
			return def
		}
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			t.Fatalf("%s=%q: %v", k, v, err)
		}
		return n
	}
	id := num("shard", 0)
	d := &pb.Descriptor{ShardId: id, Epoch: &pb.Epoch{ConfVer: num("conf", 1), Version: num("ver", 1)}}
	if s := fields["start"]; s != "" {
		d.Start = []byte(s)
	}
	if e := fields["end"]; e != "" {
		d.End = []byte(e)
	}
	nodes := fields["nodes"]
	if nodes == "" {
		nodes = "1,2,3"
	}
	for _, n := range strings.Split(nodes, ",") {
		nid, err := strconv.ParseUint(n, 10, 64)
		if err != nil {
			t.Fatalf("nodes=%q: %v", nodes, err)
		}
		d.Replicas = append(d.Replicas, &pb.Replica{ReplicaId: nid*100 + id, NodeId: nid})
	}
	leader := num("leader", 0)
	return newRoute(d, leader*100+id, nodeID(leader))
}
