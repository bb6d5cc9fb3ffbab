package placement

import (
	"encoding/json"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/flotilla-kv/flotilla/multiraft"
	pb "github.com/flotilla-kv/flotilla/rpc/flotillapb"
)

// TestSeriesKeepsTheLastHour: one point per node per step (the step's
// last heartbeat), bytes from all the node's replicas, and nothing older
// than an hour.
func TestSeriesKeepsTheLastHour(t *testing.T) {
	f := newStatusFleet(t, 3)
	f.now = time.Unix(36000, 0) // a step boundary
	start := f.now
	f.beat(1, 2, 3)
	// A second heartbeat within the same step replaces the first.
	f.now = f.now.Add(4 * time.Second)
	f.sizes[1] = 2000
	f.beat(1, 2, 3)
	page := f.s.view.seriesPage(f.now)
	if len(page.Nodes) != 3 || page.StepMs != 10000 || page.KeepMs != 3600000 {
		t.Fatalf("series page %+v", page)
	}
	for _, n := range page.Nodes {
		// Node 1 leads shard 1 and reported its new size; nodes 2 and 3
		// heartbeat after it in this step, so they count it too.
		if !slices.Equal(n.TimesMs, []int64{start.UnixMilli()}) || !slices.Equal(n.ReplicaBytes, []uint64{2300}) || !slices.Equal(n.Replicas, []int{2}) {
			t.Errorf("node %d after two heartbeats in one step: %+v", n.NodeID, n)
		}
	}
	// 400 steps of heartbeats from nodes 1 and 2, node 1's load the
	// step's number; node 3 stops after 100.
	for i := range 400 {
		f.now = f.now.Add(seriesStep)
		f.load[1] = float64(i)
		if i < 100 {
			f.beat(1, 2, 3)
		} else {
			f.beat(1, 2)
		}
	}
	page = f.s.view.seriesPage(f.now)
	for _, n := range page.Nodes {
		// The clock is 4 s into a step: the hour back from it holds the
		// starts of 360 steps.
		want := int(seriesKeep / seriesStep)
		if n.NodeID == 3 {
			// It stopped 300 steps ago: 60 of its steps are in the hour.
			want = 60
		}
		if len(n.TimesMs) != want || len(n.Load) != want || len(n.ReplicaBytes) != want {
			t.Errorf("node %d: %d points, want %d", n.NodeID, len(n.TimesMs), want)
		}
		if len(n.TimesMs) > 0 && f.now.Sub(time.UnixMilli(n.TimesMs[0])) > seriesKeep {
			t.Errorf("node %d keeps a point from %s ago", n.NodeID, f.now.Sub(time.UnixMilli(n.TimesMs[0])))
		}
		if !slices.IsSorted(n.TimesMs) {
			t.Errorf("node %d: points out of order", n.NodeID)
		}
		if n.NodeID == 1 && (n.Load[0] != 40 || n.Load[len(n.Load)-1] != 399) {
			t.Errorf("node 1's load from %v to %v, want from 40 to 399", n.Load[0], n.Load[len(n.Load)-1])
		}
	}
	// The storage does not grow past the hour either.
	f.s.view.mu.Lock()
	for id, s := range f.s.view.mu.series {
		if len(s) > int(seriesKeep/seriesStep)+1 {
			t.Errorf("node %d holds %d points", id, len(s))
		}
	}
	f.s.view.mu.Unlock()
}

// TestSeriesServedByTheLeaderOnly: the leader serves /api/series; a
// follower, which keeps no series, says so and names the leader.
func TestSeriesServedByTheLeaderOnly(t *testing.T) {
	f := newStatusFleet(t, 3)
	f.beat(1, 2, 3)
	get := func() (int, []byte) {
		resp, err := http.Get(f.url + "/api/series")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		return resp.StatusCode, b
	}
	code, body := get()
	var page SeriesPage
	if err := json.Unmarshal(body, &page); code != http.StatusOK || err != nil {
		t.Fatalf("leader: %d %v\n%s", code, err, body)
	}
	if len(page.Nodes) != 3 || len(page.Nodes[0].Load) != 1 {
		t.Fatalf("leader's series: %s", body)
	}
	f.s.cfg.Peers = map[multiraft.NodeID]string{2: "10.0.0.2:7000"}
	f.s.engine.(*fakeEngine).set(false, 2)
	code, body = get()
	if code != http.StatusServiceUnavailable || !strings.Contains(string(body), "kept by the placement leader (10.0.0.2:7000)") {
		t.Fatalf("follower: %d %s", code, body)
	}
}

// TestSeriesLatencyAndCPU: a heartbeat's p99 latency and CPU are the
// node's figures in the node listing and its points in the series, one
// per step.
func TestSeriesLatencyAndCPU(t *testing.T) {
	f := newStatusFleet(t, 2)
	f.now = time.Unix(36000, 0)
	for i := range 3 {
		f.s.view.heartbeat(&pb.HeartbeatRequest{NodeId: 1, RequestP99Seconds: 0.002 * float64(i+1), CpuCores: 0.5 + float64(i)}, f.now)
		f.s.view.heartbeat(&pb.HeartbeatRequest{NodeId: 2}, f.now)
		f.now = f.now.Add(seriesStep)
	}
	page := f.s.view.seriesPage(f.now)
	if len(page.Nodes) != 2 {
		t.Fatalf("series of %d nodes, want 2", len(page.Nodes))
	}
	n1, n2 := page.Nodes[0], page.Nodes[1]
	if !slices.Equal(n1.P99Seconds, []float64{0.002, 0.004, 0.006}) || !slices.Equal(n1.CPUCores, []float64{0.5, 1.5, 2.5}) {
		t.Errorf("node 1's p99 %v and CPU %v, want [0.002 0.004 0.006] and [0.5 1.5 2.5]", n1.P99Seconds, n1.CPUCores)
	}
	if !slices.Equal(n2.P99Seconds, []float64{0, 0, 0}) || len(n2.CPUCores) != 3 {
		t.Errorf("node 2 (served nothing): p99 %v, CPU %v", n2.P99Seconds, n2.CPUCores)
	}
	resp, err := f.s.listNodes(t.Context(), &pb.ListNodesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if n := resp.GetNodes()[0]; n.GetRequestP99Seconds() != 0.006 || n.GetCpuCores() != 2.5 {
		t.Errorf("node 1 listed with p99 %v and CPU %v, want its last heartbeat's 0.006 and 2.5", n.GetRequestP99Seconds(), n.GetCpuCores())
	}
	// The page's JSON names them as the status page's script reads them.
	b, err := json.Marshal(page)
	if err != nil {
		t.Fatal(err)
	}
	for _, field := range []string{`"p99_seconds":[0.002,0.004,0.006]`, `"cpu_cores":[0.5,1.5,2.5]`} {
		if !strings.Contains(string(b), field) {
			t.Errorf("series JSON lacks %s: %s", field, b)
		}
	}
}
