package shard

import (
	"errors"
	"reflect"
	"testing"

	"github.com/flotilla-kv/flotilla/multiraft"
)

func TestDescriptorContains(t *testing.T) {
	bm := Descriptor{ShardID: 1, Start: []byte("b"), End: []byte("m")}
	all := Descriptor{ShardID: 1}
	tail := Descriptor{ShardID: 1, Start: []byte("m")}
	keys := []struct {
		d    *Descriptor
		key  string
		want bool
	}{
		{&bm, "a", false}, {&bm, "b", true}, {&bm, "b\x00", true}, {&bm, "lzzz", true}, {&bm, "m", false}, {&bm, "", false},
		{&all, "", true}, {&all, "\xff\xff", true},
		{&tail, "l", false}, {&tail, "m", true}, {&tail, "\xff", true},
	}
	for _, tc := range keys {
		if got := tc.d.ContainsKey([]byte(tc.key)); got != tc.want {
			t.Errorf("%s.ContainsKey(%q) = %v", tc.d, tc.key, got)
		}
	}
	ranges := []struct {
		d          *Descriptor
		start, end string
		want       bool
	}{
		{&bm, "b", "m", true}, {&bm, "c", "d", true}, {&bm, "a", "c", false}, {&bm, "c", "n", false},
		{&bm, "c", "", false}, // +inf end does not fit a bounded shard
		{&all, "", "", true}, {&all, "x", "", true},
		{&tail, "m", "", true}, {&tail, "n", "z", true}, {&tail, "a", "", false},
	}
	for _, tc := range ranges {
		if got := tc.d.ContainsRange([]byte(tc.start), []byte(tc.end)); got != tc.want {
			t.Errorf("%s.ContainsRange(%q, %q) = %v", tc.d, tc.start, tc.end, got)
		}
	}
}

func TestDescriptorEncoding(t *testing.T) {
	descs := []Descriptor{
		testDesc(),
		{ShardID: 1},
		{ShardID: 1 << 60, Start: []byte("\x00"), Epoch: Epoch{ConfVer: 1 << 50, Version: 1}},
	}
	for _, d := range descs {
		enc := d.AppendEncoded(nil)
		got, err := DecodeDescriptor(enc)
		if err != nil {
			t.Fatalf("%s: %v", &d, err)
		}
		if !got.Equal(&d) || !reflect.DeepEqual(got, d) {
			t.Fatalf("decoded %s, want %s", &got, &d)
		}
		if again := got.AppendEncoded(nil); string(again) != string(enc) {
			t.Fatalf("%s: encoding not deterministic", &d)
		}
		for n := range len(enc) {
			if _, err := DecodeDescriptor(enc[:n]); !errors.Is(err, ErrBadDescriptor) {
				t.Fatalf("%s cut at %d: %v", &d, n, err)
			}
		}
		if _, err := DecodeDescriptor(append(enc, 0)); !errors.Is(err, ErrBadDescriptor) {
			t.Fatalf("%s with a trailing byte: %v", &d, err)
		}
	}
}

func TestDescriptorValidate(t *testing.T) {
	r := func(id, node uint64) multiraft.Replica {
		return multiraft.Replica{ReplicaID: multiraft.ReplicaID(id), NodeID: multiraft.NodeID(node)}
	}
	tests := []struct {
		name string
		d    Descriptor
		ok   bool
	}{
		{"good", testDesc(), true},
		{"zero-id", Descriptor{}, false},
		{"start-equals-end", Descriptor{ShardID: 1, Start: []byte("a"), End: []byte("a")}, false},
		{"start-after-end", Descriptor{ShardID: 1, Start: []byte("b"), End: []byte("a")}, false},
		{"unsorted", Descriptor{ShardID: 1, Replicas: []multiraft.Replica{r(2, 1), r(1, 2)}}, false},
		{"duplicate", Descriptor{ShardID: 1, Replicas: []multiraft.Replica{r(1, 1), r(1, 2)}}, false},
		{"zero-replica", Descriptor{ShardID: 1, Replicas: []multiraft.Replica{r(0, 1)}}, false},
		{"zero-node", Descriptor{ShardID: 1, Replicas: []multiraft.Replica{r(1, 0)}}, false},
	}
	for _, tc := range tests {
		err := tc.d.Validate()
		if (err == nil) != tc.ok || (err != nil && !errors.Is(err, ErrBadDescriptor)) {
			t.Errorf("%s: %v", tc.name, err)
		}
		// Invalid descriptors never decode either.
		if _, err := DecodeDescriptor(tc.d.AppendEncoded(nil)); (err == nil) != tc.ok {
			t.Errorf("%s: decode: %v", tc.name, err)
		}
	}
}

func TestDescriptorCloneIsDeep(t *testing.T) {
	d := testDesc()
	c := d.Clone()
	c.Start[0] = 'x'
	c.Replicas[0].NodeID = 9
	if d.Start[0] != 'b' || d.Replicas[0].NodeID != 1 {
		t.Fatal("Clone shares memory")
	}
	if c.Equal(&d) {
		t.Fatal("Equal ignores differences")
	}
}
