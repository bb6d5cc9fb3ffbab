package tlsconfig

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

// ErrExists is returned by WriteFiles when a file it would write already
// exists and overwriting was not asked for.
var ErrExists = errors.New("tlsconfig: file exists")

// DevCA is a development certificate authority: an ECDSA P-256 key and a
// self-signed CA certificate, held in memory. It is meant for tests, demos
// and first steps, not for production PKI. Issue is safe for concurrent
// use.
type DevCA struct {
	cert     *x509.Certificate
	key      *ecdsa.PrivateKey
	validFor time.Duration
	// CertPEM and KeyPEM are the CA's certificate and private key in PEM.
	CertPEM, KeyPEM []byte
}

// NewDevCA creates a CA whose certificate, and every certificate it
// issues, is valid from now (minus an hour of clock skew) for validFor.
func NewDevCA(validFor time.Duration) (*DevCA, error) {
	if validFor <= 0 {
		return nil, fmt.Errorf("tlsconfig: validity must be positive, got %s", validFor)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{Organization: []string{"Flotilla development"}, CommonName: "Flotilla development CA"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(validFor),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	keyPEM, err := encodeKey(key)
	if err != nil {
		return nil, err
	}
	return &DevCA{cert: cert, key: key, validFor: validFor, CertPEM: encodeCert(der), KeyPEM: keyPEM}, nil
}

// Issue returns a new ECDSA P-256 key and a certificate for it signed by
// ca, usable both as a TLS server and a TLS client certificate (every
// Flotilla process is both). hosts become the subject alternative names:
// IP addresses as IP SANs, anything else as DNS names. The PEM blocks
// returned are the caller's.
func (ca *DevCA) Issue(commonName string, hosts []string) (certPEM, keyPEM []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{Organization: []string{"Flotilla development"}, CommonName: commonName},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     ca.cert.NotAfter, // never outlives its CA
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else if h != "" {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		return nil, nil, err
	}
	keyPEM, err = encodeKey(key)
	if err != nil {
		return nil, nil, err
	}
	return encodeCert(der), keyPEM, nil
}

// DefaultHosts are the names every development certificate is valid for.
var DefaultHosts = []string{"127.0.0.1", "::1", "localhost"}

// DevFiles returns the paths of certificate name in dir as the development
// layout names them: dir/NAME.crt, dir/NAME.key and the CA dir/ca.crt.
// Names used by 'flotilla certs': node-N, placement-N, client.
func DevFiles(dir, name string) Files {
	return Files{
		Cert: filepath.Join(dir, name+".crt"),
		Key:  filepath.Join(dir, name+".key"),
		CA:   filepath.Join(dir, "ca.crt"),
	}
}

// File is one file for WriteFiles.
type File struct {
	Path string
	Data []byte
	Mode os.FileMode // 0600 for keys, 0644 for certificates
}

// WriteFiles writes every file. Unless force is set it first checks that
// none exists, and writes nothing if any does: the error wraps ErrExists
// and names each existing file. With force, existing files are replaced.
func WriteFiles(files []File, force bool) error {
	if !force {
		var existing []error
		for _, f := range files {
			if _, err := os.Lstat(f.Path); err == nil {
				existing = append(existing, fmt.Errorf("%w: %s", ErrExists, f.Path))
			} else if !errors.Is(err, os.ErrNotExist) {
				existing = append(existing, err)
			}
		}
		if err := errors.Join(existing...); err != nil {
			return err
		}
	}
	for _, f := range files {
		if err := os.MkdirAll(filepath.Dir(f.Path), 0o755); err != nil {
			return err
		}
		flags := os.O_WRONLY | os.O_CREATE | os.O_EXCL
		if force {
			flags = os.O_WRONLY | os.O_CREATE | os.O_TRUNC
		}
		w, err := os.OpenFile(f.Path, flags, f.Mode)
		if err != nil {
			return err
		}
		// OpenFile applies the mode only to new files, through the umask;
		// set it exactly so a replaced key is not left readable.
		if err := w.Chmod(f.Mode); err != nil {
			w.Close()
			return err
		}
		if _, err := w.Write(f.Data); err != nil {
			w.Close()
			return err
		}
		if err := w.Close(); err != nil {
			return err
		}
	}
	return nil
}

// WriteDevFiles issues a certificate for name with hosts and writes it,
// its key (0600) and the CA certificate into dir in the DevFiles layout.
// An existing CA certificate is left alone if it is ca's; any other
// existing file is an error wrapping ErrExists unless force is set.
func WriteDevFiles(ca *DevCA, dir, name string, hosts []string, force bool) (Files, error) {
	files := DevFiles(dir, name)
	certPEM, keyPEM, err := ca.Issue(name, hosts)
	if err != nil {
		return files, err
	}
	write := []File{{files.Cert, certPEM, 0o644}, {files.Key, keyPEM, 0o600}}
	if b, err := os.ReadFile(files.CA); err != nil || string(b) != string(ca.CertPEM) {
		write = append(write, File{files.CA, ca.CertPEM, 0o644})
	}
	return files, WriteFiles(write, force)
}

func serial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		panic(fmt.Sprintf("tlsconfig: crypto/rand failed: %v", err))
	}
	return n
}

func encodeCert(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

func encodeKey(k *ecdsa.PrivateKey) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}
