package main

import (
	"bytes"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/flotilla-kv/flotilla/internal/tlsconfig"
)

func readCert(t *testing.T, path string) *x509.Certificate {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(b)
	if block == nil {
		t.Fatalf("%s: no PEM block", path)
	}
	c, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestCertsCreatesAVerifiableSetAndRefusesOverwrite(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "certs")
	var out bytes.Buffer
	stdout, stderr, code := runCLI(t, "certs", "--dir", dir, "--nodes", "2", "--placements", "1", "--hosts", "db.example,10.9.8.7")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	out.WriteString(stdout)
	names := []string{"node-1", "node-2", "placement-1", "client"}
	roots := x509.NewCertPool()
	roots.AddCert(readCert(t, filepath.Join(dir, "ca.crt")))
	for _, name := range names {
		files := tlsconfig.DevFiles(dir, name)
		if st, err := os.Stat(files.Key); err != nil || st.Mode().Perm() != 0o600 {
			t.Errorf("%s: %v, mode %v; want 0600", files.Key, err, st.Mode().Perm())
		}
		if _, err := tlsconfig.Load(files); err != nil {
			t.Errorf("%s does not load: %v", name, err)
		}
		leaf := readCert(t, files.Cert)
		if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
			t.Errorf("%s does not chain to the CA as a client: %v", name, err)
		}
		if name == "client" {
			continue
		}
		for _, host := range []string{"127.0.0.1", "localhost", "db.example", "10.9.8.7", name} {
			if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, DNSName: host, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
				t.Errorf("%s does not verify as server %s: %v", name, host, err)
			}
		}
		// The printed flags name this certificate.
		if !strings.Contains(out.String(), strings.Join(tlsconfig.DevFiles(dir, name).Args(), " ")) {
			t.Errorf("output does not give the flags of %s:\n%s", name, out.String())
		}
	}
	if st, err := os.Stat(filepath.Join(dir, "ca.key")); err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("ca.key: %v, want mode 0600", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "node-3.crt")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("node-3.crt: %v, want no third node certificate", err)
	}

	before, _ := os.ReadFile(filepath.Join(dir, "node-1.key"))
	err := runCerts(certsConfig{dir: dir, nodes: 3, placements: 1, validFor: time.Hour}, &out)
	if !errors.Is(err, tlsconfig.ErrExists) || !strings.Contains(err.Error(), "node-1.key") || !strings.Contains(err.Error(), "--force") {
		t.Fatalf("second run = %v, want ErrExists naming node-1.key and --force", err)
	}
	if _, stderr, code := runCLI(t, "certs", "--dir", dir, "--nodes", "3", "--placements", "1"); code != exitError || !strings.Contains(stderr, "--force") {
		t.Fatalf("second run on the command line: exit %d, want %d naming --force: %s", code, exitError, stderr)
	}
	if after, _ := os.ReadFile(filepath.Join(dir, "node-1.key")); !bytes.Equal(before, after) {
		t.Error("the refused run changed node-1.key")
	}
	if _, err := os.Stat(filepath.Join(dir, "node-3.crt")); !errors.Is(err, os.ErrNotExist) {
		t.Error("the refused run wrote node-3.crt")
	}
	// The directory from the environment, named after the command.
	t.Setenv("FLOTILLA_CERTS_DIR", dir)
	if _, stderr, code := runCLI(t, "certs", "--nodes", "3", "--placements", "1", "--force"); code != 0 {
		t.Fatalf("--force: exit %d: %s", code, stderr)
	}
	if after, _ := os.ReadFile(filepath.Join(dir, "node-1.key")); bytes.Equal(before, after) {
		t.Error("--force kept the old node-1.key")
	}
	if _, err := tlsconfig.Load(tlsconfig.DevFiles(dir, "node-3")); err != nil {
		t.Errorf("node-3 after --force: %v", err)
	}
	// The old CA no longer signs the new set.
	oldRoots := roots
	if _, err := readCert(t, filepath.Join(dir, "node-1.crt")).Verify(x509.VerifyOptions{Roots: oldRoots}); err == nil {
		t.Error("a forced run reused the old CA")
	}
	t.Setenv("FLOTILLA_CERTS_DIR", "")
	if _, stderr, code := runCLI(t, "certs"); code != exitUsage || !strings.Contains(stderr, "--dir is required") {
		t.Errorf("no --dir: exit %d, want a usage error: %s", code, stderr)
	}
}
