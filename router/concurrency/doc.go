// Package concurrency builds locks and leader elections on the router's
// leases, watches and revisions, with the semantics of etcd's
// clientv3/concurrency: a Session is a lease kept alive; a Mutex and an
// Election are queues of keys attached to sessions' leases.
//
// It owns the layout of its keys under the prefixes callers give it
// (prefix + "/" + a lease ID in hex, one key per session) and nothing
// else: it keeps no state in the fleet beyond those keys, and it does not
// protect resources itself (see "Fencing"). It talks to the fleet only
// through a *router.Client.
//
// # Use
//
//	s, err := concurrency.NewSession(ctx, client, concurrency.SessionOptions{TTL: 10 * time.Second})
//	defer s.Close()                  // revokes the lease: releases everything s holds
//	m := concurrency.NewMutex(s, "locks/report")
//	err = m.Lock(ctx)                // waits its turn
//	rev := m.Revision()              // the fencing revision
//	... act, passing rev to every resource written, until done or until <-s.Done() ...
//	err = m.Unlock(ctx)
//
// An Election is used the same way: Campaign waits until the session
// leads, Proclaim changes the leader's value, Resign hands over, and
// Leader and Observe tell anyone who leads.
//
// # How a lock is taken
//
// Lock writes the session's key under the prefix, attached to its lease
// (router.Client.PutLease), and learns the key's CreateRevision, its place
// in the queue: keys are created at increasing revisions, so the queue is
// the keys sorted by CreateRevision, and its head holds the lock. Lock then
// reads the queue at one revision (ScanAt). If no key is ahead of its own,
// it holds the lock. Otherwise it watches, from just after that revision,
// the key just ahead of its own (the greatest CreateRevision below its
// own) for its deletion, and reads the queue again: the key it waited for
// may have left before the head did. A release thus wakes one waiter.
// A waiter whose context ends or whose session ends leaves the queue.
//
// # What is guaranteed
//
// Given the fleet's guarantees (linearizable writes, reads at a revision
// that are final, the lease clock assumption of package lease):
//
//   - Ordering. The fencing revisions of successive holders of a Mutex (or
//     leaders of an Election) strictly increase, in the order they held it.
//     A contender takes the lock only at a revision at which no key ahead
//     of its own exists, and a key that left the queue never comes back
//     with its old CreateRevision.
//   - Exclusion, by the fleet's account. At any revision at most one
//     session's key heads the queue: the store never says two sessions
//     hold the lock at once.
//   - Liveness. A lock is released when its holder unlocks, when its
//     session is closed (the lease is revoked, deleting its keys before
//     Close returns), or when its lease expires (at most the TTL after its
//     last keepalive, plus the lease's home's checkpoint interval if the
//     home changed leader); the next waiter then takes it.
//
// What is not guaranteed is that a holder knows at once when it lost the
// lock. The lock is held by the lease, and the lease is counted by its
// home's leader, not by the holder: a holder that is paused, or cut off
// from the lease's home, keeps believing it holds the lock after the
// lease expired and the next waiter took it. Session.Done closes when the
// session can no longer keep its lease alive, but no earlier than the
// lease ended on its home, and possibly later (the router's KeepAlive
// gives up once the TTL passed since its last keepalive was answered,
// which is after the home restarted the TTL). So:
//
//   - A holder must stop acting under the lock when Session.Done closes,
//     and must expect to have lost it earlier.
//
// # Fencing
//
// Mutex.Revision (Election.Revision) is the fencing revision: the
// CreateRevision of the holder's key. Every resource the lock protects
// must be handed it with each write, and must refuse a write whose
// revision is below the highest it has accepted. A stale holder then
// cannot overwrite the work of its successor, whose revision is higher.
// Without fencing, the lock excludes only holders whose leases never
// expire while they act. A resource stored in the fleet itself cannot
// check the revision as part of its writes: the router offers no
// transaction comparing a key's CreateRevision with a write (etcd's
// IsOwner comparison), only a compare-and-swap of one key's value, which
// can carry the revision in the value it compares.
//
// # Concurrency
//
// A Session may be used from any goroutine. A Mutex or an Election holds
// the state of one holder and is used by one goroutine at a time (Leader
// and Observe excepted). Two Mutexes (Elections) of one session and one
// prefix share one key: they hold it together.
package concurrency
