package shard

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/cockroachdb/pebble/v2"

	"github.com/flotilla-kv/flotilla/internal/keys"
)

// ErrChecksumSuperseded: the checksum asked for was replaced by a later one
// before it could be read.
var ErrChecksumSuperseded = errors.New("shard: checksum superseded by a later one")

// applyChecksum computes the SHA-256 of the shard's descriptor and user
// data as the batch sees them (earlier commands of the same batch
// included), records it with index, and returns it. It reads the whole
// shard on the applying worker: it is an administrative command, not one
// for the hot path.
func (sm *StateMachine) applyChecksum(b *pebble.Batch, index uint64, desc *Descriptor) *Result {
	h := sha256.New()
	h.Write(desc.AppendEncoded(nil))
	lo, hi := keys.UserSpan(desc.Start, desc.End)
	it, err := b.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: hi})
	if err != nil {
		panic(fmt.Sprintf("shard %d: checksum iterator: %v", sm.shard, err))
	}
	var lens [2 * binary.MaxVarintLen64]byte
	for it.First(); it.Valid(); it.Next() {
		v, err := it.ValueAndErr()
		if err != nil {
			panic(fmt.Sprintf("shard %d: checksum read: %v", sm.shard, err))
		}
		n := binary.PutUvarint(lens[:], uint64(len(it.Key())))
		n += binary.PutUvarint(lens[n:], uint64(len(v)))
		h.Write(lens[:n])
		h.Write(it.Key())
		h.Write(v)
	}
	if err := it.Close(); err != nil {
		panic(fmt.Sprintf("shard %d: checksum iterator: %v", sm.shard, err))
	}
	sum := h.Sum(nil)
	rec := binary.AppendUvarint(nil, index)
	mustWrite(b.Set(keys.ShardKey(uint64(sm.shard), keys.ShardChecksum), append(rec, sum...), nil))
	return &Result{Succeeded: true, Value: sum, Index: index}
}

// Checksum computes, through the log, a checksum of shard's data on every
// replica at one log index, and returns that index and this (leader)
// replica's checksum. Other replicas' checksums are read with LocalChecksum.
func (s *Store) Checksum(ctx context.Context, shard ShardID) (uint64, []byte, error) {
	res, err := s.Execute(ctx, shard, &Command{Kind: KindChecksum})
	if err != nil {
		return 0, nil, err
	}
	return res.Index, res.Value, nil
}

// LocalChecksum returns the checksum this replica computed when it applied
// the checksum command at index, waiting (until ctx ends) for it to apply.
func (s *Store) LocalChecksum(ctx context.Context, shard ShardID, index uint64) ([]byte, error) {
	e, _, _, err := s.lookup(shard)
	if err != nil {
		return nil, err
	}
	key := keys.ShardKey(uint64(shard), keys.ShardChecksum)
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	for {
		v, closer, err := e.DB().Get(key)
		switch {
		case err == nil:
			at, n := binary.Uvarint(v)
			var sum []byte
			if n > 0 {
				sum = append([]byte(nil), v[n:]...)
			}
			closer.Close()
			if n <= 0 || len(sum) != sha256.Size {
				panic(fmt.Sprintf("shard %d: corrupt checksum record %x", shard, v))
			}
			if at == index {
				return sum, nil
			}
			if at > index {
				return nil, fmt.Errorf("%w: asked for %d, have %d", ErrChecksumSuperseded, index, at)
			}
		case !errors.Is(err, pebble.ErrNotFound):
			return nil, err
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-t.C:
		}
	}
}
