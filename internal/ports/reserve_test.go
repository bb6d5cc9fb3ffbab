//go:build linux || darwin || freebsd || netbsd || openbsd || dragonfly

package ports

import (
	"bufio"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
)

// helperRangeEnv tells a re-executed test binary to be the other process
// of TestReservationsSpanProcesses (see TestMain).
const helperRangeEnv = "FLOTILLA_PORTS_HELPER_RANGE"

// TestMain runs the tests, or, in a binary re-executed by
// TestReservationsSpanProcesses, is that test's other process: it reserves
// every port of the range it is given, says so, and holds them until its
// standard input closes.
func TestMain(m *testing.M) {
	r := os.Getenv(helperRangeEnv)
	if r == "" {
		os.Exit(m.Run())
	}
	var lo, hi int
	if _, err := fmt.Sscanf(r, "%d-%d", &lo, &hi); err != nil {
		fmt.Println("error: bad range:", r)
		os.Exit(2)
	}
	if _, err := pick(hi-lo, lo, hi); err != nil {
		fmt.Println("error:", err)
		os.Exit(1)
	}
	fmt.Println("reserved")
	_, _ = bufio.NewReader(os.Stdin).ReadString('\n') // until the parent closes it
	os.Exit(0)
}

// TestReservationsSpanProcesses: ports another live process was given are
// not given here, even though nothing is bound to them (a stopped node's
// port, waiting for its restart); once that process exits they are.
func TestReservationsSpanProcesses(t *testing.T) {
	if reserveDir() == "" {
		t.Fatalf("the reservations' directory under %s cannot be used", os.TempDir())
	}
	const size = 8
	lo := freeRange(t, size)

	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), fmt.Sprintf("%s=%d-%d", helperRangeEnv, lo, lo+size))
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { stdin.Close(); _ = cmd.Wait() }()
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil || strings.TrimSpace(line) != "reserved" {
		t.Fatalf("the other process said %q (%v), want \"reserved\"", line, err)
	}

	// Every port of the range is bindable, yet reserved by the other
	// process.
	for p := lo; p < lo+size; p++ {
		l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
		if err != nil {
			t.Fatalf("port %d is bound by someone: %v", p, err)
		}
		l.Close()
	}
	if got, err := pick(1, lo, lo+size); err == nil {
		t.Fatalf("pick returned %v, reserved by another live process", got)
	}

	stdin.Close()
	if err := cmd.Wait(); err != nil {
		t.Fatalf("the other process: %v", err)
	}
	got, err := pick(size, lo, lo+size)
	if err != nil {
		t.Fatalf("after the other process exited: %v", err)
	}
	if len(got) != size {
		t.Fatalf("got %d ports, want %d", len(got), size)
	}
}

// TestReleaseFreesReservation: a port whose bind check failed is given
// back at once, not held for the process's life.
func TestReleaseFreesReservation(t *testing.T) {
	lo := freeRange(t, 1)
	r, ok := reserve(lo)
	if !ok || r == nil {
		t.Fatalf("reserve(%d) = %v, %v; want a reservation", lo, r, ok)
	}
	if _, ok := reserve(lo); ok {
		t.Fatalf("port %d reserved twice", lo)
	}
	r.release()
	r2, ok := reserve(lo)
	if !ok || r2 == nil {
		t.Fatalf("port %d not reservable after release", lo)
	}
	r2.release()
}

// freeRange returns the first port of size consecutive ports that are
// bindable now, that this process has not been given, and that no other
// process holds a reservation for.
func freeRange(t *testing.T, size int) int {
	t.Helper()
	for range 100 {
		lo := lowest + 1000 + rand.IntN(ephemeralLow()-lowest-2000)
		ok := true
		for p := lo; p < lo+size && ok; p++ {
			given.Lock()
			ok = !given.ports[p]
			given.Unlock()
			if !ok {
				break
			}
			l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
			if err != nil {
				ok = false
				break
			}
			l.Close()
			r, free := reserve(p)
			ok = free
			r.release()
		}
		if ok {
			return lo
		}
	}
	t.Fatal("no free range of ports found")
	return 0
}
