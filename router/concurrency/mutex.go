package concurrency

import (
	"bytes"
	"context"
	"errors"
)

// ErrLocked: TryLock found the mutex held by another session.
var ErrLocked = errors.New("concurrency: mutex locked by another session")

// ErrNotLocked: Unlock of a Mutex that does not hold the lock.
var ErrNotLocked = errors.New("concurrency: mutex not locked")

// Mutex is a lock shared by every session that makes a Mutex of the same
// prefix. It is held by its session's lease: it is lost when the session
// ends, whatever the holder believes, so a holder must stop acting under
// it when Session.Done closes, and must pass Revision to what it protects
// (see the package documentation).
//
// A Mutex is used by one goroutine at a time. Two Mutexes of one session
// and one prefix share one key: they hold the lock together, and either's
// Unlock releases it.
type Mutex struct {
	s   *Session
	pfx []byte
	// key and rev are the held lock's key and its CreateRevision; unset
	// while not held.
	key []byte
	rev uint64
}

// NewMutex returns a Mutex of s over prefix. It writes nothing until Lock.
func NewMutex(s *Session, prefix string) *Mutex {
	return &Mutex{s: s, pfx: queuePrefix(prefix)}
}

// Lock waits until the mutex is held by m's session, as the head of the
// prefix's queue (see the package documentation): it watches the deletion of the key ahead
// of its own, never polls. When ctx ends or the session expires while it
// waits, it leaves the queue and returns ctx's error or ErrSessionExpired;
// other errors are the router's, and the key is removed then too.
func (m *Mutex) Lock(ctx context.Context) error {
	return m.lock(ctx, false /* try */)
}

// TryLock takes the mutex if no other session holds it or waits for it
// ahead of m's session, and returns ErrLocked otherwise, without waiting.
func (m *Mutex) TryLock(ctx context.Context) error {
	return m.lock(ctx, true /* try */)
}

func (m *Mutex) lock(ctx context.Context, try bool) error {
	key := contenderKey(m.pfx, m.s.id)
	rev, err := enqueue(ctx, m.s, key, nil)
	if err != nil {
		dequeue(ctx, m.s, key) // the put may have applied
		return err
	}
	if _, err := waitTurn(ctx, m.s, m.pfx, key, rev, try); err != nil {
		dequeue(ctx, m.s, key)
		if errors.Is(err, errQueued) {
			return ErrLocked
		}
		return err
	}
	m.key, m.rev = key, rev
	return nil
}

// Unlock releases the mutex: it deletes the session's key, which wakes
// the next waiter. ErrNotLocked if m does not hold it; a lock lost with
// its session is released already, and its Unlock succeeds.
func (m *Mutex) Unlock(ctx context.Context) error {
	if m.key == nil {
		return ErrNotLocked
	}
	if _, err := m.s.client.DeleteIfLease(ctx, m.key, m.s.id); err != nil {
		return err
	}
	m.key, m.rev = nil, 0
	return nil
}

// Key returns the key of m's session in the queue while m holds the lock,
// nil otherwise. The caller owns it.
func (m *Mutex) Key() []byte { return bytes.Clone(m.key) }

// Revision returns the fencing revision of the held lock: the
// CreateRevision of its key, which grows with every hand-over of the lock
// (0 while not held). Pass it to every resource the lock protects, which
// must refuse a revision lower than the highest it has seen.
func (m *Mutex) Revision() uint64 { return m.rev }
