// Package ports picks loopback ports for the processes that tests, the
// bench suite and the demo start.
//
// Asking the kernel for port 0, closing the listener and handing the port
// to a child process is racy in a way that shows under load: the kernel
// assigns the local ports of outgoing connections from the same ephemeral
// range, so between the close and the child's bind any connection made by
// any process on the machine may take the port. CI saw "bind: address
// already in use" that way while several test packages ran at once. Ports
// below the ephemeral range are never assigned to outgoing connections, so
// Free picks among those at random and checks that each can be bound.
//
// That leaves the other processes that pick ports this way: test packages
// run side by side, each starting fleets, and a fleet's node is often
// stopped and started again on its own address (a crash test, a restart).
// While it is down its port is free, and another test process could pick
// it, so that the restart fails with "address already in use", or, worse,
// the test talks to the other process's node. So Free also reserves each
// port it returns for as long as the calling process lives, across the
// machine: it holds an exclusive flock(2) on a file named after the port
// in a directory under the system's temporary directory, and skips ports
// whose file another live process holds. The kernel drops the locks when
// the process exits, however it exits, so nothing is left to clean up but
// the empty files (at most one per port; they are never removed, since a
// file removed while another process opens it would be two locks). Where
// the directory cannot be used, or flock does not exist, Free goes on
// without reserving.
package ports

import (
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
)

// lowest is the lowest port Free picks: well above the privileged ports
// and the well-known services.
const lowest = 10000

// defaultEphemeralLow is Linux's default start of the ephemeral range, used
// when /proc does not say.
const defaultEphemeralLow = 32768

// Free returns n distinct loopback addresses ("127.0.0.1:port") whose ports
// were free a moment ago, below the ephemeral range (unless the machine
// leaves no room there) and none returned before by this process.
func Free(n int) ([]string, error) {
	hi := ephemeralLow()
	if hi-lowest < 1000 {
		// An unusual ephemeral range leaves no room below it: pick from
		// every port above lowest, and live with the race.
		hi = 1 << 16
	}
	return pick(n, lowest, hi)
}

// given holds every port Free returned in this process. A port handed out
// stays free until its process binds it, so a later call could otherwise
// return it again: a fleet asks for a dozen ports one at a time.
var given struct {
	sync.Mutex
	ports map[int]bool
	// held are the reservations of the ports returned (see the package
	// doc): kept open, and so locked, until the process exits.
	held []*reservation
}

// pick returns n distinct loopback addresses with free ports in [lo, hi),
// chosen at random, none returned before in this process.
func pick(n, lo, hi int) ([]string, error) {
	given.Lock()
	defer given.Unlock()
	if given.ports == nil {
		given.ports = map[int]bool{}
	}
	var held []net.Listener
	defer func() {
		for _, l := range held {
			l.Close()
		}
	}()
	addrs := make([]string, 0, n)
	for tries := 0; len(addrs) < n; tries++ {
		if tries == 100*n+100 {
			return nil, fmt.Errorf("ports: found %d free ports of %d in [%d, %d) after %d tries", len(addrs), n, lo, hi, tries)
		}
		port := lo + rand.IntN(hi-lo)
		if given.ports[port] {
			continue
		}
		r, ok := reserve(port)
		if !ok {
			continue // another live process returned it
		}
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		l, err := net.Listen("tcp", addr)
		if err != nil {
			r.release()
			continue // taken
		}
		held = append(held, l) // held until all are chosen: distinct
		addrs = append(addrs, addr)
		given.ports[port] = true
		given.held = append(given.held, r)
	}
	return addrs, nil
}

// ephemeralLow returns the first port of the kernel's ephemeral range.
func ephemeralLow() int {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return defaultEphemeralLow
	}
	f := strings.Fields(string(b))
	if len(f) != 2 {
		return defaultEphemeralLow
	}
	lo, err := strconv.Atoi(f[0])
	if err != nil {
		return defaultEphemeralLow
	}
	return lo
}
