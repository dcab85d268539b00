package inmem

import (
	"bytes"
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/picomdm/picomdm/storage"
	"github.com/picomdm/picomdm/storage/internal/memindex"
)

var (
	_ storage.SCEPStore        = (*Store)(nil)
	_ storage.PrivateKeySealer = (*Store)(nil)
)

// scepCA is the built-in SCEP CA; keyPEM is sealed with the Store's
// KeySealer under storage.SCEPCAKeyName.
type scepCA struct {
	certPEM, keyPEM []byte
}

// scepState is the SCEP CA, its challenges and the certificates it
// issued, behind Store.mu: a one-time challenge is used and its
// certificate recorded under the one lock, so they happen together.
type scepState struct {
	ca *scepCA
	// challenges are by ID; challengeIDs maps a Hash to its ID.
	challenges   map[string]*storage.SCEPChallenge
	challengeIDs map[string]string
	certs        map[string]*storage.SCEPCert
}

func newSCEPState() scepState {
	return scepState{
		challenges:   make(map[string]*storage.SCEPChallenge),
		challengeIDs: make(map[string]string),
		certs:        make(map[string]*storage.SCEPCert),
	}
}

// utc returns t in UTC, or the zero time when t is zero.
func utc(t time.Time) time.Time {
	if t.IsZero() {
		return time.Time{}
	}
	return t.UTC()
}

// RetrieveSCEPCA implements storage.SCEPStore.
func (s *Store) RetrieveSCEPCA(_ context.Context) (certPEM, keyPEM []byte, err error) {
	s.mu.Lock()
	ca := s.scep.ca
	s.mu.Unlock()
	if ca == nil {
		return nil, nil, fmt.Errorf("retrieving SCEP CA: %w", storage.ErrNotFound)
	}
	key, err := s.sealer.Open(storage.SCEPCAKeyName, ca.keyPEM)
	if err != nil {
		return nil, nil, fmt.Errorf("retrieving SCEP CA: %w", err)
	}
	return bytes.Clone(ca.certPEM), bytes.Clone(key), nil
}

// StoreSCEPCA implements storage.SCEPStore.
func (s *Store) StoreSCEPCA(_ context.Context, certPEM, keyPEM []byte, replace bool) error {
	sealed, err := s.sealer.Seal(storage.SCEPCAKeyName, keyPEM)
	if err != nil {
		return fmt.Errorf("storing SCEP CA: %w", err)
	}
	ca := &scepCA{certPEM: bytes.Clone(certPEM), keyPEM: bytes.Clone(sealed)}
	s.mu.Lock()
	defer s.mu.Unlock()
	if !replace && s.scep.ca != nil {
		return fmt.Errorf("storing SCEP CA: %w", storage.ErrExists)
	}
	s.scep.ca = ca
	return nil
}

// CreateSCEPChallenge implements storage.SCEPStore.
func (s *Store) CreateSCEPChallenge(_ context.Context, c *storage.SCEPChallenge) error {
	stored := *c
	stored.CreatedAt, stored.ExpiresAt = utc(c.CreatedAt), utc(c.ExpiresAt)
	stored.UsedAt, stored.RevokedAt = utc(c.UsedAt), utc(c.RevokedAt)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.scep.challenges[c.ID] != nil {
		return fmt.Errorf("creating SCEP challenge %q: ID %w", c.ID, storage.ErrExists)
	}
	if _, ok := s.scep.challengeIDs[c.Hash]; ok {
		return fmt.Errorf("creating SCEP challenge %q: hash %w", c.ID, storage.ErrExists)
	}
	s.scep.challenges[c.ID] = &stored
	s.scep.challengeIDs[c.Hash] = c.ID
	return nil
}

// RetrieveSCEPChallenge implements storage.SCEPStore.
func (s *Store) RetrieveSCEPChallenge(_ context.Context, id string) (*storage.SCEPChallenge, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.scep.challenges[id]
	if c == nil {
		return nil, fmt.Errorf("SCEP challenge %q: %w", id, storage.ErrNotFound)
	}
	out := *c
	return &out, nil
}

// RevokeSCEPChallenge implements storage.SCEPStore.
func (s *Store) RevokeSCEPChallenge(_ context.Context, id string, now time.Time) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.scep.challenges[id]
	if c == nil {
		return fmt.Errorf("revoking SCEP challenge %q: %w", id, storage.ErrNotFound)
	}
	if c.RevokedAt.IsZero() {
		c.RevokedAt = utc(now)
	}
	return nil
}

// ListSCEPChallenges implements storage.SCEPStore.
func (s *Store) ListSCEPChallenges(_ context.Context, p storage.Page) ([]storage.SCEPChallenge, string, error) {
	after, err := storage.DecodeCursor(p.Cursor)
	if err != nil {
		return nil, "", fmt.Errorf("listing SCEP challenges: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	out, next := page(s.scep.challenges, after, p.Size())
	return out, next, nil
}

// PurgeSCEPChallenges implements storage.SCEPStore: the unused challenges
// that expired before before, soonest expired first (then by ID), at most
// limit. It scans every challenge under the lock; the in-memory store
// holds few.
func (s *Store) PurgeSCEPChallenges(_ context.Context, before time.Time, limit int) (int, error) {
	if limit <= 0 {
		return 0, nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var expired []*storage.SCEPChallenge
	for _, c := range s.scep.challenges {
		if c.UsedAt.IsZero() && c.ExpiresAt.Before(before) {
			expired = append(expired, c)
		}
	}
	slices.SortFunc(expired, func(a, b *storage.SCEPChallenge) int {
		if n := a.ExpiresAt.Compare(b.ExpiresAt); n != 0 {
			return n
		}
		return strings.Compare(a.ID, b.ID)
	})
	expired = expired[:min(limit, len(expired))]
	for _, c := range expired {
		delete(s.scep.challenges, c.ID)
		delete(s.scep.challengeIDs, c.Hash)
	}
	return len(expired), nil
}

// StoreSCEPCert implements storage.SCEPStore. The challenge is checked and
// used and the certificate recorded under one lock: of concurrent uses of
// a challenge one finds it unused, the others used.
func (s *Store) StoreSCEPCert(_ context.Context, c *storage.SCEPCert, challengeHash string) error {
	stored := *c
	stored.NotBefore, stored.NotAfter, stored.IssuedAt = utc(c.NotBefore), utc(c.NotAfter), utc(c.IssuedAt)
	stored.DER = bytes.Clone(c.DER)
	s.mu.Lock()
	defer s.mu.Unlock()
	var ch *storage.SCEPChallenge
	if challengeHash != "" {
		if id, ok := s.scep.challengeIDs[challengeHash]; ok {
			ch = s.scep.challenges[id]
		}
		if ch == nil || !ch.UsedAt.IsZero() || !ch.RevokedAt.IsZero() || !ch.ExpiresAt.After(c.IssuedAt) {
			return fmt.Errorf("storing SCEP cert %s: %w", c.Serial, storage.ErrChallengeUnusable)
		}
		stored.ChallengeID = ch.ID
	}
	if s.scep.certs[c.Serial] != nil {
		return fmt.Errorf("storing SCEP cert %s: serial %w", c.Serial, storage.ErrExists)
	}
	if ch != nil {
		ch.UsedAt = stored.IssuedAt
		c.ChallengeID = ch.ID
	}
	s.scep.certs[c.Serial] = &stored
	return nil
}

// RetrieveSCEPCert implements storage.SCEPStore.
func (s *Store) RetrieveSCEPCert(_ context.Context, serial string) (*storage.SCEPCert, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.scep.certs[serial]
	if c == nil {
		return nil, fmt.Errorf("SCEP cert %q: %w", serial, storage.ErrNotFound)
	}
	out := *c
	out.DER = bytes.Clone(c.DER)
	return &out, nil
}

// ListSCEPCerts implements storage.SCEPStore.
func (s *Store) ListSCEPCerts(_ context.Context, p storage.Page) ([]storage.SCEPCert, string, error) {
	after, err := storage.DecodeCursor(p.Cursor)
	if err != nil {
		return nil, "", fmt.Errorf("listing SCEP certs: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	out, next := page(s.scep.certs, after, p.Size())
	for i := range out {
		out[i].DER = bytes.Clone(out[i].DER)
	}
	return out, next, nil
}

// page returns copies of up to limit items of m with keys after after, in
// key order, and the cursor of the next page ("" when none follows).
func page[T any](m map[string]*T, after string, limit int) ([]T, string) {
	keys := memindex.SortedAfter(maps.Keys(m), after, nil)
	out := make([]T, 0, min(limit, len(keys)))
	for _, k := range keys[:min(limit, len(keys))] {
		out = append(out, *m[k])
	}
	if len(keys) > limit {
		return out, storage.EncodeCursor(keys[limit-1])
	}
	return out, ""
}

// SealPrivateKeys implements storage.PrivateKeySealer. Every key is opened
// before any is rewritten, so a key that does not open leaves all as they
// were. Records are replaced, not changed in place: readers use them
// after releasing the lock.
func (s *Store) SealPrivateKeys(_ context.Context) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	type plain struct {
		name string
		key  []byte
		set  func(sealed []byte)
	}
	var rewrite []plain
	check := func(name string, stored []byte, set func([]byte)) error {
		key, err := s.sealer.Open(name, stored)
		if err != nil {
			return fmt.Errorf("sealing private keys: %w", err)
		}
		if !s.sealer.IsSealed(stored) {
			rewrite = append(rewrite, plain{name, key, set})
		}
		return nil
	}
	for _, topic := range slices.Sorted(maps.Keys(s.pushCerts)) {
		pc := s.pushCerts[topic]
		err := check(storage.PushKeyNamePrefix+topic, pc.keyPEM, func(sealed []byte) {
			// The stale token stays: it is the plaintext pair's.
			next := *pc
			next.keyPEM = sealed
			s.pushCerts[topic] = &next
		})
		if err != nil {
			return 0, err
		}
	}
	if ca := s.scep.ca; ca != nil {
		err := check(storage.SCEPCAKeyName, ca.keyPEM, func(sealed []byte) {
			s.scep.ca = &scepCA{certPEM: ca.certPEM, keyPEM: sealed}
		})
		if err != nil {
			return 0, err
		}
	}
	sealed := make([][]byte, len(rewrite))
	for i, p := range rewrite {
		b, err := s.sealer.Seal(p.name, p.key)
		if err != nil {
			return 0, fmt.Errorf("sealing private keys: %s: %w", p.name, err)
		}
		sealed[i] = b
	}
	n := 0
	for i, p := range rewrite {
		// keyseal.None seals nothing: the key stays as it is.
		if s.sealer.IsSealed(sealed[i]) {
			p.set(sealed[i])
			n++
		}
	}
	return n, nil
}
