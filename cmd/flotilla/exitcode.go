package main

import (
	"context"
	"errors"
	"fmt"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/flotilla-kv/flotilla/router"
)

// Exit statuses of flotilla, the same whatever the output format (-w
// table, simple or json: the JSON is printed, then the command exits with
// the status its outcome calls for). 'flotilla --help' and
// docs/operations.md list them.
const (
	// exitOK: the command did what it was asked.
	exitOK = 0
	// exitError: any failure not named below: the fleet refused the
	// request (a transaction across shards, a compacted revision), a drain
	// that cannot complete, a local file that cannot be written.
	exitError = 1
	// exitUsage: bad usage, found before anything was sent: an unknown
	// command or flag, a wrong number of arguments, a malformed value.
	exitUsage = 2
	// exitNotFound: not found, or compare failed: get of an absent key,
	// a lease that does not exist, cas that did not swap, txn whose
	// compares failed (its FAILURE branch ran and was printed).
	exitNotFound = 3
	// exitUnavailable: unreachable or unavailable: no placement address
	// or shardnode answered, a shard had no leader, or the command's
	// --timeout passed before an answer.
	exitUnavailable = 4
)

// exitCodesHelp documents the exit statuses in 'flotilla --help'.
const exitCodesHelp = `Exit status (the same with -w json as with a table):
  0  success
  1  failure: the fleet refused the request (e.g. a transaction across shards, a compacted revision)
  2  bad usage: unknown command or flag, wrong arguments, a malformed value; nothing was sent
  3  not found or compare failed: get of an absent key, an unknown lease, cas not swapped,
     txn whose compares failed (unlike etcdctl, which exits 0 after FAILURE)
  4  unreachable or unavailable: placement and nodes did not answer, a shard had no leader,
     or --timeout passed`

// usageError is bad usage (exitUsage); its message says what is wrong.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

// usagef returns a usageError.
func usagef(format string, args ...any) error {
	return &usageError{msg: fmt.Sprintf(format, args...)}
}

// errNotFound marks an outcome that exits exitNotFound: an absent key or
// lease, a compare that failed. What was asked for is in the error
// wrapping it.
var errNotFound = errors.New("not found")

// errCompareFailed marks a cas or txn whose compare failed (exitNotFound);
// the outcome was printed.
var errCompareFailed = errors.New("compare failed")

// printedError is an outcome that was printed in full on standard
// output (a txn's FAILURE and its results): it sets the exit status, and
// nothing more is said on standard error.
type printedError struct{ err error }

func (e *printedError) Error() string { return e.err.Error() }
func (e *printedError) Unwrap() error { return e.err }

// errUnavailable marks an error that exits exitUnavailable, found by
// the CLI itself (a shard placement knows no leader of).
var errUnavailable = errors.New("unavailable")

// runError wraps the error of a command's run, as opposed to an error of
// cobra's parsing of the command line (an unknown command or flag, a
// wrong number of arguments), which is bad usage.
type runError struct{ err error }

func (e *runError) Error() string { return e.err.Error() }
func (e *runError) Unwrap() error { return e.err }

// exitCode returns the exit status for err, the error of executing the
// command line (nil: exitOK).
func exitCode(err error) int {
	var ue *usageError
	var re *runError
	switch {
	case err == nil:
		return exitOK
	case errors.As(err, &ue):
		return exitUsage
	case !errors.As(err, &re):
		return exitUsage // from cobra: the command line did not parse
	case errors.Is(err, errNotFound), errors.Is(err, errCompareFailed), errors.Is(err, router.ErrLeaseNotFound):
		return exitNotFound
	case unavailable(err):
		return exitUnavailable
	}
	return exitError
}

// unavailable reports whether err says that the fleet could not be
// reached or could not serve: no route, no leader, a deadline, or a gRPC
// Unavailable or DeadlineExceeded.
func unavailable(err error) bool {
	if errors.Is(err, errUnavailable) || errors.Is(err, router.ErrUnavailable) || errors.Is(err, router.ErrNoRoute) || errors.Is(err, router.ErrRetriesExhausted) ||
		errors.Is(err, context.DeadlineExceeded) {
		return true
	}
	// FromError finds a status wrapped anywhere in err.
	s, ok := status.FromError(err)
	return ok && (s.Code() == codes.Unavailable || s.Code() == codes.DeadlineExceeded)
}
