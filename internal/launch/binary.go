package launch

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
)

// ErrNotFound is returned, wrapped with the binary's name and where it was
// looked for, by FindBinary.
var ErrNotFound = errors.New("launch: binary not found")

// FindBinary returns the path of the executable name ("shardnode",
// "placementd", "flotilla-bench"): in dir when dir is set, else next to
// the running executable (where `make build` puts all of Flotilla's
// binaries), else on $PATH. Safe for concurrent use.
func FindBinary(dir, name string) (string, error) {
	if dir != "" {
		p := filepath.Join(dir, name)
		if _, err := os.Stat(p); err != nil {
			return "", fmt.Errorf("%w: %s in %s", ErrNotFound, name, dir)
		}
		return p, nil
	}
	self, err := os.Executable()
	if err == nil {
		p := filepath.Join(filepath.Dir(self), name)
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	p, err := exec.LookPath(name)
	if err != nil {
		return "", fmt.Errorf("%w: %s, neither next to %s nor on $PATH", ErrNotFound, name, filepath.Base(self))
	}
	return p, nil
}
