package auth

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"time"
)

// Verifier decides whether an identity certificate may talk to the server.
type Verifier interface {
	// Verify returns nil if cert is acceptable, else an *Error.
	Verify(cert *x509.Certificate) error
}

// X509Verifier verifies identity certificates with crypto/x509: the
// certificate must chain to the CA (through the configured intermediates),
// be valid for client authentication, and be within its validity dates
// (and so must every certificate of the chain).
//
// Key usage follows RFC 5280 section 4.2.1.12 as crypto/x509 does: a
// certificate whose extended key usage extension lists other purposes
// (e.g. only server auth) is refused; one without the extension is
// unrestricted and accepted, as NanoMDM accepts it.
type X509Verifier struct {
	roots         *x509.CertPool
	intermediates *x509.CertPool
	now           func() time.Time
}

// VerifierOption configures an X509Verifier.
type VerifierOption func(*X509Verifier)

// WithClock makes the verifier check validity dates at now() instead of
// the current time (for tests).
func WithClock(now func() time.Time) VerifierOption {
	return func(v *X509Verifier) { v.now = now }
}

// NewVerifier returns a verifier trusting the CERTIFICATE blocks of caPEM
// (at least one is required) as roots and those of intermediatesPEM (may be
// empty) as intermediates. Other PEM block types are ignored.
func NewVerifier(caPEM, intermediatesPEM []byte, opts ...VerifierOption) (*X509Verifier, error) {
	roots, n, err := certPool(caPEM)
	if err != nil {
		return nil, fmt.Errorf("reading CA certificates: %w", err)
	}
	if n == 0 {
		return nil, errors.New("reading CA certificates: no PEM CERTIFICATE block")
	}
	intermediates, _, err := certPool(intermediatesPEM)
	if err != nil {
		return nil, fmt.Errorf("reading intermediate certificates: %w", err)
	}
	v := &X509Verifier{roots: roots, intermediates: intermediates, now: time.Now}
	for _, opt := range opts {
		opt(v)
	}
	if v.now == nil {
		v.now = time.Now
	}
	return v, nil
}

func certPool(pemBytes []byte) (*x509.CertPool, int, error) {
	pool := x509.NewCertPool()
	n := 0
	for {
		var block *pem.Block
		block, pemBytes = pem.Decode(pemBytes)
		if block == nil {
			return pool, n, nil
		}
		if block.Type != "CERTIFICATE" {
			continue
		}
		cert, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, 0, fmt.Errorf("certificate %d: %w", n+1, err)
		}
		pool.AddCert(cert)
		n++
	}
}

// Verify implements Verifier.
func (v *X509Verifier) Verify(cert *x509.Certificate) error {
	if cert == nil {
		return fail(ErrNoIdentity, nil)
	}
	_, err := cert.Verify(x509.VerifyOptions{
		Roots:         v.roots,
		Intermediates: v.intermediates,
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		CurrentTime:   v.now(),
	})
	if err == nil {
		return nil
	}
	var invalid x509.CertificateInvalidError
	if errors.As(err, &invalid) {
		switch invalid.Reason {
		case x509.Expired:
			return fail(ErrExpired, err)
		case x509.IncompatibleUsage:
			return fail(ErrKeyUsage, err)
		}
	}
	return fail(ErrUntrusted, err)
}

// CertHash returns the lower-case hex SHA-256 of the certificate's DER: the
// hash cert-auth associates with an enrollment.
func CertHash(cert *x509.Certificate) string {
	sum := sha256.Sum256(cert.Raw)
	return hex.EncodeToString(sum[:])
}

type certContextKey struct{}

// NewContext returns a copy of ctx carrying the request's verified identity
// certificate.
func NewContext(ctx context.Context, cert *x509.Certificate) context.Context {
	return context.WithValue(ctx, certContextKey{}, cert)
}

// FromContext returns the verified identity certificate NewContext stored
// in ctx, if any.
func FromContext(ctx context.Context) (*x509.Certificate, bool) {
	cert, ok := ctx.Value(certContextKey{}).(*x509.Certificate)
	return cert, ok && cert != nil
}
