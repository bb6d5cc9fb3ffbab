package bench

import (
	"context"
	"errors"

	"google.golang.org/grpc/status"
)

// KV is the key-value client one bench client drives. Implementations are
// safe for concurrent use; the runner gives each client the KV its
// Driver assigns it.
type KV interface {
	// Put writes value at key, durably and linearizably.
	Put(ctx context.Context, key, value []byte) error
	// Get reads key linearizably and reports whether it exists.
	Get(ctx context.Context, key []byte) (found bool, err error)
	// Scan reads up to limit pairs from start on, in key order, and
	// returns how many it read.
	Scan(ctx context.Context, start []byte, limit int) (int, error)
}

// A Driver connects the bench to one system. It may hold several
// connections (clients) and spreads the bench clients over them.
type Driver interface {
	// System names the system, as reports show it ("flotilla", "etcd").
	System() string
	// Client returns the KV that bench client i (0-based) uses.
	Client(i int) KV
	// ErrorKind names the kind of err for the errors-by-kind report: a
	// short stable word, never the message (which holds addresses).
	ErrorKind(err error) string
	// Close releases the connections.
	Close() error
}

// Watcher is the optional capability of a Driver that the watch workload
// needs: range watches. Run checks for it at run time; a Driver without
// it fails that workload with ErrWatchUnsupported.
type Watcher interface {
	// Watch watches the keys of [start, end) (end nil: every key from
	// start on) and returns once the watch is established: every write
	// that begins after Watch returns is delivered. From then on it calls
	// deliver with the key and value of every put event, from one
	// goroutine, in the order the system delivers them, until ctx ends;
	// key and value are valid only during the call, and deliver must
	// return quickly. The returned channel receives the error that ended
	// the watch before ctx did (nothing if ctx ended it) and is closed
	// after deliver's last call. Watch returns an error, and starts
	// nothing, if the watch cannot be established before ctx ends. Safe
	// for concurrent use.
	Watch(ctx context.Context, start, end []byte, deliver func(key, value []byte)) (<-chan error, error)
}

// ErrWatchUnsupported is returned by Run for the watch workload when the
// Driver is not a Watcher.
var ErrWatchUnsupported = errors.New("bench: the driver cannot watch (it does not implement bench.Watcher)")

// genericErrorKind names the kinds every driver shares: context errors and
// gRPC status codes. It returns "" for anything else.
func genericErrorKind(err error) string {
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return "timeout"
	case errors.Is(err, context.Canceled):
		return "canceled"
	}
	if st, ok := status.FromError(err); ok {
		return "grpc:" + st.Code().String()
	}
	return ""
}
