// Package telemetry sets up OpenTelemetry for Flotilla's binaries: metrics
// exported for Prometheus on /metrics, and traces exported over OTLP when
// the standard environment asks for them.
//
// # Metrics
//
// The engine, the transport, the router and the placement service count
// their work with plain atomics on their hot paths (multiraft.Metrics,
// rpc.TransportStats, router.Client.Stats, placement.Service's operator
// counts); this package reads those counters in OpenTelemetry callbacks at
// scrape time (ObserveEngine, ObserveTransport, ObserveRouter,
// ObservePlacement), so telemetry adds nothing to a proposal or a
// message. Request counts and latencies of the gRPC services come from a
// unary interceptor (UnaryServerInterceptor), which also keeps the KV
// requests' latencies of the current heartbeat interval (Requests, a
// LatencyWindow) for the p99 a shardnode reports to placement. Pebble's
// own metrics come from one DB.Metrics() call per scrape (ObservePebble,
// which ObserveEngine calls: flotilla_pebble_*, among them the WAL's
// fsync latency histogram, in seconds). Every Telemetry also
// serves Prometheus' process_* and go_* collectors and
// flotilla_build_info (service, version, revision, Go version). docs/operations.md lists
// the series and what healthy looks like; deploy/grafana/flotilla.json
// charts them.
//
// # Traces
//
// StartTracing is off unless OTEL_EXPORTER_OTLP_ENDPOINT (or
// OTEL_EXPORTER_OTLP_TRACES_ENDPOINT) is set. Off, it installs nothing:
// no gRPC stats handler, no exporter, and OpenTelemetry's global tracer
// provider stays the no-op one, so a request pays nothing. On, the
// process's gRPC servers (Tracing.ServerOptions) and clients
// (Tracing.DialOptions) get the otelgrpc stats handlers, spans go through
// a batch span processor to an OTLP/gRPC exporter, and the W3C trace
// context travels in request metadata, so one trace follows a request
// from the router's client span to the leader's server span and the
// proposal's "flotilla.shard.propose-apply" span (rpc/kv.go). The Raft
// transport's streams, health checks and reflection are not traced.
//
//	tr, err := telemetry.StartTracing(ctx, "shardnode", nodeID)
//	defer tr.Shutdown(ctx) // flushes buffered spans
//	srv := grpc.NewServer(append(opts, tr.ServerOptions()...)...)
package telemetry
