package main

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	flt "github.com/flotilla-kv/flotilla/internal/fleet"
	"github.com/flotilla-kv/flotilla/router"
)

func TestParseWatchFlags(t *testing.T) {
	c, wf, key, err := parseWatch([]string{"user/", "--prefix", "--rev", "42", "--prev-kv", "--progress", "2s", "--json"})
	if err != nil || key != "user/" || !wf.prefix || wf.rev != 42 || !wf.prevKV || wf.progress != 2*time.Second || !c.json {
		t.Fatalf("key %q flags %+v json %v: %v", key, wf, c.json, err)
	}
	_, wf, key, err = parseWatch([]string{"--", "-k"})
	if err != nil || key != "-k" || wf.prefix || wf.rev != 0 || wf.prevKV || wf.progress != 0 {
		t.Fatalf("defaults: key %q flags %+v: %v", key, wf, err)
	}
	for _, args := range [][]string{{}, {"a", "b"}, {"a", "--rev", "x"}, {"a", "--nope"}} {
		if _, _, _, err := parseWatch(args); !errors.Is(err, errUsage) {
			t.Errorf("%q: want a usage error, got %v", args, err)
		}
	}
	if _, _, _, err := parseWatch([]string{"a", "--progress", "-1s"}); err == nil {
		t.Errorf("negative --progress accepted")
	}
}

func TestGetRefusesABadRevisionFlag(t *testing.T) {
	for _, args := range [][]string{{"k", "--rev", "-1"}, {"k", "--rev", "abc"}, {"k", "--limit", "x", "--prefix"}} {
		err := runGet(context.Background(), append(args, "--placement", flt.FreePort(t)), &strings.Builder{})
		if !errors.Is(err, errUsage) {
			t.Errorf("%q: want a usage error, got %v", args, err)
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
		!strings.Contains(lines[1], `"prev_value":"old"`) || strings.Contains(lines[1], `"value"`) {
		t.Errorf("JSON lines:\n%s", b.String())
	}
}
