package tlsconfig

import (
	"crypto/x509"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestDevCertificates(t *testing.T) {
	ca, err := NewDevCA(24 * time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	certPEM, _, err := ca.Issue("node-1", []string{"127.0.0.1", "db.example", "10.1.2.3"})
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(certPEM)
	leaf, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	caBlock, _ := pem.Decode(ca.CertPEM)
	caCert, err := x509.ParseCertificate(caBlock.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if !caCert.IsCA || caCert.PublicKeyAlgorithm != x509.ECDSA || leaf.PublicKeyAlgorithm != x509.ECDSA {
		t.Errorf("CA %v, algorithms %v %v: want an ECDSA CA", caCert.IsCA, caCert.PublicKeyAlgorithm, leaf.PublicKeyAlgorithm)
	}
	roots := x509.NewCertPool()
	roots.AddCert(caCert)
	for _, tc := range []struct {
		host  string
		usage x509.ExtKeyUsage
	}{{"127.0.0.1", x509.ExtKeyUsageServerAuth}, {"db.example", x509.ExtKeyUsageServerAuth}, {"10.1.2.3", x509.ExtKeyUsageClientAuth}} {
		if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, DNSName: tc.host, KeyUsages: []x509.ExtKeyUsage{tc.usage}}); err != nil {
			t.Errorf("verify for %s: %v", tc.host, err)
		}
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, DNSName: "other.example"}); err == nil {
		t.Error("the certificate verified for a host it does not name")
	}
	if leaf.NotAfter.After(caCert.NotAfter) {
		t.Errorf("leaf outlives its CA: %s > %s", leaf.NotAfter, caCert.NotAfter)
	}
}

func TestWriteDevFilesRefusesOverwrite(t *testing.T) {
	dir := t.TempDir()
	ca, err := NewDevCA(time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	f, err := WriteDevFiles(ca, dir, "node-1", DefaultHosts, false)
	if err != nil {
		t.Fatal(err)
	}
	for path, mode := range map[string]os.FileMode{f.Cert: 0o644, f.Key: 0o600, f.CA: 0o644} {
		st, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != mode {
			t.Errorf("%s: mode %v, want %v", path, st.Mode().Perm(), mode)
		}
	}
	// The same CA's certificate file is shared, not a conflict.
	if _, err := WriteDevFiles(ca, dir, "node-2", DefaultHosts, false); err != nil {
		t.Fatalf("second certificate of the same CA: %v", err)
	}
	before, _ := os.ReadFile(f.Key)
	_, err = WriteDevFiles(ca, dir, "node-1", DefaultHosts, false)
	if !errors.Is(err, ErrExists) || !strings.Contains(err.Error(), filepath.Base(f.Key)) || !strings.Contains(err.Error(), filepath.Base(f.Cert)) {
		t.Fatalf("rewrite = %v, want ErrExists naming the certificate and the key", err)
	}
	if after, _ := os.ReadFile(f.Key); string(after) != string(before) {
		t.Error("a refused write changed the key")
	}
	// Another CA's certificate is a conflict too.
	other, _ := NewDevCA(time.Hour)
	if _, err := WriteDevFiles(other, dir, "node-3", DefaultHosts, false); !errors.Is(err, ErrExists) || !strings.Contains(err.Error(), "ca.crt") {
		t.Fatalf("a different CA = %v, want ErrExists naming ca.crt", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "node-3.key")); !errors.Is(err, os.ErrNotExist) {
		t.Error("a refused write left a key behind")
	}
	if err := os.Chmod(f.Key, 0o666); err != nil {
		t.Fatal(err)
	}
	if _, err := WriteDevFiles(ca, dir, "node-1", DefaultHosts, true); err != nil {
		t.Fatalf("forced rewrite: %v", err)
	}
	if after, _ := os.ReadFile(f.Key); string(after) == string(before) {
		t.Error("a forced write kept the old key")
	}
	if st, _ := os.Stat(f.Key); st.Mode().Perm() != 0o600 {
		t.Errorf("forced key mode %v, want 0600", st.Mode().Perm())
	}
	if _, err := Load(f); err != nil {
		t.Errorf("the written files do not load: %v", err)
	}
}
