// Package telemetry sets up OpenTelemetry metrics for Flotilla's binaries,
// exported for Prometheus on /metrics, and the instruments they share.
//
// The engine and the transport count their work with plain atomics on
// their hot paths (multiraft.Metrics, rpc.TransportStats); this package
// reads those counters in OpenTelemetry callbacks at scrape time, so
// telemetry adds nothing to a proposal or a message. Request metrics of the
// gRPC services come from a unary interceptor.
package telemetry
