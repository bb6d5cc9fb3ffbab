package framed

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"net"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	spb "google.golang.org/genproto/googleapis/rpc/status"

	pb "github.com/flotilla-kv/flotilla/rpc/flotillapb"
)

// requestFrame is a request frame of payload with timeout, and its
// checksum, as KVConn.Multi writes one.
func requestFrame(payload []byte, timeout time.Duration) []byte {
	b := make([]byte, kvRequestHeaderBytes, kvRequestHeaderBytes+len(payload)+4)
	binary.BigEndian.PutUint32(b[0:], uint32(len(payload)))
	binary.BigEndian.PutUint64(b[4:], uint64(timeout))
	b = append(b, payload...)
	return binary.BigEndian.AppendUint32(b, crc32.Checksum(b, castagnoli))
}

func multiGet(keys ...string) *pb.MultiRequest {
	req := &pb.MultiRequest{}
	for _, k := range keys {
		req.Ops = append(req.Ops, &pb.MultiOp{Op: &pb.MultiOp_Get{Get: &pb.GetRequest{Key: []byte(k)}}})
	}
	return req
}

// TestKVRequestRoundTrip: a request frame decodes to its MultiRequest and
// timeout; two in a row decode in turn from one reader.
func TestKVRequestRoundTrip(t *testing.T) {
	var stream []byte
	for i, keys := range [][]string{{"a"}, {"b", "c", "d"}} {
		payload, err := proto.Marshal(multiGet(keys...))
		if err != nil {
			t.Fatal(err)
		}
		stream = append(stream, requestFrame(payload, time.Duration(i+1)*time.Second)...)
	}
	r := bufio.NewReader(bytes.NewReader(stream))
	var buf []byte
	for i, want := range []int{1, 3} {
		req, timeout, err := ReadKVRequest(r, &buf)
		if err != nil || len(req.GetOps()) != want || timeout != time.Duration(i+1)*time.Second {
			t.Fatalf("request %d: %d ops, timeout %s, %v; want %d ops, %ds", i, len(req.GetOps()), timeout, err, want, i+1)
		}
	}
}

// TestKVRequestLimits: a request longer than MaxKVRequestBytes is refused
// from its header, before its body is read; one whose checksum does not
// match is refused; one whose protobuf does not decode is a nil request,
// not an error, so the server can answer it.
func TestKVRequestLimits(t *testing.T) {
	var buf []byte
	big := make([]byte, kvRequestHeaderBytes)
	binary.BigEndian.PutUint32(big, MaxKVRequestBytes+1)
	if _, _, err := ReadKVRequest(bufio.NewReader(bytes.NewReader(big)), &buf); err == nil {
		t.Fatal("a request over the limit was accepted")
	}
	frame := requestFrame([]byte{0x0a, 0x00}, 0)
	frame[len(frame)-1] ^= 1
	if _, _, err := ReadKVRequest(bufio.NewReader(bytes.NewReader(frame)), &buf); !errors.Is(err, errKVChecksum) {
		t.Fatalf("a bad checksum: %v, want errKVChecksum", err)
	}
	req, _, err := ReadKVRequest(bufio.NewReader(bytes.NewReader(requestFrame([]byte{0xff, 0xff, 0xff}, 0))), &buf)
	if err != nil || req != nil {
		t.Fatalf("an undecodable request: %v, %v; want nil, nil", req, err)
	}
}

// TestKVAnswerRoundTrip: an answer carries a MultiResponse, or the full
// status of an error, details included; a status of OK for an error
// becomes Unknown.
func TestKVAnswerRoundTrip(t *testing.T) {
	resp := &pb.MultiResponse{Results: []*pb.MultiResult{{Result: &pb.MultiResult_Get{Get: &pb.GetResponse{Found: true, Value: []byte("v")}}}}}
	st, err := status.New(codes.FailedPrecondition, "not now").WithDetails(&pb.Busy{RetryAfterMs: 7})
	if err != nil {
		t.Fatal(err)
	}
	var stream []byte
	for _, a := range []struct {
		resp *pb.MultiResponse
		err  error
	}{{resp, nil}, {nil, st.Err()}, {nil, errors.New("plain")}} {
		if stream, err = AppendKVAnswer(stream, a.resp, a.err); err != nil {
			t.Fatal(err)
		}
	}
	r := bufio.NewReader(bytes.NewReader(stream))
	var buf []byte

	code, body, err := ReadKVAnswer(r, &buf)
	got := &pb.MultiResponse{}
	if err != nil || code != codes.OK || proto.Unmarshal(body, got) != nil || !proto.Equal(got, resp) {
		t.Fatalf("response: %v %v %v", code, got, err)
	}
	code, body, err = ReadKVAnswer(r, &buf)
	gotSt := &spb.Status{}
	if err != nil || code != codes.FailedPrecondition || proto.Unmarshal(body, gotSt) != nil || !proto.Equal(gotSt, st.Proto()) {
		t.Fatalf("status: %v %v %v; want %v", code, gotSt, err, st.Proto())
	}
	code, _, err = ReadKVAnswer(r, &buf)
	if err != nil || code != codes.Unknown {
		t.Fatalf("a plain error: %v, %v; want Unknown", code, err)
	}
}

// TestKVAnswerTooLarge: an answer whose header claims more than the
// client's limit fails the call with ResourceExhausted, as gRPC fails an
// answer over its receive limit (the router then sends a batch's requests
// alone), and leaves the connection broken, its body unread.
func TestKVAnswerTooLarge(t *testing.T) {
	client, server := net.Pipe()
	defer client.Close()
	defer server.Close()
	go func() {
		r := bufio.NewReader(server)
		var buf []byte
		if _, _, err := ReadKVRequest(r, &buf); err != nil {
			return
		}
		h := make([]byte, kvAnswerHeaderBytes)
		binary.BigEndian.PutUint32(h, kvMaxAnswerBytes+1)
		_, _ = server.Write(h)
	}()
	c := &KVConn{conn: client, raw: client, r: bufio.NewReader(client)}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, sent, err := c.Multi(ctx, multiGet("a", "b"))
	if status.Code(err) != codes.ResourceExhausted || !sent || !c.Broken() {
		t.Fatalf("Multi = sent %v, %v, broken %v; want sent, ResourceExhausted, broken", sent, err, c.Broken())
	}
}

// FuzzKVFrames: whatever bytes a peer sends, reading requests and answers
// from them returns errors, never panics, never reads past a frame's
// declared length, and a request it decodes re-encodes to one that
// decodes the same.
func FuzzKVFrames(f *testing.F) {
	payload, _ := proto.Marshal(multiGet("a", "b"))
	f.Add(requestFrame(payload, time.Second))
	answer, _ := AppendKVAnswer(nil, &pb.MultiResponse{}, nil)
	f.Add(answer)
	f.Add([]byte{0, 0, 0, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, data []byte) {
		var buf []byte
		r := bufio.NewReader(bytes.NewReader(data))
		for {
			req, timeout, err := ReadKVRequest(r, &buf)
			if err != nil {
				break
			}
			if req == nil {
				continue
			}
			again, err := proto.Marshal(req)
			if err != nil {
				t.Fatalf("re-encoding a decoded request: %v", err)
			}
			back, t2, err := ReadKVRequest(bufio.NewReader(bytes.NewReader(requestFrame(again, timeout))), &buf)
			if err != nil || back == nil || t2 != timeout || !proto.Equal(back, req) {
				t.Fatalf("a decoded request does not round-trip: %v, %v", back, err)
			}
		}
		r = bufio.NewReader(bytes.NewReader(data))
		for {
			if _, _, err := ReadKVAnswer(r, &buf); err != nil {
				break
			}
		}
	})
}
