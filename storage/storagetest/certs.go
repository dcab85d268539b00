package storagetest

import (
	"bytes"
	"context"
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"testing"
	"time"

	"github.com/picomdm/picomdm/storage"
)

// testPushCert: push certificates are stored by the topic in their
// Subject, come back as usable TLS certificates, and carry a stale token
// that changes when the topic's certificate is replaced.
func testPushCert(t *testing.T, s storage.Store) {
	ctx := context.Background()
	topic := NewTopic()
	if _, _, err := s.RetrievePushCert(ctx, topic); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("push cert of unknown topic: %v, want ErrNotFound", err)
	}

	cert1, key1 := NewPushCert(topic)
	if err := s.StorePushCert(ctx, cert1, key1); err != nil {
		t.Fatalf("storing push cert: %v", err)
	}
	tlsCert, token1, err := s.RetrievePushCert(ctx, topic)
	if err != nil {
		t.Fatalf("retrieving push cert: %v", err)
	}
	wantUsableCert(t, tlsCert, cert1, topic)
	infos, err := s.RetrievePushCertInfos(ctx)
	if err != nil {
		t.Fatalf("listing push certs: %v", err)
	}
	found := false
	for i, info := range infos {
		if i > 0 && infos[i-1].Topic >= info.Topic {
			t.Fatalf("push cert list not sorted by topic: %v", infos)
		}
		if info.Topic == topic {
			found = true
			if !info.NotAfter.Equal(tlsCert.Leaf.NotAfter) {
				t.Fatalf("listed not_after %v, want %v", info.NotAfter, tlsCert.Leaf.NotAfter)
			}
		}
	}
	if !found {
		t.Fatalf("stored topic %s not listed in %v", topic, infos)
	}
	if token1 == "" {
		t.Fatal("empty stale token")
	}
	if stale, err := s.IsPushCertStale(ctx, topic, token1); err != nil || stale {
		t.Fatalf("IsPushCertStale(current token) = %v, %v; want false", stale, err)
	}

	cert2, key2 := NewPushCert(topic) // the renewed certificate
	if err := s.StorePushCert(ctx, cert2, key2); err != nil {
		t.Fatalf("replacing push cert: %v", err)
	}
	tlsCert, token2, err := s.RetrievePushCert(ctx, topic)
	if err != nil {
		t.Fatalf("retrieving replaced push cert: %v", err)
	}
	wantUsableCert(t, tlsCert, cert2, topic)
	if token2 == token1 {
		t.Fatalf("stale token unchanged (%q) after replacing the certificate", token1)
	}
	if stale, err := s.IsPushCertStale(ctx, topic, token1); err != nil || !stale {
		t.Fatalf("IsPushCertStale(old token) = %v, %v; want true", stale, err)
	}
	if stale, err := s.IsPushCertStale(ctx, topic, token2); err != nil || stale {
		t.Fatalf("IsPushCertStale(new token) = %v, %v; want false", stale, err)
	}

	// Certificates that cannot be stored: a key of another certificate,
	// and a Subject without a topic. Neither replaces the current one.
	if err := s.StorePushCert(ctx, cert1, key2); err == nil {
		t.Fatal("storing a certificate with a key that does not match it: no error")
	}
	noTopic, noTopicKey := NewPushCert("")
	if err := s.StorePushCert(ctx, noTopic, noTopicKey); err == nil {
		t.Fatal("storing a certificate with no topic: no error")
	}
	if _, token, err := s.RetrievePushCert(ctx, topic); err != nil || token != token2 {
		t.Fatalf("after refused stores: token %q, %v; want %q", token, err, token2)
	}

	// Topics are independent.
	other := NewTopic()
	cert3, key3 := NewPushCert(other)
	if err := s.StorePushCert(ctx, cert3, key3); err != nil {
		t.Fatalf("storing second topic: %v", err)
	}
	if stale, err := s.IsPushCertStale(ctx, topic, token2); err != nil || stale {
		t.Fatalf("IsPushCertStale after storing another topic = %v, %v; want false", stale, err)
	}
}

// wantUsableCert asserts cert is certPEM with a private key that matches
// it, ready for a TLS client.
func wantUsableCert(t testing.TB, cert *tls.Certificate, certPEM []byte, topic string) {
	t.Helper()
	if cert == nil || len(cert.Certificate) == 0 || cert.PrivateKey == nil {
		t.Fatalf("push cert for %s: no certificate or no key", topic)
	}
	block, _ := pem.Decode(certPEM)
	if block == nil || !bytes.Equal(block.Bytes, cert.Certificate[0]) {
		t.Fatalf("push cert for %s is not the one stored", topic)
	}
	leaf, err := x509.ParseCertificate(cert.Certificate[0])
	if err != nil {
		t.Fatalf("push cert for %s: %v", topic, err)
	}
	if got, err := storage.TopicFromCert(leaf); err != nil || got != topic {
		t.Fatalf("push cert topic = %q, %v; want %q", got, err, topic)
	}
	signer, ok := cert.PrivateKey.(crypto.Signer)
	if !ok {
		t.Fatalf("push cert key %T is not a crypto.Signer", cert.PrivateKey)
	}
	pub, ok := signer.Public().(interface{ Equal(crypto.PublicKey) bool })
	if !ok || !pub.Equal(leaf.PublicKey) {
		t.Fatalf("push cert key does not match its certificate")
	}
}

// testCertAuth: certificate hashes associate with enrollment IDs (several
// per ID, re-associating is harmless), and each query answers exactly its
// question. Associations exist before the enrollment does: cert-auth runs
// before the Authenticate is stored.
func testCertAuth(t *testing.T, s storage.Store) {
	ctx := context.Background()
	id, otherID := NewUUID(), NewUUID()
	h1, h2, h3 := RandomCertHash(), RandomCertHash(), RandomCertHash()
	notAfter := time.Now().AddDate(1, 0, 0).Truncate(time.Second)

	check := func(what string, got bool, err error, want bool) {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if got != want {
			t.Fatalf("%s = %v, want %v", what, got, want)
		}
	}
	has, err := s.HasCertHash(ctx, h1)
	check("HasCertHash(new hash)", has, err, false)
	has, err = s.EnrollmentHasCertHash(ctx, id)
	check("EnrollmentHasCertHash(new id)", has, err, false)
	has, err = s.IsCertHashAssociated(ctx, id, h1)
	check("IsCertHashAssociated(new id, new hash)", has, err, false)

	if err := s.AssociateCertHash(ctx, id, h1, notAfter); err != nil {
		t.Fatalf("associating: %v", err)
	}
	has, err = s.HasCertHash(ctx, h1)
	check("HasCertHash(h1)", has, err, true)
	has, err = s.EnrollmentHasCertHash(ctx, id)
	check("EnrollmentHasCertHash(id)", has, err, true)
	has, err = s.IsCertHashAssociated(ctx, id, h1)
	check("IsCertHashAssociated(id, h1)", has, err, true)
	has, err = s.IsCertHashAssociated(ctx, id, h2)
	check("IsCertHashAssociated(id, h2)", has, err, false)
	has, err = s.IsCertHashAssociated(ctx, otherID, h1)
	check("IsCertHashAssociated(otherID, h1)", has, err, false)
	has, err = s.EnrollmentHasCertHash(ctx, otherID)
	check("EnrollmentHasCertHash(otherID)", has, err, false)
	has, err = s.HasCertHash(ctx, h2)
	check("HasCertHash(h2)", has, err, false)

	if err := s.AssociateCertHash(ctx, id, h1, notAfter); err != nil {
		t.Fatalf("associating the same pair again: %v", err)
	}
	// Re-enrollment with a new identity certificate: a second hash.
	if err := s.AssociateCertHash(ctx, id, h2, notAfter.Add(time.Hour)); err != nil {
		t.Fatalf("associating a second hash: %v", err)
	}
	has, err = s.IsCertHashAssociated(ctx, id, h1)
	check("IsCertHashAssociated(id, h1) after a second hash", has, err, true)
	has, err = s.IsCertHashAssociated(ctx, id, h2)
	check("IsCertHashAssociated(id, h2)", has, err, true)
	has, err = s.HasCertHash(ctx, h3)
	check("HasCertHash(h3)", has, err, false)

	// IDs with path characters and colons are plain keys too.
	odd := "../" + NewUUID() + ":x"
	if err := s.AssociateCertHash(ctx, odd, h3, notAfter); err != nil {
		t.Fatalf("associating odd id: %v", err)
	}
	has, err = s.IsCertHashAssociated(ctx, odd, h3)
	check("IsCertHashAssociated(odd id, h3)", has, err, true)
	has, err = s.IsCertHashAssociated(ctx, id, h3)
	check("IsCertHashAssociated(id, h3)", has, err, false)
}
