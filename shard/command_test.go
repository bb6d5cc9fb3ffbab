package shard

import (
	"bytes"
	"errors"
	"reflect"
	"testing"
)

// sampleCommands covers every kind and every optional part of the format.
func sampleCommands() []Command {
	h := Header{ClientID: 1 << 40, Seq: 300, Epoch: Epoch{ConfVer: 5, Version: 1 << 20}}
	return []Command{
		{Kind: KindPut, Header: h, Key: []byte("key"), Value: []byte("value")},
		{Kind: KindPut, Key: []byte("k"), Value: []byte{}},
		{Kind: KindDelete, Header: h, Key: []byte("key")},
		{Kind: KindCompareAndSwap, Header: h, Key: []byte("k"), Expected: []byte("old"), Value: []byte("new")},
		{Kind: KindCompareAndSwap, Key: []byte("k"), Expected: []byte{}, Value: []byte("new")},
		{Kind: KindCompareAndSwap, Key: []byte("k"), ExpectAbsent: true, Value: []byte("new")},
		{Kind: KindBatch, Header: h, Ops: []Op{
			{Key: []byte("a"), Value: []byte("1")},
			{Key: []byte("b"), Delete: true},
			{Key: []byte("c"), Value: []byte{}},
		}},
		{Kind: KindSplit, Header: h, Key: []byte("m"), NewShard: 77, NewReplicas: []SplitReplica{{1, 101}, {2, 102}}},
	}
}

// normalize maps empty slices to nil so decoded and constructed commands
// compare equal.
func normalize(c Command) Command {
	nz := func(b []byte) []byte {
		if len(b) == 0 {
			return nil
		}
		return b
	}
	c.Key, c.Value, c.Expected = nz(c.Key), nz(c.Value), nz(c.Expected)
	if len(c.Ops) == 0 {
		c.Ops = nil
	}
	for i := range c.Ops {
		c.Ops[i].Key, c.Ops[i].Value = nz(c.Ops[i].Key), nz(c.Ops[i].Value)
	}
	if len(c.NewReplicas) == 0 {
		c.NewReplicas = nil
	}
	return c
}

func TestCommandRoundTrip(t *testing.T) {
	var got Command
	for _, c := range sampleCommands() {
		enc := c.AppendEncoded([]byte("prefix"))[len("prefix"):]
		if err := DecodeCommand(enc, &got); err != nil {
			t.Fatalf("%s: %v", c.Kind, err)
		}
		if !reflect.DeepEqual(normalize(got), normalize(c)) {
			t.Fatalf("%s: decoded %+v, want %+v", c.Kind, got, c)
		}
		if re := got.AppendEncoded(nil); !bytes.Equal(re, enc) {
			t.Fatalf("%s: re-encoding differs", c.Kind)
		}
	}
}

// TestDecodeCommandRefusesDamage decodes every proper prefix and every
// one-byte extension of each sample: all must fail with ErrBadCommand.
func TestDecodeCommandRefusesDamage(t *testing.T) {
	var c Command
	for _, s := range sampleCommands() {
		enc := s.AppendEncoded(nil)
		for n := range len(enc) {
			if err := DecodeCommand(enc[:n], &c); !errors.Is(err, ErrBadCommand) {
				t.Fatalf("%s cut at %d/%d: %v", s.Kind, n, len(enc), err)
			}
		}
		if err := DecodeCommand(append(enc, 0), &c); !errors.Is(err, ErrBadCommand) {
			t.Fatalf("%s with a trailing byte: %v", s.Kind, err)
		}
	}
	for _, bad := range [][]byte{
		{2, 1, 0, 0, 0, 0}, // unknown format
		{1, 0, 0, 0, 0, 0}, // kind zero
		{1, 7, 0, 0, 0, 0}, // unknown kind
		{1, byte(KindCompareAndSwap), 0, 0, 0, 0, 2, 1, 'k', 0, 0},                           // unknown CAS flag
		{1, byte(KindBatch), 0, 0, 0, 0, 1, 3, 1, 'k'},                                       // unknown op
		{1, byte(KindBatch), 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0x0f},                       // absurd count
		{1, byte(KindPut), 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01}, // varint overflow
	} {
		if err := DecodeCommand(bad, &c); !errors.Is(err, ErrBadCommand) {
			t.Fatalf("%x: %v", bad, err)
		}
	}
}

// TestDecodeCommandReusesSlices checks decoding into a used Command resets
// it and reuses its slices' capacity.
func TestDecodeCommandReusesSlices(t *testing.T) {
	var c Command
	samples := sampleCommands()
	batch := samples[6].AppendEncoded(nil)
	if err := DecodeCommand(batch, &c); err != nil {
		t.Fatal(err)
	}
	ops := &c.Ops[:1][0]
	if err := DecodeCommand(samples[0].AppendEncoded(nil), &c); err != nil {
		t.Fatal(err)
	}
	if len(c.Ops) != 0 {
		t.Fatal("ops survived decoding a put")
	}
	allocs := testing.AllocsPerRun(100, func() {
		if err := DecodeCommand(batch, &c); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 || &c.Ops[0] != ops {
		t.Fatalf("decoding a batch into a used command: %v allocs, reused %v", allocs, &c.Ops[0] == ops)
	}
}

func FuzzDecodeCommand(f *testing.F) {
	for _, c := range sampleCommands() {
		enc := c.AppendEncoded(nil)
		f.Add(enc)
		f.Add(enc[:len(enc)/2])
	}
	f.Add([]byte{})
	f.Add([]byte{1, byte(KindBatch), 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0x0f})
	f.Fuzz(func(t *testing.T, data []byte) {
		var c Command
		if err := DecodeCommand(data, &c); err != nil {
			if !errors.Is(err, ErrBadCommand) {
				t.Fatalf("error %v does not wrap ErrBadCommand", err)
			}
			return
		}
		// What decodes re-encodes to something that decodes the same.
		var again Command
		if err := DecodeCommand(c.AppendEncoded(nil), &again); err != nil {
			t.Fatalf("re-encoded %+v does not decode: %v", c, err)
		}
		if !reflect.DeepEqual(normalize(again), normalize(c)) {
			t.Fatalf("round trip changed %+v into %+v", c, again)
		}
		// Checking limits never panics either.
		cfg := Config{}.withDefaults()
		_ = c.checkLimits(&cfg)
		d := testDesc()
		_ = c.checkAgainst(&d)
	})
}
