package telemetry

import (
	"strconv"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// ObservePebble exports Pebble's own metrics of db, read once per scrape
// from db.Metrics(): compactions and flushes, compaction debt, the files
// and sublevels of L0, read amplification, memtable and WAL sizes, WAL
// bytes written and block cache hits and misses (flotilla_pebble_*).
// ObserveEngine calls it for the engine's store; call it once per db, and
// only while db is open for every scrape that may come.
func (t *Telemetry) ObservePebble(db *pebble.DB) error {
	return t.registry.Register(&pebbleCollector{db: db})
}

// pebbleCollector is a prometheus.Collector over one Pebble DB: one
// Metrics() call per scrape serves every series (each call walks the LSM's
// levels, so reading it once per series would cost a dozen walks).
type pebbleCollector struct {
	db *pebble.DB
}

// pebbleMetric is one series of pebbleCollector: its description, its
// type and how to read it from a Metrics.
type pebbleMetric struct {
	desc *prometheus.Desc
	kind prometheus.ValueType
	read func(*pebble.Metrics) float64
}

func pebbleDesc(name, help string) *prometheus.Desc {
	return prometheus.NewDesc("flotilla_pebble_"+name, help, nil, nil)
}

var pebbleMetrics = []pebbleMetric{
	{pebbleDesc("compactions_total", "compactions Pebble completed"), prometheus.CounterValue,
		func(m *pebble.Metrics) float64 { return float64(m.Compact.Count) }},
	{pebbleDesc("compaction_debt_bytes", "bytes Pebble estimates it must compact for the LSM to reach a stable shape"), prometheus.GaugeValue,
		func(m *pebble.Metrics) float64 { return float64(m.Compact.EstimatedDebt) }},
	{pebbleDesc("compactions_in_progress", "compactions running"), prometheus.GaugeValue,
		func(m *pebble.Metrics) float64 { return float64(m.Compact.NumInProgress) }},
	{pebbleDesc("flushes_total", "memtable flushes Pebble completed"), prometheus.CounterValue,
		func(m *pebble.Metrics) float64 { return float64(m.Flush.Count) }},
	{pebbleDesc("l0_files", "tables in level 0"), prometheus.GaugeValue,
		func(m *pebble.Metrics) float64 { return float64(m.Levels[0].TablesCount) }},
	{pebbleDesc("l0_sublevels", "sublevels of level 0 (each adds a table to read through)"), prometheus.GaugeValue,
		func(m *pebble.Metrics) float64 { return float64(m.Levels[0].Sublevels) }},
	{pebbleDesc("read_amplification", "tables a point read may have to consult: L0 sublevels, non-empty levels and memtables"), prometheus.GaugeValue,
		func(m *pebble.Metrics) float64 { return float64(m.ReadAmp()) }},
	{pebbleDesc("memtable_bytes", "bytes allocated by the memtables (the mutable one and those waiting to flush)"), prometheus.GaugeValue,
		func(m *pebble.Metrics) float64 { return float64(m.MemTable.Size) }},
	{pebbleDesc("memtables", "memtables (the mutable one and those waiting to flush)"), prometheus.GaugeValue,
		func(m *pebble.Metrics) float64 { return float64(m.MemTable.Count) }},
	{pebbleDesc("wal_bytes", "bytes of the live write-ahead log files"), prometheus.GaugeValue,
		func(m *pebble.Metrics) float64 { return float64(m.WAL.PhysicalSize) }},
	{pebbleDesc("wal_written_bytes_total", "bytes written to the write-ahead log, framing included"), prometheus.CounterValue,
		func(m *pebble.Metrics) float64 { return float64(m.WAL.BytesWritten) }},
	{pebbleDesc("block_cache_hits_total", "block cache hits"), prometheus.CounterValue,
		func(m *pebble.Metrics) float64 { return float64(m.BlockCache.Hits) }},
	{pebbleDesc("block_cache_misses_total", "block cache misses"), prometheus.CounterValue,
		func(m *pebble.Metrics) float64 { return float64(m.BlockCache.Misses) }},
	{pebbleDesc("block_cache_bytes", "bytes in the block cache"), prometheus.GaugeValue,
		func(m *pebble.Metrics) float64 { return float64(m.BlockCache.Size) }},
	{pebbleDesc("disk_space_bytes", "bytes of every file Pebble keeps on disk (tables, WAL, manifests)"), prometheus.GaugeValue,
		func(m *pebble.Metrics) float64 { return float64(m.DiskSpaceUsage()) }},
}

// walFsyncDesc describes the latency of the WAL's fsyncs, which Pebble
// keeps in a histogram of its own (Metrics.LogWriter.FsyncLatency, in
// nanoseconds, 100 buckets).
var walFsyncDesc = pebbleDesc("wal_fsync_latency_seconds", "latency of the write-ahead log's fsyncs")

// walFsyncBounds are the bounds of Pebble's fsync histogram that
// flotilla_pebble_wal_fsync_latency_seconds keeps, in nanoseconds. Pebble's
// are 0 to 4.9 ms in steps of 100 µs, then 50 growing by a factor of 1.17
// from 5 ms to 10 s: a hundred series a node is more than a dashboard or
// an alert needs. Keeping a subset of Pebble's own bounds (100, 200 and
// 500 µs, 1 and 2 ms, then every fifth from 5 ms, about doubling, and
// 10 s) keeps every cumulative count exact, where new bounds would have to
// be guessed from the buckets around them. The bounds are shown rounded to
// three significant digits (10 s, not 9.999999999999957).
var walFsyncBounds = func() map[float64]bool {
	keep := map[float64]bool{}
	for _, d := range []time.Duration{100 * time.Microsecond, 200 * time.Microsecond, 500 * time.Microsecond, time.Millisecond, 2 * time.Millisecond} {
		keep[float64(d)] = true
	}
	var exp []float64
	for _, b := range pebble.FsyncLatencyBuckets {
		if b >= float64(5*time.Millisecond) {
			exp = append(exp, b)
		}
	}
	for i, b := range exp {
		if i%5 == 0 || i == len(exp)-1 {
			keep[b] = true
		}
	}
	return keep
}()

// Describe implements prometheus.Collector.
func (c *pebbleCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, pm := range pebbleMetrics {
		ch <- pm.desc
	}
	ch <- walFsyncDesc
}

// Collect implements prometheus.Collector.
func (c *pebbleCollector) Collect(ch chan<- prometheus.Metric) {
	m := c.db.Metrics()
	for _, pm := range pebbleMetrics {
		ch <- prometheus.MustNewConstMetric(pm.desc, pm.kind, pm.read(m))
	}
	if h := m.LogWriter.FsyncLatency; h != nil { // nil when the store is read-only
		ch <- walFsyncHistogram(h)
	}
}

// walFsyncHistogram reads Pebble's fsync histogram h and returns it in
// seconds, with the bounds of walFsyncBounds.
func walFsyncHistogram(h prometheus.Histogram) prometheus.Metric {
	var pm dto.Metric
	if err := h.Write(&pm); err != nil {
		return prometheus.NewInvalidMetric(walFsyncDesc, err)
	}
	ph := pm.GetHistogram()
	buckets := make(map[float64]uint64, len(walFsyncBounds))
	for _, b := range ph.GetBucket() {
		if walFsyncBounds[b.GetUpperBound()] {
			le, _ := strconv.ParseFloat(strconv.FormatFloat(b.GetUpperBound()/float64(time.Second), 'g', 3, 64), 64)
			buckets[le] = b.GetCumulativeCount()
		}
	}
	return prometheus.MustNewConstHistogram(walFsyncDesc, ph.GetSampleCount(), ph.GetSampleSum()/float64(time.Second), buckets)
}
