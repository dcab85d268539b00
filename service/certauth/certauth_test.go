package certauth

import (
	"context"
	"crypto/x509"
	"errors"
	"testing"

	"github.com/picomdm/picomdm/mdm"
	"github.com/picomdm/picomdm/service/core"
	"github.com/picomdm/picomdm/storage"
	"github.com/picomdm/picomdm/storage/inmem"
	"github.com/picomdm/picomdm/storage/storagetest"
	"github.com/picomdm/picomdm/test/servicetest"
)

// as returns a request of channel ch signed with cert.
func as(ch *storagetest.Channel, cert *x509.Certificate) *mdm.Request {
	r := ch.Request()
	r.Certificate = cert
	return r
}

// chain is certauth over the core service over an in-memory store, as
// the server wires it (without the webhook).
func chain(t *testing.T, opts ...Option) (*CertAuth, *inmem.Store) {
	t.Helper()
	store := inmem.New()
	return New(core.New(store), store, opts...), store
}

func associated(t *testing.T, s storage.CertAuthStore, id string, cert *x509.Certificate, want bool) {
	t.Helper()
	got, err := s.IsCertHashAssociated(context.Background(), id, HashCert(cert))
	if err != nil || got != want {
		t.Fatalf("IsCertHashAssociated(%s) = %v, %v; want %v", id, got, err, want)
	}
}

func TestCertAuth(t *testing.T) {
	c, store := chain(t)
	a, b := storagetest.NewDevice(), storagetest.NewDevice()
	userA := a.NewUser()

	if err := c.Authenticate(as(a, a.Cert), a.Authenticate()); err != nil {
		t.Fatalf("first Authenticate: %v", err)
	}
	associated(t, store, a.ID(), a.Cert, true)
	if err := c.TokenUpdate(as(a, a.Cert), a.TokenUpdate(nil)); err != nil {
		t.Fatalf("TokenUpdate with associated cert: %v", err)
	}
	// A user channel shares its device's identity certificate.
	if err := c.TokenUpdate(as(userA, a.Cert), userA.TokenUpdate(nil)); err != nil {
		t.Fatalf("user channel with device's cert: %v", err)
	}
	// Device B presenting A's certificate is refused at Authenticate...
	if err := c.Authenticate(as(b, a.Cert), b.Authenticate()); !errors.Is(err, ErrHashInUse) {
		t.Fatalf("Authenticate reusing another device's cert: got %v, want ErrHashInUse", err)
	}
	// ...and on any later message.
	if _, err := c.CommandAndReportResults(as(b, a.Cert), b.Idle()); !errors.Is(err, ErrNotAssociated) {
		t.Fatalf("report with another device's cert: got %v, want ErrNotAssociated", err)
	}
	// Device A speaking with an unassociated certificate is refused.
	if err := c.TokenUpdate(as(a, b.Cert), a.TokenUpdate(nil)); !errors.Is(err, ErrNotAssociated) {
		t.Fatalf("TokenUpdate with unassociated cert: got %v, want ErrNotAssociated", err)
	}
	// Re-enrolling with a new certificate retires the earlier one.
	renewed := storagetest.NewIdentityCert(a.ID())
	if err := c.Authenticate(as(a, renewed), a.Authenticate()); err != nil {
		t.Fatalf("re-enroll with new cert: %v", err)
	}
	if err := c.TokenUpdate(as(a, renewed), a.TokenUpdate(nil)); err != nil {
		t.Fatalf("TokenUpdate after re-enroll: %v", err)
	}
	if _, err := c.CommandAndReportResults(as(a, a.Cert), a.Idle()); !errors.Is(err, ErrNotAssociated) {
		t.Fatalf("earlier certificate after re-enroll: got %v, want ErrNotAssociated", err)
	}
	// No certificate at all is refused.
	if err := c.CheckOut(as(a, nil), &mdm.CheckOut{}); !errors.Is(err, ErrNoCertificate) {
		t.Fatalf("no certificate: got %v", err)
	}
	if err := c.Authenticate(as(b, nil), b.Authenticate()); !errors.Is(err, ErrNoCertificate) {
		t.Fatalf("Authenticate without certificate: got %v", err)
	}
}

// TestRefusedAuthenticateLeavesNoAssociation is the attack of issue #12:
// a certificate nobody has, presented in an Authenticate that the rest of
// the chain refuses (here one carrying a UserID, which core refuses, or
// one storage fails to store), must not be bound to the device it names;
// otherwise its holder speaks for that device afterwards.
func TestRefusedAuthenticateLeavesNoAssociation(t *testing.T) {
	victim := storagetest.NewDevice()
	attackerCert := storagetest.NewIdentityCert("attacker")
	for _, tc := range []struct {
		name string
		svc  func(store storage.Store) *CertAuth
		req  func() (*mdm.Request, *mdm.Authenticate)
	}{
		{"CoreRefusesUserChannel", func(store storage.Store) *CertAuth { return New(core.New(store), store) },
			func() (*mdm.Request, *mdm.Authenticate) {
				u := victim.NewUser()
				return as(u, attackerCert), u.Authenticate()
			}},
		{"StorageFails", func(store storage.Store) *CertAuth {
			return New(core.New(failingAuthenticate{store}), store)
		}, func() (*mdm.Request, *mdm.Authenticate) { return as(victim, attackerCert), victim.Authenticate() }},
		{"NextFails", func(store storage.Store) *CertAuth {
			return New(&servicetest.Recorder{Err: errors.New("refused")}, store)
		}, func() (*mdm.Request, *mdm.Authenticate) { return as(victim, attackerCert), victim.Authenticate() }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			store := inmem.New()
			c := tc.svc(store)
			if err := New(core.New(store), store).Authenticate(as(victim, victim.Cert), victim.Authenticate()); err != nil {
				t.Fatal(err)
			}
			r, msg := tc.req()
			if err := c.Authenticate(r, msg); err == nil {
				t.Fatal("the refused Authenticate succeeded")
			}
			associated(t, store, victim.ID(), attackerCert, false)
			if has, _ := store.HasCertHash(context.Background(), HashCert(attackerCert)); has {
				t.Fatal("the refused Authenticate's certificate is associated with someone")
			}
			associated(t, store, victim.ID(), victim.Cert, true)
			if _, err := c.GetBootstrapToken(as(victim, attackerCert), victim.GetBootstrapToken()); !errors.Is(err, ErrNotAssociated) {
				t.Fatalf("GetBootstrapToken with the attacker's certificate: got %v, want ErrNotAssociated", err)
			}
		})
	}
}

// failingAuthenticate is a store whose StoreAuthenticate fails, as MySQL
// does for a field too long for its column.
type failingAuthenticate struct{ storage.Store }

func (failingAuthenticate) StoreAuthenticate(*mdm.Request, *mdm.Authenticate) error {
	return errors.New("data too long")
}

func TestCertAuthRetroactive(t *testing.T) {
	migrated, other := storagetest.NewDevice(), storagetest.NewDevice()

	t.Run("off", func(t *testing.T) {
		c, _ := chain(t)
		if err := c.TokenUpdate(as(migrated, migrated.Cert), migrated.TokenUpdate(nil)); !errors.Is(err, ErrNotAssociated) {
			t.Fatalf("without -retro an unassociated enrollment is refused, got %v", err)
		}
	})
	t.Run("on", func(t *testing.T) {
		c, store := chain(t, WithRetroactive())
		if err := c.Authenticate(as(other, other.Cert), other.Authenticate()); err != nil {
			t.Fatal(err)
		}
		// A hash already used by another enrollment can't be taken over.
		if err := c.TokenUpdate(as(migrated, other.Cert), migrated.TokenUpdate(nil)); !errors.Is(err, ErrNotAssociated) {
			t.Fatalf("retro with another enrollment's hash: got %v", err)
		}
		// A never-seen hash for an enrollment without any is associated.
		if err := c.TokenUpdate(as(migrated, migrated.Cert), migrated.TokenUpdate(nil)); err != nil {
			t.Fatalf("retro association: %v", err)
		}
		associated(t, store, migrated.ID(), migrated.Cert, true)
		// Once associated, a different new hash is refused.
		if err := c.TokenUpdate(as(migrated, storagetest.NewIdentityCert("x")), migrated.TokenUpdate(nil)); !errors.Is(err, ErrNotAssociated) {
			t.Fatalf("second new hash after retro association: got %v", err)
		}
	})
	t.Run("onlyAfterSuccess", func(t *testing.T) {
		store := inmem.New()
		c := New(&servicetest.Recorder{Err: errors.New("refused")}, store, WithRetroactive())
		if err := c.TokenUpdate(as(migrated, migrated.Cert), migrated.TokenUpdate(nil)); err == nil {
			t.Fatal("refused TokenUpdate succeeded")
		}
		associated(t, store, migrated.ID(), migrated.Cert, false)
	})
}

func TestHashCert(t *testing.T) {
	cert := storagetest.NewIdentityCert("x")
	h := HashCert(cert)
	if len(h) != 64 || h != storagetest.CertHash(cert) {
		t.Fatalf("hash %q: want 64 lower-case hex chars", h)
	}
	for _, c := range h {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			t.Fatalf("hash %q is not lower-case hex", h)
		}
	}
}
