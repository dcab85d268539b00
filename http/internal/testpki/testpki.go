// Package testpki builds throw-away certificate authorities, device identity
// certificates and Mdm-Signature headers for the tests of the http packages.
// It is imported only by _test files.
package testpki

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"math/big"
	"testing"
	"time"

	"github.com/smallstep/pkcs7"
)

// CA is a certificate authority that can issue intermediates and device
// identities.
type CA struct {
	Cert *x509.Certificate
	Key  crypto.Signer
}

// NewCA returns a self-signed root CA named name, valid from an hour ago for
// ten years, with an ECDSA P-256 key.
func NewCA(t testing.TB, name string) *CA {
	t.Helper()
	key := newECDSAKey(t)
	tmpl := &x509.Certificate{
		SerialNumber:          serial(t),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(10 * 365 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	return &CA{Cert: create(t, tmpl, tmpl, key.Public(), key), Key: key}
}

// PEM returns the CA certificate PEM-encoded.
func (ca *CA) PEM() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.Cert.Raw})
}

// Intermediate returns a CA named name issued by ca.
func (ca *CA) Intermediate(t testing.TB, name string) *CA {
	t.Helper()
	key := newECDSAKey(t)
	tmpl := &x509.Certificate{
		SerialNumber:          serial(t),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(5 * 365 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	return &CA{Cert: create(t, tmpl, ca.Cert, key.Public(), ca.Key), Key: key}
}

// Identity is a device identity certificate and its private key.
type Identity struct {
	Cert *x509.Certificate
	Key  crypto.Signer
}

// IdentityOption changes the template an identity is issued from.
type IdentityOption func(*identityConfig)

type identityConfig struct {
	tmpl *x509.Certificate
	rsa  bool
}

// Validity sets the identity's validity period.
func Validity(notBefore, notAfter time.Time) IdentityOption {
	return func(c *identityConfig) { c.tmpl.NotBefore, c.tmpl.NotAfter = notBefore, notAfter }
}

// ExtKeyUsage replaces the identity's extended key usages (client auth by
// default); no arguments leaves the extension out.
func ExtKeyUsage(usages ...x509.ExtKeyUsage) IdentityOption {
	return func(c *identityConfig) { c.tmpl.ExtKeyUsage = usages }
}

// RSA gives the identity an RSA 2048 key instead of ECDSA P-256.
func RSA() IdentityOption {
	return func(c *identityConfig) { c.rsa = true }
}

// Issue returns a device identity issued by ca: client-auth extended key
// usage, valid from an hour ago for a year, unless opts say otherwise.
func (ca *CA) Issue(t testing.TB, commonName string, opts ...IdentityOption) *Identity {
	t.Helper()
	cfg := &identityConfig{tmpl: &x509.Certificate{
		SerialNumber: serial(t),
		Subject:      pkix.Name{CommonName: commonName},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(365 * 24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}}
	for _, opt := range opts {
		opt(cfg)
	}
	var key crypto.Signer
	if cfg.rsa {
		k, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			t.Fatalf("generating RSA key: %v", err)
		}
		key = k
	} else {
		key = newECDSAKey(t)
	}
	return &Identity{Cert: create(t, cfg.tmpl, ca.Cert, key.Public(), ca.Key), Key: key}
}

// PEM returns the identity certificate PEM-encoded.
func (id *Identity) PEM() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: id.Cert.Raw})
}

// Sign returns an Mdm-Signature header value for body: base64 of a detached
// CMS signature by the identity, the way a device signs its requests.
func (id *Identity) Sign(t testing.TB, body []byte) string {
	t.Helper()
	return base64.StdEncoding.EncodeToString(id.SignDER(t, body))
}

// SignDER returns the DER of a detached CMS signature over body.
func (id *Identity) SignDER(t testing.TB, body []byte) []byte {
	t.Helper()
	return SignDER(t, body, id)
}

// SignDER returns the DER of a detached CMS signature over body carrying one
// signer per identity (more than one only to test refusals).
func SignDER(t testing.TB, body []byte, signers ...*Identity) []byte {
	t.Helper()
	sd, err := pkcs7.NewSignedData(body)
	if err != nil {
		t.Fatalf("pkcs7.NewSignedData: %v", err)
	}
	sd.SetDigestAlgorithm(pkcs7.OIDDigestAlgorithmSHA256)
	for _, id := range signers {
		if err := sd.AddSigner(id.Cert, id.Key, pkcs7.SignerInfoConfig{}); err != nil {
			t.Fatalf("pkcs7 AddSigner: %v", err)
		}
	}
	sd.Detach()
	der, err := sd.Finish()
	if err != nil {
		t.Fatalf("pkcs7 Finish: %v", err)
	}
	return der
}

func newECDSAKey(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatalf("generating ECDSA key: %v", err)
	}
	return key
}

func serial(t testing.TB) *big.Int {
	t.Helper()
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		t.Fatalf("serial number: %v", err)
	}
	return n
}

func create(t testing.TB, tmpl, parent *x509.Certificate, pub crypto.PublicKey, signer crypto.Signer) *x509.Certificate {
	t.Helper()
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, signer)
	if err != nil {
		t.Fatalf("creating certificate: %v", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatalf("parsing certificate: %v", err)
	}
	return cert
}
