package storagetest

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/picomdm/picomdm/storage"
)

// RunCertAuthLookup checks store's storage.CertAuthLookup: the reverse of
// the cert-auth association, which the auth proxy uses to learn which
// enrollment a device certificate belongs to. It fails if store does not
// implement storage.CertAuthLookup.
func RunCertAuthLookup(t *testing.T, store storage.Store) {
	lookup := store
	ctx := context.Background()
	notAfter := time.Now().AddDate(1, 0, 0).Truncate(time.Second)

	wantID := func(what, hash, want string) {
		t.Helper()
		got, err := lookup.EnrollmentFromCertHash(ctx, hash)
		if err != nil {
			t.Fatalf("%s: EnrollmentFromCertHash: %v", what, err)
		}
		if got != want {
			t.Fatalf("%s: EnrollmentFromCertHash = %q, want %q", what, got, want)
		}
	}
	wantNotFound := func(what, hash string) {
		t.Helper()
		got, err := lookup.EnrollmentFromCertHash(ctx, hash)
		if !errors.Is(err, storage.ErrNotFound) {
			t.Fatalf("%s: EnrollmentFromCertHash = %q, %v; want storage.ErrNotFound", what, got, err)
		}
	}
	associate := func(id, hash string) {
		t.Helper()
		if err := store.AssociateCertHash(ctx, id, hash, notAfter); err != nil {
			t.Fatalf("associating %s with %q: %v", hash, id, err)
		}
	}

	t.Run("UnknownHash", func(t *testing.T) {
		wantNotFound("never associated", RandomCertHash())
	})

	t.Run("Associated", func(t *testing.T) {
		id, otherID := NewUUID(), NewUUID()
		h1, h2, h3 := RandomCertHash(), RandomCertHash(), RandomCertHash()
		associate(id, h1)
		wantID("after associating", h1, id)
		// A renewed identity certificate: both hashes lead to the device.
		associate(id, h2)
		wantID("old certificate", h1, id)
		wantID("renewed certificate", h2, id)
		// Associating a pair again changes nothing.
		associate(id, h1)
		wantID("associated twice", h1, id)
		// Another enrollment's hash leads to it, not to id.
		associate(otherID, h3)
		wantID("other enrollment", h3, otherID)
		wantNotFound("hash of nobody", RandomCertHash())
	})

	t.Run("UnusualID", func(t *testing.T) {
		// IDs are stored byte-exact, whatever the backend's encoding.
		for _, id := range []string{
			"User Enrollment ID " + NewUUID(),
			"UDID.with~odd/chars:" + NewUUID(),
			"Ünïcode-" + NewUUID(),
		} {
			hash := RandomCertHash()
			associate(id, hash)
			wantID(id, hash, id)
		}
	})

	t.Run("HashHasOneOwner", func(t *testing.T) {
		// A certificate is one enrollment's: associating it with a second
		// one leaves it with the first.
		hash := RandomCertHash()
		first, second := NewUUID(), NewUUID()
		associate(first, hash)
		associate(second, hash)
		wantID("hash associated twice", hash, first)
		if ok, err := store.IsCertHashAssociated(ctx, second, hash); err != nil || ok {
			t.Fatalf("IsCertHashAssociated(second owner) = %v, %v; want false", ok, err)
		}
	})
}
