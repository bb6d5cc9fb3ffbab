package placement

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
		u, d, _ := countNodes(s.nodeStatuses(now))
		return int64(u), int64(d), int64(s.view.shardCount())
	}
	return s.ops.Started.Load, s.ops.Done.Load, s.ops.Failed.Load,
		func() int64 { u, _, _ := counts(); return u },
		func() int64 { _, d, _ := counts(); return d },
		func() int64 { _, _, n := counts(); return n }
}
