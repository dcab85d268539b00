//go:build !windows

package file

import "os"

// syncDir fsyncs a directory, which is how POSIX systems make the creation,
// renaming or removal of its entries durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}
