package main

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	flt "github.com/flotilla-kv/flotilla/internal/fleet"
	"github.com/flotilla-kv/flotilla/router"
)

func TestParseLeaseID(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want uint64
	}{
		{"694d5765fc71500b", 0x694d5765fc71500b},
		{"0x694D5765FC71500B", 0x694d5765fc71500b},
		{"10", 0x10}, // hexadecimal, never decimal
		{"ffffffffffffffff", 1<<64 - 1},
	} {
		if got, err := parseLeaseID(tc.in); err != nil || got != tc.want {
			t.Errorf("parseLeaseID(%q) = %x, %v; want %x", tc.in, got, err, tc.want)
		}
	}
	for _, in := range []string{"", "0", "0x", "-1", "+1", "xyz", "1_0", " 10", "10000000000000000"} {
		if got, err := parseLeaseID(in); err == nil {
			t.Errorf("parseLeaseID(%q) = %x, want an error", in, got)
		}
	}
	if s := formatLeaseID(0x10); s != "0000000000000010" {
		t.Errorf("formatLeaseID(0x10) = %q", s)
	}
}

// TestLeaseUsageErrors: a malformed lease ID or TTL, a missing or unknown
// subcommand, and conflicting put flags are usage errors (exit 2), found
// before any connection (the placement address given answers nothing).
func TestLeaseUsageErrors(t *testing.T) {
	noPlacement := []string{"--placement", flt.FreePort(t)}
	for _, tc := range []struct {
		args []string
	}{
		{[]string{}},
		{[]string{"nope"}},
		{[]string{"grant"}},
		{[]string{"grant", "0"}},
		{[]string{"grant", "-5"}},
		{[]string{"grant", "10s"}},
		{[]string{"grant", "9000000001"}},
		{[]string{"revoke", "xyz"}},
		{[]string{"revoke", "0"}},
		{[]string{"keepalive", "g1"}},
		{[]string{"keepalive", "1", "2"}},
		{[]string{"timetolive"}},
		{[]string{"ttl", "--keys", "q"}},
		{[]string{"list", "extra"}},
	} {
		args := append(append([]string{"lease"}, tc.args...), noPlacement...)
		if _, stderr, code := runCLI(t, args...); code != exitUsage {
			t.Errorf("%q: exit %d, want a usage error: %s", args, code, stderr)
		}
	}
	for _, args := range [][]string{
		{"k", "v", "--lease", "xyz"},
		{"k", "v", "--lease", "0"},
		{"k", "v", "--ttl", "5"},
		{"k", "v", "--ttl", "-1s"},
		{"k", "v", "--ttl", "5s", "--lease", "abc"},
	} {
		args := append(append([]string{"put"}, args...), noPlacement...)
		if _, stderr, code := runCLI(t, args...); code != exitUsage {
			t.Errorf("%q: exit %d, want a usage error: %s", args, code, stderr)
		}
	}
}

func TestLeaseErrNamesTheLease(t *testing.T) {
	err := leaseErr(0xabc, fmt.Errorf("rpc: %w", router.ErrLeaseNotFound))
	if !errors.Is(err, router.ErrLeaseNotFound) || !strings.Contains(err.Error(), "lease 0000000000000abc not found") {
		t.Errorf("leaseErr: %v", err)
	}
	other := errors.New("unavailable")
	if err := leaseErr(1, other); err != other {
		t.Errorf("leaseErr changed another error: %v", err)
	}
}
