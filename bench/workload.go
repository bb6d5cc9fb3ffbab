package bench

import (
	"errors"
	"fmt"
	"strings"
	"time"
)

// Mix is the share of each operation in a workload; the three fractions
// add up to 1.
type Mix struct {
	Read, Write, Scan float64
}

// Workloads maps the name of every predefined workload to its mix. Names
// are what --workload accepts; "mixed" takes its read fraction from
// Config.ReadFraction.
var Workloads = map[string]Mix{
	"write":  {Write: 1},
	"read":   {Read: 1},
	"ycsb-a": {Read: 0.5, Write: 0.5},
	"ycsb-b": {Read: 0.95, Write: 0.05},
	"ycsb-c": {Read: 1},
	"scan":   {Scan: 1},
	"mixed":  {},
	"watch":  {Write: 1},
	// The transaction workloads (txn.go): every operation writes.
	WorkloadBatch:     {Write: 1},
	WorkloadTxn:       {Write: 1},
	WorkloadTransfer1: {Write: 1},
	WorkloadTransfer2: {Write: 1},
}

// WorkloadNames lists the workloads in the order help texts show them.
var WorkloadNames = []string{"write", "read", "ycsb-a", "ycsb-b", "ycsb-c", "scan", "mixed", WorkloadWatch,
	WorkloadBatch, WorkloadTxn, WorkloadTransfer1, WorkloadTransfer2}

// WorkloadWatch is the watch workload: the write workload's puts, with
// Config.Watchers range watches beside them that must deliver every
// acknowledged write (see watch.go). The driver must be a Watcher.
const WorkloadWatch = "watch"

// Key distributions accepted by Config.Distribution.
const (
	Uniform = "uniform"
	Zipfian = "zipfian"
)

// Config describes one workload run against one system. The zero value of
// a field means its default (see withDefaults); Validate reports every
// problem at once. Run never modifies the caller's Config.
type Config struct {
	// Workload names the operation mix (see Workloads). Default "write".
	Workload string
	// ReadFraction is the read share of the "mixed" workload, in [0, 1];
	// the rest are writes. Ignored by the other workloads.
	ReadFraction float64
	// Clients is the number of concurrent clients: goroutines each with
	// at most one operation in flight. Default 100.
	Clients int
	// Rate, when positive, runs an open loop: operations start at this
	// many per second in total whatever their latency, and a latency is
	// measured from the operation's scheduled start (so queueing behind
	// slow operations counts, no coordinated omission). Zero runs a
	// closed loop: each client starts its next operation when the last
	// one ended.
	Rate float64
	// Keys is the number of distinct keys. Default 10,000.
	Keys int
	// KeySizeBytes is the length of every key, at least 8: 8 bytes of a
	// bijective hash of the key's index (so the first byte is uniformly
	// spread over the key space, which shards are split on), then the
	// index in decimal, padded or cut to the length. Default 16.
	KeySizeBytes int
	// ValueSizeBytes is the length of every written value. Default 256.
	ValueSizeBytes int
	// Distribution of the keys accessed: "uniform" or "zipfian" (YCSB's
	// skew, Theta). Default uniform.
	Distribution string
	// Theta is the zipfian constant, in (0, 1). Default 0.99 (YCSB).
	Theta float64
	// ScanLength is how many keys a scan reads. Default 10.
	ScanLength int
	// Warmup runs the workload this long before measuring; its operations
	// count nowhere. Default 0 (none). Negative is invalid.
	Warmup time.Duration
	// Duration bounds the measured window. Ops bounds it by a number of
	// completed operations instead. Exactly one of them must be set;
	// Duration defaults to 10 s when both are zero.
	Duration time.Duration
	Ops      int64
	// Preload writes every key once before the warm-up so that reads find
	// them. Default: on for workloads that read or scan. PreloadSet
	// records that the caller chose.
	Preload    bool
	PreloadSet bool
	// Timeout bounds each operation. Default 10 s.
	Timeout time.Duration
	// Seed seeds the clients' random generators; 0 picks one from the
	// clock. The seed used is reported in the Result.
	Seed uint64
	// Watchers is the number of range watches of the watch workload, each
	// over one contiguous slice of the keys' first byte, so every write is
	// seen by exactly one; at most 256. Default 8. Ignored by the other
	// workloads.
	Watchers int
	// WatchDrain bounds the wait, after the window of the watch workload,
	// for the events of the writes acknowledged in it; an event that has
	// not arrived by then is missing. Default 5 s.
	WatchDrain time.Duration
}

// Defaults of Config.
const (
	DefaultClients    = 100
	DefaultKeys       = 10_000
	DefaultKeySize    = 16
	DefaultValueSize  = 256
	DefaultTheta      = 0.99
	DefaultScanLength = 10
	DefaultDuration   = 10 * time.Second
	DefaultTimeout    = 10 * time.Second
	DefaultWatchers   = 8
	DefaultWatchDrain = 5 * time.Second
	// MaxWatchers is the most watchers the watch workload runs: one per
	// value of the keys' first byte.
	MaxWatchers = 256
	// MinWatchValueSize is the smallest value of the watch workload: the
	// write's send time and its identity (watchStamp).
	MinWatchValueSize = watchStampBytes
	// MinKeySize is the hash prefix that makes every key unique.
	MinKeySize = 8
)

// withDefaults returns a copy of c with every zero field set.
func (c Config) withDefaults() Config {
	if c.Workload == "" {
		c.Workload = "write"
	}
	if c.Clients == 0 {
		c.Clients = DefaultClients
	}
	if c.Keys == 0 {
		c.Keys = DefaultKeys
	}
	if c.KeySizeBytes == 0 {
		c.KeySizeBytes = DefaultKeySize
	}
	if c.ValueSizeBytes == 0 {
		c.ValueSizeBytes = DefaultValueSize
	}
	if c.Distribution == "" {
		c.Distribution = Uniform
	}
	if c.Theta == 0 {
		c.Theta = DefaultTheta
	}
	if c.ScanLength == 0 {
		c.ScanLength = DefaultScanLength
	}
	if c.Duration == 0 && c.Ops == 0 {
		c.Duration = DefaultDuration
	}
	if c.Timeout == 0 {
		c.Timeout = DefaultTimeout
	}
	if c.Watchers == 0 {
		c.Watchers = DefaultWatchers
	}
	if c.WatchDrain == 0 {
		c.WatchDrain = DefaultWatchDrain
	}
	if !c.PreloadSet {
		m := c.mix()
		c.Preload = m.Read > 0 || m.Scan > 0 || txnShapes[c.Workload].read
	}
	return c
}

// mix returns the operation mix of c's workload (zero for an unknown one).
func (c Config) mix() Mix {
	if c.Workload == "mixed" {
		return Mix{Read: c.ReadFraction, Write: 1 - c.ReadFraction}
	}
	return Workloads[c.Workload]
}

// ErrInvalidConfig is wrapped by every error of Config.Validate.
var ErrInvalidConfig = errors.New("bench: invalid configuration")

// Validate reports every problem of c at once, as one error wrapping
// ErrInvalidConfig, naming the command-line flag of each field. It applies
// the defaults first, so a zero field is never a problem.
func (c Config) Validate() error {
	p := c.Problems()
	if len(p) == 0 {
		return nil
	}
	return fmt.Errorf("%w:\n  - %s", ErrInvalidConfig, strings.Join(p, "\n  - "))
}

// Problems returns every problem of c, one sentence each naming the
// command-line flag, for a caller that adds its own (see Validate).
func (c Config) Problems() []string {
	c = c.withDefaults()
	var p []string
	add := func(format string, args ...any) { p = append(p, fmt.Sprintf(format, args...)) }
	if _, ok := Workloads[c.Workload]; !ok {
		add("--workload %q: want one of %s", c.Workload, strings.Join(WorkloadNames, ", "))
	}
	if c.Workload == "mixed" && (c.ReadFraction < 0 || c.ReadFraction > 1) {
		add("--read-fraction must be in [0, 1], got %g", c.ReadFraction)
	}
	if c.Clients < 0 {
		add("--clients must be positive, got %d", c.Clients)
	}
	if c.Rate < 0 {
		add("--rate must not be negative, got %g", c.Rate)
	}
	if c.Keys < 0 {
		add("--keys must be positive, got %d", c.Keys)
	}
	if c.KeySizeBytes < MinKeySize {
		add("--key-size must be at least %d bytes, got %d", MinKeySize, c.KeySizeBytes)
	}
	if c.ValueSizeBytes < 0 {
		add("--value-size must be positive, got %d", c.ValueSizeBytes)
	}
	if c.Distribution != Uniform && c.Distribution != Zipfian {
		add("--distribution %q: want %s or %s", c.Distribution, Uniform, Zipfian)
	}
	if c.Theta <= 0 || c.Theta >= 1 {
		add("--theta must be in (0, 1), got %g", c.Theta)
	}
	if c.ScanLength < 0 {
		add("--scan-length must be positive, got %d", c.ScanLength)
	}
	if c.Warmup < 0 {
		add("--warmup must not be negative, got %s", c.Warmup)
	}
	if c.Duration < 0 {
		add("--duration must not be negative, got %s", c.Duration)
	}
	if c.Ops < 0 {
		add("--ops must not be negative, got %d", c.Ops)
	}
	if c.Duration > 0 && c.Ops > 0 {
		add("--duration (%s) and --ops (%d) are exclusive: set one", c.Duration, c.Ops)
	}
	if c.Timeout < 0 {
		add("--timeout must not be negative, got %s", c.Timeout)
	}
	if c.Watchers < 0 || c.Watchers > MaxWatchers {
		add("--watchers must be in [1, %d], got %d", MaxWatchers, c.Watchers)
	}
	if c.WatchDrain < 0 {
		add("--watch-drain must not be negative, got %s", c.WatchDrain)
	}
	if c.Workload == WorkloadWatch && c.ValueSizeBytes < MinWatchValueSize {
		add("--value-size must be at least %d bytes for the watch workload (a write's send time and identity), got %d",
			MinWatchValueSize, c.ValueSizeBytes)
	}
	return p
}

// mixParts names the operation mix's nonzero shares, e.g. "90% reads",
// "10% writes".
func mixParts(read, write, scan float64) []string {
	var parts []string
	for _, o := range []struct {
		name string
		f    float64
	}{{"reads", read}, {"writes", write}, {"scans", scan}} {
		if o.f > 0 {
			parts = append(parts, fmt.Sprintf("%g%% %s", o.f*100, o.name))
		}
	}
	return parts
}

// Describe returns a one-line description of c's workload, for reports.
func (c Config) Describe() string {
	c = c.withDefaults()
	m := c.mix()
	ops := mixParts(m.Read, m.Write, m.Scan)
	if shape, ok := txnShapes[c.Workload]; ok {
		ops = []string{shape.what}
	}
	loop := fmt.Sprintf("closed loop, %d clients", c.Clients)
	if c.Rate > 0 {
		loop = fmt.Sprintf("open loop at %g ops/s, %d clients", c.Rate, c.Clients)
	}
	bound := c.Duration.String()
	if c.Ops > 0 {
		bound = fmt.Sprintf("%d ops", c.Ops)
	}
	s := fmt.Sprintf("%s (%s): %s; %d %s keys of %d bytes, %d-byte values", c.Workload, strings.Join(ops, ", "), loop,
		c.Keys, c.Distribution, c.KeySizeBytes, c.ValueSizeBytes)
	if m.Scan > 0 {
		s += fmt.Sprintf(", scans of %d keys", c.ScanLength)
	}
	if c.Workload == WorkloadWatch {
		s += fmt.Sprintf(", %d range watchers over disjoint slices of the key space", c.Watchers)
	}
	return s + fmt.Sprintf("; warm-up %s, measured %s", c.Warmup, bound)
}
