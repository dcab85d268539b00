package inmem

import (
	"maps"
	"slices"

	"github.com/picomdm/picomdm/storage"
	"github.com/picomdm/picomdm/storage/keyseal"
)

// reopen stands in for reopening the storage of s with sealer: an
// in-memory store has no storage apart from itself, so its sealer is
// swapped. Only while nothing uses s.
func (s *Store) reopen(sealer storage.KeySealer) *Store {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sealer = keyseal.Or(sealer)
	return s
}

// rawKeys returns every private key s keeps, as kept: the push
// certificates' and the SCEP CA's.
func (s *Store) rawKeys() [][]byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	var keys [][]byte
	for _, topic := range slices.Sorted(maps.Keys(s.pushCerts)) {
		keys = append(keys, slices.Clone(s.pushCerts[topic].keyPEM))
	}
	if s.scep.ca != nil {
		keys = append(keys, slices.Clone(s.scep.ca.keyPEM))
	}
	return keys
}
