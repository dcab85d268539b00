//go:build !linux

package file

// groupSyncer is Linux-only (syncfs); elsewhere every directory is
// fsynced on its own.
type groupSyncer struct{}

func newGroupSyncer(string) (*groupSyncer, error) { return nil, nil }

func (*groupSyncer) wait() error  { return nil }
func (*groupSyncer) close() error { return nil }
