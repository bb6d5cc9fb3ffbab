package shard

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"sort"

	"github.com/cockroachdb/pebble/v2"

	"github.com/flotilla-kv/flotilla/internal/keys"
	"github.com/flotilla-kv/flotilla/placement/tso"
)

// Transactions across shards
//
// A transaction that writes keys on several shards runs Percolator's two
// phases over this package's commands; the coordinator is the client
// (package router). It reads at its start revision S (a fresh timestamp),
// buffers its writes, and then:
//
//  1. Prewrite: on every shard it writes, one KindPrewrite command locks
//     each of its keys on that shard and holds the key's new value (or
//     its delete) in the lock. The command is stamped like any write,
//     with a revision P above everything the shard applied before, and
//     each lock records P. It is refused as a whole, writing nothing, if
//     a key was written after S (ErrWriteConflict) or another
//     transaction holds a lock on it (ErrLocked). One key, the primary,
//     is the transaction's commit point; every lock names it.
//  2. Commit: once every prewrite applied, the commit revision is
//     C = max P over the shards. With async commit (a transaction of a
//     few hundred keys at most; the router decides) that is the commit
//     point: the prewrite of the primary lists every other key of the
//     transaction, its secondaries, in the primary lock (Async), so
//     anyone can tell whether every prewrite applied, and the client is
//     answered as soon as the last prewrite's answer arrives. Then, in
//     the background, a KindCommitTxn on the primary's shard turns the
//     primary's lock into a version at C and records the outcome
//     (committed at C) under the primary, and the other shards' locks
//     are committed the same way, by the coordinator or by any reader
//     that meets them. Without async commit, the KindCommitTxn of the
//     primary is the commit point, and the client waits for it.
//
// Why C respects the revision order. C is a revision some shard stamped
// for its prewrite, so no other write anywhere has it. Every prewrite
// applied before the client was answered, so every P, and C, came from
// oracle calls that returned before the answer; a write that starts after
// the answer is stamped by a later call, above C (see stamp.go). And on
// each shard, nothing the transaction overwrites can change between S
// and C: a later write to a locked key is refused (ErrLocked), and an
// earlier one after S made the prewrite fail.
//
// Why reads stay final. A read at r on a shard that applied through r
// sees every version at or below r, except those that a lock still
// holds back: a lock prewritten at P may commit at any C >= P. So every
// read checks the locks of the keys it reads, and a lock with P <= r
// makes it fail with ErrLocked (a *LockedError naming the lock); the
// caller resolves the lock and reads again. A lock with P > r cannot
// commit at or below r and is invisible to the read. The watch feed of
// a shard publishes only below its lowest lock's P (StateMachine's
// published revision), holding back the events above it until the lock
// is gone, so a watch never sees a commit's events out of order.
//
// Resolving a lock. KindCheckTxn on the primary's shard answers the
// transaction's outcome: committed at C, rolled back, or pending. A
// pending transaction whose primary lock outlived its TTL (measured
// between the physical parts of the start revision and a fresh
// timestamp carried in the command, so every replica decides alike) is
// rolled back there and then, unless it commits asynchronously (see
// below: TxnSecondaries); a primary with neither lock nor outcome
// (its prewrite never applied) is recorded rolled back, so that a late
// prewrite of it is refused (ErrTxnAborted) and the transaction can
// never commit. The resolver then commits the lock at C
// (KindCommitTxn) or removes it (KindRollbackTxn).
//
// Async commit: one decision, whoever makes it. An async transaction
// is committed exactly when every one of its prewrites applied; nobody
// may see that happen, so its outcome must be decidable later, by any
// resolver, and decided alike by all. The primary's outcome record is
// the one register of the decision: it is written once, committed at C
// or rolled back, by a Raft command on the primary's shard (so every
// replica writes the same), and a command that would write the other
// value is refused (ErrTxnCommitted, ErrTxnAborted). Three rules keep
// what it says true:
//
//  a. Locks are written by prewrites and never changed; they are
//     removed only by a commit or a rollback, of a key of a transaction
//     whose record was written first (the coordinator and the resolvers
//     step on the primary's shard before the others; a check of an
//     expired async primary removes nothing).
//  b. Committed is recorded only by one who saw every lock: the
//     coordinator, whose prewrites all answered, or a resolver whose
//     check of the primary (KindCheckTxn: TxnSecondaries, the primary
//     lock outlived its TTL) and checks of the secondaries (KindCheckTxn
//     with Keys, asynccommit.go) found the transaction's lock on every
//     key. C is then max P over those locks, the value the coordinator
//     computed too: each lock's P is fixed, and a retried prewrite
//     answers the P of the lock it finds.
//  c. Rolled back is recorded only by one who saw a key without its
//     lock and made sure it never gets one: a check of secondaries
//     leaves a rollback marker on every key it finds without the lock
//     (an outcome record under that key, rolled back), and an async
//     prewrite of a key that holds a marker is refused; the check of
//     the primary that finds neither lock nor record records the
//     rollback, which refuses the primary's prewrite the same way; a
//     coordinator records it when one of its prewrites failed.
//
// If every prewrite applies, then from the last one on each key holds
// its lock until the record says committed (a), so no marker or
// check-of-the-primary rollback can follow, and a resolver that finds a
// key unlocked found it after the commit was recorded: its rollback is
// refused, and it reads the record. If some prewrite never applies,
// nobody ever sees all the locks, so committed is never recorded (b);
// one that is late finds a marker or the primary's record in its way
// (c). A coordinator whose prewrite failed cannot tell which: the
// answer may have been lost, or an earlier attempt may still be on its
// way to an old leader. So it records the rollback itself; if that is
// refused, a resolver recorded the commit, and the transaction
// committed at the recorded C; if its answer is lost too, the
// coordinator says ambiguous. The TTL only decides when a resolver may
// write markers: markers on a live transaction make it fail (a prewrite
// refused), never decide wrongly. Splits move a marker with its key and
// a record with its primary, snapshots carry both ('X' frames), and
// collection (gc.go) treats a marker as any outcome record: it goes
// once the transaction is forgotten, when its prewrites are refused
// anyway.
//
// Locks and outcomes live in the shard's local keys (keys.ShardLock,
// keys.ShardTxn), are copied to the right-hand shard by a split when
// their key (for an outcome, its primary) moves there, and travel in
// snapshots. Every replica keeps its shard's locks in memory too, for
// the checks above. An outcome is kept Config.TxnRecordRetention (an
// hour by default; negative: forever) past its transaction's start, then
// collected (gc.go, which argues why no lock should need it any more:
// the leaders' lock sweepers, locksweep.go, resolve expired locks well
// within that); past that retention a transaction can prewrite nothing,
// and its outcome, if neither record nor primary lock remains, is
// answered ErrTxnForgotten rather than guessed.

// MutationOp says what a transaction does to one key.
type MutationOp uint8

// The mutations.
const (
	// MutationPut sets the key to Value.
	MutationPut MutationOp = iota + 1
	// MutationDelete deletes the key.
	MutationDelete
	// MutationLock writes nothing: it locks a key the transaction read,
	// so that a write to it after the start revision fails the prewrite.
	MutationLock
)

func (op MutationOp) String() string {
	switch op {
	case MutationPut:
		return "put"
	case MutationDelete:
		return "delete"
	case MutationLock:
		return "lock"
	}
	return fmt.Sprintf("mutation(%d)", uint8(op))
}

// Mutation is one key a transaction prewrites.
type Mutation struct {
	Op    MutationOp
	Key   []byte
	Value []byte
}

// TxnStep is the body of the commands of a transaction across shards:
// KindPrewrite, KindCommitTxn, KindRollbackTxn and KindCheckTxn.
type TxnStep struct {
	// Start is the transaction's start revision, which identifies it.
	Start uint64
	// Primary is the transaction's primary key.
	Primary []byte
	// TTL (prewrite) is how long, in milliseconds after the physical
	// time of Start, the locks protect a transaction whose client went
	// away: past it, a resolver may roll the transaction back.
	TTL uint64
	// Mutations (prewrite) are the transaction's keys on this shard.
	Mutations []Mutation
	// OnePhase (prewrite) commits a transaction whose keys are all on
	// this shard in the same command: the checks of a prewrite, then the
	// writes at the command's own revision, and no lock. A one-phase
	// prewrite with Start 0 is a transaction that read nothing (see
	// applyPrewrite): only the lock checks apply.
	OnePhase bool
	// Async (prewrite) marks a prewrite of an async-commit transaction:
	// it is refused on a key that holds the transaction's rollback
	// marker, and its primary lock keeps Secondaries.
	Async bool
	// Secondaries (async prewrite) are the transaction's keys other than
	// the primary, on every shard; only the prewrite of the primary
	// carries them.
	Secondaries [][]byte
	// Commit (commit) is the commit revision.
	Commit uint64
	// Keys (commit, rollback) are the keys whose locks to commit or
	// remove; the primary among them records the outcome. Keys (check)
	// makes the check one of these secondaries (asynccommit.go) instead
	// of the primary.
	Keys [][]byte
	// Now (check) is a fresh timestamp, against which the primary lock's
	// TTL is judged.
	Now uint64
}

// TxnStatus is a transaction's outcome as its primary's shard knows it.
type TxnStatus uint8

// The outcomes.
const (
	// TxnPending: the primary is locked and its TTL has not run out.
	TxnPending TxnStatus = iota + 1
	// TxnCommitted: committed at Result.Revision.
	TxnCommitted
	// TxnRolledBack: rolled back; it can never commit.
	TxnRolledBack
	// TxnSecondaries: the primary lock of an async-commit transaction
	// outlived its TTL, and the transaction's secondaries decide its
	// outcome (asynccommit.go); Result.Revision is the primary's
	// prewrite revision.
	TxnSecondaries
)

func (s TxnStatus) String() string {
	switch s {
	case TxnPending:
		return "pending"
	case TxnCommitted:
		return "committed"
	case TxnRolledBack:
		return "rolled back"
	case TxnSecondaries:
		return "decided by its secondaries"
	}
	return fmt.Sprintf("status(%d)", uint8(s))
}

// TxnLock is the lock a prewrite left on a key.
type TxnLock struct {
	Key []byte
	// Start and Primary identify the transaction.
	Start   uint64
	Primary []byte
	// Prewrite is the revision of the prewrite that wrote the lock: the
	// transaction commits at this revision or above.
	Prewrite uint64
	// TTL is the lock's time to live, in milliseconds after the physical
	// time of Start.
	TTL   uint64
	Op    MutationOp
	Value []byte
	// Async marks the primary lock of an async-commit transaction, and
	// Secondaries are then the transaction's other keys (see
	// asynccommit.go). A secondary lock never has them.
	Async       bool
	Secondaries [][]byte
}

// Expired reports whether the lock's TTL has run out at timestamp now.
func (l *TxnLock) Expired(now uint64) bool {
	return tso.Physical(tso.Timestamp(now)) > tso.Physical(tso.Timestamp(l.Start))+int64(l.TTL)
}

// Errors of transactions across shards.
var (
	// ErrLocked: a key of the request is locked by a transaction that
	// may still commit at or below the revision the request needs.
	// Returned as a *LockedError naming the lock.
	ErrLocked = errors.New("shard: key locked by a transaction")
	// ErrWriteConflict: a prewrite found a key written after the
	// transaction's start. Returned as a *ConflictError.
	ErrWriteConflict = errors.New("shard: write conflict")
	// ErrTxnAborted: the transaction was rolled back (by a resolver, once
	// its TTL ran out): it can neither prewrite its primary nor commit.
	ErrTxnAborted = errors.New("shard: transaction rolled back")
	// ErrTxnCommitted: a rollback of a transaction that committed.
	ErrTxnCommitted = errors.New("shard: transaction committed")
	// ErrTxnForgotten: the transaction started more than
	// Config.TxnRecordRetention ago and its primary's shard holds
	// neither its outcome nor its primary lock: the outcome may have
	// been collected (see gc.go), so the shard cannot tell whether it
	// committed, and refuses to guess.
	ErrTxnForgotten = errors.New("shard: transaction outcome forgotten")
)

// LockedError refuses a request that met a transaction's lock.
type LockedError struct {
	Lock TxnLock
}

func (e *LockedError) Error() string {
	return fmt.Sprintf("shard: key %q locked by the transaction started at %d (primary %q, prewritten at %d)",
		e.Lock.Key, e.Lock.Start, e.Lock.Primary, e.Lock.Prewrite)
}

// Is makes errors.Is(err, ErrLocked) true.
func (e *LockedError) Is(target error) bool { return target == ErrLocked }

// ConflictError refuses a prewrite: Key was written at Revision, after
// the transaction's start.
type ConflictError struct {
	Key      []byte
	Revision uint64
}

func (e *ConflictError) Error() string {
	return fmt.Sprintf("shard: write conflict: key %q written at %d, after the transaction started", e.Key, e.Revision)
}

// Is makes errors.Is(err, ErrWriteConflict) true.
func (e *ConflictError) Is(target error) bool { return target == ErrWriteConflict }

// appendTxnStep appends the encoding of t, the body of a command of kind
// k:
//
//	uvarint start, bytes primary, then
//	prewrite: uvarint ttl, byte flags (bit 0: one phase, bit 1: async),
//	          uvarint n, n times: byte op, bytes key, bytes value (put
//	          only); with async, uvarint m, m times bytes secondary
//	commit:   uvarint commit, uvarint n, n times bytes key
//	rollback: uvarint n, n times bytes key
//	check:    uvarint now; for a check of secondaries (Keys set), then
//	          uvarint n, n times bytes key (a check of the primary ends
//	          after now, as it did before async commit)
func appendTxnStep(dst []byte, k CommandKind, t *TxnStep) []byte {
	dst = binary.AppendUvarint(dst, t.Start)
	dst = appendBytes(dst, t.Primary)
	switch k {
	case KindPrewrite:
		dst = binary.AppendUvarint(dst, t.TTL)
		var flags byte
		if t.OnePhase {
			flags |= prewriteOnePhase
		}
		if t.Async {
			flags |= prewriteAsync
		}
		dst = append(dst, flags)
		dst = binary.AppendUvarint(dst, uint64(len(t.Mutations)))
		for i := range t.Mutations {
			m := &t.Mutations[i]
			dst = append(dst, byte(m.Op))
			dst = appendBytes(dst, m.Key)
			if m.Op == MutationPut {
				dst = appendBytes(dst, m.Value)
			}
		}
		if t.Async {
			dst = appendKeyList(dst, t.Secondaries)
		}
	case KindCommitTxn, KindRollbackTxn:
		if k == KindCommitTxn {
			dst = binary.AppendUvarint(dst, t.Commit)
		}
		dst = binary.AppendUvarint(dst, uint64(len(t.Keys)))
		for _, key := range t.Keys {
			dst = appendBytes(dst, key)
		}
	case KindCheckTxn:
		dst = binary.AppendUvarint(dst, t.Now)
		if len(t.Keys) > 0 {
			dst = appendKeyList(dst, t.Keys)
		}
	}
	return dst
}

// The flags of a prewrite.
const (
	prewriteOnePhase byte = 1 << iota
	prewriteAsync
)

// appendKeyList appends uvarint n, then n times bytes key.
func appendKeyList(dst []byte, keys [][]byte) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(keys)))
	for _, k := range keys {
		dst = appendBytes(dst, k)
	}
	return dst
}

// decodeKeyList reads what appendKeyList wrote; the keys alias d's buffer.
func decodeKeyList(d *decoder) [][]byte {
	n := d.count(1)
	var out [][]byte
	for range n {
		k := d.bytes()
		if d.err != nil {
			break
		}
		out = append(out, k)
	}
	return out
}

// decodeTxnStep decodes the body of a command of kind k.
func decodeTxnStep(d *decoder, k CommandKind) *TxnStep {
	t := &TxnStep{Start: d.uvarint(), Primary: d.bytes()}
	switch k {
	case KindPrewrite:
		t.TTL = d.uvarint()
		flags := d.byte()
		if flags&^(prewriteOnePhase|prewriteAsync) != 0 {
			d.fail(fmt.Errorf("unknown prewrite flags %#x", flags))
		}
		t.OnePhase, t.Async = flags&prewriteOnePhase != 0, flags&prewriteAsync != 0
		n := d.count(2)
		for range n {
			m := Mutation{Op: MutationOp(d.byte()), Key: d.bytes()}
			switch m.Op {
			case MutationPut:
				m.Value = d.bytes()
			case MutationDelete, MutationLock:
			default:
				d.fail(fmt.Errorf("unknown mutation %d", m.Op))
			}
			if d.err != nil {
				break
			}
			t.Mutations = append(t.Mutations, m)
		}
		if t.Async && d.err == nil {
			t.Secondaries = decodeKeyList(d)
		}
	case KindCommitTxn, KindRollbackTxn:
		if k == KindCommitTxn {
			t.Commit = d.uvarint()
		}
		t.Keys = decodeKeyList(d)
	case KindCheckTxn:
		t.Now = d.uvarint()
		if len(d.buf) > 0 && d.err == nil {
			// The body is the command's last field: what follows now
			// is the keys of a check of secondaries.
			t.Keys = decodeKeyList(d)
		}
	}
	return t
}

// check checks t, the body of a command of kind k, against cfg.
func (t *TxnStep) check(cfg *Config, k CommandKind) error {
	if t.Start == 0 && !(k == KindPrewrite && t.OnePhase) {
		return fmt.Errorf("%w: a %s without a start revision", ErrBadCommand, k)
	}
	if err := checkKey(cfg, t.Primary); err != nil {
		return err
	}
	switch k {
	case KindPrewrite:
		if len(t.Mutations) == 0 || len(t.Mutations) > cfg.MaxBatchOps {
			return fmt.Errorf("%w: %d mutations, limit %d", ErrBatchTooLarge, len(t.Mutations), cfg.MaxBatchOps)
		}
		seen := make(map[string]struct{}, len(t.Mutations))
		for i := range t.Mutations {
			m := &t.Mutations[i]
			if err := checkKV(cfg, m.Key, m.Value); err != nil {
				return err
			}
			if m.Op != MutationPut && len(m.Value) != 0 {
				return fmt.Errorf("%w: a %s mutation with a value", ErrBadCommand, m.Op)
			}
			if m.Op == MutationLock && t.Start == 0 {
				return fmt.Errorf("%w: a read lock in a transaction without a start revision", ErrBadCommand)
			}
			if _, dup := seen[string(m.Key)]; dup {
				return fmt.Errorf("%w: key %q mutated twice", ErrBadCommand, m.Key)
			}
			seen[string(m.Key)] = struct{}{}
		}
		if err := t.checkSecondaries(cfg, seen); err != nil {
			return err
		}
	case KindCommitTxn, KindRollbackTxn:
		if k == KindCommitTxn && t.Commit <= t.Start {
			return fmt.Errorf("%w: commit revision %d not above the start %d", ErrBadCommand, t.Commit, t.Start)
		}
		if len(t.Keys) == 0 || len(t.Keys) > cfg.MaxBatchOps {
			return fmt.Errorf("%w: %d keys, limit %d", ErrBatchTooLarge, len(t.Keys), cfg.MaxBatchOps)
		}
		for _, key := range t.Keys {
			if err := checkKey(cfg, key); err != nil {
				return err
			}
		}
	case KindCheckTxn:
		if len(t.Keys) > 0 {
			return checkSecondaryKeys(cfg, t.Primary, t.Keys)
		}
		if t.Now == 0 {
			return fmt.Errorf("%w: a check without a timestamp", ErrBadCommand)
		}
	}
	return nil
}

// checkAgainst checks that the keys t names are in d: a check's primary,
// a prewrite's mutations, the keys of a commit or rollback.
func (t *TxnStep) checkAgainst(d *Descriptor, k CommandKind) error {
	notIn := func(key []byte) error {
		return fmt.Errorf("%w: key %q, shard %s", ErrKeyNotInShard, key, d)
	}
	switch k {
	case KindCheckTxn:
		if len(t.Keys) > 0 {
			// A check of secondaries: the primary is elsewhere.
			for _, key := range t.Keys {
				if !d.ContainsKey(key) {
					return notIn(key)
				}
			}
		} else if !d.ContainsKey(t.Primary) {
			return notIn(t.Primary)
		}
	case KindPrewrite:
		for i := range t.Mutations {
			if !d.ContainsKey(t.Mutations[i].Key) {
				return notIn(t.Mutations[i].Key)
			}
		}
	default:
		for _, key := range t.Keys {
			if !d.ContainsKey(key) {
				return notIn(key)
			}
		}
	}
	return nil
}

// Lock records: uvarint start, prewrite, ttl; bytes primary; byte op;
// bytes value; then, for the primary lock of an async-commit
// transaction only, byte flags (bit 0: async), uvarint n, n times bytes
// secondary.
func appendLockRecord(dst []byte, l *TxnLock) []byte {
	dst = binary.AppendUvarint(dst, l.Start)
	dst = binary.AppendUvarint(dst, l.Prewrite)
	dst = binary.AppendUvarint(dst, l.TTL)
	dst = appendBytes(dst, l.Primary)
	dst = append(dst, byte(l.Op))
	dst = appendBytes(dst, l.Value)
	if l.Async {
		dst = append(dst, lockAsync)
		dst = appendKeyList(dst, l.Secondaries)
	}
	return dst
}

// lockAsync is the flag of an async-commit transaction's primary lock.
const lockAsync byte = 1

func decodeLockRecord(key, v []byte) (TxnLock, error) {
	d := decoder{buf: v}
	l := TxnLock{Key: bytes.Clone(key), Start: d.uvarint(), Prewrite: d.uvarint(), TTL: d.uvarint()}
	l.Primary = bytes.Clone(d.bytes())
	l.Op = MutationOp(d.byte())
	if v := d.bytes(); len(v) > 0 { // no value is nil, as in setLock
		l.Value = bytes.Clone(v)
	}
	if len(d.buf) > 0 && d.err == nil {
		if f := d.byte(); f != lockAsync {
			d.fail(fmt.Errorf("unknown lock flags %#x", f))
		}
		l.Async = true
		for _, k := range decodeKeyList(&d) {
			l.Secondaries = append(l.Secondaries, bytes.Clone(k))
		}
	}
	if err := d.finish(); err != nil {
		return TxnLock{}, err
	}
	if l.Op < MutationPut || l.Op > MutationLock || l.Start == 0 || l.Prewrite == 0 {
		return TxnLock{}, fmt.Errorf("lock of %q: bad fields %+v", key, l)
	}
	return l, nil
}

// Outcome records, under keys.ShardTxn + primary + 8-byte start: byte
// status, uvarint commit revision, uvarint decided: a timestamp at or
// below the moment the record was written (the shard's resolved revision
// then, or the command's fresh timestamp if higher), from which its
// retention is counted (gc.go). Records written before decided was kept
// end after the commit revision and read as decided 0.
func txnRecordKey(shard ShardID, primary []byte, start uint64) []byte {
	k := keys.ShardKey(uint64(shard), keys.ShardTxn)
	k = append(k, primary...)
	return binary.BigEndian.AppendUint64(k, start)
}

func decodeTxnRecord(v []byte) (st TxnStatus, rev, decided uint64, err error) {
	d := decoder{buf: v}
	st, rev = TxnStatus(d.byte()), d.uvarint()
	if d.err == nil && len(d.buf) > 0 {
		decided = d.uvarint()
	}
	if err := d.finish(); err != nil {
		return 0, 0, 0, err
	}
	if st != TxnCommitted && st != TxnRolledBack {
		return 0, 0, 0, fmt.Errorf("bad transaction status %d", st)
	}
	return st, rev, decided, nil
}

// lockView is the set of a shard's locks as readers see it: sorted by key,
// never modified once published.
type lockView struct {
	locks []TxnLock
	// minPrewrite is the lowest Prewrite among locks (0: none).
	minPrewrite uint64
}

// find returns the first lock of [start, end) (just start, with point;
// an empty end is +inf) prewritten at or below rev, or nil.
func (v *lockView) find(start, end []byte, point bool, rev uint64) *TxnLock {
	if v == nil || len(v.locks) == 0 || v.minPrewrite > rev {
		return nil
	}
	i := sort.Search(len(v.locks), func(i int) bool { return bytes.Compare(v.locks[i].Key, start) >= 0 })
	for ; i < len(v.locks); i++ {
		l := &v.locks[i]
		if point && !bytes.Equal(l.Key, start) || !point && len(end) != 0 && bytes.Compare(l.Key, end) >= 0 {
			return nil
		}
		if l.Prewrite <= rev {
			return l
		}
		if point {
			return nil
		}
	}
	return nil
}

// checkLocks refuses a read of [start, end) (just start, with point) at
// rev on this replica if a lock there may still commit at or below rev.
func (sm *StateMachine) checkLocks(start, end []byte, point bool, rev uint64) error {
	if l := sm.lockView.Load().find(start, end, point, rev); l != nil {
		return &LockedError{Lock: cloneLock(l)}
	}
	return nil
}

func cloneLock(l *TxnLock) TxnLock {
	c := *l
	c.Key, c.Primary, c.Value = bytes.Clone(l.Key), bytes.Clone(l.Primary), bytes.Clone(l.Value)
	c.Secondaries = nil
	for _, k := range l.Secondaries {
		c.Secondaries = append(c.Secondaries, bytes.Clone(k))
	}
	return c
}

// loadLocks reads shard's locks from r.
func loadLocks(r pebble.Reader, shard ShardID) (map[string]TxnLock, error) {
	lo, hi := keys.ShardSpan(uint64(shard), keys.ShardLock)
	it, err := r.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: hi})
	if err != nil {
		return nil, err
	}
	locks := make(map[string]TxnLock)
	for valid := it.First(); valid; valid = it.Next() {
		v, err := it.ValueAndErr()
		if err != nil {
			it.Close()
			return nil, err
		}
		l, err := decodeLockRecord(it.Key()[len(lo):], v)
		if err != nil {
			it.Close()
			return nil, fmt.Errorf("%w: shard %d: %w", ErrBadDescriptor, shard, err)
		}
		locks[string(l.Key)] = l
	}
	if err := it.Close(); err != nil {
		return nil, err
	}
	return locks, nil
}

// setLock writes l and keeps it in memory.
func (sm *StateMachine) setLock(b *pebble.Batch, l TxnLock) {
	if len(l.Value) == 0 {
		l.Value = nil
	}
	sm.locks[string(l.Key)] = l
	sm.locksChanged = true
	k := append(keys.ShardKey(uint64(sm.shard), keys.ShardLock), l.Key...)
	mustWrite(b.Set(k, appendLockRecord(nil, &l), nil))
}

// dropLock deletes key's lock.
func (sm *StateMachine) dropLock(b *pebble.Batch, key []byte) {
	delete(sm.locks, string(key))
	sm.locksChanged = true
	k := append(keys.ShardKey(uint64(sm.shard), keys.ShardLock), key...)
	mustWrite(b.Delete(k, nil))
}

// publishLocks makes the worker's locks the readers' view, if they
// changed. Called by Committed, before it publishes the resolved revision.
func (sm *StateMachine) publishLocks() {
	if !sm.locksChanged {
		return
	}
	sm.locksChanged = false
	v := &lockView{locks: make([]TxnLock, 0, len(sm.locks))}
	for _, l := range sm.locks {
		v.locks = append(v.locks, l)
		if v.minPrewrite == 0 || l.Prewrite < v.minPrewrite {
			v.minPrewrite = l.Prewrite
		}
	}
	slices.SortFunc(v.locks, func(a, b TxnLock) int { return bytes.Compare(a.Key, b.Key) })
	sm.lockView.Store(v)
}

// publishedBound is the revision below which the shard's data is final
// for watchers: the last write's, or just below the lowest lock's
// prewrite, which may commit at that revision.
func (sm *StateMachine) publishedBound() uint64 {
	bound := sm.lastRev
	for _, l := range sm.locks {
		bound = min(bound, l.Prewrite-1)
	}
	return bound
}

// lockedBy returns the lock on key held by a transaction other than
// start's, if any.
func (sm *StateMachine) lockedBy(key []byte, start uint64) (TxnLock, bool) {
	l, ok := sm.locks[string(key)]
	if !ok || l.Start == start {
		return TxnLock{}, false
	}
	return l, true
}

// checkUnlocked refuses a write of c that touches a locked key: only the
// lock's transaction may write it, by committing.
func (sm *StateMachine) checkUnlocked(c *Command) error {
	if len(sm.locks) == 0 {
		return nil
	}
	refuse := func(key []byte) error {
		if l, ok := sm.locks[string(key)]; ok {
			return &LockedError{Lock: cloneLock(&l)}
		}
		return nil
	}
	switch c.Kind {
	case KindPut, KindDelete, KindCompareAndSwap:
		return refuse(c.Key)
	case KindBatch:
		for i := range c.Ops {
			if err := refuse(c.Ops[i].Key); err != nil {
				return err
			}
		}
	case KindTxn:
		return sm.checkTxnUnlocked(c.Txn)
	}
	return nil
}

// checkTxnUnlocked refuses t if any key or range it compares, reads or
// writes, in either branch, holds a lock.
func (sm *StateMachine) checkTxnUnlocked(t *Txn) error {
	in := func(key, end []byte, ranged bool) error {
		for _, l := range sm.locks {
			if bytes.Equal(l.Key, key) || ranged && bytes.Compare(l.Key, key) >= 0 && (len(end) == 0 || bytes.Compare(l.Key, end) < 0) {
				return &LockedError{Lock: cloneLock(&l)}
			}
		}
		return nil
	}
	for i := range t.Compares {
		if err := in(t.Compares[i].Key, t.Compares[i].End, t.Compares[i].Ranged); err != nil {
			return err
		}
	}
	for _, ops := range [][]TxnOp{t.Then, t.Else} {
		for i := range ops {
			op := &ops[i]
			if op.Kind == TxnNested {
				if err := sm.checkTxnUnlocked(op.Txn); err != nil {
					return err
				}
				continue
			}
			if err := in(op.Key, op.End, op.Ranged); err != nil {
				return err
			}
		}
	}
	return nil
}

// txnRecord reads the outcome of the transaction (primary, start), if
// this shard recorded one.
func (sm *StateMachine) txnRecord(b *pebble.Batch, primary []byte, start uint64) (TxnStatus, uint64, bool) {
	st, rev, _, ok := sm.txnRecordDecided(b, primary, start)
	return st, rev, ok
}

// txnRecordDecided is txnRecord, also returning when the record was
// written, as it says (0: not known).
func (sm *StateMachine) txnRecordDecided(b *pebble.Batch, primary []byte, start uint64) (st TxnStatus, rev, decided uint64, ok bool) {
	v, closer, err := b.Get(txnRecordKey(sm.shard, primary, start))
	if errors.Is(err, pebble.ErrNotFound) {
		return 0, 0, 0, false
	}
	mustRead(err)
	defer closer.Close()
	st, rev, decided, err = decodeTxnRecord(v)
	if err != nil {
		panic(fmt.Sprintf("shard: shard %d: outcome of the transaction %q@%d: %v", sm.shard, primary, start, err))
	}
	return st, rev, decided, true
}

// setTxnRecord writes the outcome of (primary, start): st, at commit
// revision rev; now is the command's fresh timestamp, if it has one (0:
// none), for the record's decided time.
func (sm *StateMachine) setTxnRecord(b *pebble.Batch, primary []byte, start uint64, st TxnStatus, rev, now uint64) {
	v := binary.AppendUvarint([]byte{byte(st)}, rev)
	v = binary.AppendUvarint(v, max(sm.lastRev, now))
	mustWrite(b.Set(txnRecordKey(sm.shard, primary, start), v, nil))
}

// applyPrewrite locks the mutations' keys at c.Revision, or refuses the
// whole prewrite, writing nothing. A key this transaction locked already
// (a retried prewrite) keeps its lock; the result's revision is the
// highest prewrite revision among the command's locks, the one the
// transaction must commit at or above.
func (sm *StateMachine) applyPrewrite(b *pebble.Batch, c *Command) (*Result, error) {
	t := c.Step
	if t.OnePhase && t.Start == 0 {
		return sm.applyBlindOnePhase(b, c)
	}
	if sm.holdsKey(t.Primary) {
		if st, _, ok := sm.txnRecord(b, t.Primary, t.Start); ok {
			if st == TxnRolledBack {
				return nil, fmt.Errorf("%w: transaction %d (primary %q)", ErrTxnAborted, t.Start, t.Primary)
			}
			return nil, fmt.Errorf("%w: transaction %d prewritten after its commit", ErrTxnCommitted, t.Start)
		}
	}
	if sm.cfg.forgotten(t.Start, c.Revision) {
		// Its outcome record may be collected from here on (gc.go).
		return nil, fmt.Errorf("%w: transaction %d prewritten at %d, past the record retention", ErrTxnAborted, t.Start, c.Revision)
	}
	if t.Async {
		if err := sm.checkRollbackMarkers(b, t); err != nil {
			return nil, err
		}
	}
	rev := uint64(0)
	for i := range t.Mutations {
		m := &t.Mutations[i]
		if l, ok := sm.locks[string(m.Key)]; ok {
			if l.Start != t.Start {
				return nil, &LockedError{Lock: cloneLock(&l)}
			}
			rev = max(rev, l.Prewrite)
			continue
		}
		cur, ok := sm.latest(b, m.Key)
		if ok && cur.mod > t.Start {
			return nil, &ConflictError{Key: bytes.Clone(m.Key), Revision: cur.mod}
		}
		if !ok && t.Start < sm.compactRev {
			// A deleted key's history below the compaction point may
			// have been collected (gc.go): it may have been written
			// after the start, as far as the shard can tell.
			return nil, &ConflictError{Key: bytes.Clone(m.Key), Revision: sm.compactRev}
		}
	}
	if t.OnePhase {
		for i := range t.Mutations {
			switch m := &t.Mutations[i]; m.Op {
			case MutationPut:
				sm.setUser(b, m.Key, m.Value, c.Revision, 0)
			case MutationDelete:
				sm.deleteUser(b, m.Key, c.Revision, 0)
			}
		}
		return &Result{Succeeded: true, Revision: c.Revision}, nil
	}
	for i := range t.Mutations {
		m := &t.Mutations[i]
		if _, ok := sm.locks[string(m.Key)]; ok {
			continue
		}
		l := TxnLock{Key: bytes.Clone(m.Key), Start: t.Start, Primary: bytes.Clone(t.Primary),
			Prewrite: c.Revision, TTL: t.TTL, Op: m.Op, Value: bytes.Clone(m.Value)}
		if t.Async && bytes.Equal(m.Key, t.Primary) {
			l.Async = true
			for _, k := range t.Secondaries {
				l.Secondaries = append(l.Secondaries, bytes.Clone(k))
			}
		}
		sm.setLock(b, l)
		rev = c.Revision
	}
	return &Result{Succeeded: true, Revision: rev}, nil
}

// applyBlindOnePhase commits a one-phase transaction that read nothing
// (Start 0) at c.Revision, or refuses it, writing nothing, if another
// transaction locks one of its keys. It has no snapshot to protect, so
// no write after some start can conflict with it: it is as if it
// started just below c.Revision, and nothing else on the shard is
// applied between the two. The lock check is what it keeps of a
// prewrite: a lock prewritten at P may still commit at any C >= P, so
// writing over it could order this write below that commit, and reads
// below c.Revision could not be final. Nothing identifies it afterwards
// (no lock, no outcome record), so it needs no start revision, and the
// client saves the oracle call that would fetch one.
func (sm *StateMachine) applyBlindOnePhase(b *pebble.Batch, c *Command) (*Result, error) {
	t := c.Step
	for i := range t.Mutations {
		m := &t.Mutations[i]
		if l, ok := sm.locks[string(m.Key)]; ok {
			return nil, &LockedError{Lock: cloneLock(&l)}
		}
	}
	for i := range t.Mutations {
		switch m := &t.Mutations[i]; m.Op {
		case MutationPut:
			sm.setUser(b, m.Key, m.Value, c.Revision, 0)
		case MutationDelete:
			sm.deleteUser(b, m.Key, c.Revision, 0)
		}
	}
	return &Result{Succeeded: true, Revision: c.Revision}, nil
}

// recordsOutcome reports whether a commit or rollback t records its
// transaction's outcome here: it names the primary, which this shard
// holds.
func (sm *StateMachine) recordsOutcome(t *TxnStep) bool {
	return sm.holdsKey(t.Primary) && slices.ContainsFunc(t.Keys, func(k []byte) bool { return bytes.Equal(k, t.Primary) })
}

// holdsKey reports whether key is in the shard's range.
func (sm *StateMachine) holdsKey(key []byte) bool {
	d := sm.desc.Load()
	return d != nil && d.ContainsKey(key)
}

// applyCommitTxn writes the locked values of c's keys at the commit
// revision and removes their locks; on the primary's shard it records
// the outcome first. A key without a lock of the transaction was
// committed already (a secondary is never rolled back unless the primary
// was, and then nobody commits it).
func (sm *StateMachine) applyCommitTxn(b *pebble.Batch, c *Command) (*Result, error) {
	t := c.Step
	for _, key := range t.Keys {
		if l, ok := sm.locks[string(key)]; ok && l.Start == t.Start && t.Commit < l.Prewrite {
			return nil, fmt.Errorf("%w: commit revision %d below the prewrite of %q at %d", ErrBadCommand, t.Commit, key, l.Prewrite)
		}
	}
	if sm.recordsOutcome(t) {
		st, rev, ok := sm.txnRecord(b, t.Primary, t.Start)
		switch {
		case ok && st == TxnRolledBack:
			return nil, fmt.Errorf("%w: transaction %d (primary %q)", ErrTxnAborted, t.Start, t.Primary)
		case ok && rev != t.Commit:
			return nil, fmt.Errorf("%w: transaction %d committed at %d, not %d", ErrBadCommand, t.Start, rev, t.Commit)
		case !ok:
			if l, locked := sm.locks[string(t.Primary)]; !locked || l.Start != t.Start {
				if sm.forgottenUndecided(t.Primary, t.Start) {
					return nil, fmt.Errorf("%w: commit of transaction %d (primary %q)", ErrTxnForgotten, t.Start, t.Primary)
				}
				// Neither lock nor outcome: the prewrite never applied.
				return nil, fmt.Errorf("%w: transaction %d holds no lock on its primary %q", ErrTxnAborted, t.Start, t.Primary)
			}
			sm.setTxnRecord(b, t.Primary, t.Start, TxnCommitted, t.Commit, max(t.Commit, t.Now))
		}
	}
	for _, key := range t.Keys {
		l, ok := sm.locks[string(key)]
		if !ok || l.Start != t.Start {
			continue
		}
		switch l.Op {
		case MutationPut:
			sm.setUser(b, key, l.Value, t.Commit, 0)
		case MutationDelete:
			sm.deleteUser(b, key, t.Commit, 0)
		}
		sm.dropLock(b, key)
	}
	if t.Commit > sm.lastRev {
		sm.setLastRevision(t.Commit)
	}
	return &Result{Succeeded: true, Revision: t.Commit}, nil
}

// applyRollbackTxn removes the locks of c's transaction on c's keys; on
// the primary's shard it records the rollback first, and refuses if the
// transaction committed.
func (sm *StateMachine) applyRollbackTxn(b *pebble.Batch, c *Command) (*Result, error) {
	t := c.Step
	if sm.recordsOutcome(t) {
		st, rev, ok := sm.txnRecord(b, t.Primary, t.Start)
		if ok && st == TxnCommitted {
			return nil, fmt.Errorf("%w: transaction %d at %d", ErrTxnCommitted, t.Start, rev)
		}
		if !ok && sm.forgottenUndecided(t.Primary, t.Start) {
			return nil, fmt.Errorf("%w: rollback of transaction %d (primary %q)", ErrTxnForgotten, t.Start, t.Primary)
		}
		if !ok {
			sm.setTxnRecord(b, t.Primary, t.Start, TxnRolledBack, 0, t.Now)
		}
	}
	for _, key := range t.Keys {
		if l, ok := sm.locks[string(key)]; ok && l.Start == t.Start {
			sm.dropLock(b, key)
		}
	}
	return &Result{Succeeded: true}, nil
}

// applyCheckTxn answers the outcome of c's transaction from its primary
// (see the notes above), rolling it back if its primary lock expired or
// was never written; an expired primary lock of an async-commit
// transaction is answered TxnSecondaries instead, writing nothing. With
// Keys, it is a check of secondaries (asynccommit.go). A forgotten transaction with neither is refused
// with ErrTxnForgotten, writing nothing (see gc.go).
func (sm *StateMachine) applyCheckTxn(b *pebble.Batch, c *Command) (*Result, error) {
	t := c.Step
	if len(t.Keys) > 0 {
		return sm.applyCheckSecondaries(b, t), nil
	}
	if st, rev, ok := sm.txnRecord(b, t.Primary, t.Start); ok {
		return &Result{Succeeded: true, Status: st, Revision: rev}, nil
	}
	if l, ok := sm.locks[string(t.Primary)]; ok && l.Start == t.Start {
		if !l.Expired(t.Now) {
			return &Result{Succeeded: true, Status: TxnPending}, nil
		}
		if l.Async {
			// Expiry alone decides nothing: the transaction may have
			// committed when its last prewrite applied (asynccommit.go).
			return &Result{Succeeded: true, Status: TxnSecondaries, Revision: l.Prewrite}, nil
		}
		sm.dropLock(b, t.Primary)
	} else if sm.forgottenUndecided(t.Primary, t.Start) {
		return nil, fmt.Errorf("%w: check of transaction %d (primary %q)", ErrTxnForgotten, t.Start, t.Primary)
	}
	sm.setTxnRecord(b, t.Primary, t.Start, TxnRolledBack, 0, t.Now)
	return &Result{Succeeded: true, Status: TxnRolledBack}, nil
}

// splitLocks hands the locks of keys at or above key, and the outcomes
// of transactions whose primary is, to the right-hand shard to (if this
// node hosts it; else they go with the data), and forgets them here.
func (sm *StateMachine) splitLocks(b *pebble.Batch, key []byte, to ShardID, hosted bool) {
	for k, l := range sm.locks {
		if bytes.Compare(l.Key, key) < 0 {
			continue
		}
		if hosted {
			rk := append(keys.ShardKey(uint64(to), keys.ShardLock), l.Key...)
			mustWrite(b.Set(rk, appendLockRecord(nil, &l), nil))
		}
		sm.dropLock(b, []byte(k))
	}
	lo, hi := keys.ShardSpan(uint64(sm.shard), keys.ShardTxn)
	it, err := b.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: hi})
	mustRead(err)
	type record struct{ k, v []byte }
	var moving []record
	for valid := it.First(); valid; valid = it.Next() {
		k := it.Key()
		if len(k) < len(lo)+8 {
			panic(fmt.Sprintf("shard: shard %d: malformed transaction record key %x", sm.shard, k))
		}
		if bytes.Compare(k[len(lo):len(k)-8], key) < 0 {
			continue
		}
		v, err := it.ValueAndErr()
		mustRead(err)
		moving = append(moving, record{bytes.Clone(k), bytes.Clone(v)})
	}
	mustRead(it.Error())
	mustRead(it.Close())
	for _, r := range moving {
		if hosted {
			primary, start := r.k[len(lo):len(r.k)-8], binary.BigEndian.Uint64(r.k[len(r.k)-8:])
			mustWrite(b.Set(txnRecordKey(to, primary, start), r.v, nil))
		}
		mustWrite(b.Delete(r.k, nil))
	}
}
