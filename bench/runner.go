package bench

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// Op is the kind of one operation.
type Op int

// The operations of a workload.
const (
	OpRead Op = iota
	OpWrite
	OpScan
	// OpTxn is one operation of a transaction workload (txn.go).
	OpTxn
	numOps
)

var opNames = [numOps]string{"read", "write", "scan", "txn"}

// String returns "read", "write", "scan" or "txn".
func (o Op) String() string { return opNames[o] }

// Phase is the stage a run is in.
type Phase int32

// The phases of a run, in order.
const (
	PhasePreload Phase = iota
	PhaseWarmup
	PhaseMeasure
	PhaseDone
)

func (p Phase) String() string {
	return [...]string{"preload", "warm-up", "measure", "done"}[p]
}

// Progress is what a run reports about itself, once a second and at each
// change of phase, to RunOptions.Progress.
type Progress struct {
	System string
	Phase  Phase
	// Elapsed is the time spent in the phase; Total its planned length
	// (0 when the phase ends on a count).
	Elapsed, Total time.Duration
	// Done and Target count the phase's completed operations and, for
	// --ops and the preload, the count it ends at (0 otherwise).
	Done, Target int64
	// Rate is the completion rate over the last second, in ops/s.
	Rate float64
	// Errors counts the phase's failed operations.
	Errors int64
}

// RunOptions are the parts of a run that are not the workload.
type RunOptions struct {
	// Servers are the processes whose CPU the measured window charges to
	// the system.
	Servers []Proc
	// Progress, when set, receives the run's progress. It is called from
	// one goroutine at a time and must return quickly.
	Progress func(Progress)
	// OnMeasure, when set, is called on its own goroutine when the
	// measured window starts, with the window's planned length (0 when
	// it ends on an operation count).
	OnMeasure func(time.Duration)
	// ShardBoundaries are the sorted start keys of the system's shards
	// but the first, by which the transaction workloads pick keys of one
	// shard or of two; nil: EvenBoundaries(DefaultTxnShards).
	ShardBoundaries [][]byte
}

// Result is everything measured in one run of a workload against a system.
type Result struct {
	System string
	// Config is the run's configuration, defaults applied.
	Config Config
	// Seed is the seed the clients' generators were derived from.
	Seed uint64
	// Elapsed is the measured window's length.
	Elapsed time.Duration
	// Ops counts the operations that succeeded in the window, OpsByKind
	// by operation.
	Ops       int64
	OpsByKind map[string]int64
	// Errors counts the operations that failed in the window,
	// ErrorsByKind by Driver.ErrorKind.
	Errors       int64
	ErrorsByKind map[string]int64
	// PreloadErrors and WarmupErrors count the failures before the window.
	PreloadErrors, WarmupErrors int64
	// Latency holds the latency of every successful operation of the
	// window, in microseconds; LatencyByOp by operation.
	Latency     *hdrhistogram.Histogram
	LatencyByOp map[string]*hdrhistogram.Histogram
	// Throughput is the completion rate in each second of the window, in
	// ops/s; a last partial second is scaled to a rate.
	Throughput []float64
	// CPU is the CPU used during the window.
	CPU CPUUse
	// Stages is where requests spent their time on the servers (Flotilla
	// runs of flotilla bench compare only; nil otherwise).
	Stages *ServerStages
	// Watch is what the watch workload measured of its watches (nil for
	// the other workloads).
	Watch *WatchResult
	// EtcdTarget is the members an etcd run sent its requests to
	// (EtcdTargetLeader or EtcdTargetAll; "" for other systems), and
	// EtcdLeaderChanges how often a leader-only run followed a new
	// leader. Set by Compare.
	EtcdTarget        string
	EtcdLeaderChanges int64
}

// OpsPerSec is the window's mean throughput.
func (r *Result) OpsPerSec() float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return float64(r.Ops) / r.Elapsed.Seconds()
}

// ServerCPUPerOp is the servers' CPU time per successful operation.
func (r *Result) ServerCPUPerOp() time.Duration {
	if r.Ops == 0 {
		return 0
	}
	return r.CPU.Server / time.Duration(r.Ops)
}

// client is one bench client's private state: no locks on the hot path.
type client struct {
	index   int
	kv      KV
	rng     *rand.Rand
	keys    Chooser
	key     []byte
	value   []byte
	hist    [numOps]*hdrhistogram.Histogram
	ok      [numOps]int64
	errs    map[string]int64
	preErrs int64
	warmErr int64
	// The watch workload's: the sequence number of the last write sent,
	// and those of the writes acknowledged in the window.
	seq   uint32
	acked []uint32
	// The keys of a transaction workload's operation.
	txnKeys [TxnKeys][]byte
}

// run is the shared state of one Run.
type run struct {
	cfg   Config
	drv   Driver
	mix   Mix
	phase atomic.Int32
	// done counts completions of the current phase, failed counts its
	// errors; both reset at each phase change.
	done, failed atomic.Int64
	// ops is the --ops target of the measure phase, 0 without one.
	ops int64
	// stopped closes when the measured window ends.
	stopped  chan struct{}
	stopOnce sync.Once
	endAt    atomic.Int64 // unix nanos of the window's end
	tickets  chan time.Time
	// winStart is the unix nanos of the window's start, set before the
	// phase changes to PhaseMeasure (0 until then).
	winStart atomic.Int64
	// watching: the watch workload, whose writes carry stamps.
	watching bool
	// txn is the transaction workload's shape (nil for the others), and
	// groups its keys by shard.
	txn    *txnShape
	groups *keyGroups
}

// Run runs cfg's workload against drv: preload (if cfg.Preload), warm-up,
// then the measured window, and returns what it measured. It returns an
// error for an invalid cfg, when ctx ends before the window does, or when
// every preload write failed; failed operations are otherwise counted,
// not returned.
func Run(ctx context.Context, cfg Config, drv Driver, opts RunOptions) (*Result, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	if cfg.Seed == 0 {
		cfg.Seed = uint64(time.Now().UnixNano())
	}
	r := &run{cfg: cfg, drv: drv, mix: cfg.mix(), ops: cfg.Ops, stopped: make(chan struct{}), watching: cfg.Workload == WorkloadWatch}
	var wd Watcher
	if r.watching {
		var ok bool
		if wd, ok = drv.(Watcher); !ok {
			return nil, fmt.Errorf("%w: system %s", ErrWatchUnsupported, drv.System())
		}
	}
	if shape, ok := txnShapes[cfg.Workload]; ok {
		if _, ok := drv.Client(0).(TxnKV); !ok {
			return nil, fmt.Errorf("%w: system %s", ErrTxnUnsupported, drv.System())
		}
		bounds := opts.ShardBoundaries
		if bounds == nil {
			bounds = EvenBoundaries(DefaultTxnShards)
		}
		groups, err := newKeyGroups(cfg.Keys, cfg.KeySizeBytes, bounds)
		if err != nil {
			return nil, err
		}
		r.txn, r.groups = &shape, groups
	}
	clients := r.newClients()
	report := func(p Progress) {
		if opts.Progress != nil {
			p.System = drv.System()
			opts.Progress(p)
		}
	}

	if cfg.Preload {
		if err := r.preload(ctx, clients, report); err != nil {
			return nil, err
		}
	}

	var watches *watchSet
	if r.watching {
		var err error
		if watches, err = startWatches(ctx, r, wd); err != nil {
			return nil, err
		}
		defer watches.stop()
	}
	runCtx := ctx
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if cfg.Rate > 0 {
		r.tickets = make(chan time.Time, 4*cfg.Clients)
		go r.pace(ctx)
	}
	var win *cpuWindow
	var start time.Time
	openWindow := func() {
		r.winStart.Store(time.Now().UnixNano())
		r.setPhase(PhaseMeasure)
		win = startCPUWindow(opts.Servers)
		start = time.Now()
	}
	r.setPhase(PhaseWarmup)
	if cfg.Warmup <= 0 {
		// Without a warm-up the window opens before the first client
		// sends, so that every write is in it, however late the
		// scheduler runs this goroutine again.
		openWindow()
	}
	var wg sync.WaitGroup
	for _, c := range clients {
		wg.Go(func() { r.loop(ctx, c) })
	}
	if cfg.Warmup > 0 {
		if err := r.watch(ctx, PhaseWarmup, cfg.Warmup, 0, report, nil); err != nil {
			cancel()
			wg.Wait()
			return nil, err
		}
		openWindow()
	}
	var tput []float64
	if opts.OnMeasure != nil {
		go opts.OnMeasure(cfg.Duration)
	}
	if cfg.Duration > 0 {
		time.AfterFunc(cfg.Duration, r.stop)
	}
	err := r.watch(ctx, PhaseMeasure, cfg.Duration, cfg.Ops, report, &tput)
	cpu := win.end()
	elapsed := time.Duration(r.endAt.Load() - start.UnixNano())
	cancel()
	wg.Wait()
	if err != nil {
		return nil, err
	}
	var drain time.Duration
	var drained bool
	if watches != nil {
		drain, drained = watches.drain(runCtx, drv.Client(0), cfg.WatchDrain)
		if err := runCtx.Err(); err != nil {
			return nil, err
		}
	}
	res := r.collect(clients)
	res.Elapsed, res.CPU, res.Throughput = elapsed, cpu, tput
	if watches != nil {
		res.Watch = watches.stopAndCollect(clients)
		res.Watch.Drain, res.Watch.DrainComplete = drain, drained
	}
	report(Progress{Phase: PhaseDone, Elapsed: elapsed, Done: res.Ops, Errors: res.Errors, Rate: res.OpsPerSec()})
	return res, nil
}

func (r *run) newClients() []*client {
	var zc ZipfConstants
	if r.cfg.Distribution == Zipfian {
		zc = NewZipfConstants(uint64(r.cfg.Keys), r.cfg.Theta)
	}
	clients := make([]*client, r.cfg.Clients)
	for i := range clients {
		rng := rand.New(rand.NewPCG(r.cfg.Seed, uint64(i)))
		c := &client{index: i, kv: r.drv.Client(i), rng: rng, errs: map[string]int64{}}
		if r.cfg.Distribution == Zipfian {
			c.keys = NewZipf(rng, zc)
		} else {
			c.keys = NewUniform(rng, uint64(r.cfg.Keys))
		}
		c.value = make([]byte, r.cfg.ValueSizeBytes)
		for j := range c.value {
			c.value[j] = byte(rng.Uint32())
		}
		if r.watching {
			clear(c.value[:watchStampBytes]) // stamped by every write
		}
		for o := range c.hist {
			c.hist[o] = NewHistogram()
		}
		clients[i] = c
	}
	return clients
}

func (r *run) setPhase(p Phase) {
	r.phase.Store(int32(p))
	r.done.Store(0)
	r.failed.Store(0)
}

// stop ends the measured window, once.
func (r *run) stop() {
	r.stopOnce.Do(func() {
		r.endAt.Store(time.Now().UnixNano())
		r.phase.Store(int32(PhaseDone))
		close(r.stopped)
	})
}

// preload writes every key once, the keys dealt round-robin to the
// clients, in a closed loop.
func (r *run) preload(ctx context.Context, clients []*client, report func(Progress)) error {
	r.setPhase(PhasePreload)
	var wg sync.WaitGroup
	for i, c := range clients {
		wg.Go(func() {
			for k := i; k < r.cfg.Keys && ctx.Err() == nil; k += len(clients) {
				c.key = Key(c.key, uint64(k), r.cfg.KeySizeBytes)
				octx, cancel := context.WithTimeout(ctx, r.cfg.Timeout)
				err := c.kv.Put(octx, c.key, c.value)
				cancel()
				if err != nil {
					c.preErrs++
					r.failed.Add(1)
				}
				r.done.Add(1)
			}
		})
	}
	finished := make(chan struct{})
	go func() { wg.Wait(); close(finished) }()
	began := time.Now()
	t := time.NewTicker(time.Second)
	defer t.Stop()
	last := int64(0)
	for {
		select {
		case <-finished:
			if err := ctx.Err(); err != nil {
				return err
			}
			if f := r.failed.Load(); f == int64(r.cfg.Keys) {
				return fmt.Errorf("bench: %s: every preload write failed", r.drv.System())
			}
			return nil
		case <-t.C:
			d := r.done.Load()
			report(Progress{Phase: PhasePreload, Elapsed: time.Since(began), Done: d, Target: int64(r.cfg.Keys),
				Rate: float64(d - last), Errors: r.failed.Load()})
			last = d
		}
	}
}

// pace issues one ticket per 1/Rate seconds, each the scheduled start of
// an operation, until ctx ends. When every client is busy the channel
// fills and pace blocks, but the tickets keep their scheduled times, so
// the latency of the late operations includes the wait.
func (r *run) pace(ctx context.Context) {
	interval := time.Duration(float64(time.Second) / r.cfg.Rate)
	next := time.Now()
	for {
		if d := time.Until(next); d > 0 {
			t := time.NewTimer(d)
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
		}
		select {
		case <-ctx.Done():
			return
		case r.tickets <- next:
		}
		next = next.Add(interval)
	}
}

// loop is one client: pick an operation, run it, record it, until ctx
// ends or the window closes.
func (r *run) loop(ctx context.Context, c *client) {
	for {
		var start time.Time
		if r.tickets != nil {
			select {
			case <-ctx.Done():
				return
			case <-r.stopped:
				return
			case start = <-r.tickets:
			}
		} else {
			select {
			case <-ctx.Done():
				return
			case <-r.stopped:
				return
			default:
			}
			start = time.Now()
		}
		phase := Phase(r.phase.Load())
		op := r.pick(c)
		err := r.do(ctx, c, op)
		lat := time.Since(start)
		if Phase(r.phase.Load()) != phase || ctx.Err() != nil {
			continue // straddles a phase change: counts nowhere
		}
		switch phase {
		case PhaseWarmup:
			if err != nil {
				c.warmErr++
				r.failed.Add(1)
			}
			r.done.Add(1)
		case PhaseMeasure:
			if err != nil {
				c.errs[r.drv.ErrorKind(err)]++
				r.failed.Add(1)
				continue
			}
			n := r.done.Add(1)
			if r.ops > 0 && n > r.ops {
				continue
			}
			RecordLatency(c.hist[op], lat)
			c.ok[op]++
			if r.watching && op == OpWrite {
				c.acked = append(c.acked, c.seq)
			}
			if r.ops > 0 && n == r.ops {
				r.stop()
			}
		}
	}
}

func (r *run) pick(c *client) Op {
	if r.txn != nil {
		return OpTxn
	}
	u := c.rng.Float64()
	switch {
	case u < r.mix.Read:
		return OpRead
	case u < r.mix.Read+r.mix.Scan:
		return OpScan
	}
	return OpWrite
}

func (r *run) do(ctx context.Context, c *client, op Op) error {
	c.key = Key(c.key, c.keys.Next(), r.cfg.KeySizeBytes)
	ctx, cancel := context.WithTimeout(ctx, r.cfg.Timeout)
	defer cancel()
	switch op {
	case OpRead:
		_, err := c.kv.Get(ctx, c.key)
		return err
	case OpScan:
		_, err := c.kv.Scan(ctx, c.key, r.cfg.ScanLength)
		return err
	case OpTxn:
		return r.doTxn(ctx, c)
	}
	if r.watching {
		c.stampWrite()
	}
	return c.kv.Put(ctx, c.key, c.value)
}

// watch reports progress once a second until the phase's duration passes
// (d > 0), the window closes, or ctx ends. For the measure phase it also
// samples the throughput of every second into tput.
func (r *run) watch(ctx context.Context, phase Phase, d time.Duration, target int64, report func(Progress), tput *[]float64) error {
	began := time.Now()
	var deadline <-chan time.Time
	if phase != PhaseMeasure {
		t := time.NewTimer(d)
		defer t.Stop()
		deadline = t.C
	}
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	last, lastAt := int64(0), began
	sample := func(now time.Time) {
		n := r.done.Load()
		if target > 0 {
			n = min(r.done.Load(), target)
		}
		rate := float64(n-last) / now.Sub(lastAt).Seconds()
		if tput != nil && now.Sub(lastAt) > 10*time.Millisecond {
			*tput = append(*tput, rate)
		}
		report(Progress{Phase: phase, Elapsed: now.Sub(began), Total: d, Done: n, Target: target, Rate: rate, Errors: r.failed.Load()})
		last, lastAt = n, now
	}
	for {
		select {
		case <-ctx.Done():
			r.stop()
			return ctx.Err()
		case <-deadline:
			return nil
		case <-r.stopped:
			sample(time.Unix(0, r.endAt.Load()))
			return nil
		case now := <-tick.C:
			sample(now)
		}
	}
}

// collect merges the clients' histograms and counters.
func (r *run) collect(clients []*client) *Result {
	res := &Result{
		System: r.drv.System(), Config: r.cfg, Seed: r.cfg.Seed,
		OpsByKind: map[string]int64{}, ErrorsByKind: map[string]int64{},
		Latency: NewHistogram(), LatencyByOp: map[string]*hdrhistogram.Histogram{},
	}
	for _, c := range clients {
		for o := range numOps {
			if c.ok[o] == 0 {
				continue
			}
			name := Op(o).String()
			if res.LatencyByOp[name] == nil {
				res.LatencyByOp[name] = NewHistogram()
			}
			res.LatencyByOp[name].Merge(c.hist[o])
			res.Latency.Merge(c.hist[o])
			res.OpsByKind[name] += c.ok[o]
			res.Ops += c.ok[o]
		}
		for k, n := range c.errs {
			res.ErrorsByKind[k] += n
			res.Errors += n
		}
		res.PreloadErrors += c.preErrs
		res.WarmupErrors += c.warmErr
	}
	return res
}
