// Package testpki builds throw-away certificate authorities, certificates
// and keys for tests, and the detached CMS signatures (Mdm-Signature
// headers) devices make with their identities. Every function takes the
// test and fails it on error. It is imported only by _test files and test
// helpers.
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

// Identity is a certificate and its private key: a device identity, a
// push or signing certificate, or (as part of a CA) a CA's own.
type Identity struct {
	Cert *x509.Certificate
	Key  crypto.Signer
}

// CA is a certificate authority that can issue intermediates and leaf
// certificates.
type CA struct {
	Identity
}

// Option changes the template a certificate is made from, or its key.
type Option func(*config)

type config struct {
	tmpl *x509.Certificate
	key  crypto.Signer
	rsa  bool
}

// Validity sets the certificate's validity period.
func Validity(notBefore, notAfter time.Time) Option {
	return func(c *config) { c.tmpl.NotBefore, c.tmpl.NotAfter = notBefore, notAfter }
}

// ExtKeyUsage replaces the certificate's extended key usages (client auth
// for a leaf, none for a CA); no arguments leaves the extension out.
func ExtKeyUsage(usages ...x509.ExtKeyUsage) Option {
	return func(c *config) { c.tmpl.ExtKeyUsage = usages }
}

// KeyUsage replaces the certificate's key usage.
func KeyUsage(usage x509.KeyUsage) Option {
	return func(c *config) { c.tmpl.KeyUsage = usage }
}

// RSA gives the certificate a new RSA 2048 key instead of ECDSA P-256.
func RSA() Option {
	return func(c *config) { c.rsa = true }
}

// Key certifies key instead of a new one.
func Key(key crypto.Signer) Option {
	return func(c *config) { c.key = key }
}

// Template lets edit change anything else in the template (a subject's
// extra names, basic constraints) before the certificate is signed.
func Template(edit func(*x509.Certificate)) Option {
	return func(c *config) { edit(c.tmpl) }
}

// NewCA returns a self-signed root CA named name, valid from an hour ago
// for ten years, with an ECDSA P-256 key unless opts say otherwise.
func NewCA(t testing.TB, name string, opts ...Option) *CA {
	t.Helper()
	return &CA{*build(t, caTemplate(t, name, 10*365*24*time.Hour), nil, opts)}
}

// Intermediate returns a CA named name issued by ca, valid from an hour
// ago for five years.
func (ca *CA) Intermediate(t testing.TB, name string, opts ...Option) *CA {
	t.Helper()
	return &CA{*build(t, caTemplate(t, name, 5*365*24*time.Hour), &ca.Identity, opts)}
}

// Issue returns a leaf certificate issued by ca: a device identity with
// client-auth extended key usage, valid from an hour ago for a year,
// unless opts say otherwise.
func (ca *CA) Issue(t testing.TB, commonName string, opts ...Option) *Identity {
	t.Helper()
	return build(t, leafTemplate(t, commonName), &ca.Identity, opts)
}

// SelfSigned returns a self-signed leaf certificate with Issue's
// defaults: a certificate no CA vouches for, such as a test push
// certificate or profile signer.
func SelfSigned(t testing.TB, commonName string, opts ...Option) *Identity {
	t.Helper()
	return build(t, leafTemplate(t, commonName), nil, opts)
}

// PEM returns the certificate PEM-encoded.
func (id *Identity) PEM() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: id.Cert.Raw})
}

// KeyPEM returns the private key PEM-encoded as pemType (see KeyPEM).
func (id *Identity) KeyPEM(t testing.TB, pemType string) []byte {
	t.Helper()
	return KeyPEM(t, id.Key, pemType)
}

// Sign returns an Mdm-Signature header value for body: base64 of a
// detached CMS signature by the identity, the way a device signs its
// requests.
func (id *Identity) Sign(t testing.TB, body []byte) string {
	t.Helper()
	return base64.StdEncoding.EncodeToString(id.SignDER(t, body))
}

// SignDER returns the DER of a detached CMS signature over body.
func (id *Identity) SignDER(t testing.TB, body []byte) []byte {
	t.Helper()
	return SignDER(t, body, id)
}

// SignDER returns the DER of a detached CMS signature over body carrying
// one signer per identity (more than one only to test refusals).
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

// NewRSAKey returns a new RSA 2048 key.
func NewRSAKey(t testing.TB) *rsa.PrivateKey {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatalf("generating RSA key: %v", err)
	}
	return key
}

// NewECDSAKey returns a new ECDSA P-256 key.
func NewECDSAKey(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatalf("generating ECDSA key: %v", err)
	}
	return key
}

// KeyPEM returns key PEM-encoded as pemType, one of the forms openssl
// writes: "PRIVATE KEY" (PKCS #8), "RSA PRIVATE KEY" (PKCS #1, an RSA
// key) or "EC PRIVATE KEY" (SEC 1, an ECDSA key).
func KeyPEM(t testing.TB, key crypto.Signer, pemType string) []byte {
	t.Helper()
	var der []byte
	var err error
	rsaKey, isRSA := key.(*rsa.PrivateKey)
	ecKey, isEC := key.(*ecdsa.PrivateKey)
	switch {
	case pemType == "PRIVATE KEY":
		der, err = x509.MarshalPKCS8PrivateKey(key)
	case pemType == "RSA PRIVATE KEY" && isRSA:
		der = x509.MarshalPKCS1PrivateKey(rsaKey)
	case pemType == "EC PRIVATE KEY" && isEC:
		der, err = x509.MarshalECPrivateKey(ecKey)
	default:
		t.Fatalf("testpki: a %T cannot be encoded as %q", key, pemType)
	}
	if err != nil {
		t.Fatalf("encoding %T as %s: %v", key, pemType, err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: pemType, Bytes: der})
}

func caTemplate(t testing.TB, name string, validity time.Duration) *x509.Certificate {
	return &x509.Certificate{
		SerialNumber:          serial(t),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(validity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
}

func leafTemplate(t testing.TB, commonName string) *x509.Certificate {
	return &x509.Certificate{
		SerialNumber: serial(t),
		Subject:      pkix.Name{CommonName: commonName},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(365 * 24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
}

// build makes a certificate from tmpl as opts change it, signed by parent
// (self-signed when parent is nil).
func build(t testing.TB, tmpl *x509.Certificate, parent *Identity, opts []Option) *Identity {
	t.Helper()
	cfg := &config{tmpl: tmpl}
	for _, opt := range opts {
		opt(cfg)
	}
	key := cfg.key
	switch {
	case key != nil:
	case cfg.rsa:
		key = NewRSAKey(t)
	default:
		key = NewECDSAKey(t)
	}
	issuer, signer := cfg.tmpl, key
	if parent != nil {
		issuer, signer = parent.Cert, parent.Key
	}
	der, err := x509.CreateCertificate(rand.Reader, cfg.tmpl, issuer, key.Public(), signer)
	if err != nil {
		t.Fatalf("creating certificate %q: %v", cfg.tmpl.Subject.CommonName, err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatalf("parsing certificate: %v", err)
	}
	return &Identity{Cert: cert, Key: key}
}

func serial(t testing.TB) *big.Int {
	t.Helper()
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		t.Fatalf("serial number: %v", err)
	}
	return n
}
