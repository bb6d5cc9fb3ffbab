package main

import (
	"strings"
	"testing"

	flt "github.com/flotilla-kv/flotilla/internal/fleet"
	"github.com/flotilla-kv/flotilla/router"
)

func TestParseWatchFlags(t *testing.T) {
	cmd, pos := parsed(t, "watch", "user/", "--prefix", "--rev", "42", "--prev-kv", "--progress", "2s", "--json")
	for name, want := range map[string]string{"prefix": "true", "rev": "42", "prev-kv": "true", "progress": "2s", "json": "true"} {
		if got := flagValue(t, cmd, name); got != want {
			t.Errorf("--%s = %q, want %q", name, got, want)
		}
	}
	if strings.Join(pos, " ") != "user/" {
		t.Errorf("key %q", pos)
	}
	cmd, pos = parsed(t, "watch", "--", "-k")
	if strings.Join(pos, " ") != "-k" || flagValue(t, cmd, "prefix") != "false" || flagValue(t, cmd, "rev") != "0" {
		t.Errorf("defaults: key %q prefix %s rev %s", pos, flagValue(t, cmd, "prefix"), flagValue(t, cmd, "rev"))
	}
	noPlacement := []string{"--placement", flt.FreePort(t)}
	for _, args := range [][]string{{}, {"a", "b"}, {"a", "--rev", "x"}, {"a", "--nope"}, {"a", "--progress", "-1s"}, {"a", "-w", "table"}} {
		args = append(append([]string{"watch"}, args...), noPlacement...)
		if _, stderr, code := runCLI(t, args...); code != exitUsage {
			t.Errorf("%q: exit %d, want a usage error: %s", args, code, stderr)
		}
	}
}

func TestGetRefusesABadRevisionFlag(t *testing.T) {
	for _, args := range [][]string{{"k", "--rev", "-1"}, {"k", "--rev", "abc"}, {"k", "--limit", "x", "--prefix"}} {
		args = append(append([]string{"get"}, args...), "--placement", flt.FreePort(t))
		if _, stderr, code := runCLI(t, args...); code != exitUsage {
			t.Errorf("%q: exit %d, want a usage error: %s", args, code, stderr)
		}
	}
}

func TestPrefixEnd(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"user/", "user0"},
		{"a\xff", "b"},
		{"a\xff\xff", "b"},
		{"\xff\xff", ""},
		{"", ""},
	} {
		if got := string(prefixEnd([]byte(tc.in))); got != tc.want {
			t.Errorf("prefixEnd(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestPrintWatchResponse(t *testing.T) {
	var b strings.Builder
	resp := router.WatchResponse{ProgressRevision: 9, Events: []router.Event{
		{Type: router.EventPut, KV: router.KeyValue{Key: []byte("k"), Value: []byte("v 2"), ModRevision: 7, CreateRevision: 7, Version: 1}},
		{Type: router.EventDelete, KV: router.KeyValue{Key: []byte("j"), ModRevision: 8}, PrevKV: &router.KeyValue{Key: []byte("j"), Value: []byte("old")}},
	}}
	if err := printWatchResponse(&b, false, resp); err != nil {
		t.Fatal(err)
	}
	if err := printWatchResponse(&b, false, router.WatchResponse{ProgressRevision: 12}); err != nil {
		t.Fatal(err)
	}
	want := "PUT \"k\" \"v 2\" rev=7\nDELETE \"j\" rev=8 prev=\"old\"\nPROGRESS rev=12\n"
	if b.String() != want {
		t.Errorf("text output\n%s\nwant\n%s", b.String(), want)
	}
	b.Reset()
	if err := printWatchResponse(&b, true, resp); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(b.String()), "\n")
	if len(lines) != 2 || !strings.Contains(lines[0], `"type":"PUT"`) || !strings.Contains(lines[0], `"revision":7`) ||
		!strings.Contains(lines[1], `"prev_value":"b2xk"`) || !strings.Contains(lines[0], `"value":"diAy"`) || strings.Contains(lines[1], `"value"`) {
		t.Errorf("JSON lines:\n%s", b.String())
	}
}
