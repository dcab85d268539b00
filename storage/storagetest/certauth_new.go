package storagetest

import (
	"context"
	"testing"
	"time"

	"github.com/picomdm/picomdm/storage"
)

// testAssociateNewCertHash: cert-auth's decision at Authenticate through
// storage.AssociateNewCertHash, with the store's storage.CertAuthAssociator
// (if it has one) and with the steps it replaces: both must give the same
// answers and leave the same associations.
func testAssociateNewCertHash(t *testing.T, s storage.Store) {
	type path struct {
		name  string
		store storage.Store
	}
	paths := []path{{"InSteps", plainStore{s}}}
	if _, ok := s.(storage.CertAuthAssociator); ok {
		paths = append(paths, path{"OneCall", s})
	}
	for _, p := range paths {
		t.Run(p.name, func(t *testing.T) { testAssociateNew(t, p.store) })
	}
}

func testAssociateNew(t *testing.T, s storage.Store) {
	ctx := context.Background()
	id, other, migrated := NewUUID(), NewUUID(), NewUUID()
	h1, h2, shared := RandomCertHash(), RandomCertHash(), RandomCertHash()
	notAfter := time.Now().AddDate(1, 0, 0).Truncate(time.Second)
	associate := func(id, hash string, notAfter time.Time, want bool) {
		t.Helper()
		ours, err := storage.AssociateNewCertHash(ctx, s, id, hash, notAfter)
		if err != nil {
			t.Fatalf("AssociateNewCertHash(%s, %s): %v", id, hash, err)
		}
		if ours != want {
			t.Fatalf("AssociateNewCertHash(%s, %s) = %v, want %v", id, hash, ours, want)
		}
	}
	associated := func(id, hash string, want bool) {
		t.Helper()
		got, err := s.IsCertHashAssociated(ctx, id, hash)
		if err != nil || got != want {
			t.Fatalf("IsCertHashAssociated(%s, %s) = %v, %v; want %v", id, hash, got, err, want)
		}
	}
	associate(id, h1, notAfter, true) // a new hash: associated
	associated(id, h1, true)
	associate(id, h1, notAfter, true) // again: still ours
	associate(other, h1, notAfter, false)
	associated(other, h1, false) // refused, and nothing written
	if has, err := s.EnrollmentHasCertHash(ctx, other); err != nil || has {
		t.Fatalf("EnrollmentHasCertHash(refused %s) = %v, %v; want false", other, has, err)
	}
	associate(id, h2, time.Time{}, true) // re-enrollment with a new certificate
	associated(id, h1, true)
	associated(id, h2, true)
	// A hash two enrollments hold (data migrated in): each may use it.
	for _, owner := range []string{migrated, other} {
		if err := s.AssociateCertHash(ctx, owner, shared, notAfter); err != nil {
			t.Fatal(err)
		}
	}
	associate(migrated, shared, notAfter, true)
	associate(other, shared, notAfter, true)
	associate(id, shared, notAfter, false)
	associated(id, shared, false)
}
