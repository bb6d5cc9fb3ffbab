package placement

import (
	"context"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	pb "github.com/flotilla-kv/flotilla/rpc/flotillapb"
)

// OperatorCounts returns how many operators of each kind this replica's
// scheduler started, completed and failed since it started. The caller
// owns the map. Safe for concurrent use.
func (s *Service) OperatorCounts() map[string]OperatorCounts { return s.ops.counts() }

// Telemetry returns readings for placementd's metrics: operators started,
// done and failed, and (on the leader; zero on followers) nodes up and
// down and shards known. The readings are safe for concurrent use.
func (s *Service) Telemetry() (started, done, failed func() uint64, up, down, shards func() int64) {
	counts := func() (int64, int64, int64) {
		if lead, _ := s.observeLeader(); !lead {
			return 0, 0, 0
		}
		now := s.cfg.Now()
		u, d, _ := countNodes(s.nodeStatuses(now), s.downThreshold())
		return int64(u), int64(d), int64(s.view.shardCount())
	}
	return s.ops.Started.Load, s.ops.Done.Load, s.ops.Failed.Load,
		func() int64 { u, _, _ := counts(); return u },
		func() int64 { _, d, _ := counts(); return d },
		func() int64 { _, _, n := counts(); return n }
}

// OperatorsRunning returns, by kind, how many operators this replica's
// scheduler started that have not finished yet (started less done less
// failed): the operators in flight, but for those whose steps are done
// and that wait for a heartbeat to show their effect. Every kind that ever
// started is in the map, with 0 once none runs. The caller owns the map.
// Safe for concurrent use.
func (s *Service) OperatorsRunning() map[string]int64 {
	out := map[string]int64{}
	for kind, c := range s.ops.counts() {
		out[kind] = int64(c.Started - c.Done - c.Failed)
	}
	return out
}

// operatorKinds are the kinds the running gauge always reports, so that
// each series exists, at 0, before the first operator of its kind.
var operatorKinds = []string{"create", "repair", "drain", "zone", "split", "balance-replica", "balance-leader"}

// problemSeverity is the severity of each problem kind of the status page,
// for the problems gauge's labels.
var problemSeverity = []struct{ kind, severity string }{
	{ProblemNodesDown, SeverityCritical},
	{ProblemShardsUnavailable, SeverityCritical},
	{ProblemKeysUnowned, SeverityCritical},
	{ProblemPlacementBlocked, SeverityCritical},
	{ProblemUnderReplicated, SeverityWarning},
	{ProblemOperatorsStuck, SeverityWarning},
	{ProblemOperatorsRepeating, SeverityWarning},
	{ProblemNotBootstrapped, SeverityWarning},
	{ProblemNoNodes, SeverityWarning},
	{ProblemShardsLagging, SeverityNotice},
	{ProblemPlacementWaiting, SeverityNotice},
	{ProblemOperatorsFailed, SeverityNotice},
}

// statusPage returns the status page as the leader serves it, and false on
// a follower.
func (s *Service) statusPage(ctx context.Context) (*pb.StatusPage, bool) {
	if lead, _ := s.observeLeader(); !lead {
		return nil, false
	}
	cs, err := s.clusterStatus(ctx, &pb.ClusterStatusRequest{})
	if err != nil {
		return nil, false
	}
	nodes, _ := s.listNodes(ctx, &pb.ListNodesRequest{})
	shards, _ := s.listShards(ctx, &pb.ListShardsRequest{})
	return &pb.StatusPage{Cluster: cs, Nodes: nodes.GetNodes(), Shards: shards.GetShards()}, true
}

// ObserveStatus registers on meter two gauges read at scrape time, beside
// the placement metrics internal/telemetry registers:
//
//	flotilla.placement.operators.running{kind}   OperatorsRunning, every kind (0 when none)
//	flotilla.placement.problems{kind,severity}   the status page's problems of each kind (leader only; 0 on followers)
//
// The problems gauge is the banner of the status page as a series: an
// alert on flotilla_placement_problems{kind="operators-repeating"} sees a
// repair loop that no shard count shows. Every kind is reported, at 0
// when absent, so the series exist before trouble does. Call it once per
// meter.
func (s *Service) ObserveStatus(meter metric.Meter) error {
	running, err := meter.Int64ObservableGauge("flotilla.placement.operators.running",
		metric.WithDescription("operators started by this replica's scheduler and not finished, by kind"))
	if err != nil {
		return err
	}
	problems, err := meter.Int64ObservableGauge("flotilla.placement.problems",
		metric.WithDescription("problems of each kind the status page's banner shows, by kind and severity (leader only)"))
	if err != nil {
		return err
	}
	_, err = meter.RegisterCallback(func(ctx context.Context, o metric.Observer) error {
		counts := s.OperatorsRunning()
		for _, k := range operatorKinds {
			if _, ok := counts[k]; !ok {
				counts[k] = 0
			}
		}
		for kind, n := range counts {
			o.ObserveInt64(running, n, metric.WithAttributes(attribute.String("kind", kind)))
		}
		byKind := map[string]int64{}
		if page, ok := s.statusPage(ctx); ok {
			for _, p := range assessStatus(page, s.cfg.Now(), s.statusLimits()).Problems {
				byKind[p.Kind]++
			}
		}
		for _, p := range problemSeverity {
			o.ObserveInt64(problems, byKind[p.kind], metric.WithAttributes(attribute.String("kind", p.kind), attribute.String("severity", p.severity)))
		}
		return nil
	}, running, problems)
	return err
}
