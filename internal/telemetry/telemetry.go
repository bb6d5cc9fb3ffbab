package telemetry

import (
	"context"
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.opentelemetry.io/otel/attribute"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	"go.opentelemetry.io/otel/metric"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"google.golang.org/grpc"
	"google.golang.org/grpc/status"
)

// Telemetry is one process's meter provider and its /metrics handler.
type Telemetry struct {
	Provider *sdkmetric.MeterProvider
	Meter    metric.Meter
	Handler  http.Handler
}

// New sets up a meter provider whose readings are served by Handler in the
// Prometheus text format. service names the binary (shardnode, placementd).
func New(service string) (*Telemetry, error) {
	reg := prometheus.NewRegistry()
	exp, err := otelprom.New(otelprom.WithRegisterer(reg))
	if err != nil {
		return nil, err
	}
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(exp))
	return &Telemetry{
		Provider: mp,
		Meter:    mp.Meter("github.com/flotilla-kv/flotilla/" + service),
		Handler:  promhttp.HandlerFor(reg, promhttp.HandlerOpts{}),
	}, nil
}

// Shutdown flushes and stops the provider.
func (t *Telemetry) Shutdown(ctx context.Context) error { return t.Provider.Shutdown(ctx) }

// Counter is a monotonic reading taken at scrape time.
type Counter struct {
	Name, Description, Unit string
	Read                    func() uint64
}

// Gauge is an instantaneous reading taken at scrape time.
type Gauge struct {
	Name, Description, Unit string
	Read                    func() int64
}

// Observe registers counters and gauges read by callback at scrape time.
func (t *Telemetry) Observe(counters []Counter, gauges []Gauge) error {
	var obs []metric.Observable
	cs := make([]metric.Int64ObservableCounter, len(counters))
	for i, c := range counters {
		var err error
		cs[i], err = t.Meter.Int64ObservableCounter(c.Name, metric.WithDescription(c.Description), metric.WithUnit(c.Unit))
		if err != nil {
			return err
		}
		obs = append(obs, cs[i])
	}
	gs := make([]metric.Int64ObservableGauge, len(gauges))
	for i, g := range gauges {
		var err error
		gs[i], err = t.Meter.Int64ObservableGauge(g.Name, metric.WithDescription(g.Description), metric.WithUnit(g.Unit))
		if err != nil {
			return err
		}
		obs = append(obs, gs[i])
	}
	_, err := t.Meter.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		for i, c := range counters {
			o.ObserveInt64(cs[i], int64(c.Read()))
		}
		for i, g := range gauges {
			o.ObserveInt64(gs[i], g.Read())
		}
		return nil
	}, obs...)
	return err
}

// UnaryServerInterceptor counts the requests of every gRPC method by status
// code and records their latency.
func (t *Telemetry) UnaryServerInterceptor() (grpc.UnaryServerInterceptor, error) {
	requests, err := t.Meter.Int64Counter("flotilla.rpc.server.requests", metric.WithDescription("gRPC requests served, by service, method and status code"))
	if err != nil {
		return nil, err
	}
	latency, err := t.Meter.Float64Histogram("flotilla.rpc.server.duration", metric.WithUnit("s"),
		metric.WithDescription("gRPC request latency, by service and method"),
		metric.WithExplicitBucketBoundaries(0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
	if err != nil {
		return nil, err
	}
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		start := time.Now()
		resp, err := handler(ctx, req)
		svc, method := splitMethod(info.FullMethod)
		attrs := metric.WithAttributes(attribute.String("service", svc), attribute.String("method", method))
		latency.Record(ctx, time.Since(start).Seconds(), attrs)
		requests.Add(ctx, 1, metric.WithAttributes(attribute.String("service", svc), attribute.String("method", method),
			attribute.String("code", status.Code(err).String())))
		return resp, err
	}, nil
}

// splitMethod splits "/flotilla.v1.KV/Put" into "flotilla.v1.KV" and "Put".
func splitMethod(full string) (string, string) {
	full = strings.TrimPrefix(full, "/")
	if i := strings.LastIndexByte(full, '/'); i >= 0 {
		return full[:i], full[i+1:]
	}
	return "", full
}
