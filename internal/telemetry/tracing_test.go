package telemetry_test

import (
	"bytes"
	"context"
	"encoding/hex"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/grpc"

	"github.com/flotilla-kv/flotilla/internal/fleet"
	"github.com/flotilla-kv/flotilla/internal/telemetry"
	"github.com/flotilla-kv/flotilla/internal/testutil"
	"github.com/flotilla-kv/flotilla/router"
)

// collector is an in-process OTLP trace collector: it keeps every span
// exported to it, with the service.name of the process that sent it.
type collector struct {
	coltracepb.UnimplementedTraceServiceServer
	mu    sync.Mutex
	spans []collected
}

type collected struct {
	service string
	span    *tracepb.Span
}

func (c *collector) Export(_ context.Context, req *coltracepb.ExportTraceServiceRequest) (*coltracepb.ExportTraceServiceResponse, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, rs := range req.GetResourceSpans() {
		var service string
		for _, kv := range rs.GetResource().GetAttributes() {
			if kv.GetKey() == "service.name" {
				service = kv.GetValue().GetStringValue()
			}
		}
		for _, ss := range rs.GetScopeSpans() {
			for _, s := range ss.GetSpans() {
				c.spans = append(c.spans, collected{service, s})
			}
		}
	}
	return &coltracepb.ExportTraceServiceResponse{}, nil
}

// find returns the spans of trace id that match pred.
func (c *collector) find(id []byte, pred func(collected) bool) []collected {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []collected
	for _, s := range c.spans {
		if bytes.Equal(s.span.GetTraceId(), id) && pred(s) {
			out = append(out, s)
		}
	}
	return out
}

func startCollector(t *testing.T) (*collector, string) {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	c := &collector{}
	srv := grpc.NewServer()
	coltracepb.RegisterTraceServiceServer(srv, c)
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	return c, lis.Addr().String()
}

func TestTracingOffWithoutEndpoint(t *testing.T) {
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "")
	t.Setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "")
	tr, err := telemetry.StartTracing(context.Background(), "test", "")
	if err != nil {
		t.Fatal(err)
	}
	if tr.Enabled() || tr.ServerOptions() != nil || tr.DialOptions() != nil {
		t.Fatalf("tracing is on without an endpoint: enabled=%v", tr.Enabled())
	}
	ctx, span := tr.Start(context.Background(), "x")
	if span.IsRecording() || ctx != context.Background() {
		t.Fatal("a span recorded while tracing is off")
	}
	var nilTracing *telemetry.Tracing
	if nilTracing.Enabled() || nilTracing.DialOptions() != nil || nilTracing.Shutdown(context.Background()) != nil {
		t.Fatal("a nil Tracing is not off")
	}
}

func TestTracingRequested(t *testing.T) {
	for _, tc := range []struct {
		env  map[string]string
		want bool
	}{
		{map[string]string{}, false},
		{map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4317"}, true},
		{map[string]string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://c:4317"}, true},
		{map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4317", "OTEL_SDK_DISABLED": "true"}, false},
		{map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4317", "OTEL_TRACES_EXPORTER": "none"}, false},
		{map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4317", "OTEL_TRACES_EXPORTER": "otlp"}, true},
	} {
		if got := telemetry.TracingRequested(func(k string) string { return tc.env[k] }); got != tc.want {
			t.Errorf("TracingRequested(%v) = %v, want %v", tc.env, got, tc.want)
		}
	}
}

func TestTracingRejectsHTTPProtocol(t *testing.T) {
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:1")
	t.Setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
	if _, err := telemetry.StartTracing(context.Background(), "test", ""); err == nil {
		t.Fatal("StartTracing accepted OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf")
	}
}

// TestTraceRouterToApply puts a key through a router in this process
// against a real placementd and shardnode, all exporting to an in-process
// OTLP collector, and checks that one trace holds the router's client
// span, the leader's server span as its child, and the proposal's
// propose-apply span as the server span's child.
func TestTraceRouterToApply(t *testing.T) {
	col, addr := startCollector(t)
	// The child processes inherit the environment.
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://"+addr)
	t.Setenv("OTEL_BSP_SCHEDULE_DELAY", "50")
	t.Setenv("OTEL_TRACES_SAMPLER", "")
	t.Setenv("OTEL_SERVICE_NAME", "")

	f := fleet.New(t, 1)
	f.AddPlacement(1, "--replication-factor", "1", "--initial-shards", "1")
	f.StartPlacement()
	f.Start()

	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	tr, err := telemetry.StartTracing(ctx, "router-test", "")
	if err != nil {
		t.Fatal(err)
	}
	if !tr.Enabled() {
		t.Fatal("tracing is off with OTEL_EXPORTER_OTLP_ENDPOINT set")
	}
	r, err := router.New(ctx, router.Config{PlacementAddresses: []string{f.PlacementAddrs()}, DialOptions: tr.DialOptions()})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	// Wait until the shard exists and has a leader.
	testutil.Eventually(t, 60*time.Second, func() error {
		pctx, pcancel := context.WithTimeout(ctx, 2*time.Second)
		defer pcancel()
		return r.Put(pctx, []byte("warm"), []byte("up"))
	})

	tctx, root := tr.Start(ctx, "test put")
	err = r.Put(tctx, []byte("traced-key"), []byte("v"))
	root.End()
	if err != nil {
		t.Fatal(err)
	}
	traceID := root.SpanContext().TraceID()
	if err := tr.Shutdown(ctx); err != nil {
		t.Fatalf("flushing the router's spans: %v", err)
	}

	const method = "flotilla.v1.KV/Put"
	var client, server, apply collected
	testutil.Eventually(t, 30*time.Second, func() error {
		servers := col.find(traceID[:], func(s collected) bool {
			return s.span.GetName() == method && s.span.GetKind() == tracepb.Span_SPAN_KIND_SERVER
		})
		for _, srv := range servers {
			clients := col.find(traceID[:], func(s collected) bool {
				return s.span.GetKind() == tracepb.Span_SPAN_KIND_CLIENT && bytes.Equal(s.span.GetSpanId(), srv.span.GetParentSpanId())
			})
			applies := col.find(traceID[:], func(s collected) bool {
				return s.span.GetName() == "flotilla.shard.propose-apply" && bytes.Equal(s.span.GetParentSpanId(), srv.span.GetSpanId())
			})
			if len(clients) == 1 && len(applies) == 1 {
				client, server, apply = clients[0], srv, applies[0]
				return nil
			}
		}
		return fmt.Errorf("trace %s: %d server spans of %s, none with its client and apply spans; %d spans collected in all",
			traceID, len(servers), method, col.count())
	})
	if client.span.GetName() != method || client.service != "router-test" {
		t.Errorf("client span %q from %q, want %q from router-test", client.span.GetName(), client.service, method)
	}
	if hex.EncodeToString(client.span.GetParentSpanId()) != root.SpanContext().SpanID().String() {
		t.Errorf("client span's parent %x, want the test's root span %s", client.span.GetParentSpanId(), root.SpanContext().SpanID())
	}
	if server.service != "shardnode" {
		t.Errorf("server span from %q, want shardnode", server.service)
	}
	if apply.service != "shardnode" || apply.span.GetEndTimeUnixNano() > server.span.GetEndTimeUnixNano() {
		t.Errorf("apply span from %q ends at %d, after its server span (%d)", apply.service, apply.span.GetEndTimeUnixNano(), server.span.GetEndTimeUnixNano())
	}
}

func (c *collector) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.spans)
}
