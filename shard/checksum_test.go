package shard

import (
	"bytes"
	"errors"
	"testing"
)

func TestChecksumThroughTheLog(t *testing.T) {
	ctx := testCtx(t)
	n := openNode(t, newDB(t))
	desc := loneDesc()
	if err := n.store.CreateShard(desc, 1); err != nil {
		t.Fatal(err)
	}
	n.campaign(ctx, 1)
	if err := n.store.Put(ctx, 1, Header{}, []byte("c"), []byte("1")); err != nil {
		t.Fatal(err)
	}
	idx1, sum1, err := n.store.Checksum(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	local, err := n.store.LocalChecksum(ctx, 1, idx1)
	if err != nil || !bytes.Equal(local, sum1) {
		t.Fatalf("local checksum %x, %v; want %x", local, err, sum1)
	}
	// The same data gives the same checksum; different data another one.
	_, again, err := n.store.Checksum(ctx, 1)
	if err != nil || !bytes.Equal(again, sum1) {
		t.Fatalf("unchanged data, checksum %x then %x (%v)", sum1, again, err)
	}
	if err := n.store.Put(ctx, 1, Header{}, []byte("d"), []byte("2")); err != nil {
		t.Fatal(err)
	}
	idx3, sum3, err := n.store.Checksum(ctx, 1)
	if err != nil || bytes.Equal(sum3, sum1) {
		t.Fatalf("changed data kept checksum %x (%v)", sum3, err)
	}
	if _, err := n.store.LocalChecksum(ctx, 1, idx1); !errors.Is(err, ErrChecksumSuperseded) {
		t.Fatalf("old checksum: %v, want ErrChecksumSuperseded", err)
	}
	if _, err := n.store.LocalChecksum(ctx, 1, idx3); err != nil {
		t.Fatal(err)
	}
	if _, err := n.store.Execute(ctx, 1, &Command{Kind: KindChecksum, Header: Header{ClientID: 7, Seq: 1}}); !errors.Is(err, ErrBadCommand) {
		t.Fatalf("exactly-once checksum accepted: %v", err)
	}
}
