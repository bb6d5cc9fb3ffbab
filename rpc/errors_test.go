package rpc

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/flotilla-kv/flotilla/multiraft"
	pb "github.com/flotilla-kv/flotilla/rpc/flotillapb"
	"github.com/flotilla-kv/flotilla/shard"
)

func TestErrorsMapToDocumentedStatuses(t *testing.T) {
	m := errorMapper{resolver: StaticResolver{3: "10.0.0.3:7100"}}
	cur := shard.Descriptor{ShardID: 5, Start: []byte("a"), End: []byte("m"), Epoch: shard.Epoch{ConfVer: 2, Version: 3}}
	cases := []struct {
		err    error
		code   codes.Code
		detail func(any) bool
	}{
		{&multiraft.NotLeaderError{Group: 5, Leader: 7, Node: 3}, codes.FailedPrecondition, func(d any) bool {
			nl, ok := d.(*pb.NotLeader)
			return ok && nl.GetLeaderReplicaId() == 7 && nl.GetLeaderNodeId() == 3 && nl.GetLeaderAddress() == "10.0.0.3:7100"
		}},
		{fmt.Errorf("wrapped: %w", &shard.EpochNotMatchError{Current: cur}), codes.FailedPrecondition, func(d any) bool {
			e, ok := d.(*pb.EpochNotMatch)
			return ok && len(e.GetCurrent()) == 1 && e.GetCurrent()[0].GetEpoch().GetVersion() == 3
		}},
		{shard.ErrShardNotFound, codes.NotFound, func(d any) bool { _, ok := d.(*pb.ShardNotFound); return ok }},
		{multiraft.ErrGroupNotFound, codes.NotFound, func(d any) bool { _, ok := d.(*pb.ShardNotFound); return ok }},
		{shard.ErrKeyNotInShard, codes.OutOfRange, func(d any) bool { _, ok := d.(*pb.KeyNotInShard); return ok }},
		{multiraft.ErrAmbiguous, codes.Unknown, func(d any) bool { _, ok := d.(*pb.Ambiguous); return ok }},
		{multiraft.ErrProposalDropped, codes.ResourceExhausted, func(d any) bool { b, ok := d.(*pb.Busy); return ok && b.GetRetryAfterMs() > 0 }},
		{shard.ErrKeyTooLarge, codes.InvalidArgument, nil},
		{shard.ErrEmptyKey, codes.InvalidArgument, nil},
		{multiraft.ErrInvalidConfChange, codes.InvalidArgument, nil},
		{shard.ErrStaleSequence, codes.FailedPrecondition, nil},
		{fmt.Errorf("%w: check of transaction 7", shard.ErrTxnForgotten), codes.FailedPrecondition, nil},
		{shard.ErrTxnCommitted, codes.FailedPrecondition, nil},
		{multiraft.ErrGroupExists, codes.AlreadyExists, nil},
		{multiraft.ErrStopped, codes.Unavailable, nil},
		{context.DeadlineExceeded, codes.DeadlineExceeded, nil},
		{errors.New("something else"), codes.Internal, nil},
	}
	for _, c := range cases {
		err := m.toStatus(c.err, 5, []byte("k"))
		s := status.Convert(err)
		if s.Code() != c.code {
			t.Errorf("%v: code %v, want %v", c.err, s.Code(), c.code)
			continue
		}
		if c.detail != nil {
			found := false
			for _, d := range s.Details() {
				found = found || c.detail(d)
			}
			if !found {
				t.Errorf("%v: details %v lack the expected one", c.err, s.Details())
			}
		}
	}
	// A status passes through unchanged (a forwarded request's answer).
	in := status.Error(codes.Aborted, "from the leader")
	if got := m.toStatus(in, 5, nil); status.Code(got) != codes.Aborted {
		t.Fatalf("status rewritten: %v", got)
	}
	if m.toStatus(nil, 5, nil) != nil {
		t.Fatal("nil error became a status")
	}
}

func TestClampSpan(t *testing.T) {
	for _, c := range []struct{ start, end, lo, hi, wantS, wantE string }{
		{"", "", "c", "m", "c", "m"},
		{"a", "z", "c", "m", "c", "m"},
		{"d", "f", "c", "m", "d", "f"},
		{"d", "", "c", "", "d", ""},
		{"", "f", "c", "", "c", "f"},
	} {
		s, e := clampSpan([]byte(c.start), []byte(c.end), []byte(c.lo), []byte(c.hi))
		if string(s) != c.wantS || string(e) != c.wantE {
			t.Errorf("clamp [%q,%q) to [%q,%q) = [%q,%q), want [%q,%q)", c.start, c.end, c.lo, c.hi, s, e, c.wantS, c.wantE)
		}
	}
}

func TestHeaderValidation(t *testing.T) {
	if _, _, err := header(nil); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("nil header: %v", err)
	}
	if _, _, err := header(&pb.RequestHeader{ClientId: 1, ShardId: 2}); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("client without seq: %v", err)
	}
	id, h, err := header(&pb.RequestHeader{ShardId: 2, ClientId: 9, Seq: 4, Epoch: &pb.Epoch{Version: 3}})
	if err != nil || id != 2 || h.ClientID != 9 || h.Seq != 4 || h.Epoch.Version != 3 {
		t.Fatalf("header = %v %+v %v", id, h, err)
	}
}

// TestErrorsCutLongKeys: a message that quotes the request's key (shard's
// KeyNotInShard does) shows its first bytes and its length, not all of it.
func TestErrorsCutLongKeys(t *testing.T) {
	m := errorMapper{}
	key := []byte(strings.Repeat("k", 5<<10))
	err := m.toStatus(fmt.Errorf("%w: key %q, shard s5", shard.ErrKeyNotInShard, key), 5, key)
	msg := status.Convert(err).Message()
	want := `key "` + strings.Repeat("k", 64) + `..." (5120 bytes), shard s5`
	if !strings.HasSuffix(msg, want) || len(msg) > 200 {
		t.Fatalf("message of %d bytes:\n%s\nwant it to end with %s", len(msg), msg, want)
	}
	// The detail keeps the whole key: it is data, not prose.
	if d, ok := status.Convert(err).Details()[0].(*pb.KeyNotInShard); !ok || len(d.GetKey()) != len(key) {
		t.Fatalf("detail: %v", status.Convert(err).Details())
	}
	// Every key of the request is cut: a range's end, a batch's later ops.
	end := []byte(strings.Repeat("z", 100))
	err = m.toStatus(fmt.Errorf("%w: range [%q, %q), shard s5", shard.ErrKeyNotInShard, key, end), 5, key, end)
	if msg := status.Convert(err).Message(); len(msg) > 300 || !strings.Contains(msg, `..." (100 bytes)`) || !strings.Contains(msg, `..." (5120 bytes)`) {
		t.Fatalf("range message of %d bytes: %s", len(msg), msg)
	}
	// Short keys are left as they are.
	short := m.toStatus(fmt.Errorf("%w: key %q", shard.ErrKeyNotInShard, "abc"), 5, []byte("abc"))
	if got := status.Convert(short).Message(); !strings.HasSuffix(got, `key "abc"`) {
		t.Fatalf("short key: %s", got)
	}
}
