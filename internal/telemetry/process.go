package telemetry

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/flotilla-kv/flotilla/internal/buildinfo"
)

// registerProcess registers, for service, the process_* metrics (CPU
// seconds, resident memory, open file descriptors, start time: Prometheus'
// process collector, which reads /proc), the go_* metrics of the Go
// runtime (goroutines, heap, GC), and flotilla_build_info, a gauge of 1
// whose labels say what runs: the service, the module version, the VCS
// revision and whether the tree was modified, and the Go version.
func registerProcess(reg *prometheus.Registry, service string) error {
	b := buildinfo.Read()
	modified := "false"
	if b.Modified {
		modified = "true"
	}
	revision := b.Revision
	if revision == "" {
		revision = "unknown"
	}
	info := prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "flotilla_build_info",
		Help: "1, labelled with what this binary is: service, module version, VCS revision, modified tree, Go version",
		ConstLabels: prometheus.Labels{
			"service": service, "version": b.Version, "revision": revision, "modified": modified, "goversion": b.GoVersion,
		},
	})
	info.Set(1)
	for _, c := range []prometheus.Collector{
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		collectors.NewGoCollector(),
		info,
	} {
		if err := reg.Register(c); err != nil {
			return err
		}
	}
	return nil
}
