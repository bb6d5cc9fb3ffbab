package telemetry

import (
	"context"

	"go.opentelemetry.io/otel/metric"
)

// ObserveDisk exports the size of the filesystem that holds dir and the
// bytes on it that this process may still write, read at scrape time:
// flotilla_disk_size_bytes and flotilla_disk_available_bytes, for the
// "disk nearly full" alerts (deploy/prometheus/alerts.yaml). A scrape at
// which the filesystem cannot be read reports neither. Call it once.
func (t *Telemetry) ObserveDisk(dir string) error {
	size, err := t.Meter.Int64ObservableGauge("flotilla.disk.size",
		metric.WithDescription("size of the filesystem holding the data directory"), metric.WithUnit("By"))
	if err != nil {
		return err
	}
	avail, err := t.Meter.Int64ObservableGauge("flotilla.disk.available",
		metric.WithDescription("bytes this process may still write on the filesystem holding the data directory"), metric.WithUnit("By"))
	if err != nil {
		return err
	}
	_, err = t.Meter.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		s, a, err := diskSpace(dir)
		if err != nil {
			return nil // nothing to report at this scrape
		}
		o.ObserveInt64(size, int64(s))
		o.ObserveInt64(avail, int64(a))
		return nil
	}, size, avail)
	return err
}

// DiskSize returns the size in bytes of the filesystem that holds dir (a
// shardnode's default capacity), or an error where it cannot be read.
func DiskSize(dir string) (uint64, error) {
	size, _, err := diskSpace(dir)
	return size, err
}
