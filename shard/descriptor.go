package shard

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"slices"
	"strings"

	"github.com/flotilla-kv/flotilla/multiraft"
)

// ShardID names a shard. It is the ID of the shard's Raft group.
type ShardID = multiraft.GroupID

// Epoch versions a shard's descriptor. Both parts only grow.
type Epoch struct {
	// ConfVer increases on every change of the shard's replicas.
	ConfVer uint64
	// Version increases on every change of the shard's key range (split).
	Version uint64
}

// IsZero reports whether e is the zero epoch, which requests use to skip
// the epoch check.
func (e Epoch) IsZero() bool { return e == Epoch{} }

func (e Epoch) String() string { return fmt.Sprintf("v%d/c%d", e.Version, e.ConfVer) }

// Descriptor describes a shard: the half-open key range [Start, End) it
// owns (an empty End means +inf, an empty Start means -inf), its epoch and
// its replicas. A Descriptor is a plain value; the package never mutates a
// Descriptor it has handed out, and callers must Clone one before changing
// its slices.
type Descriptor struct {
	ShardID ShardID
	Start   []byte
	End     []byte
	Epoch   Epoch
	// Replicas are the shard's members, sorted by ReplicaID.
	Replicas []multiraft.Replica
}

// descriptorFormat is the leading byte of an encoded Descriptor.
const descriptorFormat byte = 1

// ContainsKey reports whether key lies in [d.Start, d.End).
func (d *Descriptor) ContainsKey(key []byte) bool {
	return bytes.Compare(key, d.Start) >= 0 && (len(d.End) == 0 || bytes.Compare(key, d.End) < 0)
}

// ContainsRange reports whether the range [start, end) lies in
// [d.Start, d.End); an empty end means +inf, so it is contained only in a
// shard that extends to +inf. An inverted range is judged by its bounds.
func (d *Descriptor) ContainsRange(start, end []byte) bool {
	if bytes.Compare(start, d.Start) < 0 {
		return false
	}
	if len(d.End) == 0 {
		return true
	}
	return len(end) != 0 && bytes.Compare(end, d.End) <= 0
}

// Overlaps reports whether the ranges of d and o intersect.
func (d *Descriptor) Overlaps(o *Descriptor) bool {
	return (len(o.End) == 0 || bytes.Compare(d.Start, o.End) < 0) && (len(d.End) == 0 || bytes.Compare(o.Start, d.End) < 0)
}

// Equal reports whether d and o are identical (nil and empty slices are
// equal).
func (d *Descriptor) Equal(o *Descriptor) bool {
	return d.ShardID == o.ShardID && d.Epoch == o.Epoch &&
		bytes.Equal(d.Start, o.Start) && bytes.Equal(d.End, o.End) &&
		slices.Equal(d.Replicas, o.Replicas)
}

// Clone returns a deep copy of d.
func (d *Descriptor) Clone() Descriptor {
	return Descriptor{
		ShardID:  d.ShardID,
		Start:    bytes.Clone(d.Start),
		End:      bytes.Clone(d.End),
		Epoch:    d.Epoch,
		Replicas: slices.Clone(d.Replicas),
	}
}

// Replica returns d's replica with the given ID.
func (d *Descriptor) Replica(id multiraft.ReplicaID) (multiraft.Replica, bool) {
	for _, r := range d.Replicas {
		if r.ReplicaID == id {
			return r, true
		}
	}
	return multiraft.Replica{}, false
}

// Membership returns d's replicas as a multiraft.Membership (not joint).
func (d *Descriptor) Membership() multiraft.Membership {
	return multiraft.Membership{Replicas: slices.Clone(d.Replicas)}
}

// Validate reports whether d is well formed: a non-zero ShardID, Start
// before End unless End is +inf, and replicas with non-zero IDs sorted
// strictly by ReplicaID. The returned error wraps ErrBadDescriptor.
func (d *Descriptor) Validate() error {
	if d.ShardID == 0 {
		return fmt.Errorf("%w: zero shard ID", ErrBadDescriptor)
	}
	if len(d.End) != 0 && bytes.Compare(d.Start, d.End) >= 0 {
		return fmt.Errorf("%w: start %q not before end %q", ErrBadDescriptor, d.Start, d.End)
	}
	for i, r := range d.Replicas {
		if r.ReplicaID == 0 || r.NodeID == 0 {
			return fmt.Errorf("%w: replica %v has a zero ID", ErrBadDescriptor, r)
		}
		if i > 0 && d.Replicas[i-1].ReplicaID >= r.ReplicaID {
			return fmt.Errorf("%w: replicas not sorted by ID: %v", ErrBadDescriptor, d.Replicas)
		}
	}
	return nil
}

// String formats d for logs, e.g. s7["a","m") v2/c3 {r1@n1 r2@n2}.
func (d *Descriptor) String() string {
	var sb strings.Builder
	end := "+inf"
	if len(d.End) != 0 {
		end = fmt.Sprintf("%q", d.End)
	}
	fmt.Fprintf(&sb, "s%d[%q,%s) %s {", d.ShardID, d.Start, end, d.Epoch)
	for i, r := range d.Replicas {
		if i > 0 {
			sb.WriteByte(' ')
		}
		sb.WriteString(r.String())
	}
	sb.WriteByte('}')
	return sb.String()
}

// AppendEncoded appends d's binary encoding to dst and returns the extended
// slice. The encoding is deterministic: equal descriptors encode equally.
//
//	byte     format (1)
//	uvarint  ShardID
//	bytes    Start
//	bytes    End
//	uvarint  ConfVer, Version
//	uvarint  number of replicas, then per replica:
//	         uvarint ReplicaID, uvarint NodeID, byte flags (bit 0: learner)
func (d *Descriptor) AppendEncoded(dst []byte) []byte {
	dst = append(dst, descriptorFormat)
	dst = binary.AppendUvarint(dst, uint64(d.ShardID))
	dst = appendBytes(dst, d.Start)
	dst = appendBytes(dst, d.End)
	dst = binary.AppendUvarint(dst, d.Epoch.ConfVer)
	dst = binary.AppendUvarint(dst, d.Epoch.Version)
	dst = binary.AppendUvarint(dst, uint64(len(d.Replicas)))
	for _, r := range d.Replicas {
		dst = binary.AppendUvarint(dst, uint64(r.ReplicaID))
		dst = binary.AppendUvarint(dst, uint64(r.NodeID))
		var flags byte
		if r.Learner {
			flags |= 1
		}
		dst = append(dst, flags)
	}
	return dst
}

// DecodeDescriptor decodes a descriptor made by AppendEncoded and validates
// it. The result does not alias b. Errors wrap ErrBadDescriptor.
func DecodeDescriptor(b []byte) (Descriptor, error) {
	d := decoder{buf: b}
	desc := decodeDescriptorFrom(&d)
	if err := d.finish(); err != nil {
		return Descriptor{}, fmt.Errorf("%w: %w", ErrBadDescriptor, err)
	}
	if err := desc.Validate(); err != nil {
		return Descriptor{}, err
	}
	return desc, nil
}

// decodeDescriptorFrom reads one descriptor from d, copying its slices; it
// does not validate it.
func decodeDescriptorFrom(d *decoder) Descriptor {
	if f := d.byte(); d.err == nil && f != descriptorFormat {
		d.fail(fmt.Errorf("unknown descriptor format %d", f))
	}
	var desc Descriptor
	desc.ShardID = ShardID(d.uvarint())
	desc.Start = cloneNonNil(d.bytes())
	desc.End = cloneNonNil(d.bytes())
	desc.Epoch.ConfVer = d.uvarint()
	desc.Epoch.Version = d.uvarint()
	n := d.count(3)
	if n > 0 {
		desc.Replicas = make([]multiraft.Replica, n)
	}
	for i := range n {
		r := &desc.Replicas[i]
		r.ReplicaID = multiraft.ReplicaID(d.uvarint())
		r.NodeID = multiraft.NodeID(d.uvarint())
		switch d.byte() {
		case 0:
		case 1:
			r.Learner = true
		default:
			d.fail(fmt.Errorf("unknown replica flags"))
		}
	}
	if d.err != nil {
		return Descriptor{}
	}
	return desc
}

// cloneNonNil copies b, mapping an empty slice to nil so decoded and
// constructed descriptors compare equal with reflect.DeepEqual too.
func cloneNonNil(b []byte) []byte {
	if len(b) == 0 {
		return nil
	}
	return bytes.Clone(b)
}
