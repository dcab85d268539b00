//go:build windows

package file

// syncDir is a no-op on Windows, which cannot open a directory for
// syncing; NTFS journals renames itself.
func syncDir(string) error { return nil }
