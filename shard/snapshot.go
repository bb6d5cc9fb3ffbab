package shard

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"

	"github.com/cockroachdb/pebble/v2"

	"github.com/flotilla-kv/flotilla/internal/keys"
)

// A snapshot image is a sequence of frames:
//
//	frame   = kind:1 | length:4 (big endian) | payload:length | crc:4
//
// where crc is the CRC-32C (Castagnoli) of kind, length and payload. The
// frames come in this order:
//
//	'H'  once:  byte format (3), 8-byte revision of the shard's last
//	            write, 8-byte revision it was compacted to (Compact),
//	            then the encoded Descriptor. Format 2 had no compaction
//	            revision; Restore still reads it (as 0).
//	'C'  0..n:  client records: uvarint client ID, bytes record; IDs
//	            strictly increasing across all 'C' frames
//	'X'  0..n:  transaction locks and outcomes (see percolator.go):
//	            byte keys.ShardLock or keys.ShardTxn, bytes the rest of
//	            the shard-local key, bytes the record; an image of a
//	            shard without any has no 'X' frame
//	'D'  0..n:  versions and metas: bytes user key, 8-byte revision (0
//	            for the key's meta), bytes version or meta (see
//	            mvcc.go); in Pebble's order across all 'D' frames (keys
//	            increasing; for a key, its meta, then its revisions
//	            decreasing), keys inside the descriptor
//	'T'  once:  uvarint number of client records, uvarint number of pairs,
//	            4-byte CRC-32C of every byte of the image before this frame
//
// and nothing follows the trailer.

const (
	snapshotFormat byte = 3
	// snapshotFormat2 is the format before the compaction revision.
	snapshotFormat2 byte = 2

	frameHeader  byte = 'H'
	frameClients byte = 'C'
	frameTxn     byte = 'X'
	frameData    byte = 'D'
	frameTrailer byte = 'T'

	frameHeaderLen = 5
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// frameWriter writes frames to w, keeping the running checksum of the
// image. A frame's payload is appended to buf after frameHeaderLen
// reserved bytes.
type frameWriter struct {
	w   io.Writer
	crc uint32
	buf []byte
}

func (fw *frameWriter) start() { fw.buf = append(fw.buf[:0], make([]byte, frameHeaderLen)...) }

func (fw *frameWriter) payloadLen() int { return len(fw.buf) - frameHeaderLen }

func (fw *frameWriter) flush(kind byte) error {
	fw.buf[0] = kind
	binary.BigEndian.PutUint32(fw.buf[1:frameHeaderLen], uint32(fw.payloadLen()))
	fw.buf = binary.BigEndian.AppendUint32(fw.buf, crc32.Checksum(fw.buf, castagnoli))
	fw.crc = crc32.Update(fw.crc, castagnoli, fw.buf)
	_, err := fw.w.Write(fw.buf)
	fw.start()
	return err
}

// Snapshot writes the image of the shard as of r (a Pebble snapshot at the
// applied index) to w: its descriptor, revision, client table and every
// version of its user data. It reads
// no in-memory state, so it may run on any goroutine concurrently with
// Apply.
func (sm *StateMachine) Snapshot(r pebble.Reader, w io.Writer) error {
	v, closer, err := r.Get(sm.descKey)
	if err != nil {
		if errors.Is(err, pebble.ErrNotFound) {
			return fmt.Errorf("%w: shard %d has no descriptor to snapshot", ErrShardNotFound, sm.shard)
		}
		return fmt.Errorf("shard: snapshot of shard %d: %w", sm.shard, err)
	}
	desc, err := DecodeDescriptor(v)
	closer.Close()
	if err != nil {
		return fmt.Errorf("shard: snapshot of shard %d: %w", sm.shard, err)
	}
	rev, err := loadRevision(r, sm.shard)
	if err != nil {
		return err
	}
	fw := &frameWriter{w: w}
	fw.start()
	fw.buf = append(fw.buf, snapshotFormat)
	compacted, err := loadUint64(r, keys.ShardKey(uint64(sm.shard), keys.ShardCompacted))
	if err != nil {
		return fmt.Errorf("shard: snapshot of shard %d: %w", sm.shard, err)
	}
	fw.buf = binary.BigEndian.AppendUint64(fw.buf, rev)
	fw.buf = binary.BigEndian.AppendUint64(fw.buf, compacted)
	fw.buf = desc.AppendEncoded(fw.buf)
	if err := fw.flush(frameHeader); err != nil {
		return err
	}
	lo, hi := keys.ShardClientPrefix(uint64(sm.shard))
	nClients, err := sm.writeSpan(r, fw, frameClients, lo, hi, func(dst, k, v []byte) []byte {
		dst = binary.AppendUvarint(dst, binary.BigEndian.Uint64(k[len(lo):]))
		return appendBytes(dst, v)
	})
	if err != nil {
		return err
	}
	for _, suffix := range []byte{keys.ShardLock, keys.ShardTxn} {
		lo, hi := keys.ShardSpan(uint64(sm.shard), suffix)
		if _, err := sm.writeSpan(r, fw, frameTxn, lo, hi, func(dst, k, v []byte) []byte {
			dst = append(dst, suffix)
			dst = appendBytes(dst, k[len(lo):])
			return appendBytes(dst, v)
		}); err != nil {
			return err
		}
	}
	lo, hi = keys.UserSpan(desc.Start, desc.End)
	nPairs, err := sm.writeSpan(r, fw, frameData, lo, hi, func(dst, k, v []byte) []byte {
		uk, rev, ok := keys.DecodeMVCCKey(k)
		if !ok {
			uk, _ = keys.MVCCMeta(k) // writeSpan let only metas through
		}
		dst = binary.BigEndian.AppendUint64(appendBytes(dst, uk), rev)
		return appendBytes(dst, v)
	})
	if err != nil {
		return err
	}
	fw.buf = binary.AppendUvarint(fw.buf, nClients)
	fw.buf = binary.AppendUvarint(fw.buf, nPairs)
	fw.buf = binary.BigEndian.AppendUint32(fw.buf, fw.crc)
	return fw.flush(frameTrailer)
}

// isMeta reports whether k is the key of a user key's meta.
func isMeta(k []byte) bool {
	_, ok := keys.MVCCMeta(k)
	return ok
}

// writeSpan writes every pair of [lo, hi) into frames of kind, encoding
// each with enc, and returns the number of pairs.
func (sm *StateMachine) writeSpan(r pebble.Reader, fw *frameWriter, kind byte, lo, hi []byte,
	enc func(dst, k, v []byte) []byte) (uint64, error) {
	it, err := r.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: hi})
	if err != nil {
		return 0, err
	}
	var n uint64
	for valid := it.First(); valid; valid = it.Next() {
		v, err := it.ValueAndErr()
		if err != nil {
			it.Close()
			return 0, fmt.Errorf("shard: snapshot of shard %d: %w", sm.shard, err)
		}
		if kind == frameClients && len(it.Key()) != len(lo)+8 {
			it.Close()
			return 0, fmt.Errorf("shard: snapshot of shard %d: malformed client key %x", sm.shard, it.Key())
		}
		if _, _, ok := keys.DecodeMVCCKey(it.Key()); kind == frameData && !ok && !isMeta(it.Key()) {
			it.Close()
			return 0, fmt.Errorf("shard: snapshot of shard %d: malformed version key %x", sm.shard, it.Key())
		}
		fw.buf = enc(fw.buf, it.Key(), v)
		n++
		if int64(fw.payloadLen()) >= sm.cfg.SnapshotChunkBytes {
			if err := fw.flush(kind); err != nil {
				it.Close()
				return 0, err
			}
		}
	}
	if err := it.Close(); err != nil {
		return 0, fmt.Errorf("shard: snapshot of shard %d: %w", sm.shard, err)
	}
	if fw.payloadLen() > 0 {
		if err := fw.flush(kind); err != nil {
			return 0, err
		}
	}
	return n, nil
}

// Restore verifies the image read from r completely (every frame checksum,
// framing, ordering, the trailer's counts and checksum, and that the image
// is of this shard) and only then writes into b: the deletion of the
// image's user span and of every shard-local key (descriptor and client
// table), followed by the image's descriptor, client records and pairs.
// If the image is corrupt or truncated it returns an error wrapping
// ErrCorruptSnapshot and leaves b untouched. Data outside the image's span
// is not touched, even if this replica's old descriptor covered it. It
// does not change the state machine: the engine builds a new one. Called
// only by the worker owning the group.
func (sm *StateMachine) Restore(b *pebble.Batch, r io.Reader) error {
	stage := &pebble.Batch{}
	defer stage.Close()
	if err := sm.stageImage(stage, r); err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return fmt.Errorf("%w: shard %d: truncated: %w", ErrCorruptSnapshot, sm.shard, err)
		}
		return err
	}
	return b.Apply(stage, nil)
}

// frameReader reads and verifies frames.
type frameReader struct {
	r   *bufio.Reader
	crc uint32
	hdr [frameHeaderLen]byte
	buf bytes.Buffer
}

// next reads a frame, verifies its checksum and returns its kind and
// payload; the payload is valid until the next call.
func (fr *frameReader) next() (byte, []byte, error) {
	if _, err := io.ReadFull(fr.r, fr.hdr[:]); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return 0, nil, err
	}
	n := binary.BigEndian.Uint32(fr.hdr[1:])
	if n > maxSnapshotFrameBytes {
		return 0, nil, fmt.Errorf("%w: frame of %d bytes", ErrCorruptSnapshot, n)
	}
	fr.buf.Reset()
	fr.buf.Write(fr.hdr[:])
	if _, err := io.CopyN(&fr.buf, fr.r, int64(n)+4); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return 0, nil, err
	}
	frame := fr.buf.Bytes()
	body, sum := frame[:len(frame)-4], binary.BigEndian.Uint32(frame[len(frame)-4:])
	if crc32.Checksum(body, castagnoli) != sum {
		return 0, nil, fmt.Errorf("%w: frame checksum mismatch", ErrCorruptSnapshot)
	}
	if frame[0] != frameTrailer {
		fr.crc = crc32.Update(fr.crc, castagnoli, frame)
	}
	return frame[0], body[frameHeaderLen:], nil
}

// decodeImageHeader decodes the payload of an image's header frame: the
// shard's revision, its compaction revision and the encoded descriptor.
func decodeImageHeader(payload []byte) (rev, compacted uint64, desc []byte, err error) {
	switch {
	case len(payload) >= 17 && payload[0] == snapshotFormat:
		return binary.BigEndian.Uint64(payload[1:9]), binary.BigEndian.Uint64(payload[9:17]), payload[17:], nil
	case len(payload) >= 9 && payload[0] == snapshotFormat2:
		return binary.BigEndian.Uint64(payload[1:9]), 0, payload[9:], nil
	}
	return 0, 0, nil, errors.New("header of an unknown image format")
}

// imageDescriptor returns the descriptor in the header frame of image. It
// verifies that frame only; Restore verifies the whole image.
func imageDescriptor(image []byte) (Descriptor, error) {
	fr := &frameReader{r: bufio.NewReader(bytes.NewReader(image))}
	kind, payload, err := fr.next()
	if err != nil {
		return Descriptor{}, fmt.Errorf("%w: header: %w", ErrCorruptSnapshot, err)
	}
	if kind != frameHeader {
		return Descriptor{}, fmt.Errorf("%w: no header frame", ErrCorruptSnapshot)
	}
	_, _, encoded, err := decodeImageHeader(payload)
	if err != nil {
		return Descriptor{}, fmt.Errorf("%w: %w", ErrCorruptSnapshot, err)
	}
	d, err := DecodeDescriptor(encoded)
	if err != nil {
		return Descriptor{}, fmt.Errorf("%w: descriptor: %w", ErrCorruptSnapshot, err)
	}
	return d.Clone(), nil
}

// stageImage verifies the image from r and writes its state into stage.
func (sm *StateMachine) stageImage(stage *pebble.Batch, r io.Reader) error {
	corrupt := func(format string, args ...any) error {
		return fmt.Errorf("%w: shard %d: %s", ErrCorruptSnapshot, sm.shard, fmt.Sprintf(format, args...))
	}
	fr := &frameReader{r: bufio.NewReader(r)}

	kind, payload, err := fr.next()
	if err != nil {
		return err
	}
	if kind != frameHeader {
		return corrupt("image starts with frame %q", kind)
	}
	imageRev, compacted, encoded, err := decodeImageHeader(payload)
	if err != nil {
		return corrupt("%v", err)
	}
	desc, err := DecodeDescriptor(encoded)
	if err != nil {
		return corrupt("descriptor: %v", err)
	}
	if desc.ShardID != sm.shard {
		return corrupt("image of shard %d", desc.ShardID)
	}
	userLo, userHi := keys.UserSpan(desc.Start, desc.End)
	mustWrite(stage.DeleteRange(userLo, userHi, nil))
	lo, hi := keys.ShardPrefix(uint64(sm.shard))
	mustWrite(stage.DeleteRange(lo, hi, nil))
	mustWrite(stage.Set(sm.descKey, desc.AppendEncoded(nil), nil))
	if imageRev != 0 { // no key means 0, as in a shard that never wrote
		mustWrite(stage.Set(keys.ShardKey(uint64(sm.shard), keys.ShardRevision), binary.BigEndian.AppendUint64(nil, imageRev), nil))
	}
	if compacted != 0 {
		mustWrite(stage.Set(keys.ShardKey(uint64(sm.shard), keys.ShardCompacted), binary.BigEndian.AppendUint64(nil, compacted), nil))
	}

	var (
		nClients, nPairs uint64
		lastClient       uint64
		lastKey          []byte
		lastRev          uint64
		phase            = frameClients
	)
	for {
		kind, payload, err := fr.next()
		if err != nil {
			return err
		}
		switch {
		case kind == frameClients && phase == frameClients:
			d := decoder{buf: payload}
			for len(d.buf) > 0 && d.err == nil {
				id, rec := d.uvarint(), d.bytes()
				if d.err != nil {
					break
				}
				if nClients > 0 && id <= lastClient {
					return corrupt("client %d after client %d", id, lastClient)
				}
				if _, _, _, err := decodeClientRecord(rec); err != nil {
					return corrupt("client %d: %v", id, err)
				}
				mustWrite(stage.Set(keys.ShardClientKey(uint64(sm.shard), id), rec, nil))
				lastClient = id
				nClients++
			}
			if d.err != nil {
				return corrupt("client chunk: %v", d.err)
			}
		case kind == frameTxn && (phase == frameClients || phase == frameTxn):
			phase = frameTxn
			d := decoder{buf: payload}
			for len(d.buf) > 0 && d.err == nil {
				suffix, rest, v := d.byte(), d.bytes(), d.bytes()
				if d.err != nil {
					break
				}
				switch suffix {
				case keys.ShardLock:
					if _, err := decodeLockRecord(rest, v); err != nil || !desc.ContainsKey(rest) {
						return corrupt("lock of %q in %s: %v", rest, &desc, err)
					}
				case keys.ShardTxn:
					if _, _, _, err := decodeTxnRecord(v); err != nil || len(rest) <= 8 {
						return corrupt("transaction record %x: %v", rest, err)
					}
				default:
					return corrupt("transaction record of kind %q", suffix)
				}
				mustWrite(stage.Set(append(keys.ShardKey(uint64(sm.shard), suffix), rest...), v, nil))
			}
			if d.err != nil {
				return corrupt("transaction chunk: %v", d.err)
			}
		case kind == frameData && phase != frameTrailer:
			phase = frameData
			d := decoder{buf: payload}
			for len(d.buf) > 0 && d.err == nil {
				k, rev, v := d.bytes(), d.fixed64(), d.bytes()
				if d.err != nil {
					break
				}
				// A meta (revision 0) comes first among its key's records,
				// then the versions, newest first.
				c := bytes.Compare(k, lastKey)
				if nPairs > 0 && (c < 0 || c == 0 && (rev == 0 || lastRev != 0 && rev >= lastRev)) {
					return corrupt("version %q@%d after %q@%d", k, rev, lastKey, lastRev)
				}
				if !desc.ContainsKey(k) {
					return corrupt("key %q outside %s", k, &desc)
				}
				if rev == 0 {
					m, err := decodeKeyMeta(v)
					if err != nil || m.mod > imageRev {
						return corrupt("meta of %q of a shard at revision %d: %+v, %v", k, imageRev, m, err)
					}
					mustWrite(stage.Set(keys.AppendMVCCPrefix(nil, k), v, nil))
				} else {
					if rev > imageRev {
						return corrupt("version %q@%d of a shard at revision %d", k, rev, imageRev)
					}
					if _, _, _, err := decodeVersion(v); err != nil {
						return corrupt("version %q@%d: %v", k, rev, err)
					}
					mustWrite(stage.Set(keys.MVCCKey(k, rev), v, nil))
				}
				lastKey, lastRev = append(lastKey[:0], k...), rev
				nPairs++
			}
			if d.err != nil {
				return corrupt("data chunk: %v", d.err)
			}
		case kind == frameTrailer:
			d := decoder{buf: payload}
			wantClients, wantPairs := d.uvarint(), d.uvarint()
			if d.err != nil || len(d.buf) != 4 {
				return corrupt("trailer malformed")
			}
			sum := binary.BigEndian.Uint32(d.buf)
			if wantClients != nClients || wantPairs != nPairs {
				return corrupt("trailer counts %d clients and %d pairs, image holds %d and %d",
					wantClients, wantPairs, nClients, nPairs)
			}
			if sum != fr.crc {
				return corrupt("image checksum mismatch")
			}
			if _, err := fr.r.ReadByte(); err != io.EOF {
				if err != nil {
					return err
				}
				return corrupt("bytes after the trailer")
			}
			return nil
		default:
			return corrupt("unexpected frame %q", kind)
		}
	}
}
