package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"math"
	"math/rand/v2"
	"os"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestKeysAreUniqueSizedAndSpreadOverFirstByte(t *testing.T) {
	const n = 64 << 10
	seen := make(map[string]bool, n)
	var buckets [16]int
	var k []byte
	for i := range uint64(n) {
		k = Key(k, i, 20)
		if len(k) != 20 {
			t.Fatalf("key %d is %d bytes, want 20", i, len(k))
		}
		if seen[string(k)] {
			t.Fatalf("key %d repeats", i)
		}
		seen[string(k)] = true
		buckets[k[0]>>4]++
	}
	// Each sixteenth of the first byte's range gets n/16 keys, within 5%.
	for b, c := range buckets {
		if math.Abs(float64(c)-n/16) > 0.05*n/16 {
			t.Errorf("first-byte bucket %d holds %d keys, want about %d", b, c, n/16)
		}
	}
	if got := Key(nil, 7, MinKeySize); len(got) != MinKeySize {
		t.Errorf("minimum key is %d bytes", len(got))
	}
	if got := Key(nil, 123456, 10); string(got[8:]) != "56" {
		t.Errorf("index digits cut to the key size: got %q, want the last digits %q", got[8:], "56")
	}
	if got := Key(nil, 42, 14); string(got[8:]) != "000042" {
		t.Errorf("index digits padded: got %q", got[8:])
	}
}

var zipfSeed = flag.Uint64("zipf-seed", 0, "seed of TestZipfFollowsItsLaw (0: from the clock)")

func TestZipfFollowsItsLaw(t *testing.T) {
	const n, draws, theta = 1000, 400_000, 0.99
	seed := *zipfSeed
	if seed == 0 {
		seed = uint64(time.Now().UnixNano())
	}
	t.Logf("seed %d (replay with -zipf-seed %d)", seed, seed)
	zc := NewZipfConstants(n, theta)
	z := NewZipf(rand.New(rand.NewPCG(seed, 1)), zc)
	counts := make([]int, n)
	for range draws {
		r := z.Next()
		if r >= n {
			t.Fatalf("rank %d out of [0, %d)", r, n)
		}
		counts[r]++
	}
	// P(rank k) = 1/((k+1)^theta * zeta(n)). Ranks 0 and 1, which the
	// generator special-cases, follow it exactly: their counts stay
	// within 5 standard deviations of the binomial's. Rank 9 comes from
	// Gray et al.'s approximation, which draws it about 2% too often at
	// this n and theta (1.9% over 30 seeds), so it is allowed 3% more.
	// A bound of 5% alone failed about one run in a hundred.
	for _, c := range []struct {
		k    int
		bias float64
	}{{0, 0}, {1, 0}, {9, 0.03}} {
		p := 1 / (math.Pow(float64(c.k+1), theta) * zc.zetaN)
		want, sd := draws*p, math.Sqrt(draws*p*(1-p))
		if math.Abs(float64(counts[c.k])-want) > c.bias*want+5*sd {
			t.Errorf("rank %d drawn %d times, want %.0f within %.0f", c.k, counts[c.k], want, c.bias*want+5*sd)
		}
	}
	// The top 10% of ranks get most draws; the bottom half few.
	top, bottom := 0, 0
	for k, c := range counts {
		if k < n/10 {
			top += c
		}
		if k >= n/2 {
			bottom += c
		}
	}
	if top < draws*6/10 || bottom > draws*15/100 {
		t.Errorf("not skewed: top 10%% of ranks drew %d, bottom half %d of %d", top, bottom, draws)
	}
	// Same seed, same sequence.
	a, b := NewZipf(rand.New(rand.NewPCG(seed, 2)), zc), NewZipf(rand.New(rand.NewPCG(seed, 2)), zc)
	for range 100 {
		if a.Next() != b.Next() {
			t.Fatal("zipf is not deterministic for a seed")
		}
	}
}

func TestHistogramPercentiles(t *testing.T) {
	h := NewHistogram()
	for us := 1; us <= 10000; us++ {
		RecordLatency(h, time.Duration(us)*time.Microsecond)
	}
	RecordLatency(h, -time.Second) // clamped to 1 µs
	RecordLatency(h, 24*time.Hour) // clamped to the top of the range
	p := Summarize(h)
	near := func(name string, got, want time.Duration) {
		if math.Abs(float64(got-want)) > 0.002*float64(want) {
			t.Errorf("%s = %s, want %s within 0.2%%", name, got, want)
		}
	}
	if p.Count != 10002 {
		t.Errorf("count %d, want 10002", p.Count)
	}
	near("p50", p.P50, 5001*time.Microsecond)
	near("p90", p.P90, 9001*time.Microsecond)
	near("p99", p.P99, 9901*time.Microsecond)
	near("p99.9", p.P999, 9991*time.Microsecond)
	near("max", p.Max, 10*time.Minute)
	if (Summarize(NewHistogram()) != Percentiles{}) {
		t.Error("empty histogram has percentiles")
	}
}

func TestMedian(t *testing.T) {
	for _, c := range []struct {
		in   []float64
		want float64
	}{{nil, 0}, {[]float64{3}, 3}, {[]float64{5, 1, 3}, 3}, {[]float64{4, 1, 3, 2}, 2.5}} {
		in := append([]float64(nil), c.in...)
		if got := Median(c.in); got != c.want {
			t.Errorf("Median(%v) = %g, want %g", c.in, got, c.want)
		}
		for i := range in {
			if in[i] != c.in[i] {
				t.Errorf("Median modified its input")
			}
		}
	}
}

func TestValidateReportsEveryProblem(t *testing.T) {
	c := Config{Workload: "nope", Clients: -1, Rate: -1, KeySizeBytes: 4, ValueSizeBytes: -2, Distribution: "pareto",
		Theta: 1.5, Warmup: -time.Second, Duration: time.Second, Ops: 10, Timeout: -1}
	err := c.Validate()
	if !errors.Is(err, ErrInvalidConfig) {
		t.Fatalf("Validate = %v, want ErrInvalidConfig", err)
	}
	for _, flag := range []string{"--workload", "--clients", "--rate", "--key-size", "--value-size", "--distribution",
		"--theta", "--warmup", "--duration (1s) and --ops (10)", "--timeout"} {
		if !strings.Contains(err.Error(), flag) {
			t.Errorf("Validate does not report %s:\n%v", flag, err)
		}
	}
	if err := (Config{}).Validate(); err != nil {
		t.Errorf("the zero Config is invalid: %v", err)
	}
	if err := (Config{Workload: "mixed", ReadFraction: 2}).Validate(); err == nil || !strings.Contains(err.Error(), "--read-fraction") {
		t.Errorf("mixed with read fraction 2: %v", err)
	}
	if d := (Config{Workload: "ycsb-b"}).Describe(); !strings.Contains(d, "95% reads, 5% writes") {
		t.Errorf("Describe = %q", d)
	}
}

func TestParseProcStat(t *testing.T) {
	// comm may hold spaces and parentheses; utime 250, stime 50 ticks,
	// rss 1000 pages.
	line := "4242 (my (odd) proc) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 7 0 12345 999999 1000 18446744073709551615"
	st, err := parseProcStat(line)
	if err != nil {
		t.Fatal(err)
	}
	if st.CPU != 3*time.Second || st.KernelCPU != 500*time.Millisecond {
		t.Errorf("CPU %s, kernel %s, want 3s and 500ms", st.CPU, st.KernelCPU)
	}
	if want := int64(1000 * pageSize()); st.RSSBytes != want {
		t.Errorf("RSS %d, want %d", st.RSSBytes, want)
	}
	if _, err := parseProcStat("garbage"); err == nil {
		t.Error("garbage parsed")
	}
	if _, err := parseProcStat("1 (x) S 1 2 3"); err == nil {
		t.Error("short line parsed")
	}
}

func TestParseContextSwitches(t *testing.T) {
	status := "Name:\tshardnode\nState:\tS (sleeping)\nThreads:\t1\nvoluntary_ctxt_switches:\t1200\nnonvoluntary_ctxt_switches:\t34\n"
	if n, err := parseContextSwitches([]byte(status)); err != nil || n != 1234 {
		t.Errorf("parseContextSwitches = %d, %v; want 1234", n, err)
	}
	if _, err := parseContextSwitches([]byte("Name:\tx\nvoluntary_ctxt_switches:\t5\n")); err == nil {
		t.Error("a status without nonvoluntary switches parsed")
	}
	if _, err := parseContextSwitches([]byte("voluntary_ctxt_switches:\tmany\nnonvoluntary_ctxt_switches:\t1\n")); err == nil {
		t.Error("a malformed count parsed")
	}
}

// TestReadThreadSwitchesCountsThisProcess: threads of this process that
// block, here goroutines sleeping on OS threads of their own, raise the
// count the bench reads for a process.
func TestReadThreadSwitchesCountsThisProcess(t *testing.T) {
	before, err := ReadThreadSwitches(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			runtime.LockOSThread() // a thread of its own, which sleeps
			defer runtime.UnlockOSThread()
			for range 50 {
				time.Sleep(100 * time.Microsecond)
			}
		})
	}
	wg.Wait()
	after, err := ReadThreadSwitches(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	// Each sleep blocks its thread once; threads that exited since took
	// their counts with them, so ask for far fewer than 200.
	if n := after.Since(before); n < 50 {
		t.Errorf("%d context switches over 200 sleeps", n)
	}
	if _, err := ReadThreadSwitches(-1); err == nil {
		t.Error("a process that does not exist has context switches")
	}
}

func TestThreadSwitchesSince(t *testing.T) {
	before := ThreadSwitches{1: 100, 2: 50, 3: 7}
	// Thread 2 switched 10 more times, 3 exited, 4 was born with 5.
	after := ThreadSwitches{1: 100, 2: 60, 4: 5}
	if n := after.Since(before); n != 15 {
		t.Errorf("Since = %d, want 15", n)
	}
}

// memDriver is an in-memory Driver; fail, when set, decides which
// operations fail.
type memDriver struct {
	mu   sync.Mutex
	data map[string][]byte
	fail func(op string) error
}

var errInjected = errors.New("injected")

func (d *memDriver) System() string { return "mem" }
func (d *memDriver) Client(int) KV  { return d }
func (d *memDriver) Close() error   { return nil }
func (d *memDriver) ErrorKind(err error) string {
	if errors.Is(err, errInjected) {
		return "injected"
	}
	return "other"
}

func (d *memDriver) Put(_ context.Context, k, v []byte) error {
	if d.fail != nil {
		if err := d.fail("put"); err != nil {
			return err
		}
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.data[string(k)] = append([]byte(nil), v...)
	return nil
}

func (d *memDriver) Get(_ context.Context, k []byte) (bool, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	_, ok := d.data[string(k)]
	return ok, nil
}

func (d *memDriver) Scan(context.Context, []byte, int) (int, error) { return 0, nil }

func TestRunCountsOpsErrorsAndPreloads(t *testing.T) {
	var n int
	var mu sync.Mutex
	d := &memDriver{data: map[string][]byte{}}
	cfg := Config{Workload: "ycsb-a", Clients: 8, Keys: 500, Ops: 4000, Duration: 0, Seed: 1}
	res, err := Run(context.Background(), cfg, d, RunOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(d.data) != 500 {
		t.Errorf("preload wrote %d keys, want 500", len(d.data))
	}
	if res.Ops != 4000 || res.Latency.TotalCount() != 4000 {
		t.Errorf("ops %d, latencies %d, want 4000", res.Ops, res.Latency.TotalCount())
	}
	if r, w := res.OpsByKind["read"], res.OpsByKind["write"]; r+w != 4000 || r < 1600 || w < 1600 {
		t.Errorf("ycsb-a mix: %d reads, %d writes", r, w)
	}

	// Every third write fails: counted by kind, not in the latencies.
	d = &memDriver{data: map[string][]byte{}, fail: func(string) error {
		mu.Lock()
		defer mu.Unlock()
		n++
		if n%3 == 0 {
			return errInjected
		}
		return nil
	}}
	res, err = Run(context.Background(), Config{Workload: "write", Clients: 4, Ops: 300, Duration: 0, Rate: 1e5}, d, RunOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if res.Ops != 300 || res.Errors == 0 || res.ErrorsByKind["injected"] != res.Errors {
		t.Errorf("ops %d, errors %d by kind %v", res.Ops, res.Errors, res.ErrorsByKind)
	}
	if res.Config.Preload {
		t.Error("a write workload preloads by default")
	}
}

func TestRunStopsWithContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := Run(ctx, Config{Workload: "write", Clients: 2, Duration: time.Hour}, &memDriver{data: map[string][]byte{}}, RunOptions{})
	if !errors.Is(err, context.Canceled) {
		t.Errorf("Run with a canceled context = %v", err)
	}
}

func TestRecordJSONHasTheIssueFields(t *testing.T) {
	d := &memDriver{data: map[string][]byte{}}
	res, err := Run(context.Background(), Config{Workload: "write", Clients: 2, Ops: 100, Duration: 0, ValueSizeBytes: 64}, d, RunOptions{})
	if err != nil {
		t.Fatal(err)
	}
	res.Elapsed = 2 * time.Second
	res.CPU.Server, res.CPU.ServerKernel, res.CPU.ServerSwitches = 50*time.Millisecond, 25*time.Millisecond, 2500
	rep := &Report{Systems: []string{"mem"}, Workloads: []string{"write"}, Configs: map[string]Config{"write": res.Config},
		Runs: map[string]map[string][]*Result{"write": {"mem": {res, res, res}}}, Fsync: FsyncProbe{Samples: 1, P50: 1500 * time.Microsecond}}
	b, err := json.Marshal(rep.Records())
	if err != nil {
		t.Fatal(err)
	}
	var recs []map[string]any
	if err := json.Unmarshal(b, &recs); err != nil {
		t.Fatal(err)
	}
	if len(recs) != 4 || recs[3]["stat"] != "median" || recs[0]["run"] != 1.0 {
		t.Fatalf("want 3 runs and a median, got %d records: %s", len(recs), b)
	}
	want := map[string]any{"system": "mem", "workload": "write", "clients": 2.0, "value_size": 64.0, "ops_per_sec": 50.0,
		"errors": 0.0, "server_cpu_us_per_op": 500.0, "fsync_p50_ms": 1.5,
		"server_kernel_share": 0.5, "server_context_switches_per_op": 25.0}
	for _, r := range recs {
		for k, v := range want {
			if r[k] != v {
				t.Errorf("%s = %v, want %v", k, r[k], v)
			}
		}
		for _, k := range []string{"p50_ms", "p90_ms", "p99_ms", "p999_ms"} {
			if v, ok := r[k].(float64); !ok || v <= 0 {
				t.Errorf("%s = %v, want a positive latency", k, r[k])
			}
		}
	}
	var table bytes.Buffer
	rep.WriteTable(&table)
	if !strings.Contains(table.String(), "medians of 3 runs") || !strings.Contains(table.String(), "fsync") ||
		!strings.Contains(table.String(), "context switches per op: mem 25.0, 50% of their CPU in the kernel") {
		t.Errorf("table:\n%s", table.String())
	}
}

func TestProgressLine(t *testing.T) {
	var b bytes.Buffer
	pp := NewProgressPrinter(&b, true, 0)
	pp.Print("etcd write 1/3", Progress{Phase: PhaseMeasure, Elapsed: 15 * time.Second, Total: 30 * time.Second, Rate: 1234})
	pp.Print("etcd write 1/3", Progress{Phase: PhaseDone})
	out := b.String()
	if !strings.HasPrefix(out, "\retcd write 1/3 measure [############............] 15s/30s  1234 ops/s") || strings.Contains(out, "\n") {
		t.Errorf("terminal progress %q", out)
	}
	b.Reset()
	pp = NewProgressPrinter(&b, false, time.Hour)
	for range 3 {
		pp.Print("x", Progress{Phase: PhaseMeasure, Target: 10, Done: 5})
	}
	if got := strings.Count(b.String(), "\n"); got != 1 {
		t.Errorf("non-terminal progress printed %d lines, want 1 per interval:\n%s", got, b.String())
	}
}

func TestResolveEtcdTarget(t *testing.T) {
	for _, tc := range []struct {
		target, workload, want string
	}{
		{EtcdTargetAuto, "write", EtcdTargetLeader},
		{"", "ycsb-b", EtcdTargetLeader}, // 5% writes still go through the leader
		{EtcdTargetAuto, "read", EtcdTargetAll},
		{EtcdTargetAuto, "scan", EtcdTargetAll},
		{EtcdTargetAll, "write", EtcdTargetAll},
		{EtcdTargetLeader, "read", EtcdTargetLeader},
	} {
		got, err := ResolveEtcdTarget(tc.target, Config{Workload: tc.workload})
		if err != nil || got != tc.want {
			t.Errorf("ResolveEtcdTarget(%q, %s) = %q, %v; want %q", tc.target, tc.workload, got, err, tc.want)
		}
	}
	if _, err := ResolveEtcdTarget("followers", Config{}); err == nil {
		t.Error("an unknown target resolved")
	}
}

func TestTableSaysWhichEtcdMembers(t *testing.T) {
	rep := &Report{Systems: []string{"etcd"}, Workloads: []string{"write"}, Configs: map[string]Config{"write": {Workload: "write"}},
		Runs: map[string]map[string][]*Result{"write": {"etcd": {
			{System: "etcd", Config: Config{Workload: "write"}.withDefaults(), Latency: NewHistogram(), Ops: 10, Elapsed: time.Second,
				EtcdTarget: EtcdTargetLeader, EtcdLeaderChanges: 1},
		}}}}
	var b strings.Builder
	rep.WriteTable(&b)
	if !strings.Contains(b.String(), "etcd clients: leader only") || !strings.Contains(b.String(), "1 leader changes followed") {
		t.Errorf("table does not say the etcd clients went to the leader:\n%s", b.String())
	}
	recs := rep.Records()
	if len(recs) != 1 || recs[0].EtcdTarget != EtcdTargetLeader {
		t.Errorf("records: %+v", recs)
	}
	rep.Runs["write"]["etcd"][0].EtcdTarget = EtcdTargetAll
	b.Reset()
	rep.WriteTable(&b)
	if !strings.Contains(b.String(), "etcd clients: balanced over every member") {
		t.Errorf("table does not say the etcd clients were balanced:\n%s", b.String())
	}
}

// TestTableSaysWhichWayRatiosAreBetter: a table of two systems says
// what its ratio row divides, and which way is better for each column.
func TestTableSaysWhichWayRatiosAreBetter(t *testing.T) {
	run := func(system string, ops int64) *Result {
		return &Result{System: system, Config: Config{Workload: "write"}.withDefaults(), Latency: NewHistogram(), Ops: ops, Elapsed: time.Second}
	}
	rep := &Report{Systems: []string{"flotilla", "etcd"}, Workloads: []string{"write"}, Configs: map[string]Config{"write": {Workload: "write"}},
		Runs: map[string]map[string][]*Result{"write": {"flotilla": {run("flotilla", 20)}, "etcd": {run("etcd", 10)}}}}
	var b strings.Builder
	rep.WriteTable(&b)
	out := b.String()
	if !strings.Contains(out, "flotilla/etcd") || !strings.Contains(out, "ratios are flotilla over the other: above 1 is better for OPS/S, below 1 is better for latencies") {
		t.Errorf("the table does not say which way its ratios are better:\n%s", out)
	}
	rep = &Report{Systems: []string{"etcd"}, Workloads: []string{"write"}, Configs: map[string]Config{"write": {Workload: "write"}},
		Runs: map[string]map[string][]*Result{"write": {"etcd": {run("etcd", 10)}}}}
	b.Reset()
	rep.WriteTable(&b)
	if strings.Contains(b.String(), "ratios are") {
		t.Errorf("a table of one system explains ratios it does not have:\n%s", b.String())
	}
}
