package backup

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync/atomic"

	"golang.org/x/sync/errgroup"

	"github.com/flotilla-kv/flotilla/router"
)

// maxField bounds a key or value read from a data file (a corrupt length
// must not allocate the machine away): larger than any the fleet accepts.
const maxField = 64 << 20

// ReadManifest reads dir's manifest; a directory without one holds no
// finished backup.
func ReadManifest(dir string) (Manifest, error) {
	data, err := os.ReadFile(filepath.Join(dir, ManifestName))
	if errors.Is(err, os.ErrNotExist) {
		return Manifest{}, fmt.Errorf("backup: %s holds no finished backup (no %s)", dir, ManifestName)
	}
	if err != nil {
		return Manifest{}, err
	}
	var m Manifest
	if err := json.Unmarshal(data, &m); err != nil {
		return Manifest{}, fmt.Errorf("backup: %s: %w", ManifestName, err)
	}
	if m.Format != FormatVersion {
		return Manifest{}, fmt.Errorf("backup: %s is format %d; this build reads format %d", ManifestName, m.Format, FormatVersion)
	}
	return m, nil
}

// Verify checks every data file of the backup in dir against its
// manifest: size, SHA-256, record count, and that every record decodes
// and keys ascend across files. It returns the manifest.
func Verify(dir string) (Manifest, error) {
	m, err := ReadManifest(dir)
	if err != nil {
		return m, err
	}
	var last []byte
	var keys int64
	for _, f := range m.Files {
		n, err := eachRecord(dir, f, func(kv router.KeyValue) error {
			if last != nil && string(kv.Key) <= string(last) {
				return fmt.Errorf("%w: %s: key %q after %q", errCorrupt, f.Name, kv.Key, last)
			}
			last = kv.Key
			return nil
		})
		if err != nil {
			return m, err
		}
		keys += n
	}
	if keys != m.Keys {
		return m, fmt.Errorf("%w: %d keys in the files, the manifest says %d", errCorrupt, keys, m.Keys)
	}
	return m, nil
}

// eachRecord calls fn for each record of data file f, after checking the
// file's size and checksum against the manifest (so fn never sees a
// record of a file that does not match), and returns the records read.
func eachRecord(dir string, f File, fn func(router.KeyValue) error) (int64, error) {
	path := filepath.Join(dir, filepath.Base(f.Name))
	file, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer file.Close()
	sum := sha256.New()
	size, err := io.Copy(sum, file)
	if err != nil {
		return 0, err
	}
	if size != f.Bytes || hex.EncodeToString(sum.Sum(nil)) != f.SHA256 {
		return 0, fmt.Errorf("%w: %s: %d bytes with SHA-256 %x; the manifest says %d bytes, %s", errCorrupt, f.Name, size, sum.Sum(nil), f.Bytes, f.SHA256)
	}
	if _, err := file.Seek(0, io.SeekStart); err != nil {
		return 0, err
	}
	r := bufio.NewReaderSize(file, 1<<20)
	var n int64
	for {
		kv, err := readRecord(r, maxField)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return n, fmt.Errorf("%s: record %d: %w", f.Name, n+1, err)
		}
		n++
		if err := fn(kv); err != nil {
			return n, err
		}
	}
	if n != f.Keys {
		return n, fmt.Errorf("%w: %s holds %d records, the manifest says %d", errCorrupt, f.Name, n, f.Keys)
	}
	return n, nil
}

// RestoreOptions tunes Restore.
type RestoreOptions struct {
	// Workers is how many puts are in flight. Default 32.
	Workers int
	// Force restores into a fleet that already holds keys (restored keys
	// overwrite theirs; others stay). Without it, Restore refuses.
	Force bool
	// Progress, when set, is called now and then with the keys restored.
	Progress func(keys int64)
}

// Restore writes the backup in dir into the fleet r reaches: every key
// with its value, each as one put (new revisions of the target fleet; a
// leased key without its lease). It verifies the whole backup first and
// writes nothing if any file does not match its manifest. It refuses a
// fleet that holds user keys already, unless o.Force. It returns the
// manifest and the number of keys written; on an error some keys may be
// written (a restore can be run again with Force).
func Restore(ctx context.Context, r *router.Client, dir string, o RestoreOptions) (Manifest, int64, error) {
	if o.Workers <= 0 {
		o.Workers = 32
	}
	m, err := Verify(dir)
	if err != nil {
		return m, 0, err
	}
	if !o.Force {
		kvs, err := r.Scan(ctx, nil, nil, 1)
		if err != nil {
			return m, 0, fmt.Errorf("backup: checking the target fleet is empty: %w", err)
		}
		if len(kvs) > 0 {
			return m, 0, fmt.Errorf("backup: the target fleet holds keys (%q first); restore into an empty fleet, or force it", kvs[0].Key)
		}
	}
	var written atomic.Int64
	g, gctx := errgroup.WithContext(ctx)
	work := make(chan router.KeyValue, 4*o.Workers)
	for range o.Workers {
		g.Go(func() error {
			for kv := range work {
				if _, err := r.PutRev(gctx, kv.Key, kv.Value); err != nil {
					return fmt.Errorf("backup: restoring %q: %w", kv.Key, err)
				}
				if n := written.Add(1); o.Progress != nil && n%10000 == 0 {
					o.Progress(n)
				}
			}
			return nil
		})
	}
	g.Go(func() error {
		defer close(work)
		for _, f := range m.Files {
			_, err := eachRecord(dir, f, func(kv router.KeyValue) error {
				select {
				case work <- kv:
					return nil
				case <-gctx.Done():
					return gctx.Err()
				}
			})
			if err != nil {
				return err
			}
		}
		return nil
	})
	err = g.Wait()
	if o.Progress != nil {
		o.Progress(written.Load())
	}
	return m, written.Load(), err
}
