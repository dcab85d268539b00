package storagetest

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"testing"

	"github.com/picomdm/picomdm/mdm"
	"github.com/picomdm/picomdm/storage"
)

// BenchmarkEnrollPair times the storage work of one device enrollment —
// its Authenticate and TokenUpdate check-ins (carrying an UnlockToken, as a
// device channel's first TokenUpdate does) — with the cert-auth calls the
// service chain makes around them: StoreAuthenticate carrying the
// certificate's association; IsCertHashAssociated, then StoreTokenUpdate. Every
// iteration is a new device, built outside the timer. Without combined,
// the store's optional extensions are hidden (see Modes).
func BenchmarkEnrollPair(b *testing.B, store storage.Store, combined bool) {
	if !combined {
		store = plainStore{store}
	}
	ctx := context.Background()
	type device struct {
		ch   *Channel
		r    *mdm.Request
		hash string
		auth *mdm.Authenticate
		tok  *mdm.TokenUpdate
	}
	cert := NewIdentityCert("storagetest enroll")
	unlockToken := RandomBytes(32)
	next := batched(b, 256, func() device {
		// One certificate for the fleet (storage does not look inside
		// it), but a hash of its own per device, as cert-auth needs.
		ch := newChannel(mdm.Enrollment{UDID: NewUUID()}, cert)
		return device{ch, ch.Request(), hex.EncodeToString(RandomBytes(sha256.Size)), ch.Authenticate(), ch.TokenUpdate(unlockToken)}
	})
	for b.Loop() {
		d := next()
		r := d.r
		ar := r.Clone(storage.WithCertAssociation(ctx, storage.CertAssociation{Hash: d.hash, NotAfter: cert.NotAfter}))
		if err := store.StoreAuthenticate(ar, d.auth); err != nil {
			b.Fatalf("Authenticate: %v", err)
		}
		if ok, err := store.IsCertHashAssociated(ctx, d.ch.ID(), d.hash); err != nil || !ok {
			b.Fatalf("IsCertHashAssociated: %v, %v", ok, err)
		}
		if err := store.StoreTokenUpdate(r, d.tok); err != nil {
			b.Fatalf("TokenUpdate: %v", err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "pairs/s")
}
