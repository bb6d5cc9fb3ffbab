package telemetry

import (
	"context"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.opentelemetry.io/otel/attribute"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	"go.opentelemetry.io/otel/metric"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "github.com/flotilla-kv/flotilla/rpc/flotillapb"
)

// Telemetry is one process's meter provider and its /metrics handler.
type Telemetry struct {
	Provider *sdkmetric.MeterProvider
	Meter    metric.Meter
	Handler  http.Handler
	// Requests holds the latencies of the KV requests the
	// UnaryServerInterceptor served since its last Take: a shardnode
	// reports their p99 to placement with each heartbeat.
	Requests LatencyWindow
	// registry is what Handler serves: the OpenTelemetry exporter's
	// metrics and collectors of our own (histograms kept by the engine).
	registry *prometheus.Registry
}

// New sets up a meter provider whose readings are served by Handler in the
// Prometheus text format. service names the binary (shardnode, placementd).
// Handler also serves the process's process_* and go_* metrics and
// flotilla_build_info (process.go).
func New(service string) (*Telemetry, error) {
	reg := prometheus.NewRegistry()
	if err := registerProcess(reg, service); err != nil {
		return nil, err
	}
	exp, err := otelprom.New(otelprom.WithRegisterer(reg))
	if err != nil {
		return nil, err
	}
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(exp))
	return &Telemetry{
		Provider: mp,
		Meter:    mp.Meter("github.com/flotilla-kv/flotilla/" + service),
		Handler:  promhttp.HandlerFor(reg, promhttp.HandlerOpts{}),
		registry: reg,
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
// code and records their latency; the latency of every KV request (each
// op of a Multi call as one) also goes into t.Requests.
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
	var opts rpcOptions
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		start := time.Now()
		resp, err := handler(ctx, req)
		took := time.Since(start)
		elapsed := took.Seconds()
		kv := strings.HasPrefix(info.FullMethod, kvServicePrefix)
		if m, ok := req.(*pb.MultiRequest); ok && err == nil {
			// Count the ops of a Multi call as the requests they are, each
			// with its own code, so per-method figures do not depend on
			// whether clients coalesce.
			// A run of ops with the same method and code (a call's ops
			// are mostly alike) is counted with one Add.
			results := resp.(*pb.MultiResponse).GetResults()
			var (
				runFull string
				runCode codes.Code
				run     int64
			)
			for i, op := range m.GetOps() {
				full := multiOpMethod(op)
				code := codes.Code(results[i].GetStatus().GetCode())
				latency.Record(ctx, elapsed, opts.latency(full))
				t.Requests.Record(took)
				if run > 0 && (full != runFull || code != runCode) {
					requests.Add(ctx, run, opts.requests(runFull, runCode))
					run = 0
				}
				runFull, runCode = full, code
				run++
			}
			if run > 0 {
				requests.Add(ctx, run, opts.requests(runFull, runCode))
			}
			return resp, err
		}
		latency.Record(ctx, elapsed, opts.latency(info.FullMethod))
		if kv {
			t.Requests.Record(took)
		}
		requests.Add(ctx, 1, opts.requests(info.FullMethod, status.Code(err)))
		return resp, err
	}, nil
}

// kvServicePrefix starts the full method name of every KV request.
var kvServicePrefix = "/" + pb.KV_ServiceDesc.ServiceName + "/"

// multiOpMethod is the full method name of the unary request op carries.
func multiOpMethod(op *pb.MultiOp) string {
	switch op.GetOp().(type) {
	case *pb.MultiOp_Get:
		return pb.KV_Get_FullMethodName
	case *pb.MultiOp_Put:
		return pb.KV_Put_FullMethodName
	case *pb.MultiOp_Delete:
		return pb.KV_Delete_FullMethodName
	case *pb.MultiOp_CompareAndSwap:
		return pb.KV_CompareAndSwap_FullMethodName
	}
	return pb.KV_Multi_FullMethodName
}

// rpcOptions caches the attribute sets of the request metrics, one per
// method and one per method and code: building a set sorts and hashes its
// attributes, which would cost more than recording the measurement.
type rpcOptions struct {
	byMethod, byCode sync.Map // string -> metric.MeasurementOption; rpcKey -> metric.AddOption
}

type rpcKey struct {
	method string
	code   codes.Code
}

func (o *rpcOptions) latency(full string) metric.RecordOption {
	if v, ok := o.byMethod.Load(full); ok {
		return v.(metric.MeasurementOption)
	}
	svc, method := splitMethod(full)
	v, _ := o.byMethod.LoadOrStore(full, metric.WithAttributeSet(attribute.NewSet(
		attribute.String("service", svc), attribute.String("method", method))))
	return v.(metric.MeasurementOption)
}

func (o *rpcOptions) requests(full string, code codes.Code) metric.AddOption {
	k := rpcKey{full, code}
	if v, ok := o.byCode.Load(k); ok {
		return v.(metric.MeasurementOption)
	}
	svc, method := splitMethod(full)
	v, _ := o.byCode.LoadOrStore(k, metric.WithAttributeSet(attribute.NewSet(
		attribute.String("service", svc), attribute.String("method", method), attribute.String("code", code.String()))))
	return v.(metric.MeasurementOption)
}

// splitMethod splits "/flotilla.v1.KV/Put" into "flotilla.v1.KV" and "Put".
func splitMethod(full string) (string, string) {
	full = strings.TrimPrefix(full, "/")
	if i := strings.LastIndexByte(full, '/'); i >= 0 {
		return full[:i], full[i+1:]
	}
	return "", full
}
