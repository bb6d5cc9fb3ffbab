package rpc

import (
	"context"
	"hash/crc32"
	"io"
	"slices"
	"testing"
	"time"

	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/flotilla-kv/flotilla/internal/keys"
	pb "github.com/flotilla-kv/flotilla/rpc/flotillapb"
	"github.com/flotilla-kv/flotilla/shard"
)

// FuzzKVRequest decodes fuzzed bytes as a Get, Put, Delete,
// CompareAndSwap, Scan, Batch or Multi request and serves it on an in-process
// node. Whatever the bytes, the answer is OK or one of the documented
// refusals (never Internal, Unknown or a hang), and a refused write
// changes none of the keys it names (a refusal at apply, such as a stale
// sequence number, still takes a log entry, so the applied index is not
// the measure).
func FuzzKVRequest(f *testing.F) {
	hdr := &pb.RequestHeader{ShardId: 1}
	seeds := []proto.Message{
		&pb.GetRequest{Header: hdr, Key: []byte("k")},
		&pb.PutRequest{Header: hdr, Key: []byte("k"), Value: []byte("v")},
		&pb.PutRequest{Header: &pb.RequestHeader{ShardId: 1, ClientId: 5, Seq: 1}, Key: []byte("k")},
		&pb.DeleteRequest{Header: hdr, Key: []byte("k")},
		&pb.CompareAndSwapRequest{Header: hdr, Key: []byte("k"), ExpectAbsent: true, Value: []byte("v")},
		&pb.ScanRequest{Header: hdr, Start: []byte("a"), End: []byte("z"), Limit: 3},
		&pb.BatchRequest{Header: hdr, Ops: []*pb.BatchOp{{Key: []byte("a"), Value: []byte("1")}, {Key: []byte("b"), Delete: true}}},
	}
	seeds = append(seeds, &pb.MultiRequest{Ops: []*pb.MultiOp{
		{Op: &pb.MultiOp_Put{Put: &pb.PutRequest{Header: hdr, Key: []byte("m"), Value: []byte("v")}}},
		{Op: &pb.MultiOp_Get{Get: &pb.GetRequest{Header: hdr, Key: []byte("m")}}},
		{Op: &pb.MultiOp_Delete{Delete: &pb.DeleteRequest{Header: &pb.RequestHeader{}, Key: []byte("m")}}},
	}})
	kinds := []uint8{0, 1, 1, 2, 3, 4, 5, 6}
	for i, m := range seeds {
		b, err := proto.Marshal(m)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(kinds[i], b)
	}
	f.Add(uint8(1), []byte{0x0a, 0x02, 0x08, 0x63})                         // Put to shard 99
	f.Add(uint8(0), []byte{0x0a, 0x04, 0x08, 0x01, 0x20, 0x09})             // Get, consistency 9
	f.Add(uint8(5), []byte{0x0a, 0x02, 0x08, 0x01, 0x12, 0x02, 0x1a, 0x00}) // Batch with an empty op
	s := newStack(f, stackConfig{})
	// values reads the keys a request touches straight from Pebble.
	values := func(t *testing.T, ks [][]byte) []string {
		out := make([]string, len(ks))
		for i, k := range ks {
			kv, found, err := shard.ReadAt(s.db, k, keys.MaxRevision)
			switch {
			case err != nil:
				t.Fatal(err)
			case !found:
				out[i] = "<absent>"
			default:
				out[i] = string(kv.Value)
			}
		}
		return out
	}
	f.Fuzz(func(t *testing.T, kind uint8, data []byte) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		var err error
		var touched [][]byte
		write := true
		// Every write is decoded first, so the touched keys are known
		// before it runs.
		var put pb.PutRequest
		var del pb.DeleteRequest
		var cas pb.CompareAndSwapRequest
		var batch pb.BatchRequest
		var multi pb.MultiRequest
		switch kind % 7 {
		case 1:
			if proto.Unmarshal(data, &put) != nil {
				return
			}
			touched = [][]byte{put.GetKey()}
		case 2:
			if proto.Unmarshal(data, &del) != nil {
				return
			}
			touched = [][]byte{del.GetKey()}
		case 3:
			if proto.Unmarshal(data, &cas) != nil {
				return
			}
			touched = [][]byte{cas.GetKey()}
		case 5:
			if proto.Unmarshal(data, &batch) != nil {
				return
			}
			for _, op := range batch.GetOps() {
				touched = append(touched, op.GetKey())
			}
		case 6:
			if proto.Unmarshal(data, &multi) != nil {
				return
			}
			for _, op := range multi.GetOps() {
				switch {
				case op.GetPut() != nil:
					touched = append(touched, op.GetPut().GetKey())
				case op.GetDelete() != nil:
					touched = append(touched, op.GetDelete().GetKey())
				case op.GetCompareAndSwap() != nil:
					touched = append(touched, op.GetCompareAndSwap().GetKey())
				}
			}
		}
		before := values(t, touched)
		var multiResp *pb.MultiResponse
		switch kind % 7 {
		case 0:
			var req pb.GetRequest
			if proto.Unmarshal(data, &req) != nil {
				return
			}
			write = false
			_, err = s.kvSrv.Get(ctx, &req)
		case 1:
			_, err = s.kvSrv.Put(ctx, &put)
		case 2:
			_, err = s.kvSrv.Delete(ctx, &del)
		case 3:
			_, err = s.kvSrv.CompareAndSwap(ctx, &cas)
		case 4:
			var req pb.ScanRequest
			if proto.Unmarshal(data, &req) != nil {
				return
			}
			write = false
			_, err = s.kvSrv.Scan(ctx, &req)
		case 5:
			_, err = s.kvSrv.Batch(ctx, &batch)
		case 6:
			multiResp, err = s.kvSrv.Multi(ctx, &multi)
		}
		st, ok := status.FromError(err)
		if !ok {
			t.Fatalf("kind %d: error is not a gRPC status: %v", kind%7, err)
		}
		documented := func(c codes.Code) bool {
			switch c {
			case codes.InvalidArgument, codes.NotFound, codes.FailedPrecondition, codes.OutOfRange:
				return true
			}
			return false
		}
		if st.Code() == codes.OK && multiResp != nil {
			// Each op of a Multi is answered as if it came alone; when every
			// op was refused, nothing may have changed.
			refused := 0
			for i, r := range multiResp.GetResults() {
				if c := codes.Code(r.GetStatus().GetCode()); c != codes.OK {
					if !documented(c) {
						t.Fatalf("multi op %d: %v %q is not a documented refusal of bad input", i, c, r.GetStatus().GetMessage())
					}
					refused++
				}
			}
			if refused < len(multiResp.GetResults()) {
				return
			}
		} else if st.Code() == codes.OK {
			return
		} else if !documented(st.Code()) {
			t.Fatalf("kind %d: %v %q is not a documented refusal of bad input", kind%7, st.Code(), st.Message())
		}
		if write {
			if after := values(t, touched); !slices.Equal(before, after) {
				t.Fatalf("kind %d: refused write (%v %q) changed %q: %q -> %q", kind%7, st.Code(), st.Message(), touched, before, after)
			}
		}
	})
}

// snapStream is the server side of a Snapshot stream fed from a slice.
type snapStream struct {
	grpc.ServerStream
	ctx    context.Context
	chunks []*pb.SnapshotChunk
	resp   *pb.SnapshotResponse
}

func (s *snapStream) Context() context.Context { return s.ctx }
func (s *snapStream) Recv() (*pb.SnapshotChunk, error) {
	if len(s.chunks) == 0 {
		return nil, io.EOF
	}
	c := s.chunks[0]
	s.chunks = s.chunks[1:]
	return c, nil
}
func (s *snapStream) SendAndClose(r *pb.SnapshotResponse) error { s.resp = r; return nil }

// snapshotChunks cuts body into checksummed chunks of size bytes, as the
// sending transport does, for a snapshot of group to node 1.
func snapshotChunks(body []byte, size int, group uint64) []*pb.SnapshotChunk {
	hdr := &pb.RaftMessage{Group: group, ToNode: 1, FromNode: 2, Msg: &raftpb.Message{
		Type: raftpb.MsgSnap.Enum(), To: proto.Uint64(1), From: proto.Uint64(2), Term: proto.Uint64(1)}}
	var chunks []*pb.SnapshotChunk
	for off := 0; ; off += size {
		end := min(off+size, len(body))
		data := body[off:end]
		c := &pb.SnapshotChunk{Data: data, Crc32C: crc32.Checksum(data, castagnoli), Last: end == len(body)}
		if off == 0 {
			c.Header = hdr
		}
		if c.Last {
			c.TotalBytes = uint64(len(body))
			return append(chunks, c)
		}
		chunks = append(chunks, c)
	}
}

// FuzzSnapshotReceive feeds the Raft service's Snapshot receiver a chunked
// snapshot with one fault: a changed byte in one chunk, a lost last chunk,
// a wrong total, or none. A damaged transfer is refused with DataLoss
// before the engine sees it; an intact one reaches the engine (which
// refuses it here, the group being unknown, with Accepted false). The
// receiver's snapshot memory is released every time.
func FuzzSnapshotReceive(f *testing.F) {
	f.Add([]byte("snapshot body of a few bytes"), uint16(4), uint8(0), uint16(3), byte(0x01), uint8(0))
	f.Add([]byte("x"), uint16(0), uint8(0), uint16(0), byte(0xff), uint8(1))
	f.Add(make([]byte, 1000), uint16(100), uint8(7), uint16(50), byte(0x10), uint8(2))
	f.Add([]byte("intact"), uint16(2), uint8(1), uint16(0), byte(0), uint8(3))
	s := newStack(f, stackConfig{})
	f.Fuzz(func(t *testing.T, body []byte, size uint16, which uint8, pos uint16, mask byte, mode uint8) {
		if len(body) == 0 {
			body = []byte{0}
		}
		chunks := snapshotChunks(body, int(size%512)+1, 99)
		c := chunks[int(which)%len(chunks)]
		want := codes.DataLoss
		switch mode % 4 {
		case 0: // one byte of one chunk changes on the way
			if mask == 0 {
				mask = 1
			}
			data := append([]byte(nil), c.Data...)
			data[int(pos)%len(data)] ^= mask
			c.Data = data
		case 1: // the last chunk never arrives
			chunks = chunks[:len(chunks)-1]
		case 2: // the sender's total does not match what arrived
			chunks[len(chunks)-1].TotalBytes += uint64(mask) + 1
		case 3:
			want = codes.OK
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		st := &snapStream{ctx: ctx, chunks: chunks}
		err := s.raftSrv.Snapshot(st)
		if got := status.Code(err); got != want {
			t.Fatalf("mode %d: got %v (%v), want %v", mode%4, got, err, want)
		}
		if want == codes.DataLoss && st.resp != nil {
			t.Fatalf("mode %d: a damaged snapshot reached the engine: %v", mode%4, st.resp)
		}
		if want == codes.OK && (st.resp == nil || st.resp.GetAccepted()) {
			t.Fatalf("intact snapshot of an unknown group: response %v, want refused by the engine", st.resp)
		}
		if n := s.raftSrv.buffered.Load(); n != 0 {
			t.Fatalf("mode %d: %d bytes of snapshot memory still accounted after the stream ended", mode%4, n)
		}
	})
}
