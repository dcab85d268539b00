//go:build linux || darwin || freebsd || netbsd || openbsd || dragonfly

package file

import (
	"fmt"
	"os"
	"syscall"
)

// lockDir takes an exclusive advisory lock on the store directory, so a
// second process (or a second Store in this one) cannot open it: the
// backend keeps its indexes in memory and is single-process by design.
func lockDir(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("opening lock file: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return nil, fmt.Errorf("%w: %s (%v)", ErrLocked, path, err)
	}
	return f, nil
}
