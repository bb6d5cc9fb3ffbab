// Package tso is Flotilla's timestamp oracle: the core that hands out the
// fleet's one order of revisions (design.md section 12). It owns the
// timestamp layout, the high-water window and its renewal, and the rules
// that keep timestamps increasing across clock jumps and leader changes.
// It does not own persistence (a Store, which placementd's catalogue
// implements through its Raft group), leadership (the caller opens an
// Oracle when its replica starts leading and closes it when it stops),
// the RPC that serves it (GetTimestamps), or batching per shardnode.
//
// # Timestamps
//
// A Timestamp is a uint64, as in TiKV's placement driver:
//
//	 63                                  18 17              0
//	+--------------------------------------+-----------------+
//	| physical: ms since the Unix epoch    | logical counter |
//	|               46 bits                |     18 bits     |
//	+--------------------------------------+-----------------+
//
// Compose, Physical and Logical build and take apart the two parts. Each
// millisecond holds LogicalRange (2^18 = 262144) timestamps, so one
// oracle hands out at most about 2.6e11 per second; 46 bits of
// milliseconds last until the year 4199. Timestamps compare as integers.
// The physical part follows the oracle's clock but never goes backwards,
// so it may run ahead of real time (after a clock step back, after a
// failover, or when more than LogicalRange are asked for in one
// millisecond); it is an order, not a wall clock to read times from.
//
// # Contract
//
// Next(ctx, count) hands out count consecutive timestamps [first,
// first+count), 1 <= count <= LogicalRange, all in one millisecond
// (Logical(first)+count <= LogicalRange, so first+i and Compose(Physical(
// first), Logical(first)+i) agree). Every timestamp it hands out is
//
//  1. strictly greater than every timestamp handed out before by this
//     Oracle or by any earlier Oracle on the same Store (an earlier
//     placement leader), and
//  2. strictly below the limit persisted through the Store at the time
//     it is handed out.
//
// # The window
//
// The Oracle keeps a limit in the Store: the timestamp no timestamp it
// hands out reaches. It saves limit = max(clock, last handed out) +
// Window (Config.Window, default 3 s), in whole milliseconds. Next hands
// out under the mutex, below the limit it last saved, without I/O; once
// less than a third of the window is left it starts a Save of a new
// limit in the background (one at a time), so that at a steady clock
// Next waits for a Save only if a Save takes longer than two thirds of
// the window. When the window is spent, Next waits for the Save and then
// goes on. A Save completes before any timestamp between the old limit
// and the new one is handed out: the limit Next checks against is raised
// only after the Store's Save returns nil.
//
// The call sequence on a placement leader:
//
//	o, err := tso.Open(ctx, store, tso.Config{}) // Load, then Save a first window
//	...
//	first, err := o.Next(ctx, count)            // from any goroutine
//	...
//	o.Close()                                   // on losing the lead: fails waiters
//
// # Why a new leader starts above everything handed out before
//
// Every timestamp an Oracle handed out was below a limit whose Save had
// returned nil before it was handed out. Open loads the persisted limit
// L, which (see the Store's guarantees) is at least every limit ever
// saved successfully, so every timestamp ever handed out is below L. The
// new Oracle hands out only above L (its "last" starts at L), whatever
// its clock says: a clock behind the old leader's is absorbed because the
// physical part is max(clock, Physical(last)), and the physical part then
// stays ahead of the new leader's clock until the clock catches up. Open
// saves a new limit (max(clock, Physical(L)) + Window) before it returns,
// so a new leader has always committed a Save of its own term before it
// hands out anything.
//
// # Why timestamps follow real time
//
// Each Next reads the clock and the oracle's state after the call
// arrived, and hands out above the highest timestamp handed out by any
// call that took the mutex before it, and so above every call that had
// returned before it began. Hence if a write A got its timestamp before
// write B's oracle call started (the shard leaders' rule: a write is
// stamped only from a call that started after the write arrived), then
// ts(A) < ts(B), whichever shards they hit. The clock only keeps the
// physical part near real time; correctness does not depend on it,
// which is why there are no clock-uncertainty waits. Across a failover
// the same holds provided a deposed leader hands out nothing after the
// new one has begun (see the fencing rule below).
//
// # The last write
//
// A consistent read of the latest state must see every acknowledged
// write. Reading at a fresh timestamp does, but answers a revision above
// every write, while etcd's clients (the Kubernetes API server) expect a
// read made when nothing was written since a write to answer exactly
// that write's revision. So the Oracle also keeps the last write's
// timestamp: NextWrites hands out a batch of which the first writeSpan
// timestamps include every one that stamps a write (the shard leaders'
// stamper knows which of its batch's timestamps go to writes of user
// data and which to Resolves, lease records and other commands that make
// no version a client reads), and records first+writeSpan-1; LastWrite
// answers the highest recorded. Recording the end of a span rather than
// each write leaves the batch in arrival order, and the timestamp
// recorded is still exactly a write's.
//
// A read at L = LastWrite() sees every acknowledged write: a write is
// acknowledged only after its timestamp w was handed out, and so
// recorded, by a call that returned before the read's LastWrite began, so
// w <= L; the read at L then waits until each shard it reads has
// resolved L (every write at or below L applied there, none can commit
// any more), which covers writes stamped at or below L still in flight.
// And a read at L is a read of a past the oracle has closed: every
// timestamp handed out after LastWrite returns is above L, so a Watch
// from L+1 misses nothing the read did not see.
//
// After a leader change the new Oracle does not know the last write: it
// answers the limit it loaded at Open, which is at or above every
// timestamp ever handed out, until its first NextWrites with a write, whose
// timestamps are all above that limit. Between those, L is not a write's
// timestamp (a client sees a revision no write has), but every property
// above holds. Timestamps recorded for writes that were never proposed
// (a failed call, a leader that lost the lead before answering) only
// make L higher: it is then not exactly a write's, never too low.
//
// # What the Store must guarantee
//
// The wiring implements Store on the placement catalogue's Raft group:
//
//   - Save(ctx, limit) returns nil only once limit is committed in the
//     catalogue's log (and applied, or at least ordered before any later
//     Load): every later Load, on any replica, in any later term, returns
//     limit or more. The stored value only grows: apply keeps
//     max(stored, limit) (the Oracle saves increasing limits one at a
//     time, but an old term's Save may commit late).
//   - A Save that fails may or may not have persisted its limit; either is
//     safe. Save returns soon after its ctx ends (Close relies on it).
//   - Load(ctx) returns the value as of a point after every Save that
//     returned nil: on a new leader, a linearizable read (read after the
//     leader has applied an entry of its own term, or a ReadIndex).
//
// Fencing: a deposed placement leader must not go on answering from its
// Oracle once a newer leader may be answering, or a timestamp it hands out
// (below its limit) could be lower than one the new leader already handed
// to a write that has been acknowledged. Close the Oracle as soon as the
// replica sees it no longer leads (the Oracle also fails itself on the
// first failed Save, which is what a deposed leader's Save does), and
// answer a GetTimestamps only after confirming the lead after Next
// returned (a ReadIndex, or a leader lease that ends before any other
// replica can win an election). A new leader's first timestamps are only
// handed out after its first Save commits, which needs a quorum in its
// term, so a confirmation by the old leader that succeeded happened
// before that.
//
// # Concurrency and cost
//
// An Oracle is safe for concurrent use. Next holds the mutex for a few
// comparisons and never across a Save or the clock read; on the fast path
// it allocates nothing (see BenchmarkNext). At most one Save runs at a
// time, on a goroutine that ends with it; Close waits for it.
//
// # Failures
//
// A failed Save (lost leadership, timeout after Config.SaveTimeout) fails
// the Oracle for good: every later Next returns an error wrapping
// ErrSaveFailed and the Store's error, and nothing at or above the last
// limit saved is ever handed out. A leader that still leads opens a new
// Oracle, which loads the limit again. Close fails waiting calls and all
// later ones with ErrClosed. Next fails with ErrBadCount for a count out
// of range, without other effect.
package tso
