package scepca_test

import (
	"context"
	"crypto/x509"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/picomdm/picomdm/service/scepca"
	"github.com/picomdm/picomdm/storage"
	"github.com/picomdm/picomdm/storage/inmem"
	"github.com/picomdm/picomdm/test/testpki"
)

func TestLoadCreatesOnce(t *testing.T) {
	store := inmem.New()
	ctx := context.Background()
	// Eight replicas starting at once end with one CA.
	cas := make([]*scepca.CA, 8)
	created := make([]bool, 8)
	var wg sync.WaitGroup
	for i := range cas {
		wg.Go(func() {
			var err error
			cas[i], created[i], err = scepca.Load(ctx, store)
			if err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	n := 0
	for i, ca := range cas {
		if created[i] {
			n++
		}
		if !ca.Cert.Equal(cas[0].Cert) || !ca.Key.Equal(cas[0].Key) {
			t.Errorf("replica %d loaded another CA", i)
		}
	}
	if n != 1 {
		t.Errorf("%d replicas report creating the CA, want 1", n)
	}
	ca := cas[0]
	if !ca.Cert.IsCA || ca.Cert.KeyUsage&x509.KeyUsageCertSign == 0 || ca.Cert.KeyUsage&x509.KeyUsageKeyEncipherment == 0 {
		t.Errorf("CA certificate: IsCA %v, key usage %b", ca.Cert.IsCA, ca.Cert.KeyUsage)
	}
	if ca.Key.N.BitLen() < 3072 {
		t.Errorf("CA key of %d bits", ca.Key.N.BitLen())
	}
	again, createdAgain, err := scepca.Load(ctx, store)
	if err != nil || createdAgain || !again.Cert.Equal(ca.Cert) {
		t.Errorf("second Load: created %v, err %v, same %v", createdAgain, err, err == nil && again.Cert.Equal(ca.Cert))
	}
}

func TestImport(t *testing.T) {
	store := inmem.New()
	ctx := context.Background()
	first, _, err := scepca.Load(ctx, store)
	if err != nil {
		t.Fatal(err)
	}
	certPEM, keyPEM, err := scepca.NewCA("Imported CA")
	if err != nil {
		t.Fatal(err)
	}
	ca, replaced, err := scepca.Import(ctx, store, certPEM, keyPEM)
	if err != nil || !replaced || ca.Cert.Equal(first.Cert) || ca.Cert.Subject.CommonName != "Imported CA" {
		t.Fatalf("Import: replaced %v, err %v", replaced, err)
	}
	if _, replaced, err := scepca.Import(ctx, store, certPEM, keyPEM); err != nil || replaced {
		t.Errorf("importing the stored CA again: replaced %v, err %v", replaced, err)
	}
	loaded, created, err := scepca.Load(ctx, store)
	if err != nil || created || !loaded.Cert.Equal(ca.Cert) {
		t.Errorf("Load after Import: created %v, err %v", created, err)
	}
}

func TestParseRefuses(t *testing.T) {
	certPEM, keyPEM, err := scepca.NewCA("CA")
	if err != nil {
		t.Fatal(err)
	}
	otherCert, _, err := scepca.NewCA("Other")
	if err != nil {
		t.Fatal(err)
	}
	ec := testpki.NewCA(t, "EC")
	leaf := testpki.SelfSigned(t, "leaf", testpki.RSA()) // RSA, but not a CA's
	for name, tc := range map[string]struct {
		cert, key []byte
		want      error
	}{
		"mismatched pair": {otherCert, keyPEM, nil},
		"ECDSA":           {ec.PEM(), ec.KeyPEM(t, "PRIVATE KEY"), scepca.ErrNotRSA},
		"not a CA":        {leaf.PEM(), leaf.KeyPEM(t, "PRIVATE KEY"), nil},
		"garbage":         {[]byte("x"), []byte("y"), nil},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := scepca.Parse(tc.cert, tc.key)
			if err == nil || (tc.want != nil && !errors.Is(err, tc.want)) {
				t.Errorf("Parse: %v, want an error (%v)", err, tc.want)
			}
		})
	}
	if _, err := scepca.Parse(certPEM, keyPEM); err != nil {
		t.Errorf("Parse of a good CA: %v", err)
	}
}

func TestSerialsSortInIssueOrder(t *testing.T) {
	t0 := time.Now()
	prev := ""
	for i := range 100 {
		s, err := scepca.NewSerial(t0.Add(time.Duration(i) * time.Microsecond))
		if err != nil {
			t.Fatal(err)
		}
		text := scepca.SerialText(s)
		if len(text) != 32 || text <= prev || s.Sign() <= 0 {
			t.Fatalf("serial %d: %q after %q", i, text, prev)
		}
		prev = text
	}
}

func TestMintChallenge(t *testing.T) {
	store := inmem.New()
	ctx := context.Background()
	now := time.Now()
	pw, c, err := scepca.MintChallenge(ctx, store, now, 0, "alice's iPad")
	if err != nil {
		t.Fatal(err)
	}
	if len(pw) < 43 || c.Hash != scepca.ChallengeHash(pw) || c.Hash == pw {
		t.Errorf("password %q, hash %q", pw, c.Hash)
	}
	if got := c.ExpiresAt.Sub(c.CreatedAt); got != scepca.DefaultChallengeTTL {
		t.Errorf("default validity %v", got)
	}
	stored, err := store.RetrieveSCEPChallenge(ctx, c.ID)
	if err != nil || stored.Hash != c.Hash || stored.Note != "alice's iPad" {
		t.Fatalf("stored %+v, %v", stored, err)
	}
	if scepca.ChallengeState(stored, now) != "valid" || scepca.ChallengeState(stored, c.ExpiresAt) != "expired" {
		t.Error("ChallengeState")
	}
	for name, bad := range map[string]struct {
		ttl  time.Duration
		note string
	}{
		"too long": {scepca.MaxChallengeTTL + time.Second, ""},
		"negative": {-time.Hour, ""},
		"big note": {time.Hour, string(make([]byte, scepca.MaxNoteBytes+1))},
		"bad utf8": {time.Hour, "\xff"},
	} {
		if _, _, err := scepca.MintChallenge(ctx, store, now, bad.ttl, bad.note); !errors.Is(err, scepca.ErrBadChallengeRequest) {
			t.Errorf("%s: %v", name, err)
		}
	}
	list, _, err := store.ListSCEPChallenges(ctx, storage.Page{})
	if err != nil || len(list) != 1 {
		t.Errorf("refused requests stored challenges: %d, %v", len(list), err)
	}
}
