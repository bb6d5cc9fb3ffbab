//go:build !(linux || darwin)

package telemetry

import "errors"

// diskSpace is not implemented on this system: ObserveDisk reports
// nothing.
func diskSpace(string) (size, avail uint64, err error) {
	return 0, 0, errors.New("telemetry: filesystem space is not read on this system")
}
