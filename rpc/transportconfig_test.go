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
