package rpc

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/flotilla-kv/flotilla/multiraft"
	pb "github.com/flotilla-kv/flotilla/rpc/flotillapb"
	"github.com/flotilla-kv/flotilla/shard"
)

// TestMultiServesEachOpAsItsOwnRequest sends one Multi mixing writes, a
// CAS that fails its comparison, reads and ops that are refused, and
// checks every op got what it would have got alone, in request order.
func TestMultiServesEachOpAsItsOwnRequest(t *testing.T) {
	s := newStack(t, stackConfig{})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	h := func(seq uint64) *pb.RequestHeader { return &pb.RequestHeader{ShardId: 1, ClientId: 7, Seq: seq} }
	// Writes of one ClientID must not be in flight together; these use
	// distinct clients, as a coalescing router's lanes do.
	hc := func(client uint64) *pb.RequestHeader { return &pb.RequestHeader{ShardId: 1, ClientId: client, Seq: 1} }
	if _, err := s.kv().Put(ctx, &pb.PutRequest{Header: h(1), Key: []byte("cas"), Value: []byte("old")}); err != nil {
		t.Fatal(err)
	}
	req := &pb.MultiRequest{Ops: []*pb.MultiOp{
		{Op: &pb.MultiOp_Put{Put: &pb.PutRequest{Header: hc(100), Key: []byte("a"), Value: []byte("1")}}},
		{Op: &pb.MultiOp_Put{Put: &pb.PutRequest{Header: hc(101), Key: []byte("b"), Value: []byte("2")}}},
		{Op: &pb.MultiOp_CompareAndSwap{CompareAndSwap: &pb.CompareAndSwapRequest{
			Header: hc(102), Key: []byte("cas"), Expected: []byte("wrong"), Value: []byte("new")}}},
		{Op: &pb.MultiOp_Get{Get: &pb.GetRequest{Header: &pb.RequestHeader{ShardId: 1}, Key: []byte("cas")}}},
		{Op: &pb.MultiOp_Put{Put: &pb.PutRequest{Header: &pb.RequestHeader{ShardId: 1}, Value: []byte("no key")}}},
		{Op: &pb.MultiOp_Get{Get: &pb.GetRequest{Header: &pb.RequestHeader{ShardId: 99}, Key: []byte("x")}}},
		{},
		{Op: &pb.MultiOp_Delete{Delete: &pb.DeleteRequest{Header: hc(103), Key: []byte("absent")}}},
		{Op: &pb.MultiOp_Put{Put: &pb.PutRequest{Key: []byte("no header"), Value: []byte("x")}}},
		{Op: &pb.MultiOp_CompareAndSwap{CompareAndSwap: &pb.CompareAndSwapRequest{
			Header: &pb.RequestHeader{ShardId: 99}, Key: []byte("x"), Value: []byte("y")}}},
	}}
	resp, err := s.kv().Multi(ctx, req)
	if err != nil {
		t.Fatalf("Multi: %v", err)
	}
	res := resp.GetResults()
	if len(res) != len(req.Ops) {
		t.Fatalf("%d results for %d ops", len(res), len(req.Ops))
	}
	ok := func(i int) {
		t.Helper()
		if c := codes.Code(res[i].GetStatus().GetCode()); c != codes.OK {
			t.Fatalf("op %d: %s %q, want OK", i, c, res[i].GetStatus().GetMessage())
		}
	}
	failed := func(i int, want codes.Code, msg string) {
		t.Helper()
		st := res[i].GetStatus()
		if codes.Code(st.GetCode()) != want || !strings.Contains(st.GetMessage(), msg) {
			t.Fatalf("op %d: %s %q, want %s naming %q", i, codes.Code(st.GetCode()), st.GetMessage(), want, msg)
		}
		if res[i].GetResult() != nil {
			t.Fatalf("op %d failed but carries a result %v", i, res[i].GetResult())
		}
	}
	ok(0)
	ok(1)
	ok(2)
	if cas := res[2].GetCompareAndSwap(); cas.GetSucceeded() || string(cas.GetValue()) != "old" {
		t.Fatalf("CAS with a wrong expectation: %v, want not succeeded and current value old", cas)
	}
	ok(3)
	if g := res[3].GetGet(); !g.GetFound() || string(g.GetValue()) != "old" {
		t.Fatalf("Get cas = %v, want old", g)
	}
	failed(4, codes.InvalidArgument, "key")
	failed(5, codes.NotFound, "99")
	failed(6, codes.InvalidArgument, "ops[6]")
	ok(7)
	failed(8, codes.InvalidArgument, "header")
	failed(9, codes.NotFound, "99")

	// The refused ops changed nothing; the accepted ones applied.
	data := s.data()
	if data["a"] != "1" || data["b"] != "2" || data["cas"] != "old" {
		t.Fatalf("data after Multi: %v", data)
	}
	if _, found := data["no header"]; found {
		t.Fatal("the Put without a header wrote something")
	}
	if _, found := data[""]; found {
		t.Fatal("the Put without a key wrote something")
	}

	// A retried op (same ClientID and Seq) is recognised, as alone.
	again, err := s.kv().Multi(ctx, &pb.MultiRequest{Ops: req.Ops[:1]})
	if err != nil || again.GetResults()[0].GetStatus().GetCode() != 0 {
		t.Fatalf("retried Put in a Multi: %v %v", err, again)
	}
}

func TestMultiRefusesEmptyAndOversizedCalls(t *testing.T) {
	s := newStack(t, stackConfig{})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	_, err := s.kv().Multi(ctx, &pb.MultiRequest{})
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "ops") {
		t.Fatalf("empty Multi: %v, want InvalidArgument naming ops", err)
	}
	ops := make([]*pb.MultiOp, MaxMultiOps+1)
	for i := range ops {
		ops[i] = &pb.MultiOp{Op: &pb.MultiOp_Get{Get: &pb.GetRequest{Header: &pb.RequestHeader{ShardId: 1}, Key: []byte("k")}}}
	}
	_, err = s.kv().Multi(ctx, &pb.MultiRequest{Ops: ops})
	if status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("Multi of %d ops: %v, want ResourceExhausted", len(ops), err)
	}
}

// barrierCounter counts the read barriers the store starts.
type barrierCounter struct {
	shard.Engine
	n atomic.Int64
}

func (e *barrierCounter) ReadFuture(group multiraft.GroupID, mode multiraft.ReadMode) *multiraft.Future {
	e.n.Add(1)
	return e.Engine.ReadFuture(group, mode)
}

// TestMultiReadsShareABarrier: the Gets of one Multi call to one shard
// wait on one read barrier (one ReadIndex round's future), and read what
// their unary calls read; unary Gets start one each.
func TestMultiReadsShareABarrier(t *testing.T) {
	count := &barrierCounter{}
	s := newStack(t, stackConfig{storeEngine: func(e shard.Engine) shard.Engine { count.Engine = e; return count }})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for i, k := range []string{"a", "b", "c"} {
		hdr := &pb.RequestHeader{ShardId: 1, ClientId: 9, Seq: uint64(i + 1)}
		if _, err := s.kv().Put(ctx, &pb.PutRequest{Header: hdr, Key: []byte(k), Value: []byte("v" + k)}); err != nil {
			t.Fatal(err)
		}
	}
	req := &pb.MultiRequest{}
	for _, k := range []string{"a", "b", "c", "absent", "a"} {
		req.Ops = append(req.Ops, &pb.MultiOp{Op: &pb.MultiOp_Get{Get: &pb.GetRequest{Header: &pb.RequestHeader{ShardId: 1}, Key: []byte(k)}}})
	}
	before := count.n.Load()
	resp, err := s.kv().Multi(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if n := count.n.Load() - before; n != 1 {
		t.Errorf("a Multi of 5 Gets of one shard started %d barriers, want 1", n)
	}
	for i, want := range []string{"va", "vb", "vc", "", "va"} {
		g := resp.GetResults()[i].GetGet()
		if codes.Code(resp.GetResults()[i].GetStatus().GetCode()) != codes.OK || string(g.GetValue()) != want || g.GetFound() != (want != "") {
			t.Errorf("get %d: %v, want %q", i, resp.GetResults()[i], want)
		}
	}
	before = count.n.Load()
	for _, k := range []string{"a", "b"} {
		if _, err := s.kv().Get(ctx, &pb.GetRequest{Header: &pb.RequestHeader{ShardId: 1}, Key: []byte(k)}); err != nil {
			t.Fatal(err)
		}
	}
	if n := count.n.Load() - before; n != 2 {
		t.Errorf("2 unary Gets started %d barriers, want 2", n)
	}
}
