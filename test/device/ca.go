package device

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"slices"
	"time"

	"github.com/picomdm/picomdm/mdm/pemkey"
)

// CA issues device identity certificates, standing in for the SCEP or ACME
// CA a real deployment enrolls devices with. The server under test must
// trust it (its -ca flag).
type CA struct {
	cert *x509.Certificate
	key  crypto.Signer
}

// NewCA returns a throw-away self-signed CA with an ECDSA P-256 key, valid
// from an hour ago for ten years.
func NewCA() (*CA, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("device: generating CA key: %w", err)
	}
	serial, err := randomSerial()
	if err != nil {
		return nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "PicoMDM simulated device CA", Organization: []string{"PicoMDM devsim"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.AddDate(10, 0, 0),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, fmt.Errorf("device: creating CA certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("device: parsing CA certificate: %w", err)
	}
	return &CA{cert: cert, key: key}, nil
}

// LoadCA returns the CA whose PEM certificate and private key are given.
// The key may be PKCS#1 ("RSA PRIVATE KEY"), SEC 1 ("EC PRIVATE KEY") or
// PKCS#8 ("PRIVATE KEY"), unencrypted; it must match the certificate, which
// must be a CA certificate. Only the first certificate of certPEM is used.
func LoadCA(certPEM, keyPEM []byte) (*CA, error) {
	cert, err := firstCertificate(certPEM)
	if err != nil {
		return nil, err
	}
	if !cert.BasicConstraintsValid || !cert.IsCA {
		return nil, fmt.Errorf("device: certificate %q is not a CA certificate", cert.Subject.CommonName)
	}
	key, err := pemkey.Parse(keyPEM)
	if err != nil {
		return nil, fmt.Errorf("device: CA key: %w", err)
	}
	pub, ok := key.Public().(interface{ Equal(crypto.PublicKey) bool })
	if !ok || !pub.Equal(cert.PublicKey) {
		return nil, errors.New("device: CA private key does not match the CA certificate")
	}
	return &CA{cert: cert, key: key}, nil
}

// Certificate returns the CA certificate.
func (ca *CA) Certificate() *x509.Certificate { return ca.cert }

// Pool returns a certificate pool holding only the CA certificate, for
// verifying what it issued.
func (ca *CA) Pool() *x509.CertPool {
	pool := x509.NewCertPool()
	pool.AddCert(ca.cert)
	return pool
}

// CertPEM returns the CA certificate in PEM form, as a server's -ca flag
// wants it.
func (ca *CA) CertPEM() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.cert.Raw})
}

// KeyPEM returns the CA private key as an unencrypted PKCS#8 PEM block.
func (ca *CA) KeyPEM() ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(ca.key)
	if err != nil {
		return nil, fmt.Errorf("device: encoding CA key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// IssueOption adjusts a leaf certificate's template before Issue signs it.
// Options exist mostly to build certificates a server must refuse.
type IssueOption func(tmpl *x509.Certificate)

// WithNotBefore sets the start of the certificate's validity.
func WithNotBefore(t time.Time) IssueOption {
	return func(tmpl *x509.Certificate) { tmpl.NotBefore = t }
}

// WithNotAfter sets the end of the certificate's validity.
func WithNotAfter(t time.Time) IssueOption {
	return func(tmpl *x509.Certificate) { tmpl.NotAfter = t }
}

// WithoutClientAuth leaves the client-authentication extended key usage
// out of the certificate. If no other extended key usage is left it puts
// server authentication in its place, because a certificate without any
// extended key usage counts as good for every usage to x509 verifiers.
func WithoutClientAuth() IssueOption {
	return func(tmpl *x509.Certificate) {
		tmpl.ExtKeyUsage = slices.DeleteFunc(slices.Clone(tmpl.ExtKeyUsage), func(u x509.ExtKeyUsage) bool {
			return u == x509.ExtKeyUsageClientAuth || u == x509.ExtKeyUsageAny
		})
		if len(tmpl.ExtKeyUsage) == 0 {
			tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		}
	}
}

// Issue signs a leaf identity certificate for key's public key: subject
// commonName, DigitalSignature key usage, client-authentication extended
// key usage, valid from an hour ago for a year, unless opts say otherwise.
func (ca *CA) Issue(commonName string, key crypto.Signer, opts ...IssueOption) (*x509.Certificate, error) {
	if key == nil {
		return nil, errors.New("device: Issue: nil key")
	}
	serial, err := randomSerial()
	if err != nil {
		return nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: commonName, Organization: []string{"PicoMDM devsim"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.AddDate(1, 0, 0),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
	}
	for _, opt := range opts {
		opt(tmpl)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, key.Public(), ca.key)
	if err != nil {
		return nil, fmt.Errorf("device: issuing certificate for %q: %w", commonName, err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("device: parsing issued certificate: %w", err)
	}
	return cert, nil
}

func randomSerial() (*big.Int, error) {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, fmt.Errorf("device: generating serial number: %w", err)
	}
	return serial.Add(serial, big.NewInt(1)), nil
}

func firstCertificate(certPEM []byte) (*x509.Certificate, error) {
	for rest := certPEM; ; {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			return nil, errors.New("device: no PEM CERTIFICATE block found")
		}
		if block.Type != "CERTIFICATE" {
			continue
		}
		cert, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("device: parsing certificate: %w", err)
		}
		return cert, nil
	}
}
