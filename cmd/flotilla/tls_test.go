package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	flt "github.com/flotilla-kv/flotilla/internal/fleet"
	"github.com/flotilla-kv/flotilla/internal/testutil"
	"github.com/flotilla-kv/flotilla/internal/tlsconfig"
)

// TestDemoWithTLSAndTheCLI runs `flotilla demo --tls`, then drives its
// fleet with the CLI: with the client certificate every command works,
// without it, or with half of the flags, the CLI is refused.
func TestDemoWithTLSAndTheCLI(t *testing.T) {
	bin := flt.Binary(t, "flotilla")
	flt.Binary(t, "shardnode")
	flt.Binary(t, "placementd")
	dir := t.TempDir()
	demo := exec.Command(bin, "demo", "--tls", "--dir", dir, "--workload", "1s", "--shards", "4", "--clients", "4",
		"--bin", filepath.Dir(bin), "--placement-listen", flt.FreePort(t))
	stdout, err := demo.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	demo.Stderr = &stderr
	if err := demo.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	var output bytes.Buffer
	ready := make(chan string, 1)
	running := make(chan struct{}) // the demo printed its hint and waits for Ctrl-C
	go func() {
		re := regexp.MustCompile(`fleet ready in .*: placement at (\S+),`)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			output.WriteString(sc.Text() + "\n")
			if m := re.FindStringSubmatch(sc.Text()); m != nil {
				ready <- m[1]
			}
			if strings.Contains(sc.Text(), "Ctrl-C stops it") {
				close(running)
			}
		}
		exited <- demo.Wait()
	}()
	t.Cleanup(func() { _ = demo.Process.Kill() })
	var placement string
	select {
	case placement = <-ready:
	case err := <-exited:
		t.Fatalf("demo exited before its fleet was ready: %v\n%s", err, stderr.String())
	case <-time.After(2 * time.Minute):
		t.Fatal("demo fleet not ready within 2 minutes")
	}

	client := tlsconfig.DevFiles(filepath.Join(dir, "tls"), "client")
	cli := func(env []string, args ...string) (string, int) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, bin, args...)
		cmd.Env = append(cmd.Environ(), env...)
		out, err := cmd.CombinedOutput()
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return string(out), ee.ExitCode()
		}
		if err != nil {
			t.Fatal(err)
		}
		return string(out), 0
	}
	withFlags := func(args ...string) []string {
		return append(append(args[:1:1], append([]string{"--placement", placement}, client.Args()...)...), args[1:]...)
	}
	if out, code := cli(nil, withFlags("put", "tls-key", "secret")...); code != 0 || !strings.HasPrefix(strings.TrimSpace(out), "OK (revision ") {
		t.Fatalf("put with the client certificate: exit %d\n%s", code, out)
	}
	// The environment works as the flags do.
	env := []string{"FLOTILLA_PLACEMENT=" + placement, "FLOTILLA_TLS_CERT=" + client.Cert, "FLOTILLA_TLS_KEY=" + client.Key, "FLOTILLA_TLS_CA=" + client.CA}
	if out, code := cli(env, "get", "tls-key"); code != 0 || strings.TrimSpace(out) != "secret" {
		t.Fatalf("get with the client certificate from the environment: exit %d\n%s", code, out)
	}
	if out, code := cli(env, "nodes"); code != 0 || strings.Count(out, "up") < 3 {
		t.Fatalf("nodes: exit %d\n%s", code, out)
	}
	// Without a certificate the placement service refuses the CLI.
	out, code := cli([]string{"FLOTILLA_TIMEOUT=3s"}, "get", "--placement", placement, "tls-key")
	if code != exitUnavailable || !strings.Contains(out, "code = Unavailable") || !testutil.ClosedByServer(out) {
		t.Fatalf("plaintext get: exit %d, want %d and a refused connection\n%s", code, exitUnavailable, out)
	}
	out, code = cli([]string{"FLOTILLA_TIMEOUT=3s"}, "nodes", "--placement", placement)
	if code != exitUnavailable || !strings.Contains(out, "code = Unavailable") {
		t.Fatalf("plaintext nodes: exit %d, want %d and a refused connection\n%s", code, exitUnavailable, out)
	}
	// Half of the flags is a usage error naming what is missing.
	out, code = cli(nil, "get", "--placement", placement, "--tls-cert", client.Cert, "tls-key")
	if code != 2 || !strings.Contains(out, "--tls-key and --tls-ca missing") {
		t.Fatalf("partial TLS flags: exit %d, want 2 naming the missing flags\n%s", code, out)
	}
	// A file that cannot be read is an error naming it.
	out, code = cli(nil, "get", "--placement", placement, "--tls-cert", client.Cert, "--tls-key", client.Key, "--tls-ca", filepath.Join(dir, "nope.crt"), "tls-key")
	if code != 1 || !strings.Contains(out, "--tls-ca") || !strings.Contains(out, "nope.crt") {
		t.Fatalf("missing CA file: exit %d, want 1 naming it\n%s", code, out)
	}

	// Ctrl-C stops the demo and its fleet.
	select {
	case <-running:
	case <-time.After(time.Minute):
		t.Fatal("the demo did not finish its workload within a minute")
	}
	if err := demo.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("demo: %v\n%s%s", err, output.String(), stderr.String())
		}
	case <-time.After(time.Minute):
		t.Fatal("demo did not stop within a minute of SIGINT")
	}
	text := output.String()
	for _, want := range []string{"mutual TLS: CA and certificates in", "OP   COUNT", "fleet stopped", "--tls-cert " + client.Cert} {
		if !strings.Contains(text, want) {
			t.Errorf("demo output lacks %q:\n%s", want, text)
		}
	}
	for _, line := range strings.Split(text, "\n") {
		f := strings.Fields(line)
		if len(f) == 7 && (f[0] == "put" || f[0] == "get") && (f[1] == "0" || f[6] != "0") {
			t.Errorf("workload row %q: want operations and no errors over TLS", line)
		}
	}
}
