package router

import (
	"context"
	"slices"
	"sync/atomic"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "github.com/flotilla-kv/flotilla/rpc/flotillapb"
)

// TestCoalescerBoundsBatchBytes: a batch takes queued requests up to
// maxBatchBytes of keys and values (and MaxBatchOps), a request larger by
// itself goes alone, and the order of the queue is kept.
func TestCoalescerBoundsBatchBytes(t *testing.T) {
	const mib = 1 << 20
	for _, tc := range []struct {
		name   string
		maxOps int
		sizes  []int // value bytes of the queued puts (keys are 1 byte)
		want   []int // requests per batch, in order
	}{
		{"small", 256, []int{10, 10, 10, 10, 10}, []int{5}},
		{"1MiB values", 256, []int{mib, mib, mib, mib, mib, mib, mib, mib, mib, mib}, []int{3, 3, 3, 1}},
		{"one above the bound", 256, []int{10, 5 * mib, 10, 10}, []int{1, 1, 2}},
		{"above the bound first", 256, []int{5 * mib, 10}, []int{1, 1}},
		{"ops bound", 3, slices.Repeat([]int{1}, 7), []int{3, 3, 1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := newCoalescer(nil, 1, tc.maxOps)
			var all []*pending
			for _, n := range tc.sizes {
				op := &pb.MultiOp{Op: &pb.MultiOp_Put{Put: &pb.PutRequest{Key: []byte("k"), Value: make([]byte, n)}}}
				p := &pending{op: op, bytes: opBytes(op)}
				all = append(all, p)
				b.mu.queue = append(b.mu.queue, p)
			}
			var got []int
			var order []*pending
			for len(b.mu.queue) > 0 {
				batch := b.takeLocked()
				got = append(got, len(batch))
				order = append(order, batch...)
				size := 0
				for _, p := range batch {
					size += p.bytes
				}
				if len(batch) > 1 && size > maxBatchBytes {
					t.Errorf("a batch of %d requests and %d bytes, above %d", len(batch), size, maxBatchBytes)
				}
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("batches of %v requests, want %v", got, tc.want)
			}
			if !slices.Equal(order, all) {
				t.Error("the batches reordered the queue")
			}
		})
	}
}

// sizeLimitedKV is a node whose Multi of more than one op fails whole
// with multiErr after it was sent, and whose unary Get answers.
type sizeLimitedKV struct {
	pb.KVClient
	multiErr     error
	multis, gets atomic.Int64
}

func (k *sizeLimitedKV) Multi(ctx context.Context, in *pb.MultiRequest, _ ...grpc.CallOption) (*pb.MultiResponse, error) {
	k.multis.Add(1)
	if r := sendRecordOf(ctx); r != nil {
		r.mark() // written whole, as the connections mark it
	}
	return nil, k.multiErr
}

func (k *sizeLimitedKV) Get(_ context.Context, in *pb.GetRequest, _ ...grpc.CallOption) (*pb.GetResponse, error) {
	k.gets.Add(1)
	return &pb.GetResponse{Found: true, Value: in.GetKey()}, nil
}

// TestCoalescerSendsTooLargeBatchAlone: a Multi that fails whole with
// ResourceExhausted and no Busy detail (an answer above a size limit) is
// sent again request by request, and each request gets its own answer,
// its sendRecord marked since the Multi may have reached the node. One
// that fails with Busy (overload) is not: every request gets the error.
func TestCoalescerSendsTooLargeBatchAlone(t *testing.T) {
	busy, err := status.New(codes.ResourceExhausted, "busy").WithDetails(&pb.Busy{RetryAfterMs: 10})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name      string
		multiErr  error
		wantAlone bool
	}{
		{"answer too large", status.Error(codes.ResourceExhausted, "grpc: received message larger than max (70000000 vs. 67108864)"), true},
		{"busy", busy.Err(), false},
		{"unavailable", status.Error(codes.Unavailable, "connection reset"), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			kv := &sizeLimitedKV{multiErr: tc.multiErr}
			b := newCoalescer(kv, 1, 256)
			var batch []*pending
			var records []*sendRecord
			for _, k := range []string{"a", "b", "c"} {
				rec := &sendRecord{}
				records = append(records, rec)
				op := &pb.MultiOp{Op: &pb.MultiOp_Get{Get: &pb.GetRequest{Key: []byte(k)}}}
				batch = append(batch, &pending{ctx: withSendRecord(context.Background(), rec), op: op, bytes: opBytes(op), done: make(chan struct{})})
			}
			b.sendMulti(batch)
			for i, p := range batch {
				select {
				case <-p.done:
				default:
					t.Fatalf("request %d not resolved", i)
				}
				if tc.wantAlone {
					if p.err != nil || string(p.res.GetGet().GetValue()) != string(p.op.GetGet().GetKey()) {
						t.Errorf("request %d: %v, %v; want its own answer", i, p.res, p.err)
					}
				} else if status.Code(p.err) != status.Code(tc.multiErr) {
					t.Errorf("request %d: %v, want the Multi's error", i, p.err)
				}
				if !records[i].maybeSent() {
					t.Errorf("request %d's sendRecord unmarked after a Multi that may have reached the node", i)
				}
			}
			if got, want := kv.gets.Load(), map[bool]int64{true: 3, false: 0}[tc.wantAlone]; got != want {
				t.Errorf("%d unary Gets, want %d", got, want)
			}
		})
	}
}
