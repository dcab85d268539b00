package metrics

import (
	"context"
	"time"

	"github.com/picomdm/picomdm/storage"
)

// RetrieveSCEPCA times storage.SCEPStore.RetrieveSCEPCA.
func (s *Store) RetrieveSCEPCA(ctx context.Context) (_, _ []byte, err error) {
	defer func(start time.Time) { s.observe("RetrieveSCEPCA", start, err) }(time.Now())
	return s.Store.RetrieveSCEPCA(ctx)
}

// StoreSCEPCA times storage.SCEPStore.StoreSCEPCA.
func (s *Store) StoreSCEPCA(ctx context.Context, certPEM, keyPEM []byte, replace bool) (err error) {
	defer func(start time.Time) { s.observe("StoreSCEPCA", start, err) }(time.Now())
	return s.Store.StoreSCEPCA(ctx, certPEM, keyPEM, replace)
}

// CreateSCEPChallenge times storage.SCEPStore.CreateSCEPChallenge.
func (s *Store) CreateSCEPChallenge(ctx context.Context, c *storage.SCEPChallenge) (err error) {
	defer func(start time.Time) { s.observe("CreateSCEPChallenge", start, err) }(time.Now())
	return s.Store.CreateSCEPChallenge(ctx, c)
}

// RetrieveSCEPChallenge times storage.SCEPStore.RetrieveSCEPChallenge.
func (s *Store) RetrieveSCEPChallenge(ctx context.Context, id string) (_ *storage.SCEPChallenge, err error) {
	defer func(start time.Time) { s.observe("RetrieveSCEPChallenge", start, err) }(time.Now())
	return s.Store.RetrieveSCEPChallenge(ctx, id)
}

// RevokeSCEPChallenge times storage.SCEPStore.RevokeSCEPChallenge.
func (s *Store) RevokeSCEPChallenge(ctx context.Context, id string, now time.Time) (err error) {
	defer func(start time.Time) { s.observe("RevokeSCEPChallenge", start, err) }(time.Now())
	return s.Store.RevokeSCEPChallenge(ctx, id, now)
}

// ListSCEPChallenges times storage.SCEPStore.ListSCEPChallenges.
func (s *Store) ListSCEPChallenges(ctx context.Context, p storage.Page) (_ []storage.SCEPChallenge, _ string, err error) {
	defer func(start time.Time) { s.observe("ListSCEPChallenges", start, err) }(time.Now())
	return s.Store.ListSCEPChallenges(ctx, p)
}

// PurgeSCEPChallenges times storage.SCEPStore.PurgeSCEPChallenges.
func (s *Store) PurgeSCEPChallenges(ctx context.Context, before time.Time, limit int) (_ int, err error) {
	defer func(start time.Time) { s.observe("PurgeSCEPChallenges", start, err) }(time.Now())
	return s.Store.PurgeSCEPChallenges(ctx, before, limit)
}

// StoreSCEPCert times storage.SCEPStore.StoreSCEPCert.
func (s *Store) StoreSCEPCert(ctx context.Context, c *storage.SCEPCert, challengeHash string) (err error) {
	defer func(start time.Time) { s.observe("StoreSCEPCert", start, err) }(time.Now())
	return s.Store.StoreSCEPCert(ctx, c, challengeHash)
}

// RetrieveSCEPCert times storage.SCEPStore.RetrieveSCEPCert.
func (s *Store) RetrieveSCEPCert(ctx context.Context, serial string) (_ *storage.SCEPCert, err error) {
	defer func(start time.Time) { s.observe("RetrieveSCEPCert", start, err) }(time.Now())
	return s.Store.RetrieveSCEPCert(ctx, serial)
}

// ListSCEPCerts times storage.SCEPStore.ListSCEPCerts.
func (s *Store) ListSCEPCerts(ctx context.Context, p storage.Page) (_ []storage.SCEPCert, _ string, err error) {
	defer func(start time.Time) { s.observe("ListSCEPCerts", start, err) }(time.Now())
	return s.Store.ListSCEPCerts(ctx, p)
}

// SealPrivateKeys times storage.PrivateKeySealer.SealPrivateKeys.
func (s *Store) SealPrivateKeys(ctx context.Context) (_ int, err error) {
	defer func(start time.Time) { s.observe("SealPrivateKeys", start, err) }(time.Now())
	return s.Store.SealPrivateKeys(ctx)
}
