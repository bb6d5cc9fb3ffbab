// Package backup writes a consistent backup of a fleet's whole key space
// and restores it into another fleet, through the router.
//
// # What a backup is
//
// A backup is the fleet's user key space as it was at one revision: the
// revision Now answered when the backup began, which is above every write
// acknowledged before it, read shard by shard with ScanAt at that revision
// (a read at a revision waits until its shard resolved it, so every page
// of every shard agrees). Writes that arrive while the backup runs are not
// in it. The fleet's own keys (lease records and their index, the span
// from syskeys.SystemPrefix on) are not backed up; a key attached to a
// lease is backed up with its value, and restored without a lease.
//
// A backup directory holds data files (data-NNNNN.fbk) of at most
// Options.FileBytes each and manifest.json, written last: a directory
// without a manifest is an unfinished backup. Each data file is a
// sequence of records, in key order across files:
//
//	uvarint key length, key, uvarint value length, value,
//	uvarint create revision, mod revision, version, lease
//
// and the manifest gives each file's key count, size and SHA-256, the
// backup's revision and totals. Restore checks every file against the
// manifest before it writes anything.
//
// # Compaction
//
// The scan reads at the backup's revision for as long as the backup runs;
// if a shard compacts past that revision meanwhile (its history retention
// is shorter than the backup, or an operator compacts), the backup fails
// with the router's *CompactedError and leaves no manifest. Back up a
// large fleet with a retention longer than the backup takes.
package backup

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/flotilla-kv/flotilla/router"
)

// FormatVersion is the version of the backup format Write writes and
// Restore reads.
const FormatVersion = 1

// ManifestName is the manifest's file name in a backup directory.
const ManifestName = "manifest.json"

// Manifest describes a finished backup.
type Manifest struct {
	Format int `json:"format"`
	// Revision is the revision the whole backup was read at.
	Revision uint64 `json:"revision"`
	// Created is when the backup began (the machine's clock, for people).
	Created time.Time `json:"created"`
	// Keys and Bytes total the data files' keys and sizes.
	Keys  int64  `json:"keys"`
	Bytes int64  `json:"bytes"`
	Files []File `json:"files"`
	// LeasedKeys counts the keys that were attached to a lease (restored
	// without one).
	LeasedKeys int64 `json:"leased_keys"`
}

// File is one data file of a backup.
type File struct {
	Name   string `json:"name"`
	Keys   int64  `json:"keys"`
	Bytes  int64  `json:"bytes"`
	SHA256 string `json:"sha256"`
}

// Options tunes Write.
type Options struct {
	// PageKeys is how many keys one scan reads. Default 1,000.
	PageKeys int
	// FileBytes caps a data file's size (a file ends at the first record
	// past it). Default 64 MiB.
	FileBytes int64
	// Progress, when set, is called after each page with the keys written
	// so far.
	Progress func(keys int64)
}

func (o Options) withDefaults() Options {
	if o.PageKeys <= 0 {
		o.PageKeys = 1000
	}
	if o.FileBytes <= 0 {
		o.FileBytes = 64 << 20
	}
	return o
}

// Write backs up the fleet r reaches into dir, which must not hold a
// backup already (it is created if missing). It returns the manifest it
// wrote. On an error the data files written so far stay, without a
// manifest.
func Write(ctx context.Context, r *router.Client, dir string, o Options) (Manifest, error) {
	o = o.withDefaults()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return Manifest{}, err
	}
	if _, err := os.Stat(filepath.Join(dir, ManifestName)); err == nil {
		return Manifest{}, fmt.Errorf("backup: %s already holds a backup", dir)
	}
	m := Manifest{Format: FormatVersion, Created: time.Now().UTC()}
	rev, err := r.Now(ctx)
	if err != nil {
		return Manifest{}, fmt.Errorf("backup: taking the backup's revision: %w", err)
	}
	m.Revision = rev
	w := &fileWriter{dir: dir, max: o.FileBytes}
	var start []byte
	for {
		page, err := r.ScanAt(ctx, start, nil, o.PageKeys, rev)
		if err != nil {
			w.abort()
			return Manifest{}, fmt.Errorf("backup: reading from %q at revision %d: %w", start, rev, err)
		}
		for _, kv := range page.KVs {
			if err := w.add(kv); err != nil {
				w.abort()
				return Manifest{}, err
			}
			if kv.Lease != 0 {
				m.LeasedKeys++
			}
		}
		if o.Progress != nil {
			o.Progress(w.keys)
		}
		if len(page.KVs) < o.PageKeys {
			break
		}
		last := page.KVs[len(page.KVs)-1].Key
		start = append(append([]byte{}, last...), 0) // the next key after last
	}
	if err := w.close(); err != nil {
		return Manifest{}, err
	}
	m.Files, m.Keys = w.files, w.keys
	for _, f := range m.Files {
		m.Bytes += f.Bytes
	}
	if err := writeManifest(dir, m); err != nil {
		return Manifest{}, err
	}
	return m, nil
}

// writeManifest writes m to dir atomically (a temporary file, synced,
// renamed, and the directory synced).
func writeManifest(dir string, m Manifest) error {
	data, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	tmp := filepath.Join(dir, ManifestName+".tmp")
	if err := writeSynced(tmp, append(data, '\n')); err != nil {
		return err
	}
	if err := os.Rename(tmp, filepath.Join(dir, ManifestName)); err != nil {
		return err
	}
	return syncDir(dir)
}

func writeSynced(path string, data []byte) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// fileWriter writes records into data files of at most max bytes.
type fileWriter struct {
	dir   string
	max   int64
	files []File
	keys  int64

	f    *os.File
	buf  *bufio.Writer
	sum  hash.Hash
	cur  File
	rec  []byte
	path string
}

// add appends kv's record, starting a new file when the current one is
// full.
func (w *fileWriter) add(kv router.KeyValue) error {
	if w.f != nil && w.cur.Bytes >= w.max {
		if err := w.finish(); err != nil {
			return err
		}
	}
	if w.f == nil {
		w.cur = File{Name: fmt.Sprintf("data-%05d.fbk", len(w.files)+1)}
		w.path = filepath.Join(w.dir, w.cur.Name)
		f, err := os.Create(w.path)
		if err != nil {
			return err
		}
		w.f, w.sum = f, sha256.New()
		w.buf = bufio.NewWriterSize(io.MultiWriter(f, w.sum), 1<<20)
	}
	w.rec = appendRecord(w.rec[:0], kv)
	if _, err := w.buf.Write(w.rec); err != nil {
		return err
	}
	w.cur.Keys++
	w.cur.Bytes += int64(len(w.rec))
	w.keys++
	return nil
}

// finish flushes, syncs and closes the current file and records it.
func (w *fileWriter) finish() error {
	err := w.buf.Flush()
	if err == nil {
		err = w.f.Sync()
	}
	if cerr := w.f.Close(); err == nil {
		err = cerr
	}
	w.f = nil
	if err != nil {
		return fmt.Errorf("backup: writing %s: %w", w.path, err)
	}
	w.cur.SHA256 = hex.EncodeToString(w.sum.Sum(nil))
	w.files = append(w.files, w.cur)
	return nil
}

// close finishes the last file, and syncs the directory.
func (w *fileWriter) close() error {
	if w.f != nil {
		if err := w.finish(); err != nil {
			return err
		}
	}
	return syncDir(w.dir)
}

// abort closes the current file after a failure.
func (w *fileWriter) abort() {
	if w.f != nil {
		_ = w.f.Close()
		w.f = nil
	}
}

// appendRecord appends kv's record (see the package doc).
func appendRecord(dst []byte, kv router.KeyValue) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(kv.Key)))
	dst = append(dst, kv.Key...)
	dst = binary.AppendUvarint(dst, uint64(len(kv.Value)))
	dst = append(dst, kv.Value...)
	dst = binary.AppendUvarint(dst, kv.CreateRevision)
	dst = binary.AppendUvarint(dst, kv.ModRevision)
	dst = binary.AppendUvarint(dst, kv.Version)
	return binary.AppendUvarint(dst, kv.Lease)
}

// errCorrupt marks a data file that does not decode.
var errCorrupt = errors.New("backup: corrupt data file")

// readRecord reads one record from r; io.EOF at a clean end.
func readRecord(r *bufio.Reader, maxLen uint64) (router.KeyValue, error) {
	var kv router.KeyValue
	n, err := binary.ReadUvarint(r)
	if err != nil {
		return kv, err // io.EOF: no more records
	}
	field := func() ([]byte, error) {
		if n > maxLen {
			return nil, fmt.Errorf("%w: a field of %d bytes", errCorrupt, n)
		}
		b := make([]byte, n)
		if _, err := io.ReadFull(r, b); err != nil {
			return nil, fmt.Errorf("%w: %w", errCorrupt, err)
		}
		return b, nil
	}
	if kv.Key, err = field(); err != nil {
		return kv, err
	}
	if n, err = binary.ReadUvarint(r); err != nil {
		return kv, fmt.Errorf("%w: %w", errCorrupt, err)
	}
	if kv.Value, err = field(); err != nil {
		return kv, err
	}
	for _, p := range []*uint64{&kv.CreateRevision, &kv.ModRevision, &kv.Version, &kv.Lease} {
		if *p, err = binary.ReadUvarint(r); err != nil {
			return kv, fmt.Errorf("%w: %w", errCorrupt, err)
		}
	}
	return kv, nil
}
