package etcdapi

import (
	"context"
	"errors"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// serveAlso serves another etcdapi Server, configured by cfg over a's
// router, on a loopback port and returns a client of it; both stop when
// the test ends.
func (a *testAPI) serveAlso(t *testing.T, cfg Config) *clientv3.Client {
	t.Helper()
	cfg.Router = a.router
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := grpc.NewServer()
	s.Register(g)
	go func() { _ = g.Serve(lis) }()
	t.Cleanup(g.Stop)
	c, err := clientv3.New(clientv3.Config{Endpoints: []string{lis.Addr().String()}, DialTimeout: 10 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// TestClusterAndMaintenance checks MemberList, Status and Alarm, what
// `etcdctl member list`, `endpoint status` and `endpoint health` ask,
// for a lone member and for one with a member list and local figures,
// and that the RPCs not served say which.
func TestClusterAndMaintenance(t *testing.T) {
	a := startAPI(t)
	ctx := testCtx(t)
	w, err := a.router.PutRev(ctx, []byte("m/written"), []byte("x"))
	if err != nil {
		t.Fatal(err)
	}

	t.Run("lone member", func(t *testing.T) {
		ml, err := a.client.MemberList(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(ml.Members) != 1 || ml.Members[0].ID != 1 || ml.Members[0].Name != "1" || ml.Header.ClusterId != 0x10 {
			t.Fatalf("member list %+v, header %+v; want member 1 of cluster 0x10", ml.Members, ml.Header)
		}
		st, err := a.client.Status(ctx, a.addr)
		if err != nil {
			t.Fatal(err)
		}
		// The header's revision is fresh: at or above every write
		// acknowledged before, whichever shard took it.
		if st.Leader != 1 || st.Header.MemberId != 1 || st.Header.Revision < int64(w.Revision) || len(st.Errors) != 0 {
			t.Fatalf("status %+v; want leader 1, member 1, revision >= %d, no errors", st, w.Revision)
		}
		// endpoint health: a read of "health" and no alarm.
		if _, err := a.client.Get(ctx, "health"); err != nil {
			t.Fatal(err)
		}
		al, err := a.client.AlarmList(ctx)
		if err != nil || len(al.Alarms) != 0 {
			t.Fatalf("alarm list: %v %+v; want none", err, al)
		}
		if _, err := a.client.AlarmDisarm(ctx, &clientv3.AlarmMember{MemberID: 1, Alarm: pb.AlarmType_NOSPACE}); err != nil {
			t.Fatalf("alarm disarm: %v", err)
		}
	})

	t.Run("members and local figures", func(t *testing.T) {
		c := a.serveAlso(t, Config{
			ClusterID: 0x10, MemberID: 7, Version: "3.6.0",
			Members: func(context.Context) ([]Member, error) {
				return []Member{
					{ID: 9, Name: "node-9", ClientURLs: []string{"http://10.0.0.9:2379"}, PeerURLs: []string{"10.0.0.9:7100"}},
					{ID: 5, Name: "node-5", ClientURLs: []string{"http://10.0.0.5:2379"}},
				}, nil
			},
			SelfURLs: []string{"http://10.0.0.7:2379"},
			Local: func(context.Context) (LocalStatus, error) {
				return LocalStatus{RaftIndex: 120, RaftAppliedIndex: 118, RaftTerm: 4, DBSizeBytes: 1 << 20, DBSizeInUseBytes: 1 << 19}, nil
			},
		})
		ml, err := c.MemberList(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, m := range ml.Members {
			names = append(names, m.Name+"="+strings.Join(m.ClientURLs, ","))
		}
		if got := strings.Join(names, " "); got != "node-5=http://10.0.0.5:2379 7=http://10.0.0.7:2379 node-9=http://10.0.0.9:2379" {
			t.Fatalf("member list %s; want 5, 7 (this member, added) and 9 in ID order", got)
		}
		if ml.Members[2].PeerURLs[0] != "10.0.0.9:7100" || ml.Header.MemberId != 7 {
			t.Fatalf("member 9 %+v, header %+v", ml.Members[2], ml.Header)
		}
		st, err := c.Status(ctx, c.Endpoints()[0])
		if err != nil {
			t.Fatal(err)
		}
		if st.Version != "3.6.0" || st.Leader != 5 || st.RaftIndex != 120 || st.RaftAppliedIndex != 118 || st.RaftTerm != 4 ||
			st.DbSize != 1<<20 || st.DbSizeInUse != 1<<19 || st.Header.MemberId != 7 {
			t.Fatalf("status %+v; want version 3.6.0, leader 5 (the lowest member), the local figures", st)
		}
	})

	t.Run("members unknown", func(t *testing.T) {
		c := a.serveAlso(t, Config{ClusterID: 0x10, MemberID: 7,
			Members: func(context.Context) ([]Member, error) { return nil, errors.New("placement unreachable") },
			Local: func(context.Context) (LocalStatus, error) {
				return LocalStatus{}, errors.New("no engine")
			},
		})
		if _, err := c.MemberList(ctx); status.Code(err) != codes.Unavailable || !strings.Contains(err.Error(), "placement unreachable") {
			t.Fatalf("member list: %v; want Unavailable naming the cause", err)
		}
		// Status still answers, with what it could not learn in Errors.
		st, err := c.Status(ctx, c.Endpoints()[0])
		if err != nil {
			t.Fatal(err)
		}
		if st.Leader != 7 || len(st.Errors) != 2 || st.Header.Revision == 0 {
			t.Fatalf("status %+v; want leader 7 (itself), two errors, a revision", st)
		}
	})

	t.Run("config now", func(t *testing.T) {
		// Reads of the latest state are made at Config.Now's revision.
		// This one hands out the revision of a write it makes, which the
		// oracle stamped after the call began, as a fresh one must be.
		var (
			mu     sync.Mutex
			handed []uint64
		)
		took := func() []uint64 {
			mu.Lock()
			defer mu.Unlock()
			out := handed
			handed = nil
			return out
		}
		c := a.serveAlso(t, Config{ClusterID: 0x10, MemberID: 7,
			Now: func(ctx context.Context) (uint64, error) {
				w, err := a.router.PutRev(ctx, []byte("\x01now"), nil)
				if err == nil {
					mu.Lock()
					handed = append(handed, w.Revision)
					mu.Unlock()
				}
				return w.Revision, err
			},
		})
		w, err := a.router.PutRev(ctx, []byte("m/now"), []byte("seen"))
		if err != nil {
			t.Fatal(err)
		}
		for _, opts := range [][]clientv3.OpOption{nil, {clientv3.WithPrefix()}} {
			took()
			resp, err := c.Get(ctx, "m/now", opts...)
			if err != nil {
				t.Fatal(err)
			}
			handed := took()
			if len(handed) != 1 || resp.Header.Revision != int64(handed[0]) || handed[0] <= w.Revision {
				t.Fatalf("read at %d, Now handed out %v; want one fresh revision above %d, read at", resp.Header.Revision, handed, w.Revision)
			}
			if len(resp.Kvs) != 1 || string(resp.Kvs[0].Value) != "seen" {
				t.Fatalf("m/now: %+v", resp.Kvs)
			}
		}
		// A serializable read asks for none.
		took()
		if _, err := c.Get(ctx, "m/now", clientv3.WithSerializable()); err != nil {
			t.Fatal(err)
		}
		if handed := took(); len(handed) != 0 {
			t.Fatalf("serializable read: Now handed out %v; want none asked", handed)
		}
	})

	t.Run("unimplemented", func(t *testing.T) {
		_, err := a.client.MemberAdd(ctx, []string{"http://10.0.0.1:2380"})
		if status.Code(err) != codes.Unimplemented || !strings.Contains(err.Error(), "MemberAdd") {
			t.Fatalf("member add: %v; want Unimplemented naming MemberAdd", err)
		}
		_, err = a.client.Defragment(ctx, a.addr)
		if status.Code(err) != codes.Unimplemented || !strings.Contains(err.Error(), "Defragment") {
			t.Fatalf("defragment: %v; want Unimplemented naming Defragment", err)
		}
		_, err = a.client.AlarmList(ctx)
		if err != nil {
			t.Fatal(err)
		}
		_, err = pb.NewMaintenanceClient(a.client.ActiveConnection()).Alarm(ctx, &pb.AlarmRequest{Action: pb.AlarmRequest_ACTIVATE, MemberID: 1, Alarm: pb.AlarmType_NOSPACE})
		if status.Code(err) != codes.Unimplemented {
			t.Fatalf("alarm activate: %v; want Unimplemented", err)
		}
	})
}
