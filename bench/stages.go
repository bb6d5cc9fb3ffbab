package bench

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/flotilla-kv/flotilla/internal/launch"
)

// ServerStages says where a Flotilla request's time went on the servers
// during a measured window: the mean of each latency the shardnodes
// measure themselves, from the difference of their /metrics between the
// window's start and its end, over every node. Set only for Flotilla runs.
//
// Requests is a KV request's time in the server (for a write on the
// leader: proposal, commit and apply). Commit runs from a proposal to the
// round that found it committed: the leader's queue, its own sync and the
// followers' in parallel, and the messages between them. Apply runs from
// there to the proposal's result. Sync is one group commit (Pebble write
// and fsync), on every node, leader or follower. The client's latency less
// the request's time in the server is the client library and the network.
// ReadBatches counts the ReadIndex rounds (each confirms the leadership of
// one group for the linearizable reads that arrived before it) and
// Batches the Raft message batches the nodes sent, one per peer per
// engine round that had messages for it: divided by the window's ops they
// say what a read's leadership check costs in messages. RequestsPerRPC is
// the client side's share: the routers' Get, Put, Delete and
// CompareAndSwap requests per RPC that carried them over the window, the
// mean size of a coalesced Multi call (router.Stats).
type ServerStages struct {
	Requests       map[string]StageMean `json:"requests,omitempty"`
	Commit         StageMean            `json:"commit"`
	Apply          StageMean            `json:"apply"`
	Sync           StageMean            `json:"sync"`
	EntriesPerSync float64              `json:"entries_per_sync"`
	ReadBatches    uint64               `json:"read_batches"`
	Batches        uint64               `json:"raft_batches"`
	RequestsPerRPC float64              `json:"router_requests_per_rpc,omitempty"`
}

// StageMean is how many times a stage was measured in a window, and its
// mean duration.
type StageMean struct {
	Count  uint64  `json:"count"`
	MeanMs float64 `json:"mean_ms"`
}

// String formats the stages on one line.
func (s *ServerStages) String() string {
	var b strings.Builder
	methods := make([]string, 0, len(s.Requests))
	for m := range s.Requests {
		methods = append(methods, m)
	}
	sort.Strings(methods)
	for _, m := range methods {
		fmt.Fprintf(&b, "KV.%s %.3f ms (%d), ", m, s.Requests[m].MeanMs, s.Requests[m].Count)
	}
	if s.Commit.Count > 0 {
		fmt.Fprintf(&b, "commit %.3f ms (%d), apply %.3f ms, ", s.Commit.MeanMs, s.Commit.Count, s.Apply.MeanMs)
	}
	if s.Sync.Count > 0 {
		fmt.Fprintf(&b, "sync %.3f ms (%d, %.1f entries each), ", s.Sync.MeanMs, s.Sync.Count, s.EntriesPerSync)
	}
	if s.ReadBatches > 0 {
		fmt.Fprintf(&b, "ReadIndex rounds %d, ", s.ReadBatches)
	}
	if s.Batches > 0 {
		fmt.Fprintf(&b, "raft batches sent %d, ", s.Batches)
	}
	if s.RequestsPerRPC > 0 {
		fmt.Fprintf(&b, "router requests per RPC %.1f", s.RequestsPerRPC)
	}
	return strings.TrimSuffix(b.String(), ", ")
}

// metricSums are the sums and counts scraped from nodes' /metrics, keyed
// by series name (with ":method" for the KV request latency).
type metricSums map[string]float64

// stageSeries are the series scrapeStages keeps.
var stageSeries = []string{
	"flotilla_engine_commit_latency_seconds_sum", "flotilla_engine_commit_latency_seconds_count",
	"flotilla_engine_apply_latency_seconds_sum", "flotilla_engine_apply_latency_seconds_count",
	"flotilla_engine_sync_latency_seconds_sum", "flotilla_engine_sync_latency_seconds_count",
	"flotilla_engine_syncs_total", "flotilla_engine_sync_entries_total",
	"flotilla_engine_read_batches_total", "flotilla_transport_batches_total",
}

// rpcSeries is the KV request latency histogram, kept per method.
const rpcSeries = "flotilla_rpc_server_duration_seconds"

// scrapeStages reads /metrics of every node at the given HTTP addresses
// and adds up the series of stageSeries and rpcSeries.
func scrapeStages(ctx context.Context, httpAddrs []string) (metricSums, error) {
	sums := metricSums{}
	var (
		mu   sync.Mutex
		wg   sync.WaitGroup
		errs []error
	)
	for _, a := range httpAddrs {
		wg.Go(func() {
			s, err := scrapeOne(ctx, "http://"+a+"/metrics")
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, err)
				return
			}
			for k, v := range s {
				sums[k] += v
			}
		})
	}
	wg.Wait()
	if len(errs) > 0 {
		return nil, errs[0]
	}
	return sums, nil
}

func scrapeOne(ctx context.Context, url string) (metricSums, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	body, err := launch.Get(ctx, url)
	if err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	defer body.Close()
	return parseStageMetrics(body)
}

// parseStageMetrics reads Prometheus text exposition and keeps the series
// of stageSeries, and the sum and count of rpcSeries for service KV by
// method (as "NAME_sum:METHOD").
func parseStageMetrics(r io.Reader) (metricSums, error) {
	keep := map[string]bool{}
	for _, s := range stageSeries {
		keep[s] = true
	}
	sums := metricSums{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		sp := strings.LastIndexByte(line, ' ')
		if sp < 0 {
			continue
		}
		series, labels := line[:sp], ""
		if i := strings.IndexByte(series, '{'); i >= 0 {
			series, labels = series[:i], series[i:]
		}
		key := series
		switch {
		case keep[series]:
		case series == rpcSeries+"_sum" || series == rpcSeries+"_count":
			if !strings.Contains(labels, `.KV"`) {
				continue
			}
			m := labelValue(labels, "method")
			if m == "" {
				continue
			}
			key = series + ":" + m
		default:
			continue
		}
		v, err := strconv.ParseFloat(line[sp+1:], 64)
		if err != nil {
			return nil, fmt.Errorf("bench: metrics line %q: %w", line, err)
		}
		sums[key] += v
	}
	return sums, sc.Err()
}

// labelValue returns the value of label name in a {a="x",b="y"} set.
func labelValue(labels, name string) string {
	i := strings.Index(labels, name+`="`)
	if i < 0 || (i > 0 && labels[i-1] != '{' && labels[i-1] != ',') {
		return ""
	}
	rest := labels[i+len(name)+2:]
	j := strings.IndexByte(rest, '"')
	if j < 0 {
		return ""
	}
	return rest[:j]
}

// stagesBetween computes the stages of a window from the sums scraped at
// its start and its end.
func stagesBetween(before, after metricSums) *ServerStages {
	d := func(k string) float64 { return after[k] - before[k] }
	mean := func(prefix string) StageMean {
		n := d(prefix + "_count")
		if n <= 0 {
			return StageMean{}
		}
		return StageMean{Count: uint64(n), MeanMs: d(prefix+"_sum") / n * 1e3}
	}
	s := &ServerStages{
		Requests: map[string]StageMean{},
		Commit:   mean("flotilla_engine_commit_latency_seconds"),
		Apply:    mean("flotilla_engine_apply_latency_seconds"),
		Sync:     mean("flotilla_engine_sync_latency_seconds"),
	}
	if n := d("flotilla_engine_syncs_total"); n > 0 {
		s.EntriesPerSync = d("flotilla_engine_sync_entries_total") / n
	}
	if n := d("flotilla_engine_read_batches_total"); n > 0 {
		s.ReadBatches = uint64(n)
	}
	if n := d("flotilla_transport_batches_total"); n > 0 {
		s.Batches = uint64(n)
	}
	for k := range after {
		prefix, method, ok := strings.Cut(k, ":")
		if !ok || prefix != rpcSeries+"_count" {
			continue
		}
		n := d(k)
		if n <= 0 {
			continue
		}
		s.Requests[method] = StageMean{Count: uint64(n), MeanMs: d(rpcSeries+"_sum:"+method) / n * 1e3}
	}
	return s
}
