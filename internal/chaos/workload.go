package chaos

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/flotilla-kv/flotilla/router"
)

// clock is a history's monotonic clock: nanoseconds since its start.
type clock struct{ start time.Time }

func (c clock) now() int64 { return int64(time.Since(c.start)) }

// routerConfig is the client configuration of the workload: bounded
// attempts so a paused or cut-off node is given up for the next replica,
// and a call bound that keeps histories moving.
func routerConfig(placement []string) router.Config {
	return router.Config{
		PlacementAddresses: placement,
		Timeout:            4 * time.Second,
		AttemptTimeout:     time.Second,
		MaxRetries:         40,
		BackoffMax:         300 * time.Millisecond,
	}
}

// pinnedDialer lets a router reach only the given addresses (one
// shardnode, and placement for routes): every other dial fails at once,
// as if that node could not see the rest of the cluster. It is how a
// client on the minority side of a partition is modelled; as the
// router's Dialer, it opens its gRPC and framed connections alike.
func pinnedDialer(allowed ...string) func(context.Context, string) (net.Conn, error) {
	ok := map[string]bool{}
	for _, a := range allowed {
		ok[a] = true
	}
	return func(ctx context.Context, addr string) (net.Conn, error) {
		if !ok[addr] {
			return nil, fmt.Errorf("chaos: %s is not reachable from this pinned client", addr)
		}
		var d net.Dialer
		return d.DialContext(ctx, "tcp", addr)
	}
}

// workerClient is one workload goroutine's connection: a shared router,
// or a router pinned to one node.
type workerClient struct {
	r    *router.Client
	node uint64 // pinned node, or 0
}

// workload runs client goroutines doing put, get (linearizable and
// lease), CAS and delete on a fixed set of keys, recording every
// operation with the revision the router reported.
type workload struct {
	clk     clock
	keys    []string
	hist    *History
	stop    atomic.Bool
	wg      sync.WaitGroup
	valueID atomic.Uint64
	prefix  string
}

// startWorkload starts one goroutine per client. seed makes the
// operation mix reproducible (the timing is not).
func startWorkload(clk clock, keys []string, clients []workerClient, seed uint64, prefix string) *workload {
	w := &workload{clk: clk, keys: keys, hist: &History{}, prefix: prefix}
	for i, c := range clients {
		w.wg.Add(1)
		go w.run(i, c, rand.New(rand.NewPCG(seed, uint64(i))))
	}
	return w
}

// halt stops the clients and waits for their last operations to end.
func (w *workload) halt() {
	w.stop.Store(true)
	w.wg.Wait()
}

func (w *workload) run(id int, c workerClient, rng *rand.Rand) {
	defer w.wg.Done()
	known := map[string]string{} // last value this client saw per key
	for !w.stop.Load() {
		key := w.keys[rng.IntN(len(w.keys))]
		o := Op{Client: id, Key: key, Node: c.node}
		p := rng.Float64()
		switch {
		case p < 0.3:
			o.Kind = OpPut
			o.Value = w.newValue(id)
		case p < 0.52:
			o.Kind = OpCAS
			o.Value = w.newValue(id)
			o.Expect = known[key]
		case p < 0.6:
			o.Kind = OpDelete
		default:
			o.Kind = OpGet
			o.Lease = p >= 0.85
		}
		runOp(w.clk, c.r, &o)
		switch {
		case o.Outcome != OK:
		case o.Kind == OpGet:
			known[key] = o.Out
		case o.Kind == OpPut || o.Kind == OpDelete || o.Swapped:
			known[key] = o.Value
		default:
			known[key] = o.Current
		}
		w.hist.Add(o)
		// Pace the clients: the machine is small and shared.
		time.Sleep(time.Duration(5+rng.IntN(15)) * time.Millisecond)
	}
}

func (w *workload) newValue(client int) string {
	return fmt.Sprintf("%s%d.%d", w.prefix, client, w.valueID.Add(1))
}

// runOp runs o through r and fills in its times (on clk), outcome and
// result.
func runOp(clk clock, r *router.Client, o *Op) {
	ctx := context.Background()
	key := []byte(o.Key)
	o.Call = clk.now()
	var err error
	switch o.Kind {
	case OpGet:
		cons := router.Linearizable
		if o.Lease {
			cons = router.Lease
		}
		var res router.GetResult
		res, err = r.GetAt(ctx, key, 0, router.WithConsistency(cons))
		if res.Found {
			o.Out = string(res.KV.Value)
		}
		o.Revision = res.Revision
	case OpPut:
		var res router.WriteResult
		res, err = r.PutRev(ctx, key, []byte(o.Value))
		o.Revision = res.Revision
	case OpDelete:
		var res router.WriteResult
		res, err = r.DeleteRev(ctx, key)
		o.Revision = res.Revision
	case OpCAS:
		var res router.CASResult
		res, err = r.CompareAndSwap(ctx, key, []byte(o.Expect), o.Expect == "", []byte(o.Value))
		o.Swapped = res.Swapped
		if res.Found {
			o.Current = string(res.Current)
		}
		o.Revision = res.Revision
	}
	o.Return = clk.now()
	o.Outcome = classify(o.Kind, err)
	if err != nil {
		o.Err = err.Error()
	}
}

// classify turns a call's error into an outcome: reads that fail had no
// effect; writes are unknown when the router says so (ErrAmbiguous) or
// when a deadline or cancellation cut them short, and failed otherwise
// (the router documents those as surely not applied, which the check
// then holds it to).
func classify(kind OpKind, err error) Outcome {
	switch {
	case err == nil:
		return OK
	case kind == OpGet:
		return Failed
	case errors.Is(err, router.ErrAmbiguous),
		errors.Is(err, context.DeadlineExceeded),
		errors.Is(err, context.Canceled):
		return Unknown
	}
	return Failed
}

// finalReads reads every key linearizably through r, retrying each until
// it succeeds or the deadline passes, and records the reads as final.
func finalReads(clk clock, r *router.Client, keys []string, client int, deadline time.Duration) []Op {
	end := time.Now().Add(deadline)
	var ops []Op
	for _, k := range keys {
		for {
			o := Op{Client: client, Kind: OpGet, Key: k, Final: true, Call: clk.now()}
			res, err := r.GetAt(context.Background(), []byte(k), 0)
			o.Return = clk.now()
			if err == nil {
				o.Outcome = OK
				o.Revision = res.Revision
				if res.Found {
					o.Out = string(res.KV.Value)
				}
				ops = append(ops, o)
				break
			}
			if time.Now().After(end) {
				break // the key has no final read: reported by the check
			}
			time.Sleep(50 * time.Millisecond) // poll interval
		}
	}
	return ops
}
