package main

import (
	"context"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/flotilla-kv/flotilla/backup"
	"github.com/flotilla-kv/flotilla/internal/cli"
)

const backupSummary = `flotilla backup --dir DIR [flags]: write a consistent backup of the whole key
space into DIR: every key as of one revision (a fresh one, above every write
acknowledged before the command began), in data files with a SHA-256 each in
DIR/manifest.json, written last. Writes during the backup are not in it. The
fleet's lease records are not backed up; leased keys are, without their
lease. On a fleet taking writes a backup must finish within the shards'
history retention (5 minutes), or it fails as compacted. See
docs/operations.md, "Backup and restore".`

const restoreSummary = `flotilla restore --dir DIR [flags]: check the backup in DIR against its
manifest (every file's size, SHA-256, records and key order), then put every
key into the fleet, which must hold no keys (--force: restore over them).
Nothing is written if any check fails. Keys get new revisions and no lease.
--verify-only checks the backup and writes nothing.`

func newBackupCmd() *cobra.Command {
	var c common
	var dir string
	var pageKeys int
	fileSize := cli.Bytes(64 << 20)
	cmd := &cobra.Command{
		Use:   "backup --dir DIR [flags]",
		Short: "a consistent backup of the whole key space at one revision into DIR, with a manifest of checksums",
		Long:  backupSummary,
		Args:  noArgs,
	}
	c.register(cmd, true, false)
	c.out.register(cmd, formatSimple, " (json: the manifest)", writeFormats...)
	fs := cmd.Flags()
	fs.StringVar(&dir, "dir", "", "directory to write the backup into (created if missing; must not hold a backup)")
	fs.IntVar(&pageKeys, "page-keys", 1000, "keys read per request")
	fs.Var(&fileSize, "file-size", "size at which a data file ends and the next begins (e.g. 64MiB)")
	fs.Lookup("timeout").Usage = "deadline of each request (the backup itself runs until it is done or interrupted)"
	cmd.RunE = run(func(ctx context.Context, cmd *cobra.Command, _ []string, out io.Writer) error {
		if err := c.check(cmd); err != nil {
			return err
		}
		var p cli.Problems
		if dir == "" {
			p.Addf("--dir is required")
		}
		if pageKeys < 1 {
			p.Addf("--page-keys must be at least 1, got %d", pageKeys)
		}
		if fileSize < 1 {
			p.Addf("--file-size must be positive")
		}
		if err := p.Err(); err != nil {
			return &usageError{msg: err.Error()}
		}
		r, err := c.router(ctx)
		if err != nil {
			return err
		}
		defer r.Close()
		m, err := backup.Write(ctx, r, dir, backup.Options{PageKeys: pageKeys, FileBytes: int64(fileSize)})
		if err != nil {
			return err
		}
		if c.out.isJSON() {
			return printJSON(out, m)
		}
		fmt.Fprintf(out, "backed up %d keys (%d bytes in %d files) at revision %d into %s\n", m.Keys, m.Bytes, len(m.Files), m.Revision, dir)
		if m.LeasedKeys > 0 {
			fmt.Fprintf(out, "%d of them were attached to leases; a restore writes them without\n", m.LeasedKeys)
		}
		return nil
	})
	return cmd
}

func newRestoreCmd() *cobra.Command {
	var c common
	var dir string
	var force, verifyOnly bool
	var workers int
	cmd := &cobra.Command{
		Use:   "restore --dir DIR [flags]",
		Short: "check a backup against its manifest, then put its keys into an empty fleet",
		Long:  restoreSummary,
		Args:  noArgs,
	}
	c.register(cmd, true, false)
	c.out.register(cmd, formatSimple, "", writeFormats...)
	fs := cmd.Flags()
	fs.StringVar(&dir, "dir", "", "directory holding the backup (its manifest.json and data files)")
	fs.BoolVar(&force, "force", false, "restore into a fleet that holds keys (restored keys overwrite theirs; others stay)")
	fs.BoolVar(&verifyOnly, "verify-only", false, "check the backup against its manifest and write nothing")
	fs.IntVar(&workers, "workers", 32, "puts in flight")
	fs.Lookup("timeout").Usage = "deadline of each request (the restore itself runs until it is done or interrupted)"
	cmd.RunE = run(func(ctx context.Context, cmd *cobra.Command, _ []string, out io.Writer) error {
		if err := c.check(cmd); err != nil {
			return err
		}
		var p cli.Problems
		if dir == "" {
			p.Addf("--dir is required")
		}
		if workers < 1 {
			p.Addf("--workers must be at least 1, got %d", workers)
		}
		if err := p.Err(); err != nil {
			return &usageError{msg: err.Error()}
		}
		if verifyOnly {
			m, err := backup.Verify(dir)
			if err != nil {
				return err
			}
			if c.out.isJSON() {
				return printJSON(out, m)
			}
			fmt.Fprintf(out, "backup OK: %d keys in %d files at revision %d\n", m.Keys, len(m.Files), m.Revision)
			return nil
		}
		r, err := c.router(ctx)
		if err != nil {
			return err
		}
		defer r.Close()
		m, n, err := backup.Restore(ctx, r, dir, backup.RestoreOptions{Workers: workers, Force: force})
		if err != nil {
			return fmt.Errorf("%w (%d keys restored)", err, n)
		}
		if c.out.isJSON() {
			return printJSON(out, map[string]any{"ok": true, "keys": n, "revision": m.Revision})
		}
		fmt.Fprintf(out, "restored %d keys of the backup at revision %d\n", n, m.Revision)
		return nil
	})
	return cmd
}
