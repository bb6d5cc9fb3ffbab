// Package deploy holds what runs Flotilla outside this repository's test
// fleets, and the tests that keep it honest:
//
//   - Dockerfile: one image FROM scratch over the three static binaries
//     (`make docker` builds flotilla:dev; nothing is pulled).
//   - compose.yaml: 3 placementd replicas and 5 shardnodes on a private
//     network with named volumes; compose.scale.yaml adds nodes 6 and 7.
//   - grafana/flotilla.json: a Grafana dashboard over the metrics the
//     binaries export on /metrics.
//   - prometheus/alerts.yaml: Prometheus alerting rules (shard
//     unavailable, under-replicated for 5 minutes, node down, placement
//     repeating operators, fsync p99 high, disk nearly full), with their
//     promtool unit tests in prometheus/alerts_test.yaml (`make
//     test-alerts`, part of `make test`).
//
// The package has no code of its own. Its tests check that every metric
// the dashboard queries, and every metric an alerting rule reads, exists
// in a real scrape of a running fleet (dashboard_test.go, part of every
// `go test ./...`), and bring the
// compose fleet up, use it from the host and tear it down
// (compose_test.go, `make test-docker`; skipped, loudly, only when docker
// is absent). docs/operations.md is the operator's guide to all of it.
package deploy
