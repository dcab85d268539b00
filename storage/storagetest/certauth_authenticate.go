package storagetest

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"sync"
	"testing"

	"github.com/picomdm/picomdm/mdm"
	"github.com/picomdm/picomdm/storage"
)

// CertHash returns the cert-auth hash of cert: the lower-case hex SHA-256
// of its DER.
func CertHash(cert *x509.Certificate) string {
	sum := sha256.Sum256(cert.Raw)
	return hex.EncodeToString(sum[:])
}

// AuthenticateRequest returns a request of device channel c whose context
// carries the cert-auth association of cert, as cert-auth hands an
// Authenticate to storage.
func (c *Channel) AuthenticateRequest(cert *x509.Certificate) *mdm.Request {
	r := c.Request()
	r.Certificate = cert
	r.Context = storage.WithCertAssociation(r.Context, storage.CertAssociation{Hash: CertHash(cert), NotAfter: cert.NotAfter})
	return r
}

// EnrollWithCert is Enroll for one device channel whose Authenticate
// carries the association of its certificate, as through the service
// chain.
func EnrollWithCert(tb testing.TB, store storage.Store, c *Channel) {
	tb.Helper()
	if err := store.StoreAuthenticate(c.AuthenticateRequest(c.Cert), c.Authenticate()); err != nil {
		tb.Fatalf("Authenticate %s: %v", c.ID(), err)
	}
	if err := store.StoreTokenUpdate(c.Request(), c.TokenUpdate(nil)); err != nil {
		tb.Fatalf("TokenUpdate %s: %v", c.ID(), err)
	}
}

// testCertAssociation: the association cert-auth hands to
// StoreAuthenticate is made with it, atomically: a certificate another
// enrollment has is refused with nothing written (the victim's queue,
// bootstrap token and enrollment untouched, the refused device without
// an association), a re-enrollment retires the earlier certificates, and
// an operator can list and remove them.
func testCertAssociation(t *testing.T, s storage.Store) {
	ctx := context.Background()
	associated := func(id, hash string, want bool) {
		t.Helper()
		got, err := s.IsCertHashAssociated(ctx, id, hash)
		if err != nil || got != want {
			t.Fatalf("IsCertHashAssociated(%s, %.8s) = %v, %v; want %v", id, hash, got, err, want)
		}
	}
	hashes := func(id string, want ...string) []storage.CertHashInfo {
		t.Helper()
		got, err := s.RetrieveCertHashes(ctx, id)
		if err != nil {
			t.Fatalf("RetrieveCertHashes(%s): %v", id, err)
		}
		if len(got) != len(want) {
			t.Fatalf("RetrieveCertHashes(%s) = %v, want %v", id, got, want)
		}
		for i := range want {
			if got[i].Hash != want[i] || got[i].AssociatedAt.IsZero() {
				t.Fatalf("RetrieveCertHashes(%s)[%d] = %+v, want hash %s", id, i, got[i], want[i])
			}
		}
		return got
	}

	victim, attacker := NewDevice(), NewDevice()
	EnrollWithCert(t, s, victim)
	EnrollWithCert(t, s, attacker)
	vHash, aHash := CertHash(victim.Cert), CertHash(attacker.Cert)
	got := hashes(victim.ID(), vHash)
	if !got[0].NotAfter.Equal(victim.Cert.NotAfter) {
		t.Fatalf("NotAfter = %v, want %v", got[0].NotAfter, victim.Cert.NotAfter)
	}
	token := RandomBytes(32)
	if err := s.StoreBootstrapToken(victim.Request(), victim.SetBootstrapToken(token)); err != nil {
		t.Fatal(err)
	}
	cmd := NewCommand("ProfileList")
	mustEnqueue(t, s, cmd, victim.ID())

	t.Run("RefusedLeavesNoTrace", func(t *testing.T) {
		// The attacker's own (associated) certificate, presented as the
		// victim's Authenticate.
		err := s.StoreAuthenticate(victim.AuthenticateRequest(attacker.Cert), victim.Authenticate())
		if !errors.Is(err, storage.ErrCertHashInUse) {
			t.Fatalf("Authenticate with another enrollment's certificate: %v, want ErrCertHashInUse", err)
		}
		associated(victim.ID(), aHash, false)
		associated(victim.ID(), vHash, true)
		associated(attacker.ID(), aHash, true)
		next, err := s.RetrieveNextCommand(victim.Request())
		if err != nil || next == nil || next.CommandUUID != cmd.CommandUUID {
			t.Fatalf("victim's queue after the refused Authenticate: %v, %v; want %s", next, err, cmd.CommandUUID)
		}
		tok, err := s.RetrieveBootstrapToken(victim.Request(), victim.GetBootstrapToken())
		if err != nil || tok == nil || string(tok.BootstrapToken) != string(token) {
			t.Fatalf("victim's bootstrap token after the refused Authenticate: %v, %v", tok, err)
		}
		info, err := s.RetrieveEnrollment(ctx, victim.ID())
		if err != nil || !info.Enabled {
			t.Fatalf("victim's enrollment after the refused Authenticate: %+v, %v; want enabled", info, err)
		}
	})

	t.Run("SameCertificateAgain", func(t *testing.T) {
		if err := s.StoreAuthenticate(attacker.AuthenticateRequest(attacker.Cert), attacker.Authenticate()); err != nil {
			t.Fatalf("Authenticate with the device's own certificate again: %v", err)
		}
		before := hashes(attacker.ID(), aHash)
		if err := s.StoreAuthenticate(attacker.AuthenticateRequest(attacker.Cert), attacker.Authenticate()); err != nil {
			t.Fatal(err)
		}
		after := hashes(attacker.ID(), aHash)
		if !after[0].AssociatedAt.Equal(before[0].AssociatedAt) {
			t.Fatalf("AssociatedAt moved from %v to %v on a repeated Authenticate", before[0].AssociatedAt, after[0].AssociatedAt)
		}
	})

	t.Run("ReEnrollRetiresEarlier", func(t *testing.T) {
		d := NewDevice()
		EnrollWithCert(t, s, d)
		first := CertHash(d.Cert)
		renewed := NewIdentityCert(d.ID())
		if err := s.StoreAuthenticate(d.AuthenticateRequest(renewed), d.Authenticate()); err != nil {
			t.Fatal(err)
		}
		associated(d.ID(), first, false)
		associated(d.ID(), CertHash(renewed), true)
		hashes(d.ID(), CertHash(renewed))
		if has, err := s.HasCertHash(ctx, first); err != nil || has {
			t.Fatalf("HasCertHash(retired) = %v, %v; want false", has, err)
		}
		// The retired certificate is free: another device may enroll
		// with it (a CA may reissue; cert-auth only binds, see docs).
		other := NewDevice()
		if err := s.StoreAuthenticate(other.AuthenticateRequest(d.Cert), other.Authenticate()); err != nil {
			t.Fatalf("Authenticate with a retired certificate: %v", err)
		}
	})

	t.Run("Delete", func(t *testing.T) {
		d := NewDevice()
		EnrollWithCert(t, s, d)
		h := CertHash(d.Cert)
		if err := s.DeleteCertHash(ctx, d.ID(), RandomCertHash()); !errors.Is(err, storage.ErrNotFound) {
			t.Fatalf("DeleteCertHash(unknown hash) = %v, want ErrNotFound", err)
		}
		if err := s.DeleteCertHash(ctx, attacker.ID(), h); !errors.Is(err, storage.ErrNotFound) {
			t.Fatalf("DeleteCertHash(another enrollment's hash) = %v, want ErrNotFound", err)
		}
		associated(d.ID(), h, true)
		if err := s.DeleteCertHash(ctx, d.ID(), h); err != nil {
			t.Fatal(err)
		}
		associated(d.ID(), h, false)
		hashes(d.ID())
		if has, err := s.HasCertHash(ctx, h); err != nil || has {
			t.Fatalf("HasCertHash(deleted) = %v, %v; want false", has, err)
		}
		if err := s.DeleteCertHash(ctx, d.ID(), h); !errors.Is(err, storage.ErrNotFound) {
			t.Fatalf("DeleteCertHash twice = %v, want ErrNotFound", err)
		}
	})

	t.Run("ConcurrentClaims", func(t *testing.T) {
		// Several enrolled devices present one new certificate at once:
		// exactly one Authenticate wins; the others store nothing.
		const n = 8
		devices := make([]*Channel, n)
		cmds := make([]*mdm.Command, n)
		for i := range devices {
			devices[i] = NewDevice()
			EnrollWithCert(t, s, devices[i])
			cmds[i] = NewCommand("ProfileList")
			mustEnqueue(t, s, cmds[i], devices[i].ID())
		}
		shared := NewIdentityCert("shared")
		errs := make([]error, n)
		var wg sync.WaitGroup
		start := make(chan struct{})
		for i, d := range devices {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				errs[i] = s.StoreAuthenticate(d.AuthenticateRequest(shared), d.Authenticate())
			}()
		}
		close(start)
		wg.Wait()
		winners := 0
		for i, d := range devices {
			switch {
			case errs[i] == nil:
				winners++
				associated(d.ID(), CertHash(shared), true)
				associated(d.ID(), CertHash(d.Cert), false)
			case errors.Is(errs[i], storage.ErrCertHashInUse):
				associated(d.ID(), CertHash(shared), false)
				associated(d.ID(), CertHash(d.Cert), true)
				next, err := s.RetrieveNextCommand(d.Request())
				if err != nil || next == nil || next.CommandUUID != cmds[i].CommandUUID {
					t.Fatalf("refused device %d: queue %v, %v; want its command", i, next, err)
				}
			default:
				t.Fatalf("device %d: %v", i, errs[i])
			}
		}
		if winners != 1 {
			t.Fatalf("%d Authenticates won the same certificate, want 1", winners)
		}
	})

	t.Run("WithoutAssociation", func(t *testing.T) {
		// Migration replays an Authenticate with no certificate: the
		// device's associations are left alone.
		if err := s.StoreAuthenticate(victim.Request(), victim.Authenticate()); err != nil {
			t.Fatal(err)
		}
		associated(victim.ID(), vHash, true)
	})
}

// testEnrollmentTypeFixed: an enrollment's type and parent are those of
// its first TokenUpdate; a later message resolving to the same ID as
// another kind of channel changes neither.
func testEnrollmentTypeFixed(t *testing.T, s storage.Store) {
	ctx := context.Background()
	d := NewDevice()
	u := d.NewUser()
	Enroll(t, s, d, u)
	for _, tc := range []struct {
		ch      *Channel
		as      mdm.EnrollID
		typ     mdm.EnrollType
		wantPar string
	}{
		{d, mdm.EnrollID{Type: mdm.UserEnrollmentDevice, ID: d.ID()}, mdm.Device, ""},
		{u, mdm.EnrollID{Type: mdm.SharedIPad, ID: u.ID(), ParentID: d.ID()}, mdm.User, d.ID()},
		{u, mdm.EnrollID{Type: mdm.User, ID: u.ID(), ParentID: "other-" + NewUUID()}, mdm.User, d.ID()},
	} {
		r := tc.ch.Request()
		as := tc.as
		r.EnrollID = &as
		if err := s.StoreTokenUpdate(r, tc.ch.TokenUpdate(nil)); err != nil {
			t.Fatalf("TokenUpdate of %s as %s: %v", tc.ch.ID(), tc.as.Type, err)
		}
		info, err := s.RetrieveEnrollment(ctx, tc.ch.ID())
		if err != nil {
			t.Fatal(err)
		}
		if info.Type != tc.typ || info.ParentID != tc.wantPar {
			t.Fatalf("after a TokenUpdate as %s (parent %q): type %q parent %q; want %q %q",
				tc.as.Type, tc.as.ParentID, info.Type, info.ParentID, tc.typ, tc.wantPar)
		}
	}
}
