// Package scepca is PicoMDM's built-in certificate authority for device
// identities: the CA that the SCEP endpoint (/scep, package http/scep)
// issues enrollment identity certificates from, following RFC 8894 through
// github.com/micromdm/scep/v2's server, whose CSR-signer and depot
// interfaces this package implements over PicoMDM's storage.
//
// The CA's certificate and key live in storage (storage.SCEPStore, the key
// sealed with -storage-key), so every replica issues from the same CA and a
// new replica needs nothing but the database. Each issued certificate is
// recorded with the one-time challenge it was issued for, in the same
// storage operation that uses the challenge up.
package scepca

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"time"

	"github.com/picomdm/picomdm/storage"
)

// DefaultCAName is the subject common name of a CA created at first start.
const DefaultCAName = "PicoMDM Device Identity CA"

// caKeyBits is the RSA size of a created CA key. SCEP clients encrypt
// their request to the CA's key, so it is RSA (Apple devices and RFC 8894
// clients expect RSA), and 3072 bits keeps it sound for its ten years.
const caKeyBits = 3072

// caValidity is how long a created CA certificate is valid.
const caValidity = 10 * 365 * 24 * time.Hour

// ErrNotRSA says an imported CA key is not an RSA key, which SCEP needs.
var ErrNotRSA = errors.New("scepca: the SCEP CA key must be an RSA key")

// CA is the loaded certificate authority: its certificate and key.
type CA struct {
	Cert *x509.Certificate
	Key  *rsa.PrivateKey
	// CertPEM is Cert in PEM form, for device-identity verifiers.
	CertPEM []byte
}

// Load returns the CA stored in store, creating and storing one when none
// is (the first start of the first replica). Two replicas starting at once
// both end with the same CA: one stores its new CA, the other's store
// fails with ErrExists and it reads the winner's.
func Load(ctx context.Context, store storage.SCEPStore) (ca *CA, created bool, err error) {
	certPEM, keyPEM, err := store.RetrieveSCEPCA(ctx)
	if err == nil {
		ca, err := Parse(certPEM, keyPEM)
		return ca, false, err
	}
	if !errors.Is(err, storage.ErrNotFound) {
		return nil, false, fmt.Errorf("reading SCEP CA: %w", err)
	}
	certPEM, keyPEM, err = NewCA(DefaultCAName)
	if err != nil {
		return nil, false, err
	}
	switch err := store.StoreSCEPCA(ctx, certPEM, keyPEM, false); {
	case errors.Is(err, storage.ErrExists):
		// Another replica created one meanwhile: use it.
		if certPEM, keyPEM, err = store.RetrieveSCEPCA(ctx); err != nil {
			return nil, false, fmt.Errorf("reading SCEP CA: %w", err)
		}
	case err != nil:
		return nil, false, fmt.Errorf("storing new SCEP CA: %w", err)
	default:
		created = true
	}
	ca, err = Parse(certPEM, keyPEM)
	return ca, created, err
}

// Import stores certPEM and keyPEM as the CA, replacing the stored one if
// it differs (an operator's -scep-ca and -scep-ca-key), and returns it.
// replaced says whether storage changed.
func Import(ctx context.Context, store storage.SCEPStore, certPEM, keyPEM []byte) (ca *CA, replaced bool, err error) {
	ca, err = Parse(certPEM, keyPEM)
	if err != nil {
		return nil, false, err
	}
	storedCert, storedKey, err := store.RetrieveSCEPCA(ctx)
	if err != nil && !errors.Is(err, storage.ErrNotFound) {
		return nil, false, fmt.Errorf("reading SCEP CA: %w", err)
	}
	if err == nil {
		if stored, perr := Parse(storedCert, storedKey); perr == nil && stored.Cert.Equal(ca.Cert) && stored.Key.Equal(ca.Key) {
			return ca, false, nil
		}
	}
	if err := store.StoreSCEPCA(ctx, certPEM, keyPEM, true); err != nil {
		return nil, false, fmt.Errorf("storing imported SCEP CA: %w", err)
	}
	return ca, true, nil
}

// Parse reads a CA from its PEM certificate (the first CERTIFICATE block)
// and PEM RSA key, checking that they pair and that the certificate is a
// CA's.
func Parse(certPEM, keyPEM []byte) (*CA, error) {
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("scepca: CA certificate and key: %w", err)
	}
	key, ok := pair.PrivateKey.(*rsa.PrivateKey)
	if !ok {
		return nil, ErrNotRSA
	}
	cert := pair.Leaf
	if !cert.IsCA || cert.KeyUsage&x509.KeyUsageCertSign == 0 {
		return nil, errors.New("scepca: the SCEP CA certificate is not a CA certificate (basic constraints CA and key usage certSign)")
	}
	return &CA{Cert: cert, Key: key, CertPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw})}, nil
}

// NewCA makes a self-signed CA certificate and its RSA key, in PEM.
func NewCA(commonName string) (certPEM, keyPEM []byte, err error) {
	key, err := rsa.GenerateKey(rand.Reader, caKeyBits)
	if err != nil {
		return nil, nil, fmt.Errorf("scepca: generating CA key: %w", err)
	}
	serial, err := NewSerial(time.Now())
	if err != nil {
		return nil, nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: commonName, Organization: []string{"PicoMDM"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(caValidity),
		IsCA:                  true,
		BasicConstraintsValid: true,
		MaxPathLenZero:        true,
		// keyEncipherment: SCEP clients encrypt their requests to it.
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, nil, fmt.Errorf("scepca: creating CA certificate: %w", err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, fmt.Errorf("scepca: encoding CA key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), nil
}
