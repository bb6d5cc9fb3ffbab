//go:build !(linux || darwin || freebsd || netbsd || openbsd || dragonfly)

package ports

// A reservation would be a port's lock file (see reserve_unix.go); this
// platform has no flock, so ports go unreserved.
type reservation struct{}

func reserve(int) (*reservation, bool) { return nil, true }

func (*reservation) release() {}
