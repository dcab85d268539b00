package inmem

import (
	"context"
	"fmt"

	"github.com/picomdm/picomdm/storage"
)

// EnrollmentFromCertHash implements storage.CertAuthLookup.
func (s *Store) EnrollmentFromCertHash(_ context.Context, hash string) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var (
		found bool
		id    string
	)
	for candidate := range s.hashToIDs[hash] {
		if !found || candidate < id {
			id, found = candidate, true
		}
	}
	if !found {
		return "", fmt.Errorf("enrollment of cert hash %s: %w", hash, storage.ErrNotFound)
	}
	return id, nil
}
