package shard

import (
	"bytes"
	"encoding/binary"
	"fmt"

	"github.com/cockroachdb/pebble/v2"
)

// Transactions of one shard
//
// A Txn command (KindTxn) is etcd's compare-then-else transaction on the
// keys of one shard: its compares are evaluated against the shard's
// current state, and either its Then or its Else operations run, in
// order, all at the command's one revision, in one Raft entry. Reads
// inside it see the writes of the operations before them. Every replica
// evaluates the same compares on the same state, so they all take the
// same branch. Every key must be in the shard, as a Batch's must:
// transactions across shards are not built yet, and the router refuses
// them (router.ErrCrossShardTxn).

// CompareTarget says which property of a key a Compare looks at.
type CompareTarget uint8

// The compare targets. A key that does not exist has value "absent" (a
// value compare on it fails whatever the operator), and version, create
// and mod revision and lease 0.
const (
	CompareValue CompareTarget = iota + 1
	CompareVersion
	CompareCreate
	CompareMod
	CompareLease
)

// CompareOp is a Compare's operator: the key's property is Equal, NotEqual,
// Less than or Greater than the compare's operand.
type CompareOp uint8

// The compare operators.
const (
	CompareEqual CompareOp = iota + 1
	CompareNotEqual
	CompareLess
	CompareGreater
)

// Compare is one condition of a Txn.
type Compare struct {
	// Key is the key compared; with Ranged, every key of [Key, End) (an
	// empty End: +inf, which only the last shard holds) must satisfy the
	// compare, and a range holding no key is compared as one absent key.
	Key    []byte
	End    []byte
	Ranged bool
	Target CompareTarget
	Op     CompareOp
	// Value is the operand of a CompareValue, Number of the others.
	Value  []byte
	Number uint64
}

// TxnOpKind says what a TxnOp does.
type TxnOpKind uint8

// The kinds of TxnOp.
const (
	// TxnRange reads Key, or with Ranged the keys of [Key, End) (an
	// empty End: +inf, as for a Compare).
	TxnRange TxnOpKind = iota + 1
	// TxnPut sets Key to Value, attached to Lease (0: none).
	TxnPut
	// TxnDelete deletes Key, or with Ranged every key of [Key, End).
	TxnDelete
	// TxnNested runs the nested transaction Txn.
	TxnNested
)

// TxnOp is one operation of a Txn branch.
type TxnOp struct {
	Kind   TxnOpKind
	Key    []byte
	End    []byte
	Ranged bool
	Value  []byte
	// Lease and LeaseUntil are a TxnPut's lease and its home's promise,
	// as for a Put command: the command is refused with ErrLeasePromise
	// if its revision is above LeaseUntil.
	Lease      uint64
	LeaseUntil uint64
	// PrevKV asks a TxnPut or TxnDelete for the versions it replaced
	// (TxnOpResult.KVs).
	PrevKV bool
	// Txn is a TxnNested's transaction.
	Txn *Txn
}

// Txn is a compare-then-else transaction: if every compare holds, Then
// runs, otherwise Else.
type Txn struct {
	Compares []Compare
	Then     []TxnOp
	Else     []TxnOp
}

// TxnResult is the outcome of a Txn: which branch ran and each of its
// operations' results, in order.
type TxnResult struct {
	Succeeded bool
	Ops       []TxnOpResult
}

// TxnOpResult is the result of one TxnOp.
type TxnOpResult struct {
	// KVs: for a TxnRange, the keys read, in key order; for a TxnPut or
	// TxnDelete with PrevKV, the versions it replaced or deleted.
	KVs []KeyValue
	// Deleted: for a TxnDelete, how many keys it deleted.
	Deleted int64
	// Txn: for a TxnNested, its result.
	Txn *TxnResult
}

// maxTxnDepth bounds how deeply transactions nest.
const maxTxnDepth = 8

const (
	txnRanged byte = 1 << iota
	txnPrevKV
)

// appendTxn appends t's encoding:
//
//	uvarint n, then n compares: byte target, byte op, byte flags (bit 0
//	        ranged), bytes key, bytes end (ranged only), then bytes value
//	        (value target) or uvarint number
//	then and else: uvarint n, then n ops: byte kind, byte flags (bit 0
//	        ranged, bit 1 prev kv), then by kind: range and delete: bytes
//	        key, bytes end (ranged only); put: bytes key, bytes value,
//	        uvarint lease, lease until; nested: the nested txn
func appendTxn(dst []byte, t *Txn) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(t.Compares)))
	for i := range t.Compares {
		c := &t.Compares[i]
		var flags byte
		if c.Ranged {
			flags |= txnRanged
		}
		dst = append(dst, byte(c.Target), byte(c.Op), flags)
		dst = appendBytes(dst, c.Key)
		if c.Ranged {
			dst = appendBytes(dst, c.End)
		}
		if c.Target == CompareValue {
			dst = appendBytes(dst, c.Value)
		} else {
			dst = binary.AppendUvarint(dst, c.Number)
		}
	}
	for _, ops := range [2][]TxnOp{t.Then, t.Else} {
		dst = binary.AppendUvarint(dst, uint64(len(ops)))
		for i := range ops {
			op := &ops[i]
			var flags byte
			if op.Ranged {
				flags |= txnRanged
			}
			if op.PrevKV {
				flags |= txnPrevKV
			}
			dst = append(dst, byte(op.Kind), flags)
			switch op.Kind {
			case TxnRange, TxnDelete:
				dst = appendBytes(dst, op.Key)
				if op.Ranged {
					dst = appendBytes(dst, op.End)
				}
			case TxnPut:
				dst = appendBytes(dst, op.Key)
				dst = appendBytes(dst, op.Value)
				dst = binary.AppendUvarint(dst, op.Lease)
				dst = binary.AppendUvarint(dst, op.LeaseUntil)
			case TxnNested:
				dst = appendTxn(dst, op.Txn)
			default:
				panic(fmt.Sprintf("shard: encoding a txn op of unknown kind %d", op.Kind))
			}
		}
	}
	return dst
}

// decodeTxn reads a Txn from d, at nesting depth depth. Its slices alias
// d's input.
func decodeTxn(d *decoder, depth int) *Txn {
	if depth > maxTxnDepth {
		d.fail(fmt.Errorf("transactions nested deeper than %d", maxTxnDepth))
		return nil
	}
	t := &Txn{}
	n := d.count(4)
	for range n {
		var c Compare
		c.Target, c.Op = CompareTarget(d.byte()), CompareOp(d.byte())
		flags := d.byte()
		if flags&^txnRanged != 0 {
			d.fail(fmt.Errorf("unknown compare flags %#x", flags))
		}
		c.Ranged = flags&txnRanged != 0
		c.Key = d.bytes()
		if c.Ranged {
			c.End = d.bytes()
		}
		if c.Target == CompareValue {
			c.Value = d.bytes()
		} else {
			c.Number = d.uvarint()
		}
		if d.err != nil {
			return nil
		}
		t.Compares = append(t.Compares, c)
	}
	for branch := range 2 {
		n := d.count(2)
		ops := make([]TxnOp, 0, n)
		for range n {
			var op TxnOp
			op.Kind = TxnOpKind(d.byte())
			flags := d.byte()
			if flags&^(txnRanged|txnPrevKV) != 0 {
				d.fail(fmt.Errorf("unknown txn op flags %#x", flags))
			}
			op.Ranged, op.PrevKV = flags&txnRanged != 0, flags&txnPrevKV != 0
			switch op.Kind {
			case TxnRange, TxnDelete:
				op.Key = d.bytes()
				if op.Ranged {
					op.End = d.bytes()
				}
			case TxnPut:
				op.Key = d.bytes()
				op.Value = d.bytes()
				op.Lease, op.LeaseUntil = d.uvarint(), d.uvarint()
			case TxnNested:
				op.Txn = decodeTxn(d, depth+1)
			default:
				d.fail(fmt.Errorf("unknown txn op kind %d", op.Kind))
			}
			if d.err != nil {
				return nil
			}
			ops = append(ops, op)
		}
		if branch == 0 {
			t.Then = ops
		} else {
			t.Else = ops
		}
	}
	return t
}

// check checks t's limits and consistency: ops counts every operation and
// compare, nested ones included, against cfg.MaxBatchOps.
func (t *Txn) check(cfg *Config, depth int, ops *int) error {
	if depth > maxTxnDepth {
		return fmt.Errorf("%w: transactions nested deeper than %d", ErrBadCommand, maxTxnDepth)
	}
	if depth == 0 {
		if err := checkWrites(nil, t.Then); err != nil {
			return err
		}
		if err := checkWrites(nil, t.Else); err != nil {
			return err
		}
	}
	*ops += len(t.Compares) + len(t.Then) + len(t.Else)
	if *ops > cfg.MaxBatchOps {
		return fmt.Errorf("%w: a transaction of more than %d operations and compares", ErrBatchTooLarge, cfg.MaxBatchOps)
	}
	for i := range t.Compares {
		c := &t.Compares[i]
		if c.Target < CompareValue || c.Target > CompareLease || c.Op < CompareEqual || c.Op > CompareGreater {
			return fmt.Errorf("%w: compare target %d, operator %d", ErrBadCommand, c.Target, c.Op)
		}
		if err := checkRange(cfg, c.Key, c.End, c.Ranged); err != nil {
			return err
		}
		if c.Target != CompareValue && len(c.Value) != 0 || c.Target == CompareValue && c.Number != 0 {
			return fmt.Errorf("%w: a %d compare with the wrong operand", ErrBadCommand, c.Target)
		}
	}
	for _, ops2 := range [2][]TxnOp{t.Then, t.Else} {
		for i := range ops2 {
			op := &ops2[i]
			switch op.Kind {
			case TxnRange, TxnDelete:
				if err := checkRange(cfg, op.Key, op.End, op.Ranged); err != nil {
					return err
				}
				if len(op.Value) != 0 || op.Lease != 0 || op.LeaseUntil != 0 || op.Txn != nil || op.Kind == TxnRange && op.PrevKV {
					return fmt.Errorf("%w: a txn %d op with fields of another kind", ErrBadCommand, op.Kind)
				}
			case TxnPut:
				if err := checkKV(cfg, op.Key, op.Value); err != nil {
					return err
				}
				if op.Ranged || len(op.End) != 0 || op.Txn != nil || (op.Lease == 0) != (op.LeaseUntil == 0) {
					return fmt.Errorf("%w: a txn put with a range, a nested txn, or a lease without its promise", ErrBadCommand)
				}
			case TxnNested:
				if op.Txn == nil {
					return fmt.Errorf("%w: a nested txn op without its txn", ErrBadCommand)
				}
				if err := op.Txn.check(cfg, depth+1, ops); err != nil {
					return err
				}
			default:
				return fmt.Errorf("%w: unknown txn op kind %d", ErrBadCommand, op.Kind)
			}
		}
	}
	return nil
}

// checkWrites refuses, with ErrBadCommand, a branch that writes one key
// twice: two puts of a key, or a put of a key that a delete of the same
// branch covers (what etcd refuses as a duplicate key). Deletes may
// overlap. A nested transaction's branches are each checked together
// with the writes of the branches around it.
func checkWrites(outer []TxnOp, ops []TxnOp) error {
	local := outer
	for i := range ops {
		op := &ops[i]
		if op.Kind != TxnPut && op.Kind != TxnDelete {
			continue
		}
		for j := range local {
			if writesOverlap(op, &local[j]) {
				return fmt.Errorf("%w: key %q written twice in one transaction", ErrBadCommand, op.Key)
			}
		}
		local = append(local[:len(local):len(local)], *op)
	}
	for i := range ops {
		if op := &ops[i]; op.Kind == TxnNested {
			if err := checkWrites(local, op.Txn.Then); err != nil {
				return err
			}
			if err := checkWrites(local, op.Txn.Else); err != nil {
				return err
			}
		}
	}
	return nil
}

// writesOverlap reports whether two writes of one branch conflict: a
// put of a key the other puts or deletes.
func writesOverlap(a, b *TxnOp) bool {
	if a.Kind == TxnDelete && b.Kind == TxnDelete {
		return false
	}
	if a.Kind == TxnDelete {
		a, b = b, a
	}
	// a is a put.
	if b.Kind == TxnPut || !b.Ranged {
		return bytes.Equal(a.Key, b.Key)
	}
	return bytes.Compare(a.Key, b.Key) >= 0 && (len(b.End) == 0 || bytes.Compare(a.Key, b.End) < 0)
}

// checkRange checks a key, or a range [key, end) (an empty key: from the
// first key on).
func checkRange(cfg *Config, key, end []byte, ranged bool) error {
	if !ranged {
		if len(end) != 0 {
			return fmt.Errorf("%w: an end without a range", ErrBadCommand)
		}
		return checkKey(cfg, key)
	}
	if int64(len(key)) > cfg.MaxKeyBytes || int64(len(end)) > cfg.MaxKeyBytes {
		return fmt.Errorf("%w: range bounds of %d and %d bytes, limit %d", ErrKeyTooLarge, len(key), len(end), cfg.MaxKeyBytes)
	}
	if len(end) != 0 && bytes.Compare(key, end) >= 0 {
		return fmt.Errorf("%w: range end %q does not sort after %q", ErrBadCommand, end, key)
	}
	return nil
}

// checkAgainst checks that every key and range of t is inside d.
func (t *Txn) checkAgainst(d *Descriptor) error {
	in := func(key, end []byte, ranged bool) error {
		if !d.ContainsKey(key) {
			return fmt.Errorf("%w: key %q, shard %s", ErrKeyNotInShard, key, d)
		}
		// An open range (empty end) reaches past the shard unless it is
		// the last one.
		if ranged && len(d.End) != 0 && (len(end) == 0 || bytes.Compare(end, d.End) > 0) {
			return fmt.Errorf("%w: range [%q, %q) ends past shard %s", ErrKeyNotInShard, key, end, d)
		}
		return nil
	}
	for i := range t.Compares {
		if err := in(t.Compares[i].Key, t.Compares[i].End, t.Compares[i].Ranged); err != nil {
			return err
		}
	}
	for _, ops := range [2][]TxnOp{t.Then, t.Else} {
		for i := range ops {
			op := &ops[i]
			if op.Kind == TxnNested {
				if err := op.Txn.checkAgainst(d); err != nil {
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

// checkPromises refuses t, with ErrLeasePromise, if a put of it (in
// either branch, nested ones included) carries a lease promised through
// a revision below rev.
func (t *Txn) checkPromises(rev uint64) error {
	for _, ops := range [2][]TxnOp{t.Then, t.Else} {
		for i := range ops {
			op := &ops[i]
			if op.Kind == TxnPut && op.Lease != 0 && rev > op.LeaseUntil {
				return fmt.Errorf("%w: revision %d, lease %d promised through %d", ErrLeasePromise, rev, op.Lease, op.LeaseUntil)
			}
			if op.Kind == TxnNested {
				if err := op.Txn.checkPromises(rev); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// applyTxn evaluates t at the shard's current state, through the batch
// (so the writes of earlier operations, and earlier commands of the same
// batch, are visible), and runs the branch it chose at rev.
func (sm *StateMachine) applyTxn(b *pebble.Batch, t *Txn, rev uint64) *TxnResult {
	ok := true
	for i := range t.Compares {
		if !sm.compare(b, &t.Compares[i], rev) {
			ok = false
			break
		}
	}
	ops := t.Then
	if !ok {
		ops = t.Else
	}
	res := &TxnResult{Succeeded: ok, Ops: make([]TxnOpResult, len(ops))}
	for i := range ops {
		op := &ops[i]
		r := &res.Ops[i]
		switch op.Kind {
		case TxnRange:
			r.KVs = sm.txnRead(b, op.Key, op.End, op.Ranged, rev)
		case TxnPut:
			if op.PrevKV {
				r.KVs = sm.txnRead(b, op.Key, nil, false, rev)
			}
			sm.setUser(b, op.Key, op.Value, rev, op.Lease)
		case TxnDelete:
			prev := sm.txnRead(b, op.Key, op.End, op.Ranged, rev)
			for _, kv := range prev {
				if sm.deleteUser(b, kv.Key, rev, 0) {
					r.Deleted++
				}
			}
			if op.PrevKV {
				r.KVs = prev
			}
		case TxnNested:
			r.Txn = sm.applyTxn(b, op.Txn, rev)
		}
	}
	return res
}

// txnRead reads key, or the keys of [key, end) (checked to be inside the
// shard), as the transaction at rev sees them so far: its own writes
// included.
func (sm *StateMachine) txnRead(b *pebble.Batch, key, end []byte, ranged bool, rev uint64) []KeyValue {
	if !ranged {
		kv, found, err := getAt(b, key, rev)
		mustRead(err)
		if !found {
			return nil
		}
		return []KeyValue{kv}
	}
	var kvs []KeyValue
	mustRead(scanAt(b, key, end, rev, func(kv KeyValue) bool {
		kvs = append(kvs, kv.clone())
		return true
	}))
	return kvs
}

// compare evaluates one compare.
func (sm *StateMachine) compare(b *pebble.Batch, cmp *Compare, rev uint64) bool {
	kvs := sm.txnRead(b, cmp.Key, cmp.End, cmp.Ranged, rev)
	if len(kvs) == 0 {
		if cmp.Target == CompareValue {
			return false
		}
		return compareOne(cmp, &KeyValue{})
	}
	for i := range kvs {
		if !compareOne(cmp, &kvs[i]) {
			return false
		}
	}
	return true
}

// compareOne evaluates cmp on one existing key (or, for targets other
// than the value, a zero KeyValue for an absent one).
func compareOne(cmp *Compare, kv *KeyValue) bool {
	var r int
	switch cmp.Target {
	case CompareValue:
		r = bytes.Compare(kv.Value, cmp.Value)
	default:
		var n uint64
		switch cmp.Target {
		case CompareVersion:
			n = kv.Version
		case CompareCreate:
			n = kv.CreateRevision
		case CompareMod:
			n = kv.ModRevision
		case CompareLease:
			n = kv.Lease
		}
		switch {
		case n < cmp.Number:
			r = -1
		case n > cmp.Number:
			r = 1
		}
	}
	switch cmp.Op {
	case CompareEqual:
		return r == 0
	case CompareNotEqual:
		return r != 0
	case CompareLess:
		return r < 0
	case CompareGreater:
		return r > 0
	}
	return false
}

// appendTxnResult appends r's encoding: byte succeeded, uvarint n, then n
// op results: uvarint deleted, uvarint k, k key-values (bytes key, bytes
// value, uvarint create, mod, version, lease), byte nested (0 or 1) and
// the nested result.
func appendTxnResult(dst []byte, r *TxnResult) []byte {
	var ok byte
	if r.Succeeded {
		ok = 1
	}
	dst = append(dst, ok)
	dst = binary.AppendUvarint(dst, uint64(len(r.Ops)))
	for i := range r.Ops {
		o := &r.Ops[i]
		dst = binary.AppendUvarint(dst, uint64(o.Deleted))
		dst = binary.AppendUvarint(dst, uint64(len(o.KVs)))
		for j := range o.KVs {
			kv := &o.KVs[j]
			dst = appendBytes(dst, kv.Key)
			dst = appendBytes(dst, kv.Value)
			dst = binary.AppendUvarint(dst, kv.CreateRevision)
			dst = binary.AppendUvarint(dst, kv.ModRevision)
			dst = binary.AppendUvarint(dst, kv.Version)
			dst = binary.AppendUvarint(dst, kv.Lease)
		}
		if o.Txn != nil {
			dst = append(dst, 1)
			dst = appendTxnResult(dst, o.Txn)
		} else {
			dst = append(dst, 0)
		}
	}
	return dst
}

// decodeTxnResult reads a TxnResult from d; its slices do not alias the
// input.
func decodeTxnResult(d *decoder, depth int) *TxnResult {
	if depth > maxTxnDepth {
		d.fail(fmt.Errorf("transaction results nested deeper than %d", maxTxnDepth))
		return nil
	}
	r := &TxnResult{}
	switch d.byte() {
	case 0:
	case 1:
		r.Succeeded = true
	default:
		d.fail(fmt.Errorf("bad txn result flag"))
	}
	n := d.count(3)
	r.Ops = make([]TxnOpResult, 0, n)
	for range n {
		var o TxnOpResult
		o.Deleted = int64(d.uvarint())
		k := d.count(6)
		for range k {
			kv := KeyValue{Key: bytes.Clone(d.bytes()), Value: bytes.Clone(d.bytes())}
			kv.CreateRevision, kv.ModRevision, kv.Version, kv.Lease = d.uvarint(), d.uvarint(), d.uvarint(), d.uvarint()
			if kv.Value == nil {
				kv.Value = []byte{}
			}
			if d.err != nil {
				return nil
			}
			o.KVs = append(o.KVs, kv)
		}
		switch d.byte() {
		case 0:
		case 1:
			o.Txn = decodeTxnResult(d, depth+1)
		default:
			d.fail(fmt.Errorf("bad nested txn result flag"))
		}
		if d.err != nil {
			return nil
		}
		r.Ops = append(r.Ops, o)
	}
	return r
}
