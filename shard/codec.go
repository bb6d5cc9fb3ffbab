package shard

import (
	"encoding/binary"
	"errors"
)

// The binary formats of this package (commands, descriptors, results,
// client records, snapshot frames) are built from three primitives:
//
//	uvarint  encoding/binary's unsigned varint
//	bytes    uvarint length, then that many bytes
//	byte     one byte (format versions, kinds, flags)
//
// Each format starts with its own format byte so it can evolve. Decoders
// are strict: every length is checked against the remaining input before
// anything is allocated, unknown versions, kinds and flags are refused, and
// trailing bytes are an error. They never panic on any input.

// errShort and friends are the decoder's own errors; callers wrap them in
// their package sentinel (ErrBadCommand, ErrBadDescriptor, ...).
var (
	errShort    = errors.New("input truncated")
	errVarint   = errors.New("malformed varint")
	errTrailing = errors.New("trailing bytes")
)

func appendBytes(dst, b []byte) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(b)))
	return append(dst, b...)
}

// decoder reads the primitives from buf, remembering the first error; once
// it failed every read returns zero values.
type decoder struct {
	buf []byte
	err error
}

func (d *decoder) fail(err error) {
	if d.err == nil {
		d.err = err
	}
	d.buf = nil
}

func (d *decoder) byte() byte {
	if d.err != nil {
		return 0
	}
	if len(d.buf) < 1 {
		d.fail(errShort)
		return 0
	}
	b := d.buf[0]
	d.buf = d.buf[1:]
	return b
}

func (d *decoder) fixed64() uint64 {
	if d.err != nil {
		return 0
	}
	if len(d.buf) < 8 {
		d.fail(errShort)
		return 0
	}
	v := binary.BigEndian.Uint64(d.buf)
	d.buf = d.buf[8:]
	return v
}

func (d *decoder) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.buf)
	if n <= 0 {
		if n == 0 {
			d.fail(errShort)
		} else {
			d.fail(errVarint)
		}
		return 0
	}
	d.buf = d.buf[n:]
	return v
}

// bytes returns the next length-prefixed byte string, aliasing the input.
// A zero-length string decodes as a non-nil empty slice.
func (d *decoder) bytes() []byte {
	n := d.uvarint()
	if d.err != nil {
		return nil
	}
	if n > uint64(len(d.buf)) {
		d.fail(errShort)
		return nil
	}
	b := d.buf[:n:n]
	d.buf = d.buf[n:]
	return b
}

// count returns a uvarint element count, refusing counts that could not fit
// in the remaining input if each element took at least minBytes.
func (d *decoder) count(minBytes int) int {
	n := d.uvarint()
	if d.err != nil {
		return 0
	}
	if n > uint64(len(d.buf)/minBytes) {
		d.fail(errShort)
		return 0
	}
	return int(n)
}

// finish reports the first error, or errTrailing if input is left.
func (d *decoder) finish() error {
	if d.err == nil && len(d.buf) > 0 {
		d.err = errTrailing
	}
	return d.err
}
