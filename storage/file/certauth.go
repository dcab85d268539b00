package file

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/picomdm/picomdm/storage"
)

// The association of an identity-certificate hash with an enrollment ID
// is two files, one per direction, so each question is one stat or one
// directory read: certauth/hashes/HASH/ID and certauth/ids/ID/HASH. The
// by-hash file is what requests are checked against: it is written last
// and removed first, so a crash half-way leaves no association that the
// by-ID side does not also show.

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

// AssociateCertHash implements storage.CertAuthStore. A hash another
// enrollment has is left with it. id is a device channel: its stripe
// serialises this with its Authenticates.
func (s *Store) AssociateCertHash(_ context.Context, id, hash string, notAfter time.Time) error {
	mu := s.stripe(id)
	mu.Lock()
	defer mu.Unlock()
	release, err := s.claimCertHash(id, hash)
	if errors.Is(err, storage.ErrCertHashInUse) {
		return nil
	}
	if err != nil {
		return err
	}
	defer release()
	if err := s.associate(id, hash, notAfter, time.Now()); err != nil {
		return fmt.Errorf("associating cert hash with %q: %w", id, err)
	}
	return nil
}

// RetrieveCertHashes implements storage.CertAuthInspector.
func (s *Store) RetrieveCertHashes(_ context.Context, id string) ([]storage.CertHashInfo, error) {
	assocs, err := s.readAssociations(id)
	if err != nil {
		return nil, fmt.Errorf("cert hashes of %q: %w", id, err)
	}
	out := make([]storage.CertHashInfo, 0, len(assocs))
	for _, a := range assocs {
		out = append(out, storage.CertHashInfo{Hash: a.Hash, NotAfter: a.NotAfter, AssociatedAt: a.AssociatedAt})
	}
	slices.SortFunc(out, func(a, b storage.CertHashInfo) int {
		return cmp.Or(a.AssociatedAt.Compare(b.AssociatedAt), cmp.Compare(a.Hash, b.Hash))
	})
	return out, nil
}

// DeleteCertHash implements storage.CertAuthInspector.
func (s *Store) DeleteCertHash(_ context.Context, id, hash string) error {
	mu := s.stripe(id)
	mu.Lock()
	defer mu.Unlock()
	ok, err := exists(filepath.Join(s.idDir(id), fileName(hash)))
	if err != nil {
		return fmt.Errorf("cert hash %s of %q: %w", hash, id, err)
	}
	if !ok {
		return fmt.Errorf("cert hash %s of %q: %w", hash, id, storage.ErrNotFound)
	}
	if err := s.dissociate(id, hash); err != nil {
		return fmt.Errorf("cert hash %s of %q: %w", hash, id, err)
	}
	return nil
}

// claimCertHash is the first half of an Authenticate's association: it
// refuses a hash another enrollment has (on disk, or claimed by an
// Authenticate in progress) and otherwise claims it for id, writing
// nothing. s.certMu is held only for the decision, never during the
// writes that follow, so devices enroll in parallel. The caller holds
// id's stripe and must call release.
func (s *Store) claimCertHash(id, hash string) (release func(), err error) {
	s.certMu.Lock()
	defer s.certMu.Unlock()
	free, err := s.certHashFreeLocked(id, hash)
	if err != nil {
		return nil, err
	}
	if !free {
		return nil, fmt.Errorf("associating cert hash %s with %q: %w", hash, id, storage.ErrCertHashInUse)
	}
	s.claimedHashes[hash] = id
	return func() {
		s.certMu.Lock()
		delete(s.claimedHashes, hash)
		s.certMu.Unlock()
	}, nil
}

// certHashFreeLocked reports whether hash is nobody's or id's already,
// on disk and among the claims of Authenticates in progress. Callers hold
// s.certMu.
func (s *Store) certHashFreeLocked(id, hash string) (bool, error) {
	if owner, ok := s.claimedHashes[hash]; ok && owner != id {
		return false, nil
	}
	entries, err := os.ReadDir(s.hashDir(hash))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return false, fmt.Errorf("looking up cert hash %s: %w", hash, err)
	}
	for _, e := range entries {
		if e.Name() != fileName(id) {
			return false, nil
		}
	}
	return true, nil
}

// replaceCertHashes is the second half, once the Authenticate is stored:
// a's hash becomes id's only association. The caller holds id's stripe
// and the claim on the hash.
func (s *Store) replaceCertHashes(id string, a storage.CertAssociation, now time.Time) error {
	assocs, err := s.readAssociations(id)
	if err != nil {
		return err
	}
	for _, old := range assocs {
		if old.Hash != a.Hash {
			if err := s.dissociate(id, old.Hash); err != nil {
				return err
			}
		}
	}
	return s.associate(id, a.Hash, a.NotAfter, now)
}

// readAssociations reads id's by-ID association files.
func (s *Store) readAssociations(id string) ([]certAssociation, error) {
	dir := s.idDir(id)
	entries, err := os.ReadDir(dir)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	out := make([]certAssociation, 0, len(entries))
	for _, e := range entries {
		var a certAssociation
		ok, err := readJSON(filepath.Join(dir, e.Name()), &a)
		if err != nil {
			return nil, err
		}
		if ok {
			out = append(out, a)
		}
	}
	return out, nil
}

// associate writes both files of the pair, by-ID first; a pair that
// exists keeps its association time. Callers hold id's stripe and the
// claim on hash.
func (s *Store) associate(id, hash string, notAfter, now time.Time) error {
	byID := filepath.Join(s.idDir(id), fileName(hash))
	var prev certAssociation
	if ok, err := readJSON(byID, &prev); err != nil {
		return err
	} else if ok && !prev.AssociatedAt.IsZero() {
		now = prev.AssociatedAt
	}
	data, err := json.Marshal(&certAssociation{ID: id, Hash: hash, NotAfter: notAfter, AssociatedAt: now})
	if err != nil {
		return err
	}
	for _, path := range []string{byID, filepath.Join(s.hashDir(hash), fileName(id))} {
		if err := s.ensureDir(filepath.Dir(path)); err != nil {
			return err
		}
		if err := s.writeFile(path, data); err != nil {
			return err
		}
	}
	return nil
}

// dissociate removes both files of the pair, by-hash first. Callers hold
// id's stripe.
func (s *Store) dissociate(id, hash string) error {
	byHash := filepath.Join(s.hashDir(hash), fileName(id))
	byID := filepath.Join(s.idDir(id), fileName(hash))
	for _, path := range []string{byHash, byID} {
		if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	// An empty hash directory would still be one entry of nothing; it is
	// removed so HasCertHash (a non-empty directory) stays exact.
	_ = os.Remove(s.hashDir(hash))
	return s.syncDir(filepath.Dir(byHash), filepath.Dir(byID))
}
