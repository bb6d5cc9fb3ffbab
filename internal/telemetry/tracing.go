package telemetry

import (
	"context"
	"fmt"
	"os"
	"strings"

	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc/filters"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
)

// Tracing is one process's tracing: an OTLP/gRPC exporter behind a batch
// span processor when the standard OpenTelemetry environment asks for
// traces, nothing otherwise. A nil or zero Tracing is off. Its methods are
// safe for concurrent use.
//
// When off, ServerOptions and DialOptions return nothing, so gRPC runs
// without any stats handler and requests pay nothing for tracing; Start
// returns a non-recording span.
type Tracing struct {
	provider   *sdktrace.TracerProvider
	propagator propagation.TextMapPropagator
}

// Environment variables that turn tracing on or off. The exporter, the
// batch span processor, the sampler and the resource read the other
// standard OTEL_* variables themselves (OTEL_EXPORTER_OTLP_HEADERS,
// OTEL_EXPORTER_OTLP_INSECURE, OTEL_BSP_SCHEDULE_DELAY,
// OTEL_TRACES_SAMPLER, OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES, ...).
const (
	envEndpoint       = "OTEL_EXPORTER_OTLP_ENDPOINT"
	envTracesEndpoint = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"
	envProtocol       = "OTEL_EXPORTER_OTLP_PROTOCOL"
	envTracesProtocol = "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"
	envSDKDisabled    = "OTEL_SDK_DISABLED"
	envTracesExporter = "OTEL_TRACES_EXPORTER"
)

// TracingRequested reports whether the environment read by getenv asks
// for traces: OTEL_EXPORTER_OTLP_ENDPOINT or
// OTEL_EXPORTER_OTLP_TRACES_ENDPOINT is set, OTEL_SDK_DISABLED is not
// "true", and OTEL_TRACES_EXPORTER is unset or "otlp".
func TracingRequested(getenv func(string) string) bool {
	if getenv(envEndpoint) == "" && getenv(envTracesEndpoint) == "" {
		return false
	}
	if strings.EqualFold(strings.TrimSpace(getenv(envSDKDisabled)), "true") {
		return false
	}
	switch e := strings.TrimSpace(getenv(envTracesExporter)); e {
	case "", "otlp":
		return true
	default:
		return false
	}
}

// StartTracing sets up tracing for the binary named service (the default
// service.name; OTEL_SERVICE_NAME overrides it) with instance as
// service.instance.id, if the environment asks for it (TracingRequested).
// When it does, StartTracing also installs the provider and the W3C
// trace-context and baggage propagators as OpenTelemetry's globals. Only
// OTLP over gRPC is supported: OTEL_EXPORTER_OTLP_PROTOCOL, if set, must
// be "grpc". The exporter does not connect until it exports, so an
// unreachable collector does not stop the process; its spans are dropped.
// The caller must Shutdown the returned Tracing.
func StartTracing(ctx context.Context, service, instance string) (*Tracing, error) {
	if !TracingRequested(os.Getenv) {
		return &Tracing{}, nil
	}
	for _, env := range []string{envTracesProtocol, envProtocol} {
		if p := os.Getenv(env); p != "" {
			if p != "grpc" {
				return nil, fmt.Errorf("telemetry: %s=%q: Flotilla exports traces over OTLP/gRPC only; set it to grpc or unset it", env, p)
			}
			break
		}
	}
	exp, err := otlptracegrpc.New(ctx)
	if err != nil {
		return nil, fmt.Errorf("telemetry: the OTLP trace exporter: %w", err)
	}
	attrs := []attribute.KeyValue{attribute.String("service.name", service)}
	if instance != "" {
		attrs = append(attrs, attribute.String("service.instance.id", instance))
	}
	// Later options win: the environment overrides the defaults above.
	res, err := resource.New(ctx, resource.WithTelemetrySDK(), resource.WithAttributes(attrs...), resource.WithFromEnv())
	if err != nil {
		return nil, fmt.Errorf("telemetry: the trace resource: %w", err)
	}
	t := &Tracing{
		provider:   sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithResource(res)),
		propagator: propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{}),
	}
	otel.SetTracerProvider(t.provider)
	otel.SetTextMapPropagator(t.propagator)
	return t, nil
}

// Enabled reports whether spans are recorded and exported.
func (t *Tracing) Enabled() bool { return t != nil && t.provider != nil }

// Start starts a span named name (a root span unless ctx carries one);
// the caller must End it. When off it returns ctx and a non-recording
// span.
func (t *Tracing) Start(ctx context.Context, name string, opts ...trace.SpanStartOption) (context.Context, trace.Span) {
	if !t.Enabled() {
		return ctx, trace.SpanFromContext(ctx)
	}
	return t.provider.Tracer("github.com/flotilla-kv/flotilla").Start(ctx, name, opts...)
}

// traced says which RPCs get spans: not the Raft transport (long-lived
// message streams and snapshot streams whose spans would last for hours),
// nor health checks and reflection.
var traced = filters.None(
	filters.ServiceName("flotilla.v1.Raft"),
	filters.HealthCheck(),
	filters.ServicePrefix("grpc.reflection."),
)

func (t *Tracing) handlerOptions() []otelgrpc.Option {
	return []otelgrpc.Option{
		otelgrpc.WithTracerProvider(t.provider),
		otelgrpc.WithPropagators(t.propagator),
		// Request metrics come from this package's interceptor.
		otelgrpc.WithMeterProvider(metricnoop.NewMeterProvider()),
		otelgrpc.WithFilter(traced),
	}
}

// ServerOptions returns the gRPC server options that give every served
// request (but the Raft transport's) a server span, continuing the
// caller's trace; none when off.
func (t *Tracing) ServerOptions() []grpc.ServerOption {
	if !t.Enabled() {
		return nil
	}
	return []grpc.ServerOption{grpc.StatsHandler(otelgrpc.NewServerHandler(t.handlerOptions()...))}
}

// DialOptions returns the gRPC dial options that give every call a client
// span and send its trace context to the server; none when off.
func (t *Tracing) DialOptions() []grpc.DialOption {
	if !t.Enabled() {
		return nil
	}
	return []grpc.DialOption{grpc.WithStatsHandler(otelgrpc.NewClientHandler(t.handlerOptions()...))}
}

// Shutdown exports the spans still buffered, bounded by ctx, and stops
// the exporter. It does nothing when off.
func (t *Tracing) Shutdown(ctx context.Context) error {
	if !t.Enabled() {
		return nil
	}
	return t.provider.Shutdown(ctx)
}
