package telemetry

import (
	"context"
	"io"
	"net/http/httptest"
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "github.com/flotilla-kv/flotilla/rpc/flotillapb"
)

// TestInterceptorCountsMultiOps: the ops of a Multi call are counted as
// the requests they are, each under its own method and code, however the
// call mixes them; a unary call counts once.
func TestInterceptorCountsMultiOps(t *testing.T) {
	tel, err := New("test")
	if err != nil {
		t.Fatal(err)
	}
	defer tel.Shutdown(context.Background())
	intercept, err := tel.UnaryServerInterceptor()
	if err != nil {
		t.Fatal(err)
	}
	get := &pb.MultiOp{Op: &pb.MultiOp_Get{Get: &pb.GetRequest{}}}
	put := &pb.MultiOp{Op: &pb.MultiOp_Put{Put: &pb.PutRequest{}}}
	ok := &pb.MultiResult{}
	missing := &pb.MultiResult{Status: &pb.OpStatus{Code: int32(codes.NotFound)}}
	// Runs of alike ops, broken by a put, by a code, and again by a put.
	ops := []*pb.MultiOp{get, get, put, get, get, get, put}
	results := []*pb.MultiResult{ok, ok, ok, ok, missing, ok, ok}
	multi := &grpc.UnaryServerInfo{FullMethod: pb.KV_Multi_FullMethodName}
	_, err = intercept(context.Background(), &pb.MultiRequest{Ops: ops}, multi, func(context.Context, any) (any, error) {
		return &pb.MultiResponse{Results: results}, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	unary := &grpc.UnaryServerInfo{FullMethod: pb.KV_Get_FullMethodName}
	if _, err := intercept(context.Background(), &pb.GetRequest{}, unary, func(context.Context, any) (any, error) {
		return nil, status.Error(codes.NotFound, "x")
	}); status.Code(err) != codes.NotFound {
		t.Fatalf("unary call: %v", err)
	}

	rec := httptest.NewRecorder()
	tel.Handler.ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	page, _ := io.ReadAll(rec.Body)
	counts := map[string]string{} // method/code -> value
	durations := map[string]string{}
	for _, line := range strings.Split(string(page), "\n") {
		name, value, found := strings.Cut(line, " ")
		if !found || !strings.Contains(name, `service="flotilla.v1.KV"`) {
			continue
		}
		method := label(name, "method")
		switch {
		case strings.HasPrefix(name, "flotilla_rpc_server_requests_total{"):
			counts[method+"/"+label(name, "code")] = value
		case strings.HasPrefix(name, "flotilla_rpc_server_duration_seconds_count{"):
			durations[method] = value
		}
	}
	want := map[string]string{"Get/OK": "4", "Get/NotFound": "2", "Put/OK": "2"}
	if len(counts) != len(want) {
		t.Errorf("request counts %v, want %v", counts, want)
	}
	for k, v := range want {
		if counts[k] != v {
			t.Errorf("requests %s = %q, want %s (all: %v)", k, counts[k], v, counts)
		}
	}
	if durations["Get"] != "6" || durations["Put"] != "2" || durations["Multi"] != "" {
		t.Errorf("latency observations by method %v, want Get 6, Put 2, no Multi", durations)
	}
	if _, n := tel.Requests.Take(0.99); n != 8 {
		t.Errorf("latency window holds %d requests, want 8", n)
	}
}

// label returns the value of label name in a series name{a="x",...}.
func label(series, name string) string {
	i := strings.Index(series, name+`="`)
	if i < 0 {
		return ""
	}
	rest := series[i+len(name)+2:]
	return rest[:strings.IndexByte(rest, '"')]
}
