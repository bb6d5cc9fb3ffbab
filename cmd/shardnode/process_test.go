package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/flotilla-kv/flotilla/internal/fleet"
	"github.com/flotilla-kv/flotilla/internal/testutil"
	pb "github.com/flotilla-kv/flotilla/rpc/flotillapb"
)

// These tests run real shardnode processes on loopback. Shards are created
// through the Admin service, as placement will do.

const testShards = 16

// keyFor returns a key owned by shard i of n.
func keyFor(i, n int, suffix string) []byte {
	return append([]byte{byte((i - 1) * 256 / n), '/'}, suffix...)
}

type harness struct {
	t      *testing.T
	f      *fleet.Fleet
	shards int
	// acked holds every acknowledged write: key → value.
	mu    sync.Mutex
	acked map[string]string
}

func newHarness(t *testing.T, nodes, running int, extra ...string) *harness {
	f := fleet.New(t, nodes, extra...)
	for id := 1; id <= running; id++ {
		f.Nodes[uint64(id)].Start()
	}
	for id := 1; id <= running; id++ {
		f.Nodes[uint64(id)].WaitReady(30 * time.Second)
	}
	return &harness{t: t, f: f, acked: map[string]string{}}
}

func (h *harness) admin(node uint64) pb.AdminClient { return pb.NewAdminClient(h.f.Nodes[node].Conn()) }
func (h *harness) kv(node uint64) pb.KVClient       { return pb.NewKVClient(h.f.Nodes[node].Conn()) }

func (h *harness) createShards(n int, nodes []uint64) {
	h.shards = n
	for i := 1; i <= n; i++ {
		for _, node := range nodes {
			_, err := h.admin(node).CreateReplica(testutil.Context(h.t, 10*time.Second), &pb.CreateReplicaRequest{Shard: testutil.ShardDesc(i, n, nodes)})
			if err != nil {
				h.t.Fatalf("create shard %d on node %d: %v", i, node, err)
			}
		}
	}
}

// leader polls the given nodes until one leads shard.
func (h *harness) leader(shard int, nodes ...uint64) uint64 {
	var lead uint64
	testutil.Eventually(h.t, 20*time.Second, func() error {
		for _, n := range nodes {
			if !h.f.Nodes[n].Running() {
				continue
			}
			info, err := h.admin(n).GetShardInfo(testutil.Context(h.t, 2*time.Second), &pb.ShardInfoRequest{ShardId: uint64(shard)})
			if err == nil && info.GetIsLeader() {
				lead = n
				return nil
			}
		}
		return fmt.Errorf("no leader for shard %d", shard)
	})
	return lead
}

// put writes key on shard through its leader, retrying NotLeader, and
// records the write once acknowledged.
func (h *harness) put(shard int, key []byte, value string, nodes ...uint64) error {
	ctx := testutil.Context(h.t, 20*time.Second)
	var err error
	for ctx.Err() == nil {
		lead := h.leader(shard, nodes...)
		_, err = h.kv(lead).Put(ctx, &pb.PutRequest{Header: &pb.RequestHeader{ShardId: uint64(shard)}, Key: key, Value: []byte(value)})
		if err == nil {
			h.mu.Lock()
			h.acked[string(key)] = value
			h.mu.Unlock()
			return nil
		}
		if c := status.Code(err); c != codes.FailedPrecondition && c != codes.ResourceExhausted && c != codes.Unavailable {
			return err
		}
	}
	return err
}

// checkAcked reads every shard linearizably through its leader (a scan,
// page by page) and fails if any acknowledged write is missing or changed.
func (h *harness) checkAcked(nodes ...uint64) {
	h.t.Helper()
	h.mu.Lock()
	defer h.mu.Unlock()
	want := map[int]map[string]string{}
	for k, v := range h.acked {
		s := h.shardOf([]byte(k))
		if want[s] == nil {
			want[s] = map[string]string{}
		}
		want[s][k] = v
	}
	for shard, kvs := range want {
		testutil.Eventually(h.t, 20*time.Second, func() error {
			lead := h.leader(shard, nodes...)
			got := map[string]string{}
			var start []byte
			for {
				resp, err := h.kv(lead).Scan(testutil.Context(h.t, 5*time.Second), &pb.ScanRequest{Header: &pb.RequestHeader{ShardId: uint64(shard)}, Start: start})
				if err != nil {
					return err
				}
				for _, kv := range resp.GetKvs() {
					got[string(kv.GetKey())] = string(kv.GetValue())
				}
				if !resp.GetMore() {
					break
				}
				start = resp.GetResumeKey()
			}
			for k, v := range kvs {
				if got[k] != v {
					h.t.Fatalf("acknowledged write lost on shard %d: %q = %q, want %q", shard, k, got[k], v)
				}
			}
			return nil
		})
	}
}

func (h *harness) shardOf(key []byte) int {
	for i := h.shards; i >= 1; i-- {
		if i == 1 || key[0] >= byte((i-1)*256/h.shards) {
			return i
		}
	}
	return 1
}

// leaderCounts returns how many shards each node leads.
func (h *harness) leaderCounts(nodes ...uint64) map[uint64]int {
	m := map[uint64]int{}
	for _, n := range nodes {
		info, err := h.admin(n).GetNodeInfo(testutil.Context(h.t, 5*time.Second), &pb.NodeInfoRequest{})
		if err == nil {
			m[n] = int(info.GetLeaders())
		}
	}
	return m
}

func TestProcessKillRestartAndSnapshotCatchUp(t *testing.T) {
	h := newHarness(t, 3, 3)
	all := []uint64{1, 2, 3}
	h.createShards(testShards, all)
	for i := 1; i <= testShards; i++ {
		for j := range 5 {
			if err := h.put(i, keyFor(i, testShards, fmt.Sprint(j)), "v1", all...); err != nil {
				t.Fatalf("shard %d: %v", i, err)
			}
		}
	}
	h.checkAcked(all...)

	// kill -9 the node that leads the most shards.
	counts := h.leaderCounts(all...)
	victim := uint64(1)
	for n, c := range counts {
		if c > counts[victim] {
			victim = n
		}
	}
	t.Logf("killing node %d, leader of %d shards", victim, counts[victim])
	began := time.Now()
	h.f.Nodes[victim].Kill()
	var live []uint64
	for _, n := range all {
		if n != victim {
			live = append(live, n)
		}
	}
	// Every shard, affected or not, serves writes again.
	for i := 1; i <= testShards; i++ {
		if err := h.put(i, keyFor(i, testShards, "after-kill"), "v2", live...); err != nil {
			t.Fatalf("shard %d after kill: %v", i, err)
		}
	}
	h.checkAcked(live...)
	t.Logf("all shards served writes again %s after the kill", time.Since(began).Round(time.Millisecond))

	// Compact the logs so the victim must catch up from snapshots.
	for i := 1; i <= testShards; i++ {
		lead := h.leader(i, live...)
		if _, err := h.admin(lead).CompactLog(testutil.Context(t, 5*time.Second), &pb.CompactLogRequest{ShardId: uint64(i), Force: true}); err != nil {
			t.Fatalf("compact shard %d: %v", i, err)
		}
	}
	began = time.Now()
	h.f.Nodes[victim].Restart()
	// The victim catches up: a stale read on it sees the latest writes.
	for i := 1; i <= testShards; i++ {
		key := keyFor(i, testShards, "after-kill")
		testutil.Eventually(t, 30*time.Second, func() error {
			resp, err := h.kv(victim).Get(testutil.Context(t, 2*time.Second), &pb.GetRequest{
				Header: &pb.RequestHeader{ShardId: uint64(i), Consistency: pb.ReadConsistency_READ_CONSISTENCY_STALE}, Key: key})
			if err != nil {
				return err
			}
			if string(resp.GetValue()) != "v2" {
				return fmt.Errorf("shard %d on restarted node: %q", i, resp.GetValue())
			}
			return nil
		})
	}
	t.Logf("restarted node caught up %s after its restart", time.Since(began).Round(time.Millisecond))
	if !strings.Contains(h.f.Nodes[victim].Log(), "recovered") {
		t.Fatalf("restarted node did not log its recovery")
	}
	h.checkAcked(all...)
	for i := 1; i <= testShards; i++ {
		lead := h.leader(i, all...)
		cc, err := h.admin(lead).ConsistencyCheck(testutil.Context(t, 20*time.Second), &pb.ConsistencyCheckRequest{ShardId: uint64(i)})
		if err != nil || !cc.GetConsistent() {
			t.Fatalf("shard %d replicas disagree after catch-up: %v %v", i, cc, err)
		}
	}
}

func TestProcessMembershipAndTransfer(t *testing.T) {
	h := newHarness(t, 4, 3)
	all := []uint64{1, 2, 3}
	h.createShards(2, all)
	if err := h.put(1, keyFor(1, 2, "a"), "1", all...); err != nil {
		t.Fatal(err)
	}
	h.f.Nodes[4].Start()
	h.f.Nodes[4].WaitReady(30 * time.Second)
	// Add a replica of shard 1 on node 4: join, learner, catch up, promote.
	if _, err := h.admin(4).CreateReplica(testutil.Context(t, 5*time.Second), &pb.CreateReplicaRequest{
		Shard: &pb.Descriptor{ShardId: 1}, Join: true, ReplicaId: 104}); err != nil {
		t.Fatal(err)
	}
	lead := h.leader(1, all...)
	resp, err := h.admin(lead).AddReplica(testutil.Context(t, 30*time.Second), &pb.AddReplicaRequest{ShardId: 1, Replica: &pb.Replica{ReplicaId: 104, NodeId: 4}})
	if err != nil {
		t.Fatal(err)
	}
	if n := len(resp.GetShard().GetReplicas()); n != 4 {
		t.Fatalf("after add: %d replicas", n)
	}
	// Remove a replica that does not lead.
	var victim uint64
	for _, n := range all {
		if n != lead {
			victim = n
			break
		}
	}
	cr, err := h.admin(lead).ChangeReplicas(testutil.Context(t, 10*time.Second), &pb.ChangeReplicasRequest{ShardId: 1, Changes: []*pb.ReplicaChange{
		{Type: pb.ChangeType_CHANGE_TYPE_REMOVE, Replica: &pb.Replica{ReplicaId: 100 + victim}}}})
	if err != nil {
		t.Fatal(err)
	}
	if got := len(cr.GetShard().GetReplicas()); got != 3 {
		t.Fatalf("after remove: %d replicas", got)
	}
	// The removed replica deletes itself.
	testutil.Eventually(t, 10*time.Second, func() error {
		_, err := h.admin(victim).GetShardInfo(testutil.Context(t, 2*time.Second), &pb.ShardInfoRequest{ShardId: 1})
		if status.Code(err) != codes.NotFound {
			return fmt.Errorf("removed replica still answers: %v", err)
		}
		return nil
	})
	// Transfer leadership to the new replica and write through it.
	if _, err := h.admin(lead).TransferLeader(testutil.Context(t, 10*time.Second), &pb.TransferLeaderRequest{ShardId: 1, ToReplicaId: 104}); err != nil {
		t.Fatal(err)
	}
	members := []uint64{lead, 4}
	for _, n := range all {
		if n != lead && n != victim {
			members = append(members, n)
		}
	}
	if got := h.leader(1, members...); got != 4 {
		t.Fatalf("leader after transfer: node %d", got)
	}
	if err := h.put(1, keyFor(1, 2, "b"), "2", members...); err != nil {
		t.Fatal(err)
	}
	h.checkAcked(members...)
	// Every replica holds the same data at the same index.
	cc, err := h.admin(4).ConsistencyCheck(testutil.Context(t, 20*time.Second), &pb.ConsistencyCheckRequest{ShardId: 1})
	if err != nil {
		t.Fatal(err)
	}
	if !cc.GetConsistent() || len(cc.GetChecksums()) != 3 {
		t.Fatalf("consistency check: %v", cc)
	}
	for _, c := range cc.GetChecksums() {
		if len(c.GetChecksum()) != 32 {
			t.Fatalf("replica %d returned no checksum: %v", c.GetReplicaId(), c)
		}
	}
}

func TestProcessBadInput(t *testing.T) {
	h := newHarness(t, 1, 1)
	h.createShards(1, []uint64{1})
	if err := h.put(1, []byte("k"), "v", 1); err != nil {
		t.Fatal(err)
	}
	kv, admin := h.kv(1), h.admin(1)
	ctx := testutil.Context(t, 20*time.Second)
	hdr := &pb.RequestHeader{ShardId: 1}
	big := make([]byte, 5<<10)
	cases := []struct {
		name string
		call func() error
		code codes.Code
		want string
	}{
		{"no header", func() error { _, err := kv.Put(ctx, &pb.PutRequest{Key: []byte("x")}); return err }, codes.InvalidArgument, "header"},
		{"zero shard", func() error {
			_, err := kv.Put(ctx, &pb.PutRequest{Header: &pb.RequestHeader{}, Key: []byte("x")})
			return err
		}, codes.InvalidArgument, "shard_id"},
		{"empty key", func() error { _, err := kv.Put(ctx, &pb.PutRequest{Header: hdr}); return err }, codes.InvalidArgument, "empty key"},
		{"oversized key", func() error { _, err := kv.Put(ctx, &pb.PutRequest{Header: hdr, Key: big}); return err }, codes.InvalidArgument, "key too large"},
		{"oversized value", func() error {
			_, err := kv.Put(ctx, &pb.PutRequest{Header: hdr, Key: []byte("x"), Value: make([]byte, 2<<20)})
			return err
		}, codes.InvalidArgument, "value too large"},
		{"unknown shard", func() error {
			_, err := kv.Get(ctx, &pb.GetRequest{Header: &pb.RequestHeader{ShardId: 99}, Key: []byte("x")})
			return err
		}, codes.NotFound, "not found"},
		{"wrong epoch", func() error {
			_, err := kv.Put(ctx, &pb.PutRequest{Header: &pb.RequestHeader{ShardId: 1, Epoch: &pb.Epoch{ConfVer: 1, Version: 7}}, Key: []byte("x")})
			return err
		}, codes.FailedPrecondition, "epoch"},
		{"empty batch", func() error { _, err := kv.Batch(ctx, &pb.BatchRequest{Header: hdr}); return err }, codes.InvalidArgument, "ops"},
		{"bad consistency", func() error {
			_, err := kv.Get(ctx, &pb.GetRequest{Header: &pb.RequestHeader{ShardId: 1, Consistency: 9}, Key: []byte("k")})
			return err
		}, codes.InvalidArgument, "consistency"},
		{"create without descriptor", func() error { _, err := admin.CreateReplica(ctx, &pb.CreateReplicaRequest{}); return err }, codes.InvalidArgument, "descriptor"},
		{"create existing", func() error {
			_, err := admin.CreateReplica(ctx, &pb.CreateReplicaRequest{Shard: testutil.ShardDesc(1, 1, []uint64{1})})
			return err
		}, codes.AlreadyExists, "exists"},
		{"create on other node", func() error {
			_, err := admin.CreateReplica(ctx, &pb.CreateReplicaRequest{Shard: testutil.ShardDesc(5, 1, []uint64{2})})
			return err
		}, codes.InvalidArgument, "no replica on node 1"},
		{"change nothing", func() error {
			_, err := admin.ChangeReplicas(ctx, &pb.ChangeReplicasRequest{ShardId: 1})
			return err
		}, codes.InvalidArgument, "changes"},
		{"remove unknown replica", func() error {
			_, err := admin.ChangeReplicas(ctx, &pb.ChangeReplicasRequest{ShardId: 1, Changes: []*pb.ReplicaChange{
				{Type: pb.ChangeType_CHANGE_TYPE_REMOVE, Replica: &pb.Replica{ReplicaId: 12345}}}})
			return err
		}, codes.InvalidArgument, "not a member"},
		{"split without new shard", func() error {
			_, err := admin.Split(ctx, &pb.SplitRequest{ShardId: 1, SplitKey: []byte("m")})
			return err
		}, codes.InvalidArgument, "new_shard_id"},
		{"split of a one-key shard at its middle", func() error {
			_, err := admin.Split(ctx, &pb.SplitRequest{ShardId: 1, NewShardId: 2, NewReplicaIds: map[uint64]uint64{101: 201}})
			return err
		}, codes.InvalidArgument, "too few"},
		{"transfer to nobody", func() error {
			_, err := admin.TransferLeader(ctx, &pb.TransferLeaderRequest{ShardId: 1})
			return err
		}, codes.InvalidArgument, "to_replica_id"},
	}
	for _, c := range cases {
		err := c.call()
		if status.Code(err) != c.code || !strings.Contains(strings.ToLower(status.Convert(err).Message()), c.want) {
			t.Errorf("%s: got %v (%v), want %v mentioning %q", c.name, status.Code(err), err, c.code, c.want)
		}
	}
	// Nothing changed: the one write is still the only data.
	resp, err := kv.Scan(ctx, &pb.ScanRequest{Header: hdr})
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.GetKvs()) != 1 || string(resp.GetKvs()[0].GetKey()) != "k" {
		t.Fatalf("data changed by refused requests: %v", resp.GetKvs())
	}
	// A wrong epoch carries the current descriptor.
	_, err = kv.Put(ctx, &pb.PutRequest{Header: &pb.RequestHeader{ShardId: 1, Epoch: &pb.Epoch{Version: 7}}, Key: []byte("x")})
	var found bool
	for _, d := range status.Convert(err).Details() {
		if enm, ok := d.(*pb.EpochNotMatch); ok && len(enm.GetCurrent()) == 1 && enm.GetCurrent()[0].GetShardId() == 1 {
			found = true
		}
	}
	if !found {
		t.Fatalf("EpochNotMatch without the current descriptor: %v", err)
	}
}

func TestProcessGracefulShutdownLosesNothing(t *testing.T) {
	h := newHarness(t, 3, 3)
	all := []uint64{1, 2, 3}
	h.createShards(4, all)
	for i := 1; i <= 4; i++ {
		h.leader(i, all...)
	}
	// Writers keep going while one node shuts down.
	var stop atomic.Bool
	var wg sync.WaitGroup
	var errs atomic.Int64
	var n atomic.Int64
	for w := range 8 {
		wg.Go(func() {
			for i := 0; !stop.Load(); i++ {
				shard := (w+i)%4 + 1
				if err := h.put(shard, keyFor(shard, 4, fmt.Sprintf("w%d-%d", w, i)), "x", all...); err != nil && !errors.Is(err, context.DeadlineExceeded) {
					errs.Add(1)
				}
				n.Add(1)
			}
		})
	}
	testutil.Eventually(t, 20*time.Second, func() error {
		if n.Load() < 50 {
			return fmt.Errorf("%d writes so far", n.Load())
		}
		return nil
	})
	victim := uint64(0)
	for node, c := range h.leaderCounts(all...) {
		if c > 0 {
			victim = node
		}
	}
	h.f.Nodes[victim].Terminate()
	if err := h.f.Nodes[victim].Wait(30 * time.Second); err != nil {
		t.Fatalf("graceful shutdown exited with %v; log:\n%s", err, h.f.Nodes[victim].Log())
	}
	stop.Store(true)
	wg.Wait()
	log := h.f.Nodes[victim].Log()
	if !strings.Contains(log, "handing off leaderships") || strings.Contains(log, "not handed off") {
		t.Fatalf("leaderships were not handed off before exit:\n%s", log)
	}
	var live []uint64
	for _, node := range all {
		if node != victim {
			live = append(live, node)
		}
	}
	h.checkAcked(live...)
	h.f.Nodes[victim].Restart()
	h.checkAcked(all...)
	t.Logf("%d writes, %d failed outright", n.Load(), errs.Load())
}

func TestProcessForwardToLeader(t *testing.T) {
	h := newHarness(t, 3, 3, "--forward")
	all := []uint64{1, 2, 3}
	h.createShards(1, all)
	lead := h.leader(1, all...)
	for _, n := range all {
		if n == lead {
			continue
		}
		// A follower proxies the write and the linearizable read.
		key := []byte(fmt.Sprintf("via-%d", n))
		if _, err := h.kv(n).Put(testutil.Context(t, 10*time.Second), &pb.PutRequest{Header: &pb.RequestHeader{ShardId: 1}, Key: key, Value: []byte("x")}); err != nil {
			t.Fatalf("put through follower %d: %v", n, err)
		}
		resp, err := h.kv(n).Get(testutil.Context(t, 10*time.Second), &pb.GetRequest{Header: &pb.RequestHeader{ShardId: 1}, Key: key})
		if err != nil || string(resp.GetValue()) != "x" {
			t.Fatalf("get through follower %d: %q, %v", n, resp.GetValue(), err)
		}
		// So does each write and read of a Multi call.
		mkey := []byte(fmt.Sprintf("multi-%d", n))
		multi, err := h.kv(n).Multi(testutil.Context(t, 10*time.Second), &pb.MultiRequest{Ops: []*pb.MultiOp{
			{Op: &pb.MultiOp_Put{Put: &pb.PutRequest{Header: &pb.RequestHeader{ShardId: 1, ClientId: 50 + n, Seq: 1}, Key: mkey, Value: []byte("m")}}},
			{Op: &pb.MultiOp_CompareAndSwap{CompareAndSwap: &pb.CompareAndSwapRequest{
				Header: &pb.RequestHeader{ShardId: 1, ClientId: 60 + n, Seq: 1}, Key: key, Expected: []byte("x"), Value: []byte("y")}}},
			{Op: &pb.MultiOp_Get{Get: &pb.GetRequest{Header: &pb.RequestHeader{ShardId: 1}, Key: key}}},
		}})
		if err != nil {
			t.Fatalf("Multi through follower %d: %v", n, err)
		}
		for i, r := range multi.GetResults() {
			if r.GetStatus().GetCode() != 0 {
				t.Fatalf("Multi through follower %d: op %d: %v", n, i, r.GetStatus())
			}
		}
		if !multi.GetResults()[1].GetCompareAndSwap().GetSucceeded() {
			t.Fatalf("CAS in a Multi through follower %d did not swap: %v", n, multi.GetResults()[1])
		}
		resp, err = h.kv(lead).Get(testutil.Context(t, 10*time.Second), &pb.GetRequest{Header: &pb.RequestHeader{ShardId: 1}, Key: mkey})
		if err != nil || string(resp.GetValue()) != "m" {
			t.Fatalf("Put in a Multi through follower %d: leader has %q, %v", n, resp.GetValue(), err)
		}
	}
}

// metrics scrapes node's /metrics: every series by name (labels summed
// over, but for the Put method's), or an error.
func (h *harness) metrics(node uint64) (map[string]float64, error) {
	return scrapeMetrics(h.f.Nodes[node].HTTP)
}

// scrapeMetrics reads the /metrics page at httpAddr into series sums
// (labels dropped, but KV.Put's kept apart).
func scrapeMetrics(httpAddr string) (map[string]float64, error) {
	resp, err := http.Get("http://" + httpAddr + "/metrics")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	m := map[string]float64{}
	for _, line := range strings.Split(string(body), "\n") {
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		name := line[:i]
		if j := strings.IndexByte(name, '{'); j >= 0 && !strings.Contains(name, `method="Put"`) {
			name = name[:j]
		}
		var v float64
		fmt.Sscan(line[i+1:], &v)
		m[name] += v
	}
	return m, nil
}

// TestProcessMetricsMoveUnderLoad scrapes /metrics of the nodes: the main
// series exist and grow while clients write.
func TestProcessMetricsMoveUnderLoad(t *testing.T) {
	h := newHarness(t, 3, 3)
	all := []uint64{1, 2, 3}
	h.createShards(2, all)
	lead := h.leader(1, all...)
	scrape := func() map[string]float64 {
		m, err := h.metrics(lead)
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	before := scrape()
	for i := range 20 {
		if err := h.put(1, keyFor(1, 2, fmt.Sprint(i)), "v", all...); err != nil {
			t.Fatal(err)
		}
	}
	after := scrape()
	for _, name := range []string{"flotilla_engine_proposals_total", "flotilla_engine_entries_applied_total",
		"flotilla_engine_syncs_total", "flotilla_transport_messages_total", "flotilla_transport_batches_total",
		"flotilla_engine_sync_latency_seconds_count", "flotilla_engine_commit_latency_seconds_count",
		"flotilla_engine_apply_latency_seconds_count", "flotilla_engine_commit_latency_seconds_sum"} {
		if after[name] <= before[name] {
			t.Errorf("%s did not grow under load: %v -> %v", name, before[name], after[name])
		}
	}
	for _, name := range []string{"flotilla_engine_groups", "flotilla_engine_leaders", "flotilla_engine_log_entries"} {
		if after[name] < 1 {
			t.Errorf("%s = %v, want at least 1", name, after[name])
		}
	}
	puts := 0.0
	for name, v := range after {
		if strings.HasPrefix(name, "flotilla_rpc_server_requests_total{") && strings.Contains(name, `method="Put"`) {
			puts += v
		}
	}
	if puts < 20 {
		t.Errorf("Put requests counted %v, want at least 20", puts)
	}
}
