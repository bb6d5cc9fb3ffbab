package rpc

import (
	"bytes"
	"testing"

	"github.com/flotilla-kv/flotilla/multiraft"
	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
)

// hotMessages are messages of the kinds a busy fleet sends most, each
// with the fields Raft sets on them.
func hotMessages() []*raftpb.Message {
	u := proto.Uint64
	entry := func(term, index uint64, data string) *raftpb.Entry {
		return &raftpb.Entry{Term: u(term), Index: u(index), Type: raftpb.EntryNormal.Enum(), Data: []byte(data)}
	}
	return []*raftpb.Message{
		{Type: raftpb.MsgApp.Enum(), To: u(2), From: u(1), Term: u(7), LogTerm: u(7), Index: u(41), Commit: u(40),
			Entries: []*raftpb.Entry{entry(7, 42, "put a=1"), entry(7, 43, "put b=2"), {Term: u(7), Index: u(44)}}},
		{Type: raftpb.MsgAppResp.Enum(), To: u(1), From: u(2), Term: u(7), Index: u(44)},
		{Type: raftpb.MsgAppResp.Enum(), To: u(1), From: u(3), Term: u(7), Index: u(30), Reject: proto.Bool(true), RejectHint: u(29), LogTerm: u(6)},
		{Type: raftpb.MsgHeartbeat.Enum(), To: u(3), From: u(1), Term: u(7), Commit: u(44), Context: []byte("read-17")},
		{Type: raftpb.MsgHeartbeatResp.Enum(), To: u(1), From: u(3), Term: u(7), Context: []byte{}},
		{Type: raftpb.MsgVote.Enum(), To: u(2), From: u(3), Term: u(8), LogTerm: u(7), Index: u(44), Vote: u(3)},
		{Type: raftpb.MsgApp.Enum(), To: u(2), From: u(1), Term: u(7),
			Entries: []*raftpb.Entry{{Type: raftpb.EntryConfChangeV2.Enum(), Term: u(7), Index: u(45), Data: []byte{}}}},
		{},
	}
}

// TestDecodeRaftMessageFastPath: the messages a busy fleet sends are read
// by the decoder itself (not handed to proto.Unmarshal) and decode to what
// was encoded, owning their bytes.
func TestDecodeRaftMessageFastPath(t *testing.T) {
	var a msgArena
	var s msgScratch
	for _, want := range hotMessages() {
		b, err := proto.Marshal(want)
		if err != nil {
			t.Fatal(err)
		}
		if !s.read(b) {
			t.Errorf("%v: handed to proto.Unmarshal, want the decoder's own path", want)
			continue
		}
		var got raftpb.Message
		if err := decodeRaftMessage(b, &got, &a, &s); err != nil {
			t.Fatal(err)
		}
		clear(b)
		if !proto.Equal(&got, want) {
			t.Errorf("decoded %v, want %v", &got, want)
		}
	}
}

// TestDecodeRaftMessageFallsBack: what the decoder does not read itself
// still decodes, through proto.Unmarshal, and malformed input is refused.
func TestDecodeRaftMessageFallsBack(t *testing.T) {
	u := proto.Uint64
	snap := &raftpb.Message{Type: raftpb.MsgSnap.Enum(), To: u(2), Snapshot: &raftpb.Snapshot{
		Data: []byte("state"), Metadata: &raftpb.SnapshotMetadata{Index: u(9), Term: u(2),
			ConfState: &raftpb.ConfState{Voters: []uint64{1, 2, 3}}}}}
	withResponses := &raftpb.Message{Type: raftpb.MsgStorageAppend.Enum(), Responses: []*raftpb.Message{{Type: raftpb.MsgAppResp.Enum(), To: u(1)}}}
	for _, want := range []*raftpb.Message{snap, withResponses} {
		b, _ := proto.Marshal(want)
		var a msgArena
		var s msgScratch
		if s.read(b) {
			t.Errorf("%v: read by the decoder, which does not know its fields", want)
		}
		var got raftpb.Message
		if err := decodeRaftMessage(b, &got, &a, &s); err != nil || !proto.Equal(&got, want) {
			t.Errorf("decoded %v (%v), want %v", &got, err, want)
		}
	}

	base, _ := proto.Marshal(hotMessages()[0])
	for name, b := range map[string][]byte{
		"unknown field":           protowire.AppendVarint(protowire.AppendTag(bytes.Clone(base), 99, protowire.VarintType), 5),
		"unknown message type":    protowire.AppendVarint(protowire.AppendTag(bytes.Clone(base), msgFieldType, protowire.VarintType), 1000),
		"term as bytes":           protowire.AppendBytes(protowire.AppendTag(bytes.Clone(base), msgFieldTerm, protowire.BytesType), []byte("x")),
		"entry with unknown type": protowire.AppendBytes(protowire.AppendTag(nil, msgFieldEntries, protowire.BytesType), protowire.AppendVarint(protowire.AppendTag(nil, entryFieldType, protowire.VarintType), 7)),
	} {
		var s msgScratch
		if s.read(b) {
			t.Errorf("%s: read by the decoder", name)
		}
		sameAsProto(t, b)
	}
	for name, b := range map[string][]byte{
		"cut varint":  base[:len(base)-1],
		"bad length":  append(protowire.AppendTag(nil, msgFieldEntries, protowire.BytesType), 0x7f),
		"field zero":  {0x00, 0x01},
		"end group":   {0x0c},
		"long varint": append(protowire.AppendTag(nil, msgFieldTo, protowire.VarintType), 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01),
	} {
		var got raftpb.Message
		if err := decodeRaftMessage(b, &got, &msgArena{}, &msgScratch{}); err == nil {
			t.Errorf("%s: decoded %v, want an error", name, &got)
		}
		sameAsProto(t, b)
	}
}

// sameAsProto fails the test unless decodeRaftMessage and proto.Unmarshal
// agree on b: both refuse it, or both decode equal messages, and what the
// decoder made does not change when its input is overwritten afterwards.
// It returns proto's message, nil when proto refused b.
func sameAsProto(t testing.TB, b []byte) *raftpb.Message {
	t.Helper()
	var want, got raftpb.Message
	wantErr := proto.Unmarshal(b, &want)
	in := bytes.Clone(b)
	gotErr := decodeRaftMessage(in, &got, &msgArena{chunk: 1}, &msgScratch{})
	if (wantErr == nil) != (gotErr == nil) {
		t.Fatalf("%x: proto.Unmarshal says %v, the decoder %v", b, wantErr, gotErr)
	}
	if wantErr != nil {
		return nil
	}
	for i := range in {
		in[i] ^= 0xff
	}
	if !proto.Equal(&got, &want) {
		t.Fatalf("%x: decoded %v, proto.Unmarshal %v", b, &got, &want)
	}
	return &want
}

// FuzzRaftMessageCodec: on any input the decoder agrees with
// proto.Unmarshal (sameAsProto), and the message proto.Unmarshal makes of
// it is encoded by appendRaftMessage to proto.Marshal's bytes.
func FuzzRaftMessageCodec(f *testing.F) {
	for _, m := range hotMessages() {
		b, _ := proto.Marshal(m)
		f.Add(b)
	}
	snap, _ := proto.Marshal(&raftpb.Message{Type: raftpb.MsgSnap.Enum(), Snapshot: &raftpb.Snapshot{Data: []byte("s")}})
	f.Add(snap)
	f.Fuzz(func(t *testing.T, b []byte) {
		if m := sameAsProto(t, b); m != nil {
			sameEncoding(t, m)
		}
	})
}

// sameEncoding fails the test unless appendRaftMessage writes m as a
// uvarint length and proto.Marshal's bytes.
func sameEncoding(t testing.TB, m *raftpb.Message) {
	t.Helper()
	wire, err := proto.MarshalOptions{Deterministic: true}.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	got, err := appendRaftMessage([]byte("prefix"), m)
	if err != nil {
		t.Fatal(err)
	}
	if want := append(protowire.AppendVarint([]byte("prefix"), uint64(len(wire))), wire...); !bytes.Equal(got, want) {
		t.Fatalf("appendRaftMessage(%v) wrote\n%x, proto.Marshal\n%x", m, got, want)
	}
}

// TestAppendRaftMessage: the encoder writes what proto.Marshal writes,
// for the messages it encodes itself and those it hands to proto.
func TestAppendRaftMessage(t *testing.T) {
	u := proto.Uint64
	msgs := append(hotMessages(),
		&raftpb.Message{Type: raftpb.MsgSnap.Enum(), To: u(2), Snapshot: &raftpb.Snapshot{Data: []byte("state")}},
		&raftpb.Message{Type: raftpb.MsgStorageAppend.Enum(), Responses: []*raftpb.Message{{To: u(1)}}},
		&raftpb.Message{Type: raftpb.MessageType(-1).Enum(), To: u(1 << 63), Reject: proto.Bool(false), Context: []byte{}},
		&raftpb.Message{Entries: []*raftpb.Entry{{}, {Type: raftpb.EntryType(1 << 30).Enum(), Data: make([]byte, 300)}}},
	)
	for _, m := range msgs {
		if !plainMessage(m) && m.Snapshot == nil && m.Responses == nil {
			t.Errorf("%v: handed to proto, want the encoder's own path", m)
		}
		sameEncoding(t, m)
	}
	var withUnknown raftpb.Message
	if err := proto.Unmarshal(protowire.AppendVarint(protowire.AppendTag(nil, 99, protowire.VarintType), 5), &withUnknown); err != nil {
		t.Fatal(err)
	}
	if plainMessage(&withUnknown) {
		t.Error("a message with an unknown field is taken for plain")
	}
	sameEncoding(t, &withUnknown)
}

// TestFrameDecodeAllocations: a frame's allocations do not grow with the
// fields of its messages. A frame of a hundred appends with one entry
// each takes 1,301 allocations through proto.Unmarshal
// (BenchmarkFrameDecode).
func TestFrameDecodeAllocations(t *testing.T) {
	payload := appendFrameOfAppends(100)
	var d frameDecoder
	allocs := testing.AllocsPerRun(20, func() {
		if _, err := d.decode(payload); err != nil {
			t.Fatal(err)
		}
	})
	// The frame's messages, six arenas, and one data buffer per message.
	if limit := 100.0 + 10; allocs > limit {
		t.Errorf("decoding a frame of 100 appends made %.0f allocations, want at most %.0f", allocs, limit)
	}
}

// appends returns n MsgApps of one 64-byte entry each, one per group.
func appends(n int) []multiraft.Message {
	u := proto.Uint64
	msgs := make([]multiraft.Message, n)
	for i := range msgs {
		msgs[i] = multiraft.Message{Group: multiraft.GroupID(i + 1), ToNode: 2, FromNode: 1, Msg: &raftpb.Message{
			Type: raftpb.MsgApp.Enum(), To: u(2), From: u(1), Term: u(5), LogTerm: u(5), Index: u(1000), Commit: u(999),
			Entries: []*raftpb.Entry{{Term: u(5), Index: u(1001), Type: raftpb.EntryNormal.Enum(), Data: bytes.Repeat([]byte{'x'}, 64)}},
		}}
	}
	return msgs
}

// appendFrameOfAppends returns the payload of a frame holding appends(n).
func appendFrameOfAppends(n int) []byte {
	buf, _ := appendFrame(nil, appends(n))
	return buf[frameHeaderBytes:]
}

// BenchmarkFrameDecode decodes a frame of 100 appends with the decoder,
// and the same 100 messages with proto.Unmarshal each.
func BenchmarkFrameDecode(b *testing.B) {
	b.Run("decoder", func(b *testing.B) {
		payload := appendFrameOfAppends(100)
		var d frameDecoder
		b.ReportAllocs()
		for b.Loop() {
			if _, err := d.decode(payload); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("proto.Unmarshal", func(b *testing.B) {
		var wire [][]byte
		for _, m := range appends(100) {
			w, err := proto.Marshal(m.Msg)
			if err != nil {
				b.Fatal(err)
			}
			wire = append(wire, w)
		}
		b.ReportAllocs()
		for b.Loop() {
			raft := make([]raftpb.Message, len(wire))
			for i := range raft {
				if err := proto.Unmarshal(wire[i], &raft[i]); err != nil {
					b.Fatal(err)
				}
			}
		}
	})
}

// BenchmarkFrameEncode encodes a frame of 100 appends, with the encoder
// and with proto's size and marshal passes for every message.
func BenchmarkFrameEncode(b *testing.B) {
	msgs := appends(100)
	var buf []byte
	var err error
	b.Run("encoder", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			buf, _ = appendFrame(buf[:0], msgs)
		}
	})
	b.Run("proto.Marshal", func(b *testing.B) {
		b.ReportAllocs()
		marshal := proto.MarshalOptions{UseCachedSize: true}
		for b.Loop() {
			buf = buf[:0]
			for i := range msgs {
				buf = protowire.AppendVarint(buf, uint64(proto.Size(msgs[i].Msg)))
				if buf, err = marshal.MarshalAppend(buf, msgs[i].Msg); err != nil {
					b.Fatal(err)
				}
			}
		}
	})
}
