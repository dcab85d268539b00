package file

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/picomdm/picomdm/storage"
)

// EnrollmentFromCertHash implements storage.CertAuthLookup. It reads the
// hash's directory (certauth/hashes/HASH/), whose entries are the
// associated IDs, file-name encoded; the IDs themselves come from the
// entries' content. There is normally one entry; with several the lowest
// ID wins (the encoding does not keep the IDs' order, so all are read).
func (s *Store) EnrollmentFromCertHash(_ context.Context, hash string) (string, error) {
	dir := s.hashDir(hash)
	entries, err := os.ReadDir(dir)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return "", fmt.Errorf("enrollment of cert hash %s: %w", hash, err)
	}
	var (
		found bool
		id    string
	)
	for _, e := range entries {
		data, ok, err := readFile(filepath.Join(dir, e.Name()))
		if err != nil {
			return "", fmt.Errorf("enrollment of cert hash %s: %w", hash, err)
		}
		if !ok {
			continue // removed since the directory was read
		}
		var assoc certAssociation
		if err := json.Unmarshal(data, &assoc); err != nil {
			return "", fmt.Errorf("enrollment of cert hash %s: decoding %s: %w", hash, e.Name(), err)
		}
		if !found || assoc.ID < id {
			id, found = assoc.ID, true
		}
	}
	if !found {
		return "", fmt.Errorf("enrollment of cert hash %s: %w", hash, storage.ErrNotFound)
	}
	return id, nil
}
