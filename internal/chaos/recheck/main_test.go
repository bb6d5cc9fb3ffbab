package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/flotilla-kv/flotilla/internal/chaos"
)

func writeHistory(t *testing.T, ops []chaos.Op) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "cycle0001-history.jsonl")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := chaos.WriteHistory(f, ops); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestRecheck(t *testing.T) {
	putOK := func(v string, call, ret int64) chaos.Op {
		return chaos.Op{Kind: chaos.OpPut, Key: "k", Value: v, Call: call, Return: ret, Outcome: chaos.OK}
	}
	read := func(out string, call int64, final bool) chaos.Op {
		return chaos.Op{Client: 1, Kind: chaos.OpGet, Key: "k", Out: out, Call: call, Return: call + 5, Outcome: chaos.OK, Final: final}
	}
	good := writeHistory(t, []chaos.Op{putOK("a", 0, 10), read("a", 20, false), read("a", 100, true)})
	// A stale read, and a final read that lost the acknowledged "b".
	bad := writeHistory(t, []chaos.Op{putOK("a", 0, 10), putOK("b", 20, 30), read("a", 40, false), read("a", 100, true)})

	var out, errOut strings.Builder
	if code := run([]string{good}, &out, &errOut); code != 0 {
		t.Fatalf("good history: exit %d\n%s%s", code, out.String(), errOut.String())
	}
	if !strings.Contains(out.String(), "violations=0 lost=0 watch=0") {
		t.Fatalf("good history: %s", out.String())
	}

	out.Reset()
	if code := run([]string{"-timeout", "30s", good, bad}, &out, &errOut); code != 1 {
		t.Fatalf("bad history: exit %d\n%s", code, out.String())
	}
	for _, want := range []string{"violations=1 lost=1 watch=0", "VIOLATION key \"k\": not linearizable", "LOST key \"k\""} {
		if !strings.Contains(out.String(), want) {
			t.Fatalf("bad history: no %q in\n%s", want, out.String())
		}
	}

	garbled := filepath.Join(t.TempDir(), "garbled.jsonl")
	if err := os.WriteFile(garbled, []byte("{\"Kind\":1,\"Outcome\":1}\n{oops\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	errOut.Reset()
	if code := run([]string{garbled}, &out, &errOut); code != 2 || !strings.Contains(errOut.String(), "line 2") {
		t.Fatalf("garbled history: exit %d, %q", code, errOut.String())
	}
	if code := run(nil, &out, &errOut); code != 2 {
		t.Fatalf("no arguments: exit %d", code)
	}
}
