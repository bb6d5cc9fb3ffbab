package main

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/flotilla-kv/flotilla/internal/tlsconfig"
)

// TestTLSFlagsAllOrNone checks that a partial set of TLS flags is a flag
// error naming what is missing, reported with the other problems, and that
// unreadable files stop placementd at start with an error naming them.
// The refusals of a TLS placementd are tested with real processes in
// cmd/shardnode (TestProcessTLSFleet).
func TestTLSFlagsAllOrNone(t *testing.T) {
	dir := t.TempDir()
	base := []string{"--data-dir", filepath.Join(dir, "data")}
	_, err := parseConfig(append(base, "--tls-key", "a.key", "--tls-ca", "ca.crt", "--id", "0"))
	if err == nil || !strings.Contains(err.Error(), "--tls-cert missing") || !strings.Contains(err.Error(), "--id must be positive") {
		t.Fatalf("partial TLS flags: err = %v, want --tls-cert named as missing with the other problems", err)
	}
	t.Setenv("FLOTILLA_TLS_CERT", filepath.Join(dir, "p.crt"))
	cfg, err := parseConfig(append(base, "--tls-key", filepath.Join(dir, "p.key"), "--tls-ca", filepath.Join(dir, "ca.crt")))
	if err != nil || cfg.TLS.Cert != filepath.Join(dir, "p.crt") {
		t.Fatalf("flags and environment = %+v, %v", cfg.TLS, err)
	}
	err = run(context.Background(), cfg)
	if !errors.Is(err, tlsconfig.ErrInvalid) || !errors.Is(err, os.ErrNotExist) || !strings.Contains(err.Error(), "p.crt") {
		t.Fatalf("run with missing files = %v, want ErrInvalid naming p.crt", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "data")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("placementd created its data directory before checking its TLS files: %v", err)
	}
	// A key that does not belong to the certificate is refused too.
	ca, err := tlsconfig.NewDevCA(time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	a, err := tlsconfig.WriteDevFiles(ca, dir, "a", nil, false)
	if err != nil {
		t.Fatal(err)
	}
	b, err := tlsconfig.WriteDevFiles(ca, dir, "b", nil, false)
	if err != nil {
		t.Fatal(err)
	}
	cfg.TLS = tlsconfig.Files{Cert: a.Cert, Key: b.Key, CA: a.CA}
	if err := run(context.Background(), cfg); !errors.Is(err, tlsconfig.ErrInvalid) || !strings.Contains(err.Error(), "private key does not match") {
		t.Fatalf("run with a mismatched key = %v, want ErrInvalid", err)
	}
}
