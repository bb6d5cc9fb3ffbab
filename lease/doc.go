// Package lease serves a node's leases: the Lessor counts time for the
// leases whose home shards the node leads, and the Checker tells the
// node's reads whether the lease of a key they found was alive.
//
// # Running a lessor
//
// New takes the node's Store, Engine, Fleet (its router) and Oracle;
// Run loops until Close, calling Step every Config.Interval: refresh the
// timestamp base, load the leases of the home shards the node began to
// lead (and drop those of shards it ceased to lead), start the end of
// every lease past its deadline, write the checkpoints due. A step looks
// only at the replicas whose range holds lease records
// (Store.DescriptorsOverlapping), so its cost does not grow with the
// node's other replicas. Grant,
// KeepAlive, Attach, Status, TimeToLive and Revoke serve the node's lease
// RPCs; Holds says whether the lessor counts a lease's time.
//
// Every goroutine the lessor starts (an end, the deletes of an end's
// keys, the resumption of an end after a change of leader) and every
// wait of its own (the loop's interval, an end's wait for the oracle, a
// keepalive's wait for a checkpoint in flight, and the timeouts of its
// background work) goes through Config.Runtime: real goroutines and the
// wall clock by default. The deterministic simulator (internal/sim)
// supplies a Runtime whose goroutines run in lock-step with its virtual
// clock, and a Store, Engine and Fleet whose calls wait through it, so a
// seed decides every interleaving of the lessors with the fleet. TTLs
// are counted in Config.TTLUnit (a second by default, as etcd counts
// them; the simulator shortens it).
//
// # Where a lease lives
//
// A lease's state is its record, a user key of the reserved system span
// (internal/syskeys: TTL, remaining TTL as last checkpointed, ended or
// not). Its home is the shard owning that key, so a split moves it like
// any key and a snapshot carries it. Each key attached to the lease has an
// index key beside the record's span, written before the key is (see
// Attach), so the lease's end finds every key it must delete wherever the
// keys went since. IDs are oracle timestamps, never handed out twice.
//
// # Counting time (design.md section 12)
//
// Only the home shard's leader counts a lease's time, in memory: a
// keepalive moves the deadline and writes nothing, unless the record
// holds less than the full TTL (then the full TTL is written before the
// keepalive is answered). The invariant is that the record's remaining
// TTL is never below what truly remains, so a new home leader, which
// gives every lease its recorded remaining TTL from when it takes over,
// never cuts a lease short. The remaining TTL of a lease whose TTL
// exceeds Config.CheckpointInterval is written again once it has fallen
// its checkpoint interval below the value written: the larger of
// Config.CheckpointInterval and a quarter of its TTL, so a node's Raft
// writes for checkpoints and the keepalives after them stay at about
// eight per lease per TTL however many leases it holds. A leader change
// extends a lease by at most its checkpoint interval (plus the
// election); so does a split of its home, after which the leader of each
// side loads the leases of its side afresh (even a leader that keeps the
// lease's side). That assumes the checkpoints due committed: one that
// fails (the home drops proposals during a leadership transfer, say) is
// written again at the next round, and until one commits the record
// holds the last checkpoint that did, so the extension grows by the time
// checkpoints failed (the simulator saw 33 ms of it at a 40 ms checkpoint
// interval, under a leadership transfer that timed out and a split). A
// keepalive is answered only
// after the leader confirmed its leadership (a lease read barrier), so
// a deposed leader never acknowledges a keepalive its successor did not
// count; nor does any call learn that a lease does not exist before that
// confirmation (a deposed leader lacks the leases its successor granted).
// A node answers only from the leases it loaded in the term it leads in:
// one that lost the lead and won it back is not ready until it reloads. This is etcd's lessor with its checkpoint bugs (etcd issues
// 9395, 13508, 17132) designed out: checkpoints only ever lower the
// recorded value to what remains, and a keepalive raises it before it is
// acknowledged.
//
// # Ending, and the read fence
//
// A lease ends when its deadline passes on the home leader (checked every
// Config.Interval) or when it is revoked. The end is carried out as
// ordinary writes with revisions: the record is rewritten as ended, at a
// revision E; every key still attached to the lease is deleted with a
// delete conditional on its lease (a key re-attached since survives), each
// on its own shard at its own revision, so watchers see one delete event
// per key; then the index keys and the record go. A home leader that takes
// over a record marked ended finishes the deletes.
//
// Until a key's delete applies, reads must not return it once its lease
// ended. Reads check: a key found with a lease is returned only if the
// lease was alive at the read's revision (for a read of the latest state,
// at a fresh oracle timestamp taken after the read arrived, since an idle
// shard's resolved revision may be old). The home answers with a promise,
// a revision through which the lease is surely alive, computed as the
// home's last oracle timestamp plus half the time the lease has left on
// the home's clock; the reading node caches it, so reads of a leased key
// ask the home about once per half-TTL. An expiry takes its revision E
// from the oracle only after the oracle passed every promise this leader
// made; a new leader's deadline is at or after its predecessor's (the
// invariant above), so its E is above its predecessor's promises as long
// as the oracle's clock runs at least half as fast as the home leader's:
// that is the clock assumption, a factor of two in rate, far wider than
// real clocks drift. Past the last promise the home answers from the
// record as of the read's revision (resolving its shard first), which is
// exact.
//
// A put that attaches a key carries a promise too (at most two seconds
// ahead, Attach), and the key's shard refuses it if stamped above: so a
// put of a leased key applies below E, before the end's conditional delete
// of that key (revisions order each shard's writes), and the delete
// removes it. A revoke waits only for the promises made to attaches; a
// read at a revision between a revoke's E and a key's delete may still
// see the key, as it is concurrent with the revoke, which returns once
// every delete applied. A revoke that fails part way (a delete refused)
// leaves the rest of its end to the loop, which still waits only for the
// attaches' promises; until the deletes apply, a read may see the keys,
// as with a revoke of etcd that failed and applies later. A revoke of a
// lease whose end is under way answers that it does not exist only once
// the end finished, its keys gone.
//
// # Bounds
//
// A lease kept alive in time never ends: its deadline only moves later,
// on this leader and (by the invariant) on the next. A lease not kept
// alive ends no earlier than its TTL after the last keepalive, and no
// later than that plus Config.Interval plus, after a change of home
// leader (or a split of its home), its checkpoint interval, the time its
// checkpoints failed to commit before, and the election. Its keys read as
// absent from its end; their deletes follow within the time the end's
// writes take (one conditional delete and one index delete per key, and
// the record), and a failure part way is resumed by the loop's next round
// or, after a change of home leader, by the next leader.
package lease
