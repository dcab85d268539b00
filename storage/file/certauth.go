package file

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"time"
)

// The association of an identity-certificate hash with an enrollment ID
// is two files, one per direction, so each question is one stat or one
// directory read: certauth/hashes/HASH/ID and certauth/ids/ID/HASH.

func (s *Store) hashDir(hash string) string {
	return filepath.Join(s.dir, "certauth", "hashes", fileName(hash))
}
func (s *Store) idDir(id string) string {
	return filepath.Join(s.dir, "certauth", "ids", fileName(id))
}

// certAssociation is the content of both association files.
type certAssociation struct {
	ID           string    `json:"id"`
	Hash         string    `json:"hash"`
	NotAfter     time.Time `json:"not_after"`
	AssociatedAt time.Time `json:"associated_at"`
}

// HasCertHash implements storage.CertAuthStore.
func (s *Store) HasCertHash(_ context.Context, hash string) (bool, error) {
	ok, err := dirNotEmpty(s.hashDir(hash))
	if err != nil {
		return false, fmt.Errorf("looking up cert hash: %w", err)
	}
	return ok, nil
}

// EnrollmentHasCertHash implements storage.CertAuthStore.
func (s *Store) EnrollmentHasCertHash(_ context.Context, id string) (bool, error) {
	ok, err := dirNotEmpty(s.idDir(id))
	if err != nil {
		return false, fmt.Errorf("looking up cert hashes of %q: %w", id, err)
	}
	return ok, nil
}

// IsCertHashAssociated implements storage.CertAuthStore. It runs for every
// device request, and is one stat.
func (s *Store) IsCertHashAssociated(_ context.Context, id, hash string) (bool, error) {
	ok, err := exists(filepath.Join(s.hashDir(hash), fileName(id)))
	if err != nil {
		return false, fmt.Errorf("looking up cert hash of %q: %w", id, err)
	}
	return ok, nil
}

// AssociateCertHash implements storage.CertAuthStore. The by-ID file is
// written first: the by-hash file is what requests are checked against,
// so a crash in between leaves no association and the device's retry
// makes it whole.
func (s *Store) AssociateCertHash(_ context.Context, id, hash string, notAfter time.Time) error {
	data, err := json.Marshal(&certAssociation{ID: id, Hash: hash, NotAfter: notAfter, AssociatedAt: time.Now()})
	if err != nil {
		return fmt.Errorf("associating cert hash: %w", err)
	}
	for _, path := range []string{
		filepath.Join(s.idDir(id), fileName(hash)),
		filepath.Join(s.hashDir(hash), fileName(id)),
	} {
		if err := s.ensureDir(filepath.Dir(path)); err != nil {
			return fmt.Errorf("associating cert hash with %q: %w", id, err)
		}
		if err := s.writeFile(path, data); err != nil {
			return fmt.Errorf("associating cert hash with %q: %w", id, err)
		}
	}
	return nil
}
