package rpc

import (
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"

	"github.com/flotilla-kv/flotilla/multiraft"
)

func TestTransportConfigValidate(t *testing.T) {
	dial := func(string) (*grpc.ClientConn, error) { return nil, nil }
	valid := TransportConfig{NodeID: 1, Resolver: StaticResolver{}, Dial: dial}
	if err := valid.Validate(); err != nil {
		t.Fatalf("valid config: %v", err)
	}

	// Every problem of a config is reported by one call.
	bad := TransportConfig{
		MaxQueueBytes:          -1,
		SnapshotRateBytes:      -2,
		MaxConcurrentSnapshots: -3,
		ReconnectBackoff:       time.Second,
		MaxReconnectBackoff:    time.Millisecond,
	}
	err := bad.Validate()
	if err == nil {
		t.Fatal("invalid config passed")
	}
	for _, want := range []string{
		"TransportConfig.NodeID: required",
		"TransportConfig.Resolver: required",
		"TransportConfig.Dial: required",
		"TransportConfig.MaxQueueBytes: -1 is negative",
		"TransportConfig.SnapshotRateBytes: -2 is negative",
		"TransportConfig.MaxConcurrentSnapshots: -3 is negative",
		"TransportConfig.ReconnectBackoff: 1s is longer than MaxReconnectBackoff 1ms",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("Validate() = %q, missing %q", err, want)
		}
	}
	if n := strings.Count(err.Error(), "\n") + 1; n != 7 {
		t.Errorf("Validate() reported %d problems, want 7:\n%v", n, err)
	}
}

func TestTransportSetReporterOnce(t *testing.T) {
	tr := NewTransport(TransportConfig{NodeID: 1, Resolver: StaticResolver{}})
	defer tr.Close()
	if tr.report() != nil {
		t.Fatal("reporter set before SetReporter")
	}
	var r nopReporter
	tr.SetReporter(r)
	if tr.report() == nil {
		t.Fatal("no reporter after SetReporter")
	}
	defer func() {
		if recover() == nil {
			t.Fatal("a second SetReporter did not panic")
		}
	}()
	tr.SetReporter(r)
}

type nopReporter struct{}

func (nopReporter) ReportUnreachable(multiraft.GroupID, multiraft.ReplicaID) {}
func (nopReporter) ReportSnapshot(multiraft.Message, error)                  {}
func (nopReporter) NodeDown(multiraft.NodeID)                                {}

// TestRedial: the reconnection backoff doubles up to its maximum while
// dials fail and starts over after a connection that was established, so
// a peer that failed often earlier is redialled promptly after its next
// restart instead of after the maximum.
func TestRedial(t *testing.T) {
	r := redial{first: 50 * time.Millisecond, max: 400 * time.Millisecond}
	ms := time.Millisecond
	for i, step := range []struct {
		established bool
		want        time.Duration
	}{
		{false, 50 * ms}, {false, 100 * ms}, {false, 200 * ms}, {false, 400 * ms}, {false, 400 * ms},
		{true, 50 * ms}, {false, 100 * ms}, {true, 50 * ms}, {true, 50 * ms},
	} {
		if got := r.next(step.established); got != step.want {
			t.Fatalf("step %d (established %v): wait %v; want %v", i, step.established, got, step.want)
		}
	}
}
