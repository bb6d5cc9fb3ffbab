package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestCLIBackupRestore backs a fleet up with 'flotilla backup', checks
// the backup with 'restore --verify-only', restores it into a second
// fleet and reads the keys there; a fleet with keys and a damaged backup
// are refused.
func TestCLIBackupRestore(t *testing.T) {
	_, src := cliFleet(t)
	_, dst := cliFleet(t)
	want := map[string]string{}
	for i := range 30 {
		k, v := fmt.Sprintf("%c/b%02d", 0x20+(i%4)*0x40, i), fmt.Sprintf("v%d", i)
		if out, code := src("put", k, v); code != 0 {
			t.Fatalf("put: %d %s", code, out)
		}
		want[k] = v
	}
	dir := filepath.Join(t.TempDir(), "backup")
	out, code := src("backup", "--dir", dir, "--page-keys", "7", "--file-size", "200B")
	if code != 0 || !strings.Contains(out, "backed up 30 keys") {
		t.Fatalf("backup: %d %s", code, out)
	}
	if out, code := src("backup", "--dir", dir); code != 1 || !strings.Contains(out, "already holds a backup") {
		t.Fatalf("a second backup into the same directory: %d %s", code, out)
	}
	if out, code := dst("restore", "--dir", dir, "--verify-only"); code != 0 || !strings.Contains(out, "backup OK: 30 keys") {
		t.Fatalf("verify: %d %s", code, out)
	}
	if out, code := src("restore", "--dir", dir); code != 1 || !strings.Contains(out, "holds keys") {
		t.Fatalf("restore into a fleet with keys: %d %s", code, out)
	}
	if out, code := dst("restore", "--dir", dir); code != 0 || !strings.Contains(out, "restored 30 keys") {
		t.Fatalf("restore: %d %s", code, out)
	}
	for k, v := range want {
		if out, code := dst("get", k); code != 0 || strings.TrimSpace(out) != v {
			t.Fatalf("restored %q: %d %q, want %q", k, code, out, v)
		}
	}
	// A damaged data file: verify and restore fail, naming it.
	files, err := filepath.Glob(filepath.Join(dir, "data-*.fbk"))
	if err != nil || len(files) < 2 {
		t.Fatalf("data files %v %v", files, err)
	}
	data, err := os.ReadFile(files[1])
	if err != nil {
		t.Fatal(err)
	}
	data[0] ^= 0xff
	if err := os.WriteFile(files[1], data, 0o644); err != nil {
		t.Fatal(err)
	}
	if out, code := dst("restore", "--dir", dir, "--force"); code != 1 || !strings.Contains(out, filepath.Base(files[1])) {
		t.Fatalf("restore of a damaged backup: %d %s", code, out)
	}
	if out, code := dst("backup"); code != 2 || !strings.Contains(out, "--dir is required") {
		t.Fatalf("backup without --dir: %d %s", code, out)
	}
}
