package placement

import (
	"errors"
	"math"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"

	"github.com/flotilla-kv/flotilla/multiraft"
	"github.com/flotilla-kv/flotilla/placement/schedule"
)

func TestConfigValidate(t *testing.T) {
	dial := func(string) (*grpc.ClientConn, error) { return nil, errors.New("unused") }
	good := Config{ReplicaID: 1, Peers: map[multiraft.NodeID]string{1: "a:1", 2: "b:1", 3: "c:1"}, Dial: dial}
	if err := good.Validate(); err != nil {
		t.Fatalf("valid config: %v", err)
	}
	bad := Config{
		ReplicaID: 4, Peers: map[multiraft.NodeID]string{0: "z:1", 1: ""}, ReplicationFactor: -1,
		InitialShards: -2, DownAfter: -time.Second, SplitSizeBytes: math.MaxUint64, SplitLoad: math.NaN(),
		HeartbeatInterval: -1, ScheduleInterval: -1, OperatorTimeout: -1,
	}
	err := bad.Validate()
	if err == nil {
		t.Fatal("an invalid config passed")
	}
	if !errors.Is(err, schedule.ErrInvalidSettings) {
		t.Errorf("the settings' problems are not schedule.ErrInvalidSettings: %v", err)
	}
	// Every problem at once.
	for _, want := range []string{
		"Peers does not name this replica (4)", "Peers: replica ID 0", "Peers: replica 1 has no address",
		"ReplicationFactor", "InitialShards", "DownAfter", "SplitSizeBytes", "SplitLoad",
		"HeartbeatInterval", "ScheduleInterval", "OperatorTimeout", "Dial or Connect is required",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("%q missing from: %v", want, err)
		}
	}
	if err := (Config{}).Validate(); err == nil || !strings.Contains(err.Error(), "ReplicaID is required") || !strings.Contains(err.Error(), "Peers is required") {
		t.Errorf("zero config: %v", err)
	}
	if _, err := New(bad, &Catalogue{}, nil); err == nil {
		t.Error("New accepted an invalid config")
	}
}
