package rpc

import (
	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
)

// Encoding and decoding a frame's Raft messages without proto's
// reflection, and without one allocation per field.
//
// raftpb's types are proto2, generated with a pointer for every optional
// scalar, so proto.Unmarshal allocates once for each field present, and
// once for each entry, each of its fields and its data: thirteen
// allocations for a MsgApp carrying one entry (BenchmarkFrameDecode). In
// the write bench's profiles they were the largest share of a node's
// allocations. The
// decoder here reads the fields that Raft's messages carry and points
// each scalar into arrays shared by the frame (msgArena), and the data
// of a message's entries and its context into one buffer per message, so
// a frame costs a handful of allocations whatever its fields.
//
// proto.Unmarshal stays the reference. A message the decoder does not
// read exactly as proto.Unmarshal would (a snapshot, responses, a field
// or enum value it does not know, a wire type that does not match the
// field, anything malformed) is handed to proto.Unmarshal whole, so the
// result, or the error, is always proto.Unmarshal's; FuzzRaftMessageCodec
// holds the two to the same result on any input.
//
// The encoder (appendRaftMessage) writes what proto.Marshal writes, byte
// for byte, from the same fields, and hands anything else to proto; the
// same fuzz target compares the two encodings.

// Field numbers of raftpb.Message and raftpb.Entry (raft.proto).
const (
	msgFieldType       = 1
	msgFieldTo         = 2
	msgFieldFrom       = 3
	msgFieldTerm       = 4
	msgFieldLogTerm    = 5
	msgFieldIndex      = 6
	msgFieldEntries    = 7
	msgFieldCommit     = 8
	msgFieldReject     = 10
	msgFieldRejectHint = 11
	msgFieldContext    = 12
	msgFieldVote       = 13
	msgFields          = 14 // one past the highest field number read

	entryFieldType  = 1
	entryFieldTerm  = 2
	entryFieldIndex = 3
	entryFieldData  = 4
)

// msgArena hands out the memory of one frame's decoded messages. Each
// value gets a slot of its own, so a message or entry can be changed by
// whoever holds it without touching another. The frame's arrays live as
// long as any of its messages or entries does: an entry held in a Raft
// log keeps the frame's entry structs and scalars, about a hundred bytes
// per entry of the frame (its data is in its message's own buffer).
type msgArena struct {
	chunk  int // the size of a fresh array, from the frame's message count
	u64    []uint64
	mtypes []raftpb.MessageType
	etypes []raftpb.EntryType
	bools  []bool
	ents   []raftpb.Entry
	ptrs   []*raftpb.Entry
}

// take returns n fresh elements of *s, starting a new array of at least
// chunk elements when the current one has no room; the arrays already
// handed out are never moved.
func take[T any](s *[]T, n, chunk int) []T {
	if cap(*s)-len(*s) < n {
		*s = make([]T, 0, max(n, chunk))
	}
	l := len(*s)
	*s = (*s)[:l+n]
	return (*s)[l : l+n : l+n]
}

func (a *msgArena) uint64(v uint64) *uint64 {
	p := &take(&a.u64, 1, 8*a.chunk)[0]
	*p = v
	return p
}

// msgScratch holds one message's fields while they are read: the
// scalars by field number, the entries, and byte fields that still
// point into the frame. It is reused from message to message.
type msgScratch struct {
	present uint32 // bit n: field n was read
	scalars [msgFields]uint64
	context []byte
	entries []entryScratch
}

// entryScratch is one entry's fields while they are read.
type entryScratch struct {
	present     uint8 // bit n: field n was read
	typ         raftpb.EntryType
	term, index uint64
	data        []byte
}

// decodeRaftMessage decodes b into m, which must be zero, as
// proto.Unmarshal(b, m) would. Nothing decoded points into b.
func decodeRaftMessage(b []byte, m *raftpb.Message, a *msgArena, s *msgScratch) error {
	ok := s.read(b)
	if ok {
		s.build(m, a)
	}
	// Drop the scratch's references into b, which the caller reuses or
	// frees.
	s.context = nil
	clear(s.entries)
	if !ok {
		return proto.Unmarshal(b, m)
	}
	return nil
}

// read reads b's fields into s. It reports false when b holds anything
// it does not read as proto.Unmarshal would.
func (s *msgScratch) read(b []byte) bool {
	s.present, s.context, s.entries = 0, nil, s.entries[:0]
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return false
		}
		b = b[n:]
		switch num {
		case msgFieldType, msgFieldTo, msgFieldFrom, msgFieldTerm, msgFieldLogTerm, msgFieldIndex,
			msgFieldCommit, msgFieldReject, msgFieldRejectHint, msgFieldVote:
			v, n := consumeVarint(b, typ)
			if n < 0 || num == msgFieldType && !knownEnum(raftpb.MessageType_name, v) {
				return false
			}
			b = b[n:]
			s.scalars[num] = v
			s.present |= 1 << num
		case msgFieldEntries, msgFieldContext:
			v, n := consumeBytes(b, typ)
			if n < 0 {
				return false
			}
			b = b[n:]
			if num == msgFieldContext {
				s.context = v
				s.present |= 1 << num
				continue
			}
			e, ok := readEntry(v)
			if !ok {
				return false
			}
			s.entries = append(s.entries, e)
		default:
			return false // a snapshot, responses, or a field this decoder does not know
		}
	}
	return true
}

// consumeVarint reads a varint field's value, whose tag said typ; n < 0
// when typ is not a varint or the value is malformed.
func consumeVarint(b []byte, typ protowire.Type) (v uint64, n int) {
	if typ != protowire.VarintType {
		return 0, -1
	}
	return protowire.ConsumeVarint(b)
}

// consumeBytes reads a length-delimited field's value as consumeVarint
// reads a varint's.
func consumeBytes(b []byte, typ protowire.Type) (v []byte, n int) {
	if typ != protowire.BytesType {
		return nil, -1
	}
	return protowire.ConsumeBytes(b)
}

// knownEnum reports whether v is a value of the enum whose names are
// given. raft.proto's enums are closed (proto2): proto.Unmarshal keeps
// any other value as an unknown field, so the decoder leaves it to it.
func knownEnum(names map[int32]string, v uint64) bool {
	_, known := names[int32(v)]
	return known && v <= 1<<31-1
}

// readEntry reads an entry's fields, reporting false as read does.
func readEntry(b []byte) (e entryScratch, ok bool) {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return e, false
		}
		b = b[n:]
		switch num {
		case entryFieldType, entryFieldTerm, entryFieldIndex:
			v, n := consumeVarint(b, typ)
			if n < 0 || num == entryFieldType && !knownEnum(raftpb.EntryType_name, v) {
				return e, false
			}
			b = b[n:]
			switch num {
			case entryFieldType:
				e.typ = raftpb.EntryType(v)
			case entryFieldTerm:
				e.term = v
			case entryFieldIndex:
				e.index = v
			}
			e.present |= 1 << num
		case entryFieldData:
			v, n := consumeBytes(b, typ)
			if n < 0 {
				return e, false
			}
			b = b[n:]
			e.data = v
			e.present |= 1 << num
		default:
			return e, false
		}
	}
	return e, true
}

// build fills m from what read found. Byte fields are copied into one
// buffer for the message; a field that was present but empty is empty
// and not nil, as proto.Unmarshal leaves it.
func (s *msgScratch) build(m *raftpb.Message, a *msgArena) {
	size := len(s.context)
	for i := range s.entries {
		size += len(s.entries[i].data)
	}
	var buf []byte
	if size > 0 {
		buf = make([]byte, 0, size)
	}
	own := func(v []byte) []byte {
		if len(v) == 0 {
			return []byte{}
		}
		start := len(buf)
		buf = append(buf, v...)
		return buf[start:len(buf):len(buf)]
	}

	has := func(num int) bool { return s.present&(1<<num) != 0 }
	if has(msgFieldType) {
		t := &take(&a.mtypes, 1, a.chunk)[0]
		*t = raftpb.MessageType(s.scalars[msgFieldType])
		m.Type = t
	}
	for _, f := range [...]struct {
		num int
		dst **uint64
	}{
		{msgFieldTo, &m.To}, {msgFieldFrom, &m.From}, {msgFieldTerm, &m.Term},
		{msgFieldLogTerm, &m.LogTerm}, {msgFieldIndex, &m.Index}, {msgFieldCommit, &m.Commit},
		{msgFieldRejectHint, &m.RejectHint}, {msgFieldVote, &m.Vote},
	} {
		if has(f.num) {
			*f.dst = a.uint64(s.scalars[f.num])
		}
	}
	if has(msgFieldReject) {
		r := &take(&a.bools, 1, a.chunk)[0]
		*r = s.scalars[msgFieldReject] != 0
		m.Reject = r
	}
	if has(msgFieldContext) {
		m.Context = own(s.context)
	}
	if len(s.entries) == 0 {
		return
	}
	n := len(s.entries)
	ents := take(&a.ents, n, a.chunk)
	m.Entries = take(&a.ptrs, n, a.chunk)
	for i := range s.entries {
		se, e := &s.entries[i], &ents[i]
		if se.present&(1<<entryFieldType) != 0 {
			t := &take(&a.etypes, 1, a.chunk)[0]
			*t = se.typ
			e.Type = t
		}
		if se.present&(1<<entryFieldTerm) != 0 {
			e.Term = a.uint64(se.term)
		}
		if se.present&(1<<entryFieldIndex) != 0 {
			e.Index = a.uint64(se.index)
		}
		if se.present&(1<<entryFieldData) != 0 {
			e.Data = own(se.data)
		}
		m.Entries[i] = e
	}
}

// appendRaftMessage appends m's length as a uvarint and then m as
// proto.MarshalAppend would write it, without proto's reflection-driven
// size and marshal passes: the fields in number order, present scalars
// only, a present but empty byte field as an empty field. A message with
// a field it does not write (a snapshot, responses, an unknown field, a
// nil entry) goes through proto.
func appendRaftMessage(buf []byte, m *raftpb.Message) ([]byte, error) {
	if !plainMessage(m) {
		buf = protowire.AppendVarint(buf, uint64(proto.Size(m)))
		return proto.MarshalOptions{UseCachedSize: true}.MarshalAppend(buf, m)
	}
	buf = protowire.AppendVarint(buf, uint64(sizeMessage(m)))
	if m.Type != nil {
		buf = appendVarintField(buf, msgFieldType, uint64(int64(*m.Type)))
	}
	buf = appendOptional(buf, msgFieldTo, m.To)
	buf = appendOptional(buf, msgFieldFrom, m.From)
	buf = appendOptional(buf, msgFieldTerm, m.Term)
	buf = appendOptional(buf, msgFieldLogTerm, m.LogTerm)
	buf = appendOptional(buf, msgFieldIndex, m.Index)
	for _, e := range m.Entries {
		buf = protowire.AppendTag(buf, msgFieldEntries, protowire.BytesType)
		buf = protowire.AppendVarint(buf, uint64(sizeEntry(e)))
		if e.Type != nil {
			buf = appendVarintField(buf, entryFieldType, uint64(int64(*e.Type)))
		}
		buf = appendOptional(buf, entryFieldTerm, e.Term)
		buf = appendOptional(buf, entryFieldIndex, e.Index)
		if e.Data != nil {
			buf = protowire.AppendTag(buf, entryFieldData, protowire.BytesType)
			buf = protowire.AppendBytes(buf, e.Data)
		}
	}
	buf = appendOptional(buf, msgFieldCommit, m.Commit)
	if m.Reject != nil {
		buf = appendVarintField(buf, msgFieldReject, protowire.EncodeBool(*m.Reject))
	}
	buf = appendOptional(buf, msgFieldRejectHint, m.RejectHint)
	if m.Context != nil {
		buf = protowire.AppendTag(buf, msgFieldContext, protowire.BytesType)
		buf = protowire.AppendBytes(buf, m.Context)
	}
	buf = appendOptional(buf, msgFieldVote, m.Vote)
	return buf, nil
}

// plainMessage reports whether m holds only the fields appendRaftMessage
// writes itself.
func plainMessage(m *raftpb.Message) bool {
	if m.Snapshot != nil || m.Responses != nil || len(m.ProtoReflect().GetUnknown()) > 0 {
		return false
	}
	for _, e := range m.Entries {
		if e == nil || len(e.ProtoReflect().GetUnknown()) > 0 {
			return false
		}
	}
	return true
}

func appendVarintField(buf []byte, num protowire.Number, v uint64) []byte {
	return protowire.AppendVarint(protowire.AppendTag(buf, num, protowire.VarintType), v)
}

func appendOptional(buf []byte, num protowire.Number, v *uint64) []byte {
	if v == nil {
		return buf
	}
	return appendVarintField(buf, num, *v)
}

// sizeVarintField is the size of a varint field whose number is below 16.
func sizeVarintField(v uint64) int { return 1 + protowire.SizeVarint(v) }

func sizeOptional(v *uint64) int {
	if v == nil {
		return 0
	}
	return sizeVarintField(*v)
}

// sizeMessage is the size appendRaftMessage writes for a plain m, less
// its length prefix.
func sizeMessage(m *raftpb.Message) int {
	n := sizeOptional(m.To) + sizeOptional(m.From) + sizeOptional(m.Term) + sizeOptional(m.LogTerm) +
		sizeOptional(m.Index) + sizeOptional(m.Commit) + sizeOptional(m.RejectHint) + sizeOptional(m.Vote)
	if m.Type != nil {
		n += sizeVarintField(uint64(int64(*m.Type)))
	}
	if m.Reject != nil {
		n += 2
	}
	if m.Context != nil {
		n += 1 + protowire.SizeBytes(len(m.Context))
	}
	for _, e := range m.Entries {
		n += 1 + protowire.SizeBytes(sizeEntry(e))
	}
	return n
}

// sizeEntry is the size of e's fields as appendRaftMessage writes them.
func sizeEntry(e *raftpb.Entry) int {
	n := sizeOptional(e.Term) + sizeOptional(e.Index)
	if e.Type != nil {
		n += sizeVarintField(uint64(int64(*e.Type)))
	}
	if e.Data != nil {
		n += 1 + protowire.SizeBytes(len(e.Data))
	}
	return n
}
