package inmem

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/picomdm/picomdm/storage"
)

// HasCertHash implements storage.CertAuthStore.
func (s *Store) HasCertHash(_ context.Context, hash string) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.hashToIDs[hash]) > 0, nil
}

// EnrollmentHasCertHash implements storage.CertAuthStore.
func (s *Store) EnrollmentHasCertHash(_ context.Context, id string) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.idToHashes[id]) > 0, nil
}

// IsCertHashAssociated implements storage.CertAuthStore.
func (s *Store) IsCertHashAssociated(_ context.Context, id, hash string) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.hashToIDs[hash][id]
	return ok, nil
}

// AssociateCertHash implements storage.CertAuthStore. A hash another
// enrollment has is left with it.
func (s *Store) AssociateCertHash(_ context.Context, id, hash string, notAfter time.Time) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.checkCertHashFreeLocked(id, hash) == nil {
		s.associateLocked(id, hash, notAfter, time.Now())
	}
	return nil
}

// RetrieveCertHashes implements storage.CertAuthInspector.
func (s *Store) RetrieveCertHashes(_ context.Context, id string) ([]storage.CertHashInfo, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]storage.CertHashInfo, 0, len(s.idToHashes[id]))
	for _, info := range s.idToHashes[id] {
		out = append(out, *info)
	}
	slices.SortFunc(out, func(a, b storage.CertHashInfo) int {
		return cmp.Or(a.AssociatedAt.Compare(b.AssociatedAt), cmp.Compare(a.Hash, b.Hash))
	})
	return out, nil
}

// DeleteCertHash implements storage.CertAuthInspector.
func (s *Store) DeleteCertHash(_ context.Context, id, hash string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.idToHashes[id][hash]; !ok {
		return fmt.Errorf("cert hash %s of %q: %w", hash, id, storage.ErrNotFound)
	}
	s.dissociateLocked(id, hash)
	return nil
}

// checkCertHashFreeLocked refuses a hash another enrollment than id has.
// Callers hold s.mu.
func (s *Store) checkCertHashFreeLocked(id, hash string) error {
	for owner := range s.hashToIDs[hash] {
		if owner != id {
			return fmt.Errorf("associating cert hash %s with %q: %w", hash, id, storage.ErrCertHashInUse)
		}
	}
	return nil
}

// replaceCertHashesLocked makes a's hash id's only one. Callers hold s.mu
// and have checked the hash is free.
func (s *Store) replaceCertHashesLocked(id string, a storage.CertAssociation, now time.Time) {
	for hash := range s.idToHashes[id] {
		if hash != a.Hash {
			s.dissociateLocked(id, hash)
		}
	}
	s.associateLocked(id, a.Hash, a.NotAfter, now)
}

// associateLocked associates hash with id; an existing pair keeps its
// association time and takes the new expiry. Callers hold s.mu.
func (s *Store) associateLocked(id, hash string, notAfter, now time.Time) {
	if s.hashToIDs[hash] == nil {
		s.hashToIDs[hash] = make(map[string]struct{})
	}
	s.hashToIDs[hash][id] = struct{}{}
	if s.idToHashes[id] == nil {
		s.idToHashes[id] = make(map[string]*storage.CertHashInfo)
	}
	if info := s.idToHashes[id][hash]; info != nil {
		info.NotAfter = notAfter
		return
	}
	s.idToHashes[id][hash] = &storage.CertHashInfo{Hash: hash, NotAfter: notAfter, AssociatedAt: now}
}

// dissociateLocked removes the pair. Callers hold s.mu.
func (s *Store) dissociateLocked(id, hash string) {
	delete(s.idToHashes[id], hash)
	if len(s.idToHashes[id]) == 0 {
		delete(s.idToHashes, id)
	}
	delete(s.hashToIDs[hash], id)
	if len(s.hashToIDs[hash]) == 0 {
		delete(s.hashToIDs, hash)
	}
}
