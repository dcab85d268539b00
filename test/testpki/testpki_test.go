package testpki_test

import (
	"crypto"
	"crypto/rsa"
	"crypto/x509"
	"testing"
	"time"

	"github.com/smallstep/pkcs7"

	"github.com/picomdm/picomdm/mdm/pemkey"
	"github.com/picomdm/picomdm/test/testpki"
)

// TestChain checks that an identity issued through an intermediate
// verifies to the root for client auth, and that options apply.
func TestChain(t *testing.T) {
	root := testpki.NewCA(t, "Root")
	inter := root.Intermediate(t, "Intermediate", testpki.RSA())
	id := inter.Issue(t, "device")
	roots, inters := x509.NewCertPool(), x509.NewCertPool()
	roots.AddCert(root.Cert)
	inters.AddCert(inter.Cert)
	if _, err := id.Cert.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inters, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Fatalf("issued identity does not verify: %v", err)
	}
	if _, ok := inter.Key.(*rsa.PrivateKey); !ok {
		t.Errorf("RSA() gave a %T", inter.Key)
	}
	notAfter := time.Now().Add(time.Hour).Truncate(time.Second)
	short := testpki.SelfSigned(t, "short", testpki.Validity(time.Now().Add(-time.Minute), notAfter), testpki.ExtKeyUsage(), testpki.Key(id.Key))
	if !short.Cert.NotAfter.Equal(notAfter) || len(short.Cert.ExtKeyUsage) != 0 || short.Key != id.Key {
		t.Errorf("options not applied: not after %v, EKU %v", short.Cert.NotAfter, short.Cert.ExtKeyUsage)
	}
	if err := short.Cert.CheckSignature(short.Cert.SignatureAlgorithm, short.Cert.RawTBSCertificate, short.Cert.Signature); err != nil {
		t.Errorf("SelfSigned is not self-signed: %v", err)
	}
}

// TestKeyPEM checks each encoding round-trips through pemkey.
func TestKeyPEM(t *testing.T) {
	ec, rsaID := testpki.SelfSigned(t, "ec"), testpki.SelfSigned(t, "rsa", testpki.RSA())
	for _, tc := range []struct {
		id      *testpki.Identity
		pemType string
	}{{ec, "PRIVATE KEY"}, {ec, "EC PRIVATE KEY"}, {rsaID, "PRIVATE KEY"}, {rsaID, "RSA PRIVATE KEY"}} {
		key, err := pemkey.Parse(tc.id.KeyPEM(t, tc.pemType))
		if err != nil {
			t.Errorf("%s: %v", tc.pemType, err)
			continue
		}
		if !tc.id.Cert.PublicKey.(interface{ Equal(crypto.PublicKey) bool }).Equal(key.Public()) {
			t.Errorf("%s: another key came back", tc.pemType)
		}
	}
}

// TestSignDER checks that the detached signature verifies over the body.
func TestSignDER(t *testing.T) {
	id := testpki.NewCA(t, "CA").Issue(t, "device")
	body := []byte("<plist/>")
	p7, err := pkcs7.Parse(id.SignDER(t, body))
	if err != nil {
		t.Fatal(err)
	}
	p7.Content = body
	if err := p7.Verify(); err != nil {
		t.Fatalf("signature does not verify: %v", err)
	}
	if s := p7.GetOnlySigner(); s == nil || !s.Equal(id.Cert) {
		t.Error("signer is not the identity")
	}
}
