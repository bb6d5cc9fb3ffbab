package bench

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/cockroachdb/pebble/v2"

	"github.com/flotilla-kv/flotilla/internal/keys"
	"github.com/flotilla-kv/flotilla/multiraft"
)

// ErrCorruptSnapshot is returned by KV.Restore for an image that is
// truncated or malformed.
var ErrCorruptSnapshot = errors.New("bench: corrupt KV snapshot")

// KV is a state machine that stores keys inside its group's own slice of
// the user key space: user key = 8-byte big-endian group ID + key. A
// command (see EncodePut) sets one key; Apply returns nil.
//
// Its methods are called by the engine as StateMachine documents; KV keeps
// no mutable state in memory.
type KV struct {
	group multiraft.GroupID
}

var _ multiraft.StateMachine = (*KV)(nil)

// NewKV is a multiraft.NewStateMachineFunc building a group's KV.
func NewKV(group multiraft.GroupID, _ multiraft.ReplicaID, _ pebble.Reader) (multiraft.StateMachine, error) {
	return &KV{group: group}, nil
}

// EncodePut returns the command that sets key to value.
func EncodePut(key, value []byte) []byte {
	cmd := binary.AppendUvarint(make([]byte, 0, binary.MaxVarintLen32+len(key)+len(value)), uint64(len(key)))
	return append(append(cmd, key...), value...)
}

// KVKey returns the Pebble key under which group's KV stores key: a
// version at revision 0, the KV keeping one per key.
func KVKey(group multiraft.GroupID, key []byte) []byte {
	return keys.MVCCKey(append(binary.BigEndian.AppendUint64(nil, uint64(group)), key...), 0)
}

// kvSpan returns the Pebble bounds of group's keys.
func kvSpan(group multiraft.GroupID) (lo, hi []byte) {
	return keys.UserSpan(binary.BigEndian.AppendUint64(nil, uint64(group)), binary.BigEndian.AppendUint64(nil, uint64(group)+1))
}

// Apply implements multiraft.StateMachine.
func (kv *KV) Apply(ac *multiraft.ApplyContext, e multiraft.Entry) any {
	n, k := binary.Uvarint(e.Cmd)
	if k <= 0 || n > uint64(len(e.Cmd)-k) {
		panic(fmt.Sprintf("bench: group %d: malformed command at index %d: %x", kv.group, e.Index, e.Cmd))
	}
	key, value := e.Cmd[k:k+int(n)], e.Cmd[k+int(n):]
	if err := ac.Batch.Set(KVKey(kv.group, key), value, nil); err != nil {
		panic(fmt.Sprintf("bench: group %d: apply %d: %v", kv.group, e.Index, err))
	}
	return nil
}

// ApplyMembership implements multiraft.StateMachine; KV ignores membership.
func (kv *KV) ApplyMembership(*multiraft.ApplyContext, uint64, multiraft.Membership) {}

// The snapshot image is a sequence of records, uvarint key length, key,
// uvarint value length, value, ended by a zero key length and the uvarint
// number of records, so a truncated image is detected.

// Snapshot implements multiraft.StateMachine.
func (kv *KV) Snapshot(r pebble.Reader, w io.Writer) error {
	lo, hi := kvSpan(kv.group)
	it, err := r.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: hi})
	if err != nil {
		return err
	}
	defer it.Close()
	bw := bufio.NewWriter(w)
	var hdr []byte
	var n uint64
	for valid := it.First(); valid; valid = it.Next() {
		v, err := it.ValueAndErr()
		if err != nil {
			return err
		}
		hdr = binary.AppendUvarint(hdr[:0], uint64(len(it.Key())))
		_, _ = bw.Write(hdr)
		_, _ = bw.Write(it.Key())
		hdr = binary.AppendUvarint(hdr[:0], uint64(len(v)))
		_, _ = bw.Write(hdr)
		_, _ = bw.Write(v)
		n++
	}
	if err := it.Error(); err != nil {
		return err
	}
	_, _ = bw.Write(binary.AppendUvarint([]byte{0}, n))
	return bw.Flush()
}

// Restore implements multiraft.StateMachine.
func (kv *KV) Restore(b *pebble.Batch, r io.Reader) error {
	lo, hi := kvSpan(kv.group)
	if err := b.DeleteRange(lo, hi, nil); err != nil {
		return err
	}
	br := bufio.NewReader(r)
	readBytes := func() ([]byte, error) {
		l, err := binary.ReadUvarint(br)
		if err != nil {
			return nil, err
		}
		if l > multiraft.MaxSnapshotBytes {
			return nil, ErrCorruptSnapshot
		}
		buf := make([]byte, l)
		_, err = io.ReadFull(br, buf)
		return buf, err
	}
	var n uint64
	for {
		k, err := readBytes()
		if err != nil {
			return fmt.Errorf("%w: %w", ErrCorruptSnapshot, err)
		}
		if len(k) == 0 {
			break
		}
		if string(k) < string(lo) || string(k) >= string(hi) {
			return fmt.Errorf("%w: key %x outside group %d", ErrCorruptSnapshot, k, kv.group)
		}
		v, err := readBytes()
		if err != nil {
			return fmt.Errorf("%w: %w", ErrCorruptSnapshot, err)
		}
		if err := b.Set(k, v, nil); err != nil {
			return err
		}
		n++
	}
	count, err := binary.ReadUvarint(br)
	if err != nil || count != n {
		return fmt.Errorf("%w: %d records, trailer says %d (%v)", ErrCorruptSnapshot, n, count, err)
	}
	if _, err := br.ReadByte(); err != io.EOF {
		return fmt.Errorf("%w: trailing bytes", ErrCorruptSnapshot)
	}
	return nil
}

// Destroy implements multiraft.StateMachine.
func (kv *KV) Destroy(b *pebble.Batch) {
	lo, hi := kvSpan(kv.group)
	_ = b.DeleteRange(lo, hi, nil)
}
