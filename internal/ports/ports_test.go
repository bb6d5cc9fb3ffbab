package ports

import (
	"math/rand/v2"
	"net"
	"strconv"
	"testing"
)

func TestFree(t *testing.T) {
	addrs, err := Free(50)
	if err != nil {
		t.Fatal(err)
	}
	if len(addrs) != 50 {
		t.Fatalf("got %d addresses, want 50", len(addrs))
	}
	hi := ephemeralLow()
	seen := map[string]bool{}
	for _, a := range addrs {
		if seen[a] {
			t.Fatalf("%s returned twice", a)
		}
		seen[a] = true
		host, port, err := net.SplitHostPort(a)
		if err != nil {
			t.Fatal(err)
		}
		p, err := strconv.Atoi(port)
		if err != nil {
			t.Fatal(err)
		}
		if host != "127.0.0.1" || p < lowest || p >= hi {
			t.Errorf("%s: want 127.0.0.1 and a port in [%d, %d), below the ephemeral range", a, lowest, hi)
		}
		// Free released it: it can be bound now.
		l, err := net.Listen("tcp", a)
		if err != nil {
			t.Errorf("%s cannot be bound after Free: %v", a, err)
			continue
		}
		l.Close()
	}
}

// TestFreeNeverRepeats asks for ports one at a time, as a fleet does,
// without binding them: none may come back twice.
func TestFreeNeverRepeats(t *testing.T) {
	seen := map[string]bool{}
	for range 2000 {
		addrs, err := Free(1)
		if err != nil {
			t.Fatal(err)
		}
		if seen[addrs[0]] {
			t.Fatalf("%s returned twice", addrs[0])
		}
		seen[addrs[0]] = true
	}
}

// TestPickSkipsTakenPorts holds some ports of a small range and requires
// pick to return exactly the others, and to fail when asked for more.
func TestPickSkipsTakenPorts(t *testing.T) {
	const size = 30
	lo := lowest + 1000 + rand.IntN(ephemeralLow()-lowest-2000)
	var held []net.Listener
	defer func() {
		for _, l := range held {
			l.Close()
		}
	}()
	free := map[string]bool{}
	for p := lo; p < lo+size; p++ {
		a := net.JoinHostPort("127.0.0.1", strconv.Itoa(p))
		l, err := net.Listen("tcp", a)
		if err != nil {
			continue // taken by someone else already
		}
		given.Lock()
		wasGiven := given.ports[p]
		given.Unlock()
		if p%3 == 0 && !wasGiven {
			free[a] = true
			l.Close()
			continue
		}
		held = append(held, l)
	}
	got, err := pick(len(free), lo, lo+size)
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range got {
		if !free[a] {
			t.Errorf("pick returned %s, which is held", a)
		}
		delete(free, a)
	}
	if len(free) > 0 {
		t.Errorf("pick left out free ports %v", free)
	}
	if _, err := pick(size, lo, lo+size); err == nil {
		t.Errorf("pick found %d free ports in a range of %d with %d held", size, size, len(held))
	}
}
