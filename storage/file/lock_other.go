//go:build !(linux || darwin || freebsd || netbsd || openbsd || dragonfly)

package file

import (
	"fmt"
	"os"
)

// lockDir opens the lock file without locking it: this platform has no
// flock. Running two processes on one directory is then on the operator.
func lockDir(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("opening lock file: %w", err)
	}
	return f, nil
}
