package tso

import "strconv"

// Timestamp is one oracle timestamp: milliseconds since the Unix epoch in
// the high 46 bits and a logical counter in the low LogicalBits bits (the
// layout of TiKV's placement driver). Timestamps compare as integers: a
// later millisecond is always greater, and within one millisecond the
// logical counter orders them. The zero Timestamp is never handed out.
type Timestamp uint64

const (
	// LogicalBits is the width of the logical counter in a Timestamp.
	LogicalBits = 18
	// LogicalRange is the number of logical values in one millisecond
	// (262144), and so the largest batch Next hands out.
	LogicalRange = 1 << LogicalBits
	// MaxPhysical is the largest physical part (milliseconds since the
	// epoch) a Timestamp holds: 2^46-1 ms, about the year 4199.
	MaxPhysical = 1<<(64-LogicalBits) - 1
)

// Compose returns the Timestamp of logical counter value logical in
// millisecond physicalMs. It panics if physicalMs is negative or above
// MaxPhysical, or if logical is not below LogicalRange: callers pass
// values they have already checked.
func Compose(physicalMs int64, logical uint32) Timestamp {
	if physicalMs < 0 || physicalMs > MaxPhysical || logical >= LogicalRange {
		panic("tso: Compose(" + strconv.FormatInt(physicalMs, 10) + ", " +
			strconv.FormatUint(uint64(logical), 10) + ") out of range")
	}
	return Timestamp(physicalMs)<<LogicalBits | Timestamp(logical)
}

// Physical returns ts's physical part: milliseconds since the Unix epoch.
func Physical(ts Timestamp) int64 { return int64(ts >> LogicalBits) }

// Logical returns ts's logical counter, below LogicalRange.
func Logical(ts Timestamp) uint32 { return uint32(ts & (LogicalRange - 1)) }

// String formats ts as "physical.logical", e.g. "1733339697000.17".
func (ts Timestamp) String() string {
	b := strconv.AppendInt(make([]byte, 0, 24), Physical(ts), 10)
	b = append(b, '.')
	return string(strconv.AppendUint(b, uint64(Logical(ts)), 10))
}
