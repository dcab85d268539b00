package tee

import (
	"context"
	"time"

	"github.com/picomdm/picomdm/storage"
)

// The built-in SCEP CA, its challenges and issued certificates are
// records to keep in step, like push certificates: a secondary that
// becomes the primary must issue from the same CA and know which
// challenges are used. SealPrivateKeys is the primary's only: the server
// has every backend seal its own keys before it builds the tee.

// StoreSCEPCA implements storage.SCEPStore.
func (s *Store) StoreSCEPCA(ctx context.Context, certPEM, keyPEM []byte, replace bool) error {
	return s.copyTo(ctx, "StoreSCEPCA", s.Store.StoreSCEPCA(ctx, certPEM, keyPEM, replace), func(o storage.Store) error {
		// The secondary takes the primary's CA whatever it held.
		return o.StoreSCEPCA(ctx, certPEM, keyPEM, true)
	})
}

// CreateSCEPChallenge implements storage.SCEPStore.
func (s *Store) CreateSCEPChallenge(ctx context.Context, c *storage.SCEPChallenge) error {
	return s.copyTo(ctx, "CreateSCEPChallenge", s.Store.CreateSCEPChallenge(ctx, c), func(o storage.Store) error {
		cc := *c
		return o.CreateSCEPChallenge(ctx, &cc)
	})
}

// RevokeSCEPChallenge implements storage.SCEPStore.
func (s *Store) RevokeSCEPChallenge(ctx context.Context, id string, now time.Time) error {
	return s.copyTo(ctx, "RevokeSCEPChallenge", s.Store.RevokeSCEPChallenge(ctx, id, now), func(o storage.Store) error {
		return o.RevokeSCEPChallenge(ctx, id, now)
	})
}

// PurgeSCEPChallenges implements storage.SCEPStore: the primary's count
// is the answer; the others purge with the same cut-off and limit.
func (s *Store) PurgeSCEPChallenges(ctx context.Context, before time.Time, limit int) (int, error) {
	n, err := s.Store.PurgeSCEPChallenges(ctx, before, limit)
	err = s.copyTo(ctx, "PurgeSCEPChallenges", err, func(o storage.Store) error {
		_, err := o.PurgeSCEPChallenges(ctx, before, limit)
		return err
	})
	return n, err
}

// StoreSCEPCert implements storage.SCEPStore: the primary decides whether
// the challenge is usable; the secondaries record the same outcome.
func (s *Store) StoreSCEPCert(ctx context.Context, c *storage.SCEPCert, challengeHash string) error {
	return s.copyTo(ctx, "StoreSCEPCert", s.Store.StoreSCEPCert(ctx, c, challengeHash), func(o storage.Store) error {
		cc := *c
		return o.StoreSCEPCert(ctx, &cc, challengeHash)
	})
}
