package placement

import (
	"maps"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/protobuf/proto"

	pb "github.com/flotilla-kv/flotilla/rpc/flotillapb"
)

// opHistory keeps the record of recent operators for the status API: a
// bounded ring, newest last. Safe for concurrent use.
type opHistory struct {
	// Started, Done and Failed count operators since start, for telemetry.
	Started, Done, Failed atomic.Uint64

	mu     sync.Mutex
	nextID uint64
	ring   []*pb.Operator
	max    int
	// byKind counts operators by kind, for telemetry.
	byKind map[string]OperatorCounts
}

// OperatorCounts counts the operators of one kind since start: started,
// finished with every step done, and failed.
type OperatorCounts struct{ Started, Done, Failed uint64 }

func newOpHistory(max int) *opHistory {
	return &opHistory{max: max, byKind: map[string]OperatorCounts{}}
}

// start records a new running operator and returns it; finish completes it.
func (o *opHistory) start(kind string, shard uint64, desc string, now time.Time) *pb.Operator {
	o.Started.Add(1)
	o.mu.Lock()
	defer o.mu.Unlock()
	o.nextID++
	c := o.byKind[kind]
	c.Started++
	o.byKind[kind] = c
	op := &pb.Operator{Id: o.nextID, Kind: kind, ShardId: shard, Description: desc, State: "running", StartedUnixMs: now.UnixMilli()}
	o.ring = append(o.ring, op)
	if len(o.ring) > o.max {
		o.ring = append(o.ring[:0], o.ring[len(o.ring)-o.max:]...)
	}
	return op
}

func (o *opHistory) finish(op *pb.Operator, err error, now time.Time) {
	o.mu.Lock()
	defer o.mu.Unlock()
	op.State, op.FinishedUnixMs = "done", now.UnixMilli()
	c := o.byKind[op.Kind]
	if err != nil {
		op.State, op.Error = "failed", err.Error()
		o.Failed.Add(1)
		c.Failed++
	} else {
		o.Done.Add(1)
		c.Done++
	}
	o.byKind[op.Kind] = c
}

// counts returns a copy of the counts by kind.
func (o *opHistory) counts() map[string]OperatorCounts {
	o.mu.Lock()
	defer o.mu.Unlock()
	return maps.Clone(o.byKind)
}

// recent returns copies of the recorded operators, newest last.
func (o *opHistory) recent() []*pb.Operator {
	o.mu.Lock()
	defer o.mu.Unlock()
	out := make([]*pb.Operator, len(o.ring))
	for i, op := range o.ring {
		out[i] = proto.CloneOf(op)
	}
	return out
}
