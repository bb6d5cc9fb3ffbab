package multiraft

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/cockroachdb/pebble/v2"
)

// ErrDiskFailure: a write or sync of the engine's Pebble instance failed,
// and the engine stopped itself (fail-stop). Returned by Err, and wrapped
// (together with ErrStopped, and ErrAmbiguous for proposals in flight) by
// every request that was pending when the engine stopped.
var ErrDiskFailure = errors.New("multiraft: disk failure")

// Fail-stop on disk failure
//
// A failed write or sync leaves the local log in an unknown state: raft
// was promised that a Ready is durable, and it is not. Retrying is not
// safe either: Pebble's WAL error is sticky, the first commit that meets it
// returns an error and every later commit panics inside Pebble (leaving
// its commit pipeline locked). So the engine stops at the first failure,
// before it acts on the failed write:
//
//   - the round that met the failure sends none of the messages that
//     promise durability (append acknowledgements, votes), applies nothing,
//     resolves no future with success, and never calls Advance;
//   - every later round, and every later commit by the engine, is refused;
//   - the engine closes itself (in the background with workers; at the end
//     of Process in manual mode): pending requests fail with an error that
//     wraps ErrStopped and ErrDiskFailure (and ErrAmbiguous for proposals
//     that may have been appended), new requests fail with ErrStopped;
//   - Failed's channel is closed and Err reports the cause.
//
// The owner of the engine (cmd/shardnode) is expected to watch Failed and
// exit non-zero: the process must be restarted over its data directory,
// where recovery replays only what was synced. The replicas on the other
// nodes keep serving as long as they keep a quorum.

// diskFailure records the first disk failure of an engine.
type diskFailure struct {
	// failed is set once err is: the rounds read it for every group, so
	// the common case (no failure) takes no lock.
	failed atomic.Bool
	mu     struct {
		sync.Mutex
		err    error
		failed chan struct{} // made on first use, closed at the failure
	}
}

// channelLocked returns the failed channel, making it on first use.
func (d *diskFailure) channelLocked() chan struct{} {
	if d.mu.failed == nil {
		d.mu.failed = make(chan struct{})
	}
	return d.mu.failed
}

// Err returns the disk failure that stopped the engine, wrapping
// ErrDiskFailure, or nil while there was none. Safe for concurrent use.
func (e *Engine) Err() error {
	if !e.disk.failed.Load() {
		return nil
	}
	e.disk.mu.Lock()
	defer e.disk.mu.Unlock()
	return e.disk.mu.err
}

// Failed returns a channel that is closed when the engine stops itself
// after a disk failure (see Err). Safe for concurrent use.
func (e *Engine) Failed() <-chan struct{} {
	e.disk.mu.Lock()
	defer e.disk.mu.Unlock()
	return e.disk.channelLocked()
}

// commit commits b with opts. Any failure, returned or panicked by Pebble,
// makes the engine fail-stop and is returned wrapping ErrDiskFailure; once
// the engine failed, commit refuses at once without touching Pebble.
func (e *Engine) commit(b *pebble.Batch, opts *pebble.WriteOptions) (err error) {
	if err := e.Err(); err != nil {
		return err
	}
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("%w: pebble panicked: %v", ErrDiskFailure, p)
		}
		if err != nil {
			if !errors.Is(err, ErrDiskFailure) {
				err = fmt.Errorf("%w: %w", ErrDiskFailure, err)
			}
			e.failStop(err)
		}
	}()
	return b.Commit(opts)
}

// failStop records err as the engine's disk failure (the first one wins),
// logs it, closes the Failed channel and starts closing the engine. With
// workers, Close runs in its own goroutine, since it waits for the workers
// and the caller is one; in manual mode Process closes the engine after
// the round that failed.
func (e *Engine) failStop(err error) {
	e.disk.mu.Lock()
	first := e.disk.mu.err == nil
	if first {
		e.disk.mu.err = err
		e.disk.failed.Store(true)
		close(e.disk.channelLocked())
	}
	e.disk.mu.Unlock()
	if !first {
		return
	}
	e.cfg.Logger.Error("multiraft: disk failure, engine stopping (fail-stop)", "node", e.cfg.NodeID, "err", err)
	if !e.manual {
		go func() { _ = e.Close() }()
	}
}

// stopErr is the error for requests refused or failed because the engine
// stopped: ErrStopped, wrapping the disk failure if there was one.
func (e *Engine) stopErr() error {
	if err := e.Err(); err != nil {
		return fmt.Errorf("%w: %w", ErrStopped, err)
	}
	return ErrStopped
}
