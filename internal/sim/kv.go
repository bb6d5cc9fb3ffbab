package sim

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"

	"github.com/cockroachdb/pebble/v2"

	"github.com/flotilla-kv/flotilla/internal/keys"
	"github.com/flotilla-kv/flotilla/multiraft"
)

// kvSM is the simulator's own replicated state machine: a key-value map
// over the user keys of one group (see groupSpan), stored under
// keys.MVCCKey at revision 0 (one version per key), in the user half of
// the key space like the shard package's data. It exists so the
// simulator does not depend on the shard package; it is deliberately
// small, but its snapshots are checksummed and its restore validates
// every key, so a cut or corrupted snapshot is refused, never applied.
//
// Commands (see encodeCmd): put, delete, compare-and-swap and an atomic
// batch of puts and deletes. Apply returns a casResult for a CAS and nil
// otherwise.
type kvSM struct {
	group multiraft.GroupID
}

// Command opcodes.
const (
	cmdPut    byte = 'P'
	cmdDelete byte = 'D'
	cmdCAS    byte = 'C'
	cmdBatch  byte = 'B'
)

// kvOp is one write of a command: a put (or delete) of key, or with cas a
// compare-and-swap from expect to value.
type kvOp struct {
	op     byte
	key    string
	value  string
	expect string
}

// casResult is what Apply returns for a compare-and-swap: whether it
// swapped and the value it found.
type casResult struct {
	ok  bool
	cur string
}

// encodeCmd encodes ops as one command: a single op as itself, several as
// a batch. Only put and delete may be batched.
func encodeCmd(ops []kvOp) []byte {
	var b []byte
	if len(ops) != 1 {
		b = append(b, cmdBatch)
		b = binary.AppendUvarint(b, uint64(len(ops)))
	}
	for _, o := range ops {
		b = append(b, o.op)
		b = appendString(b, o.key)
		switch o.op {
		case cmdPut:
			b = appendString(b, o.value)
		case cmdCAS:
			b = appendString(b, o.expect)
			b = appendString(b, o.value)
		}
	}
	return b
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// decoder reads a command; a malformed command is a bug (every command was
// encoded by encodeCmd), so it panics.
type decoder struct{ b []byte }

func (d *decoder) uvarint() uint64 {
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		panic(fmt.Sprintf("sim: malformed command %x", d.b))
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) string() string {
	n := d.uvarint()
	if uint64(len(d.b)) < n {
		panic(fmt.Sprintf("sim: malformed command: string of %d bytes in %d", n, len(d.b)))
	}
	s := string(d.b[:n])
	d.b = d.b[n:]
	return s
}

func (d *decoder) op() kvOp {
	if len(d.b) == 0 {
		panic("sim: malformed command: missing op")
	}
	o := kvOp{op: d.b[0]}
	d.b = d.b[1:]
	o.key = d.string()
	switch o.op {
	case cmdPut:
		o.value = d.string()
	case cmdDelete:
	case cmdCAS:
		o.expect = d.string()
		o.value = d.string()
	default:
		panic(fmt.Sprintf("sim: malformed command: op %q", o.op))
	}
	return o
}

func decodeCmd(cmd []byte) []kvOp {
	d := decoder{b: cmd}
	if len(cmd) > 0 && cmd[0] == cmdBatch {
		d.b = d.b[1:]
		n := d.uvarint()
		ops := make([]kvOp, 0, n)
		for range n {
			ops = append(ops, d.op())
		}
		return ops
	}
	return []kvOp{d.op()}
}

func (s *kvSM) checkKey(k string) {
	if groupOfKey(k) != s.group {
		panic(fmt.Sprintf("sim: key %q outside group %d", k, s.group))
	}
}

// Apply implements multiraft.StateMachine.
func (s *kvSM) Apply(ac *multiraft.ApplyContext, e multiraft.Entry) any {
	ops := decodeCmd(e.Cmd)
	var res any
	for _, o := range ops {
		s.checkKey(o.key)
		k := keys.MVCCKey([]byte(o.key), 0)
		switch o.op {
		case cmdPut:
			must(ac.Batch.Set(k, []byte(o.value), nil))
		case cmdDelete:
			must(ac.Batch.Delete(k, nil))
		case cmdCAS:
			cur := getString(ac.Batch, k)
			r := casResult{ok: cur == o.expect, cur: cur}
			if r.ok {
				if o.value == "" {
					must(ac.Batch.Delete(k, nil))
				} else {
					must(ac.Batch.Set(k, []byte(o.value), nil))
				}
			}
			res = r
		}
	}
	return res
}

func must(err error) {
	if err != nil {
		panic(err)
	}
}

// getString reads a user value; a missing key reads as "".
func getString(r pebble.Reader, k []byte) string {
	v, closer, err := r.Get(k)
	if errors.Is(err, pebble.ErrNotFound) {
		return ""
	}
	must(err)
	defer closer.Close()
	return string(v)
}

// ApplyMembership implements multiraft.StateMachine.
func (s *kvSM) ApplyMembership(*multiraft.ApplyContext, uint64, multiraft.Membership) {}

// snapMagic starts every snapshot image.
const snapMagic = "simkv1"

// Snapshot implements multiraft.StateMachine: magic, group, then every
// key and value length-prefixed, a count, and a CRC-32C of all of it.
func (s *kvSM) Snapshot(r pebble.Reader, w io.Writer) error {
	lo, hi := groupSpan(s.group)
	it, err := r.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: hi})
	if err != nil {
		return err
	}
	defer it.Close()
	b := append([]byte(nil), snapMagic...)
	b = binary.BigEndian.AppendUint64(b, uint64(s.group))
	n := 0
	for it.First(); it.Valid(); it.Next() {
		b = appendString(b, string(it.Key()))
		b = appendString(b, string(it.Value()))
		n++
	}
	if err := it.Error(); err != nil {
		return err
	}
	b = binary.BigEndian.AppendUint64(b, uint64(n))
	b = binary.BigEndian.AppendUint32(b, crc32.Checksum(b, crcTable))
	_, err = w.Write(b)
	return err
}

var crcTable = crc32.MakeTable(crc32.Castagnoli)

// errCorruptSnapshot: a snapshot image failed validation.
var errCorruptSnapshot = errors.New("sim: corrupt snapshot")

// Restore implements multiraft.StateMachine. It validates the whole image
// (checksum, group, key range, count) before it writes anything.
func (s *kvSM) Restore(b *pebble.Batch, r io.Reader) error {
	data, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	if len(data) < len(snapMagic)+8+8+4 || !bytes.HasPrefix(data, []byte(snapMagic)) {
		return fmt.Errorf("%w: %d bytes", errCorruptSnapshot, len(data))
	}
	body, sum := data[:len(data)-4], binary.BigEndian.Uint32(data[len(data)-4:])
	if crc32.Checksum(body, crcTable) != sum {
		return fmt.Errorf("%w: checksum mismatch", errCorruptSnapshot)
	}
	body = body[len(snapMagic):]
	if g := multiraft.GroupID(binary.BigEndian.Uint64(body)); g != s.group {
		return fmt.Errorf("%w: image of group %d, not %d", errCorruptSnapshot, g, s.group)
	}
	count := binary.BigEndian.Uint64(body[len(body)-8:])
	body = body[8 : len(body)-8]
	lo, hi := groupSpan(s.group)
	var kvs [][2][]byte
	for len(body) > 0 {
		var kv [2][]byte
		for i := range kv {
			n, w := binary.Uvarint(body)
			if w <= 0 || uint64(len(body)-w) < n {
				return fmt.Errorf("%w: truncated entry", errCorruptSnapshot)
			}
			kv[i], body = body[w:w+int(n)], body[w+int(n):]
		}
		if bytes.Compare(kv[0], lo) < 0 || bytes.Compare(kv[0], hi) >= 0 {
			return fmt.Errorf("%w: key %q outside group %d", errCorruptSnapshot, kv[0], s.group)
		}
		kvs = append(kvs, kv)
	}
	if uint64(len(kvs)) != count {
		return fmt.Errorf("%w: %d entries, header says %d", errCorruptSnapshot, len(kvs), count)
	}
	must(b.DeleteRange(lo, hi, nil))
	for _, kv := range kvs {
		must(b.Set(kv[0], kv[1], nil))
	}
	return nil
}

// Destroy implements multiraft.StateMachine.
func (s *kvSM) Destroy(b *pebble.Batch) {
	lo, hi := groupSpan(s.group)
	must(b.DeleteRange(lo, hi, nil))
}

// newKVSM is the multiraft.NewStateMachineFunc of kvSM.
func newKVSM(g multiraft.GroupID, _ multiraft.ReplicaID, _ pebble.Reader) (multiraft.StateMachine, error) {
	return &kvSM{group: g}, nil
}

// groupKey is the i-th user key of group g. Keys of one group share a
// prefix, so the group's data is one Pebble span (groupSpan).
func groupKey(g multiraft.GroupID, i int) string { return fmt.Sprintf("g%05d/k%d", g, i) }

// groupOfKey returns the group owning k.
func groupOfKey(k string) multiraft.GroupID {
	var g uint64
	if _, err := fmt.Sscanf(k, "g%05d/", &g); err != nil {
		panic(fmt.Sprintf("sim: key %q has no group", k))
	}
	return multiraft.GroupID(g)
}

// groupSpan returns the Pebble bounds of g's user keys.
func groupSpan(g multiraft.GroupID) (lo, hi []byte) {
	return keys.UserSpan([]byte(fmt.Sprintf("g%05d/", g)), []byte(fmt.Sprintf("g%05d0", g)))
}
