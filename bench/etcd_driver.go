package bench

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// Which etcd members the etcd driver sends requests to (CompareOptions.EtcdTarget).
const (
	// EtcdTargetLeader sends every request to the member that leads, as
	// Flotilla's router sends each request to its shard's leader: a
	// follower would forward a write (and ask the leader for a
	// linearizable read's index), costing etcd a hop and CPU that
	// Flotilla does not pay.
	EtcdTargetLeader = "leader"
	// EtcdTargetAll balances the connections over every member, as an
	// application given the member list would.
	EtcdTargetAll = "all"
	// EtcdTargetAuto is EtcdTargetLeader for a workload that writes and
	// EtcdTargetAll for one that only reads or scans.
	EtcdTargetAuto = "auto"
)

// ResolveEtcdTarget returns the target (EtcdTargetLeader or EtcdTargetAll)
// that target means for cfg's workload: EtcdTargetAuto (or "") resolves
// by whether the workload writes. It returns an error for an unknown
// target.
func ResolveEtcdTarget(target string, cfg Config) (string, error) {
	switch target {
	case EtcdTargetLeader, EtcdTargetAll:
		return target, nil
	case EtcdTargetAuto, "":
		if cfg.withDefaults().mix().Write > 0 {
			return EtcdTargetLeader, nil
		}
		return EtcdTargetAll, nil
	}
	return "", fmt.Errorf("bench: etcd target %q: want %s, %s or %s", target, EtcdTargetAuto, EtcdTargetLeader, EtcdTargetAll)
}

// leaderPollInterval is how often a leader-only EtcdDriver asks the
// members who leads, to follow a leader change.
const leaderPollInterval = 250 * time.Millisecond

// EtcdDriver drives etcd through Conns clientv3.Clients (each one gRPC
// connection), the bench clients dealt round-robin to them. Reads are
// linearizable (clientv3's default), as Flotilla's are. Its clients
// either balance over every member or, leader-only, talk to the member
// that leads and move to the next leader when it changes (see
// NewEtcdDriver).
type EtcdDriver struct {
	clients []*clientv3.Client
	watches atomic.Uint64 // Watch calls, to deal watches to clients
	target  string
	// The leader-only driver's: a client over every member for the
	// Status calls, the leader's endpoint, the leader changes followed,
	// and the follower goroutine's stop and end.
	status        *clientv3.Client
	leader        atomic.Pointer[string]
	leaderChanges atomic.Int64
	stopFollow    context.CancelFunc
	followDone    chan struct{}
}

// NewEtcdDriver connects conns clients to endpoints. With target
// EtcdTargetLeader it finds the member that leads with the maintenance
// Status API (each member's own ID and the leader it knows), connects
// every client to that member only, and, until Close, asks again every
// 250 ms and moves the clients to a new leader (clientv3's SetEndpoints),
// so that an election during a run costs the requests in flight, not the
// rest of the run. EtcdTargetAll balances every client over all
// endpoints.
func NewEtcdDriver(ctx context.Context, endpoints []string, conns int, target string) (*EtcdDriver, error) {
	if conns < 1 {
		return nil, fmt.Errorf("bench: conns must be positive, got %d", conns)
	}
	if target != EtcdTargetLeader && target != EtcdTargetAll {
		return nil, fmt.Errorf("bench: etcd driver target %q: want %s or %s", target, EtcdTargetLeader, EtcdTargetAll)
	}
	d := &EtcdDriver{target: target}
	dial := endpoints
	if target == EtcdTargetLeader {
		var err error
		if d.status, err = newEtcdClient(ctx, endpoints); err != nil {
			return nil, err
		}
		lctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		leader, err := waitEtcdLeader(lctx, d.status, endpoints)
		cancel()
		if err != nil {
			_ = d.status.Close()
			return nil, err
		}
		d.leader.Store(&leader)
		dial = []string{leader}
	}
	for range conns {
		c, err := newEtcdClient(ctx, dial)
		if err != nil {
			_ = d.Close()
			return nil, err
		}
		d.clients = append(d.clients, c)
	}
	if target == EtcdTargetLeader {
		fctx, cancel := context.WithCancel(context.Background())
		d.stopFollow, d.followDone = cancel, make(chan struct{})
		go d.followLeader(fctx, endpoints)
	}
	return d, nil
}

func newEtcdClient(ctx context.Context, endpoints []string) (*clientv3.Client, error) {
	return clientv3.New(clientv3.Config{
		Endpoints:   endpoints,
		DialTimeout: 10 * time.Second,
		Context:     ctx,
		Logger:      zap.NewNop(),
	})
}

// EtcdLeader returns the endpoint of the member that leads, as the
// members say through the maintenance Status API: each answers with its
// own member ID and the leader's. It returns an error when no member
// answering names a leader that is among endpoints (an election is
// under way, or the leader is unreachable).
func EtcdLeader(ctx context.Context, c *clientv3.Client, endpoints []string) (string, error) {
	byID := map[uint64]string{}
	var leader uint64
	var errs []error
	for _, ep := range endpoints {
		resp, err := c.Status(ctx, ep)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", ep, err))
			continue
		}
		byID[resp.Header.GetMemberId()] = ep
		if resp.Leader != 0 {
			leader = resp.Leader
		}
	}
	if ep, ok := byID[leader]; ok && leader != 0 {
		return ep, nil
	}
	if leader == 0 {
		errs = append(errs, errors.New("no member knows a leader"))
	} else {
		errs = append(errs, fmt.Errorf("leader %x did not answer", leader))
	}
	return "", fmt.Errorf("bench: finding etcd's leader: %w", errors.Join(errs...))
}

// waitEtcdLeader asks EtcdLeader until it answers or ctx ends.
func waitEtcdLeader(ctx context.Context, c *clientv3.Client, endpoints []string) (string, error) {
	for {
		ep, err := EtcdLeader(ctx, c, endpoints)
		if err == nil {
			return ep, nil
		}
		select {
		case <-ctx.Done():
			return "", err
		case <-time.After(leaderPollInterval):
		}
	}
}

// followLeader moves the clients to the member that leads whenever it
// changes, until ctx ends.
func (d *EtcdDriver) followLeader(ctx context.Context, endpoints []string) {
	defer close(d.followDone)
	t := time.NewTicker(leaderPollInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		sctx, cancel := context.WithTimeout(ctx, leaderPollInterval)
		ep, err := EtcdLeader(sctx, d.status, endpoints)
		cancel()
		if err != nil || ep == *d.leader.Load() {
			continue // during an election, keep the last leader: it may win again
		}
		d.leader.Store(&ep)
		d.leaderChanges.Add(1)
		for _, c := range d.clients {
			c.SetEndpoints(ep)
		}
	}
}

// Target returns EtcdTargetLeader or EtcdTargetAll.
func (d *EtcdDriver) Target() string { return d.target }

// LeaderChanges returns how many times a leader-only driver moved its
// clients to a new leader.
func (d *EtcdDriver) LeaderChanges() int64 { return d.leaderChanges.Load() }

// System returns "etcd".
func (d *EtcdDriver) System() string { return "etcd" }

// Client returns the clientv3 client of bench client i.
func (d *EtcdDriver) Client(i int) KV { return etcdKV{d.clients[i%len(d.clients)]} }

// ErrorKind names etcd's server errors by their message without the
// "etcdserver: " prefix ("request timed out", "too many requests"), then
// context errors and gRPC codes.
func (d *EtcdDriver) ErrorKind(err error) string {
	if errors.Is(err, ErrTxnConflict) {
		return "conflict"
	}
	var ee rpctypes.EtcdError
	if errors.As(err, &ee) {
		return "etcd:" + strings.ReplaceAll(strings.TrimPrefix(ee.Error(), "etcdserver: "), " ", "-")
	}
	if k := genericErrorKind(err); k != "" {
		return k
	}
	return "other"
}

// Close stops following the leader and closes every client.
func (d *EtcdDriver) Close() error {
	if d.stopFollow != nil {
		d.stopFollow()
		<-d.followDone
	}
	var errs []error
	if d.status != nil {
		errs = append(errs, d.status.Close())
	}
	for _, c := range d.clients {
		errs = append(errs, c.Close())
	}
	return errors.Join(errs...)
}

// Watch implements Watcher with a clientv3 range watch (WithRange, or
// WithFromKey for a nil end), the watches dealt round-robin to the
// clients; the created notification says it is established.
func (d *EtcdDriver) Watch(ctx context.Context, start, end []byte, deliver func(key, value []byte)) (<-chan error, error) {
	c := d.clients[(d.watches.Add(1)-1)%uint64(len(d.clients))]
	rangeOpt := clientv3.WithFromKey()
	if end != nil {
		rangeOpt = clientv3.WithRange(string(end))
	}
	wctx, cancel := context.WithCancel(ctx)
	ch := c.Watch(wctx, string(start), rangeOpt, clientv3.WithCreatedNotify())
	fail := func(err error) (<-chan error, error) {
		cancel()
		for range ch { // clientv3 closes it once the context ended
		}
		return nil, err
	}
	select {
	case resp, ok := <-ch:
		if !ok {
			return fail(fmt.Errorf("bench: etcd watch %q: channel closed before it was created: %w", start, ctx.Err()))
		}
		if err := resp.Err(); err != nil {
			return fail(err)
		}
		if !resp.Created {
			return fail(fmt.Errorf("bench: etcd watch %q: first response is not the created notification", start))
		}
	case <-ctx.Done():
		return fail(ctx.Err())
	}
	done := make(chan error, 1)
	go func() {
		defer close(done)
		defer cancel()
		var err error
		for resp := range ch {
			if rerr := resp.Err(); rerr != nil && ctx.Err() == nil && err == nil {
				err = rerr
			}
			for _, ev := range resp.Events {
				if ev.Type == mvccpb.PUT {
					deliver(ev.Kv.Key, ev.Kv.Value)
				}
			}
		}
		if ctx.Err() == nil {
			if err == nil {
				err = errors.New("the watch channel closed")
			}
			err = fmt.Errorf("bench: etcd watch %q ended before the run: %w", start, err)
		}
		if err != nil {
			done <- err
		}
	}()
	return done, nil
}

type etcdKV struct{ c *clientv3.Client }

func (k etcdKV) Put(ctx context.Context, key, value []byte) error {
	_, err := k.c.Put(ctx, string(key), string(value))
	return err
}

func (k etcdKV) Get(ctx context.Context, key []byte) (bool, error) {
	resp, err := k.c.Get(ctx, string(key))
	if err != nil {
		return false, err
	}
	return len(resp.Kvs) > 0, nil
}

func (k etcdKV) Scan(ctx context.Context, start []byte, limit int) (int, error) {
	resp, err := k.c.Get(ctx, string(start), clientv3.WithFromKey(), clientv3.WithLimit(int64(limit)))
	if err != nil {
		return 0, err
	}
	return len(resp.Kvs), nil
}

// Batch implements TxnKV with one etcd Txn of puts and no compares.
func (k etcdKV) Batch(ctx context.Context, keys [][]byte, value []byte) error {
	_, err := k.c.Txn(ctx).Then(etcdPuts(keys, value)...).Commit()
	return err
}

// TxnPut implements TxnKV as Batch does: etcd has one kind of
// transaction.
func (k etcdKV) TxnPut(ctx context.Context, keys [][]byte, value []byte) error {
	return k.Batch(ctx, keys, value)
}

// Transfer implements TxnKV as etcd's compare-and-put: one Txn reads
// every key (a linearizable read of one revision), then a Txn whose
// compares ask each key's mod revision to be the one read (0 for a
// missing key) puts every key; when a compare fails it wrote nothing and
// Transfer returns ErrTxnConflict.
func (k etcdKV) Transfer(ctx context.Context, keys [][]byte, value []byte) error {
	gets := make([]clientv3.Op, len(keys))
	for i, key := range keys {
		gets[i] = clientv3.OpGet(string(key))
	}
	read, err := k.c.Txn(ctx).Then(gets...).Commit()
	if err != nil {
		return err
	}
	if len(read.Responses) != len(keys) {
		return fmt.Errorf("bench: etcd answered %d reads for %d keys", len(read.Responses), len(keys))
	}
	cmps := make([]clientv3.Cmp, len(keys))
	for i, key := range keys {
		var rev int64
		if kvs := read.Responses[i].GetResponseRange().GetKvs(); len(kvs) > 0 {
			rev = kvs[0].ModRevision
		}
		cmps[i] = clientv3.Compare(clientv3.ModRevision(string(key)), "=", rev)
	}
	w, err := k.c.Txn(ctx).If(cmps...).Then(etcdPuts(keys, value)...).Commit()
	if err != nil {
		return err
	}
	if !w.Succeeded {
		return ErrTxnConflict
	}
	return nil
}

func etcdPuts(keys [][]byte, value []byte) []clientv3.Op {
	puts := make([]clientv3.Op, len(keys))
	for i, key := range keys {
		puts[i] = clientv3.OpPut(string(key), string(value))
	}
	return puts
}
