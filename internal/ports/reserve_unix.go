//go:build linux || darwin || freebsd || netbsd || openbsd || dragonfly

package ports

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
)

// A reservation is a port's lock file, open and flocked; nil when the
// port could not be reserved because the machine offers no way to (see
// reserve).
type reservation struct{ f *os.File }

// dirOnce creates the reservations' directory once per process; dir is
// empty when it cannot be used.
var (
	dirOnce sync.Once
	dir     string
)

// reserveDir returns the directory of the lock files, or "" when it
// cannot be created. Every user's processes share it (mode 01777, as the
// temporary directory itself), so that a root CI run and a user's run
// see each other's reservations.
func reserveDir() string {
	dirOnce.Do(func() {
		d := filepath.Join(os.TempDir(), "flotilla-ports")
		if err := os.Mkdir(d, 0o777|os.ModeSticky); err != nil && !errors.Is(err, os.ErrExist) {
			return
		}
		// Mkdir's mode passes through the umask; widen it if it is ours.
		_ = os.Chmod(d, 0o777|os.ModeSticky)
		dir = d
	})
	return dir
}

// reserve takes an exclusive, non-blocking flock on port's file. It
// returns false only when another open file, in practice another live
// process, holds it; when the file cannot be opened or locked for any
// other reason it returns a nil reservation and true, and the port goes
// unreserved.
func reserve(port int) (*reservation, bool) {
	d := reserveDir()
	if d == "" {
		return nil, true
	}
	// Read-only: flock needs no more, and another user's file opens so.
	f, err := os.OpenFile(filepath.Join(d, strconv.Itoa(port)), os.O_RDONLY|os.O_CREATE, 0o666)
	if err != nil {
		return nil, true
	}
	for {
		err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err != syscall.EINTR {
			break
		}
	}
	if err == syscall.EWOULDBLOCK {
		f.Close()
		return nil, false
	}
	if err != nil {
		f.Close()
		return nil, true
	}
	return &reservation{f}, true
}

// release gives a reservation up (closing the file drops its lock).
func (r *reservation) release() {
	if r != nil {
		r.f.Close()
	}
}
