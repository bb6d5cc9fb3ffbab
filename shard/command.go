package shard

import (
	"encoding/binary"
	"fmt"

	"github.com/flotilla-kv/flotilla/multiraft"
)

// CommandKind says what a Command does.
type CommandKind uint8

// The kinds of command. Zero is not a kind.
const (
	// KindPut sets Key to Value.
	KindPut CommandKind = iota + 1
	// KindDelete deletes Key (deleting an absent key succeeds).
	KindDelete
	// KindCompareAndSwap sets Key to Value if Key currently holds Expected
	// (or is absent, with ExpectAbsent).
	KindCompareAndSwap
	// KindBatch applies Ops atomically, in order.
	KindBatch
	// KindSplit splits the shard at Key.
	KindSplit
	// KindChecksum computes a checksum of the shard's data as of the
	// command's log index, on every replica, for consistency checks.
	KindChecksum
	// KindResolve writes nothing: it raises the shard's resolved revision
	// (the revision of its last write) to the command's Revision, if that
	// is higher, so that nothing at or below it can commit afterwards. A
	// read at a revision the shard has not reached, and a watch's progress
	// while no key changes, resolve the shard (see Store.Resolve).
	KindResolve
	// KindCompact raises the shard's compaction point to Revision: reads
	// and watches below it are refused from then on, and writes prune the
	// versions no read at it can see (see Store.Compact).
	KindCompact
	// KindTxn runs Txn, a compare-then-else transaction on the shard's
	// keys (see txn.go).
	KindTxn
	// KindPrewrite, KindCommitTxn, KindRollbackTxn and KindCheckTxn are
	// the steps of a transaction across shards, with Step as their body
	// (see percolator.go). A prewrite is stamped like a write; the others
	// carry no revision of their own. None is exactly-once (their
	// ClientID is 0): each is idempotent by the transaction's start;
	// except a one-phase prewrite, which writes versions at once and so,
	// like a Batch, is exactly-once when it carries a ClientID.
	KindPrewrite
	KindCommitTxn
	KindRollbackTxn
	KindCheckTxn
	// KindGC collects history no read can need any more: the deleted
	// keys and the transaction outcome records GC names, each only if
	// the rules of gc.go hold for it when the command applies. It is
	// stamped like a Resolve and raises the shard's resolved revision
	// the same way (see Store.CollectGarbage).
	KindGC
)

// writesData reports whether commands of kind k write user data.
func (k CommandKind) writesData() bool {
	return k == KindPut || k == KindDelete || k == KindCompareAndSwap || k == KindBatch || k == KindTxn || k == KindPrewrite
}

// stamped reports whether commands of kind k carry a revision, which the
// Store takes from the oracle before proposing them.
func (k CommandKind) stamped() bool {
	return k.writesData() || k == KindResolve || k == KindGC
}

func (k CommandKind) String() string {
	switch k {
	case KindPut:
		return "put"
	case KindDelete:
		return "delete"
	case KindCompareAndSwap:
		return "cas"
	case KindBatch:
		return "batch"
	case KindSplit:
		return "split"
	case KindChecksum:
		return "checksum"
	case KindResolve:
		return "resolve"
	case KindCompact:
		return "compact"
	case KindTxn:
		return "txn"
	case KindPrewrite:
		return "prewrite"
	case KindCommitTxn:
		return "commit-txn"
	case KindRollbackTxn:
		return "rollback-txn"
	case KindCheckTxn:
		return "check-txn"
	case KindGC:
		return "gc"
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

// Header is carried by every command.
type Header struct {
	// ClientID and Seq identify the request for exactly-once execution (see
	// the package doc). ClientID 0 opts out: the command is applied every
	// time it is committed, and Seq is ignored.
	ClientID uint64
	Seq      uint64
	// Epoch is the shard epoch the client routed with; the zero Epoch skips
	// the epoch check.
	Epoch Epoch
}

// Op is one operation of a Batch command.
type Op struct {
	// Delete deletes Key; otherwise Key is set to Value.
	Delete bool
	Key    []byte
	Value  []byte
}

// SplitReplica maps a replica of the shard being split to the replica of
// the new right-hand shard on the same node.
type SplitReplica struct {
	Old multiraft.ReplicaID
	New multiraft.ReplicaID
}

// Command is a write proposed to a shard's Raft group. Which fields matter
// depends on Kind; the others must be zero. A decoded Command aliases the
// bytes it was decoded from.
type Command struct {
	Kind   CommandKind
	Header Header

	// Revision is the revision of a Put, Delete, CompareAndSwap or Batch:
	// every version it writes is at Revision, which must be above the
	// revision of every earlier write to the shard (Apply refuses it
	// otherwise, with ErrStaleRevision). A Resolve carries the revision it
	// resolves the shard to (so does a GC), and a Compact the revision it
	// compacts to.
	// The Store stamps it (see Store.Start), except a Compact's; other
	// kinds carry none.
	Revision uint64

	// Key: the key of a Put, Delete or CompareAndSwap; the split key of a
	// Split (the first key of the new right-hand shard).
	Key []byte
	// Value: the value of a Put; the new value of a CompareAndSwap.
	Value []byte
	// Lease attaches a Put's key to a lease (0: to none, detaching it
	// from any). LeaseUntil is the revision through which the lease's home
	// promised the lease stays alive (see package lease): Apply refuses
	// the Put with ErrLeasePromise if Revision is above it, so a put of a
	// leased key always applies below the revision at which its lease
	// expires, and the expiry's delete, stamped later, removes it.
	//
	// On a Delete, a non-zero Lease makes the delete conditional: it
	// deletes Key only if its current version is attached to Lease (an
	// expiry's or a revoke's delete leaves a key re-attached since).
	Lease      uint64
	LeaseUntil uint64

	// Expected is the value a CompareAndSwap requires Key to hold, unless
	// ExpectAbsent, in which case Key must not exist.
	Expected     []byte
	ExpectAbsent bool

	// Ops are the operations of a Batch.
	Ops []Op

	// NewShard and NewReplicas describe the right-hand shard of a Split:
	// its ID, and one fresh replica ID per current replica of the shard.
	NewShard    ShardID
	NewReplicas []SplitReplica

	// Txn is the transaction of a KindTxn.
	Txn *Txn

	// Step is the body of a step of a transaction across shards.
	Step *TxnStep

	// GC is the body of a KindGC: what it may collect.
	GC *GCStep
}

// commandFormat is the leading byte of an encoded Command. Format 2 added
// the revision; format 3 the lease of a Put or Delete, and is written only
// by commands that carry one, so a fleet being upgraded from format 2
// decodes every other command on every replica.
const (
	commandFormat      byte = 2
	commandFormatLease byte = 3
)

// revisionAt is the offset of the revision in an encoded command.
const revisionAt = 2

const (
	opPut    byte = 1
	opDelete byte = 2

	casExpectAbsent byte = 1
)

// AppendEncoded appends c's binary encoding to dst and returns the extended
// slice:
//
//	byte     format (2, or 3 for a put or delete with a lease)
//	byte     kind
//	8 bytes  Revision, big-endian (fixed, so the stamper can set it in
//	         an encoded command: see revisionAt)
//	uvarint  ClientID, Seq, Epoch.ConfVer, Epoch.Version
//	put:     bytes key, bytes value; format 3: uvarint lease, lease until
//	delete:  bytes key; format 3: uvarint lease
//	cas:     byte flags (bit 0: expect absent), bytes key,
//	         bytes expected (only without expect-absent), bytes value
//	batch:   uvarint n, then n times: byte op (1 put, 2 delete), bytes key,
//	         bytes value (put only)
//	split:   bytes key, uvarint new shard, uvarint n, then n times:
//	         uvarint old replica, uvarint new replica
//	checksum, resolve, compact: nothing
//	txn:     the transaction (see appendTxn)
//	gc:      the collection (see appendGCStep)
func (c *Command) AppendEncoded(dst []byte) []byte {
	format := commandFormat
	if c.Lease != 0 && (c.Kind == KindPut || c.Kind == KindDelete) {
		format = commandFormatLease
	}
	dst = append(dst, format, byte(c.Kind))
	dst = binary.BigEndian.AppendUint64(dst, c.Revision)
	dst = binary.AppendUvarint(dst, c.Header.ClientID)
	dst = binary.AppendUvarint(dst, c.Header.Seq)
	dst = binary.AppendUvarint(dst, c.Header.Epoch.ConfVer)
	dst = binary.AppendUvarint(dst, c.Header.Epoch.Version)
	switch c.Kind {
	case KindPut:
		dst = appendBytes(dst, c.Key)
		dst = appendBytes(dst, c.Value)
		if format == commandFormatLease {
			dst = binary.AppendUvarint(dst, c.Lease)
			dst = binary.AppendUvarint(dst, c.LeaseUntil)
		}
	case KindDelete:
		dst = appendBytes(dst, c.Key)
		if format == commandFormatLease {
			dst = binary.AppendUvarint(dst, c.Lease)
		}
	case KindCompareAndSwap:
		var flags byte
		if c.ExpectAbsent {
			flags |= casExpectAbsent
		}
		dst = append(dst, flags)
		dst = appendBytes(dst, c.Key)
		if !c.ExpectAbsent {
			dst = appendBytes(dst, c.Expected)
		}
		dst = appendBytes(dst, c.Value)
	case KindBatch:
		dst = binary.AppendUvarint(dst, uint64(len(c.Ops)))
		for i := range c.Ops {
			op := &c.Ops[i]
			if op.Delete {
				dst = append(dst, opDelete)
				dst = appendBytes(dst, op.Key)
			} else {
				dst = append(dst, opPut)
				dst = appendBytes(dst, op.Key)
				dst = appendBytes(dst, op.Value)
			}
		}
	case KindSplit:
		dst = appendBytes(dst, c.Key)
		dst = binary.AppendUvarint(dst, uint64(c.NewShard))
		dst = binary.AppendUvarint(dst, uint64(len(c.NewReplicas)))
		for _, r := range c.NewReplicas {
			dst = binary.AppendUvarint(dst, uint64(r.Old))
			dst = binary.AppendUvarint(dst, uint64(r.New))
		}
	case KindTxn:
		dst = appendTxn(dst, c.Txn)
	case KindPrewrite, KindCommitTxn, KindRollbackTxn, KindCheckTxn:
		dst = appendTxnStep(dst, c.Kind, c.Step)
	case KindGC:
		dst = appendGCStep(dst, c.GC)
	case KindChecksum, KindResolve, KindCompact:
	default:
		panic(fmt.Sprintf("shard: encoding a command of unknown kind %d", c.Kind))
	}
	return dst
}

// DecodeCommand decodes b into c, reusing the capacity of c.Ops and
// c.NewReplicas (which may be left non-nil but empty); every other field of
// c is overwritten. The decoded byte slices alias b. It returns an error wrapping ErrBadCommand for any input
// that AppendEncoded could not have produced, and never panics.
func DecodeCommand(b []byte, c *Command) error {
	c.reset()
	ops, repls := c.Ops, c.NewReplicas
	d := decoder{buf: b}
	format := d.byte()
	if d.err == nil && format != commandFormat && format != commandFormatLease {
		return fmt.Errorf("%w: unknown format %d", ErrBadCommand, format)
	}
	c.Kind = CommandKind(d.byte())
	c.Revision = d.fixed64()
	c.Header.ClientID = d.uvarint()
	c.Header.Seq = d.uvarint()
	c.Header.Epoch.ConfVer = d.uvarint()
	c.Header.Epoch.Version = d.uvarint()
	if d.err != nil {
		return fmt.Errorf("%w: header: %w", ErrBadCommand, d.err)
	}
	switch c.Kind {
	case KindPut:
		c.Key = d.bytes()
		c.Value = d.bytes()
		if format == commandFormatLease {
			c.Lease, c.LeaseUntil = d.uvarint(), d.uvarint()
		}
	case KindDelete:
		c.Key = d.bytes()
		if format == commandFormatLease {
			c.Lease = d.uvarint()
		}
	case KindCompareAndSwap:
		switch d.byte() {
		case 0:
		case casExpectAbsent:
			c.ExpectAbsent = true
		default:
			d.fail(fmt.Errorf("unknown cas flags"))
		}
		c.Key = d.bytes()
		if !c.ExpectAbsent {
			c.Expected = d.bytes()
		}
		c.Value = d.bytes()
	case KindBatch:
		n := d.count(2)
		for range n {
			var op Op
			switch d.byte() {
			case opPut:
				op.Key = d.bytes()
				op.Value = d.bytes()
			case opDelete:
				op.Delete = true
				op.Key = d.bytes()
			default:
				d.fail(fmt.Errorf("unknown batch op"))
			}
			if d.err != nil {
				break
			}
			ops = append(ops, op)
		}
		c.Ops = ops
	case KindSplit:
		c.Key = d.bytes()
		c.NewShard = ShardID(d.uvarint())
		n := d.count(2)
		for range n {
			r := SplitReplica{Old: multiraft.ReplicaID(d.uvarint()), New: multiraft.ReplicaID(d.uvarint())}
			if d.err != nil {
				break
			}
			repls = append(repls, r)
		}
		c.NewReplicas = repls
	case KindTxn:
		c.Txn = decodeTxn(&d, 0)
	case KindPrewrite, KindCommitTxn, KindRollbackTxn, KindCheckTxn:
		c.Step = decodeTxnStep(&d, c.Kind)
	case KindGC:
		c.GC = decodeGCStep(&d)
	case KindChecksum, KindResolve, KindCompact:
	default:
		return fmt.Errorf("%w: unknown kind %d", ErrBadCommand, c.Kind)
	}
	if err := d.finish(); err != nil {
		return fmt.Errorf("%w: %s: %w", ErrBadCommand, c.Kind, err)
	}
	// The lease format is written only for a put or a delete that names a
	// lease; anything else in that format (lease 0, another kind) would
	// re-encode differently, so it was not written by AppendEncoded.
	if format == commandFormatLease && c.Lease == 0 {
		return fmt.Errorf("%w: %s in the lease format without a lease", ErrBadCommand, c.Kind)
	}
	return nil
}

// reset zeroes c, dropping every reference it holds, but keeps the
// capacity of its slices (with length zero) for the next decode.
func (c *Command) reset() {
	clear(c.Ops)
	*c = Command{Ops: c.Ops[:0], NewReplicas: c.NewReplicas[:0]}
}

// checkLimits checks c against the limits of cfg (which has its defaults
// applied) and its own consistency, without looking at any shard state.
func (c *Command) checkLimits(cfg *Config) error {
	if c.Revision != 0 && !c.Kind.stamped() && c.Kind != KindCompact {
		return fmt.Errorf("%w: a %s carries revision %d", ErrBadCommand, c.Kind, c.Revision)
	}
	if (c.Lease != 0 || c.LeaseUntil != 0) && c.Kind != KindPut && c.Kind != KindDelete {
		return fmt.Errorf("%w: a %s carries a lease", ErrBadCommand, c.Kind)
	}
	switch c.Kind {
	case KindPut:
		if (c.Lease == 0) != (c.LeaseUntil == 0) {
			return fmt.Errorf("%w: a put with lease %d and promise %d", ErrBadCommand, c.Lease, c.LeaseUntil)
		}
		return checkKV(cfg, c.Key, c.Value)
	case KindDelete:
		if c.LeaseUntil != 0 {
			return fmt.Errorf("%w: a delete carries a lease promise", ErrBadCommand)
		}
		return checkKey(cfg, c.Key)
	case KindCompareAndSwap:
		if err := checkKV(cfg, c.Key, c.Value); err != nil {
			return err
		}
		if c.ExpectAbsent && len(c.Expected) != 0 {
			return fmt.Errorf("%w: cas expects absence and a value", ErrBadCommand)
		}
		if int64(len(c.Expected)) > cfg.MaxValueBytes {
			return fmt.Errorf("%w: expected value of %d bytes, limit %d", ErrValueTooLarge, len(c.Expected), cfg.MaxValueBytes)
		}
		return nil
	case KindBatch:
		if len(c.Ops) == 0 || len(c.Ops) > cfg.MaxBatchOps {
			return fmt.Errorf("%w: %d operations, limit %d", ErrBatchTooLarge, len(c.Ops), cfg.MaxBatchOps)
		}
		for i := range c.Ops {
			op := &c.Ops[i]
			if err := checkKV(cfg, op.Key, op.Value); err != nil {
				return err
			}
			if op.Delete && len(op.Value) != 0 {
				return fmt.Errorf("%w: batch delete with a value", ErrBadCommand)
			}
		}
		return nil
	case KindSplit:
		if err := checkKey(cfg, c.Key); err != nil {
			return err
		}
		if c.NewShard == 0 {
			return fmt.Errorf("%w: zero new shard ID", ErrInvalidSplit)
		}
		if len(c.NewReplicas) == 0 {
			return fmt.Errorf("%w: no replica mapping", ErrInvalidSplit)
		}
		return nil
	case KindCompact:
		if c.Revision == 0 {
			return fmt.Errorf("%w: a compact needs a revision", ErrBadCommand)
		}
		if c.Header.ClientID != 0 {
			return fmt.Errorf("%w: a %s is not an exactly-once write", ErrBadCommand, c.Kind)
		}
		return nil
	case KindTxn:
		if c.Txn == nil {
			return fmt.Errorf("%w: a txn without its transaction", ErrBadCommand)
		}
		n := 0
		return c.Txn.check(cfg, 0, &n)
	case KindPrewrite, KindCommitTxn, KindRollbackTxn, KindCheckTxn:
		if c.Step == nil {
			return fmt.Errorf("%w: a %s without its body", ErrBadCommand, c.Kind)
		}
		if c.Header.ClientID != 0 && !(c.Kind == KindPrewrite && c.Step.OnePhase) {
			return fmt.Errorf("%w: a %s is not an exactly-once write", ErrBadCommand, c.Kind)
		}
		return c.Step.check(cfg, c.Kind)
	case KindGC:
		if c.GC == nil {
			return fmt.Errorf("%w: a gc without its body", ErrBadCommand)
		}
		if c.Header.ClientID != 0 {
			return fmt.Errorf("%w: a %s is not an exactly-once write", ErrBadCommand, c.Kind)
		}
		return c.GC.check(cfg)
	case KindChecksum, KindResolve:
		if c.Header.ClientID != 0 {
			return fmt.Errorf("%w: a %s is not an exactly-once write", ErrBadCommand, c.Kind)
		}
		return nil
	}
	return fmt.Errorf("%w: unknown kind %d", ErrBadCommand, c.Kind)
}

func checkKey(cfg *Config, key []byte) error {
	if len(key) == 0 {
		return ErrEmptyKey
	}
	if int64(len(key)) > cfg.MaxKeyBytes {
		return fmt.Errorf("%w: %d bytes, limit %d", ErrKeyTooLarge, len(key), cfg.MaxKeyBytes)
	}
	return nil
}

func checkKV(cfg *Config, key, value []byte) error {
	if err := checkKey(cfg, key); err != nil {
		return err
	}
	if int64(len(value)) > cfg.MaxValueBytes {
		return fmt.Errorf("%w: %d bytes, limit %d", ErrValueTooLarge, len(value), cfg.MaxValueBytes)
	}
	return nil
}

// checkAgainst checks c against the shard descriptor d: every key in range
// and the epoch current. Reads and writes compare only the Version (a
// membership change does not move keys); a split compares the whole epoch,
// since its replica mapping depends on the membership. A zero epoch skips
// the epoch check.
func (c *Command) checkAgainst(d *Descriptor) error {
	if !c.Header.Epoch.IsZero() {
		stale := c.Header.Epoch.Version != d.Epoch.Version
		if c.Kind == KindSplit {
			stale = c.Header.Epoch != d.Epoch
		}
		if stale {
			return &EpochNotMatchError{Requested: c.Header.Epoch, Current: d.Clone()}
		}
	}
	switch c.Kind {
	case KindBatch:
		for i := range c.Ops {
			if !d.ContainsKey(c.Ops[i].Key) {
				return fmt.Errorf("%w: key %q, shard %s", ErrKeyNotInShard, c.Ops[i].Key, d)
			}
		}
	case KindSplit:
		return c.checkSplit(d)
	case KindTxn:
		return c.Txn.checkAgainst(d)
	case KindPrewrite, KindCommitTxn, KindRollbackTxn, KindCheckTxn:
		return c.Step.checkAgainst(d, c.Kind)
	case KindChecksum, KindResolve, KindCompact, KindGC:
		// A collection names keys that may have left the shard since the
		// leader chose them: Apply skips those, rather than refusing the
		// rest.
	default:
		if !d.ContainsKey(c.Key) {
			return fmt.Errorf("%w: key %q, shard %s", ErrKeyNotInShard, c.Key, d)
		}
	}
	return nil
}

// checkSplit checks a split against d: the key strictly inside (Start, End),
// a new shard ID other than d's, and a mapping of every replica of d to a
// distinct, non-zero, new replica ID.
func (c *Command) checkSplit(d *Descriptor) error {
	if !d.ContainsKey(c.Key) || string(c.Key) == string(d.Start) {
		return fmt.Errorf("%w: key %q not strictly inside %s", ErrInvalidSplit, c.Key, d)
	}
	if c.NewShard == 0 || c.NewShard == d.ShardID {
		return fmt.Errorf("%w: new shard ID %d", ErrInvalidSplit, c.NewShard)
	}
	if len(c.NewReplicas) != len(d.Replicas) {
		return fmt.Errorf("%w: %d replica mappings for %d replicas", ErrInvalidSplit, len(c.NewReplicas), len(d.Replicas))
	}
	for i, m := range c.NewReplicas {
		if _, ok := d.Replica(m.Old); !ok {
			return fmt.Errorf("%w: r%d is not a replica of %s", ErrInvalidSplit, m.Old, d)
		}
		if m.New == 0 {
			return fmt.Errorf("%w: zero new replica ID for r%d", ErrInvalidSplit, m.Old)
		}
		if _, ok := d.Replica(m.New); ok {
			return fmt.Errorf("%w: new replica ID r%d is in use", ErrInvalidSplit, m.New)
		}
		for _, o := range c.NewReplicas[:i] {
			if o.Old == m.Old || o.New == m.New {
				return fmt.Errorf("%w: duplicate mapping r%d->r%d", ErrInvalidSplit, m.Old, m.New)
			}
		}
	}
	return nil
}
