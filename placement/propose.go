package placement

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/flotilla-kv/flotilla/multiraft"
)

// refusedError is a catalogue command that the catalogue applied and
// refused: its Apply returned err (ErrIDsExhausted, ErrUnknownNode, a
// malformed command).
type refusedError struct{ err error }

func (e refusedError) Error() string { return e.err.Error() }
func (e refusedError) Unwrap() error { return e.err }

// propose runs a catalogue command through Raft on the leader and returns
// what the catalogue's Apply returned. Its error is either a
// refusedError, or the engine's error wrapped (errors.Is finds
// multiraft.ErrNotLeader, ErrAmbiguous: the command may or may not have
// applied, ErrStopped, ...) or the context's. API handlers pass it through
// toStatus.
func (c *core) propose(ctx context.Context, cmd command) (any, error) {
	b, err := json.Marshal(cmd)
	if err != nil {
		return nil, err
	}
	res, err := c.cfg.Runtime.Wait(ctx, c.engine.ProposeFuture(CatalogueGroup, b))
	if err != nil {
		return nil, fmt.Errorf("placement: catalogue: %w", err)
	}
	if err, ok := res.(error); ok {
		return nil, refusedError{err}
	}
	return res, nil
}

// toStatus turns an error of propose into what a client of the Placement
// API sees: a refusal is INVALID_ARGUMENT with the catalogue's message;
// any failure of the engine or of the wait is UNAVAILABLE, which clients
// retry (on another placement replica if need be): not leading any more,
// stopped, dropped, timed out, and an ambiguous outcome, whose message
// says that the change may or may not have applied. A status passes
// through unchanged.
func toStatus(err error) error {
	var refused refusedError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &refused):
		return status.Error(codes.InvalidArgument, refused.Error())
	case errors.Is(err, multiraft.ErrAmbiguous):
		return status.Errorf(codes.Unavailable, "%v: the outcome is unknown (the change may or may not have applied)", err)
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	return status.Error(codes.Unavailable, err.Error())
}

// AllocateIDs reserves n IDs of a counter and returns the first. Its
// errors are propose's. Safe for concurrent use.
func (c *core) AllocateIDs(ctx context.Context, counter, n uint64) (uint64, error) {
	res, err := c.propose(ctx, command{Op: "alloc", Kind: counter, Count: n})
	if err != nil {
		return 0, err
	}
	return res.(uint64), nil
}
