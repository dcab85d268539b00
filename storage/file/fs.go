package file

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// maxNameLen bounds an escaped file name; longer ones are replaced by a
// hash. Common file systems allow 255 bytes per name.
const maxNameLen = 200

// fileName turns an arbitrary string (an enrollment ID, a CommandUUID, a
// topic, a hash) into one safe path element. Lower-case letters, digits and
// '-' are kept; every other byte becomes "_" and two hex digits. So the
// result never contains a separator or a dot (no "..", no hidden files),
// and never an upper-case letter, so two IDs that differ only in case stay
// two files on case-insensitive file systems (macOS, Windows). The mapping
// is one-to-one; names that would be too long (and the empty string) are
// replaced by "~" and the SHA-256 of the string, which no escaped name can
// start with. Records keep the original string, so names never need
// decoding.
func fileName(s string) string {
	const hexDigits = "0123456789abcdef"
	var b strings.Builder
	b.Grow(len(s))
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' {
			b.WriteByte(c)
			continue
		}
		b.WriteByte('_')
		b.WriteByte(hexDigits[c>>4])
		b.WriteByte(hexDigits[c&0x0f])
		if b.Len() > maxNameLen {
			break
		}
	}
	if s == "" || b.Len() > maxNameLen {
		sum := sha256.Sum256([]byte(s))
		return "~" + hex.EncodeToString(sum[:])
	}
	return b.String()
}

// writeFile replaces path with data crash-safely: the data goes to a
// temporary file (in the store's tmp directory, on the same file system),
// which is synced, renamed over path, and then path's directory is synced
// so the rename itself survives a crash. A reader sees the old file or the
// new one, never a mix.
func (s *Store) writeFile(path string, data []byte) error {
	if err := s.writeFileNoDirSync(path, data, s.sync); err != nil {
		return err
	}
	return s.syncDir(filepath.Dir(path))
}

// writeFileUnsynced is writeFile without any sync: the file is replaced
// atomically, but durable only after a later syncDir of its directory (on
// Linux the group sync, which also writes its data; elsewhere a power loss
// may leave it empty or partial).
func (s *Store) writeFileUnsynced(path string, data []byte) error {
	return s.writeFileNoDirSync(path, data, false)
}

// writeFileNoDirSync writes data to a temporary file, synced if
// syncData, and renames it over path.
func (s *Store) writeFileNoDirSync(path string, data []byte, syncData bool) error {
	tmp, err := os.CreateTemp(s.tmpDir, "w-")
	if err != nil {
		return fmt.Errorf("creating temporary file: %w", err)
	}
	tmpName := tmp.Name()
	ok := false
	defer func() {
		if !ok {
			tmp.Close()
			os.Remove(tmpName)
		}
	}()
	if _, err := tmp.Write(data); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if syncData {
		if err := tmp.Sync(); err != nil {
			return fmt.Errorf("syncing %s: %w", path, err)
		}
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("closing %s: %w", path, err)
	}
	if err := os.Rename(tmpName, path); err != nil {
		return fmt.Errorf("renaming into %s: %w", path, err)
	}
	ok = true
	return nil
}

// syncDir makes the entries of the directories (files created, renamed or
// removed in them) durable: one group sync on Linux, an fsync per
// directory elsewhere.
func (s *Store) syncDir(dirs ...string) error {
	if !s.sync {
		return nil
	}
	if s.group != nil {
		return s.group.wait()
	}
	for _, dir := range dirs {
		if err := syncDir(dir); err != nil {
			return fmt.Errorf("syncing directory %s: %w", dir, err)
		}
	}
	return nil
}

// ensureDir creates directory dir (and its missing parents) and, when it
// had to create it, syncs the parent so the new entry is durable.
func (s *Store) ensureDir(dir string) error {
	if _, err := os.Stat(dir); err == nil {
		return nil
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("creating directory: %w", err)
	}
	return s.syncDir(filepath.Dir(dir))
}

// readFile reads path; ok is false (and err nil) when it does not exist.
func readFile(path string) (data []byte, ok bool, err error) {
	data, err = os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("reading %s: %w", path, err)
	}
	return data, true, nil
}

// exists reports whether path exists.
func exists(path string) (bool, error) {
	_, err := os.Stat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("checking %s: %w", path, err)
	}
	return true, nil
}

// dirNotEmpty reports whether directory dir exists and has an entry,
// reading at most one name.
func dirNotEmpty(dir string) (bool, error) {
	f, err := os.Open(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("opening %s: %w", dir, err)
	}
	defer f.Close()
	names, err := f.Readdirnames(1)
	if len(names) > 0 {
		return true, nil
	}
	if err != nil && !errors.Is(err, io.EOF) {
		return false, fmt.Errorf("reading %s: %w", dir, err)
	}
	return false, nil
}
