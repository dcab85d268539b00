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
//
// A successful verification is remembered (see WithVerifyCache), as it is
// a pure function of the certificate, the CA pools and the time: devices
// present the same certificate on every request, and its chain need not be
// rebuilt and its signatures checked again each time. Failures are never
// remembered.
type X509Verifier struct {
	roots         *x509.CertPool
	intermediates *x509.CertPool
	now           func() time.Time
	cacheTTL      time.Duration
	cacheSize     int
	verified      *boundedCache[verification]
}

// verification is a remembered successful Verify: it holds from at (the
// time it was made, after every NotBefore of the chain) to until (the
// earliest of at plus the cache TTL and every NotAfter of the chain).
type verification struct {
	at, until time.Time
}

// Defaults of WithVerifyCache.
const (
	// DefaultVerifyCacheTTL is how long a successful verification is
	// remembered at most.
	DefaultVerifyCacheTTL = time.Minute
	// DefaultVerifyCacheSize is how many certificates' verifications are
	// remembered at most (about 100 bytes each). Only certificates that
	// verified are remembered, so only the CA's can fill it.
	DefaultVerifyCacheSize = 65536
)

// VerifierOption configures an X509Verifier.
type VerifierOption func(*X509Verifier)

// WithClock makes the verifier check validity dates at now() instead of
// the current time (for tests).
func WithClock(now func() time.Time) VerifierOption {
	return func(v *X509Verifier) { v.now = now }
}

// WithVerifyCache sets how long (ttl) a successful verification of a
// certificate is remembered, and for how many certificates (size) at
// most; the defaults are DefaultVerifyCacheTTL and DefaultVerifyCacheSize.
// A remembered verification never outlives the validity of the chain it
// was made with. A ttl or size of 0 or less turns the cache off: every
// Verify builds and checks the chain.
func WithVerifyCache(ttl time.Duration, size int) VerifierOption {
	return func(v *X509Verifier) { v.cacheTTL, v.cacheSize = ttl, size }
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
	v := &X509Verifier{
		roots:         roots,
		intermediates: intermediates,
		now:           time.Now,
		cacheTTL:      DefaultVerifyCacheTTL,
		cacheSize:     DefaultVerifyCacheSize,
	}
	for _, opt := range opts {
		opt(v)
	}
	if v.now == nil {
		v.now = time.Now
	}
	if v.cacheTTL > 0 && v.cacheSize > 0 {
		v.verified = newBoundedCache[verification](v.cacheSize)
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
	now := v.now()
	if v.verified == nil {
		_, err := v.verify(cert, now)
		return err
	}
	key := sha256.Sum256(cert.Raw)
	if hit, ok := v.verified.get(key); ok {
		// Within [at, until] every certificate of the chain is within its
		// validity dates, as x509 checks them (NotBefore <= now <=
		// NotAfter). Outside it (or with a clock that went back) the
		// chain is verified afresh.
		if !now.Before(hit.at) && !now.After(hit.until) {
			return nil
		}
		v.verified.delete(key)
	}
	chain, err := v.verify(cert, now)
	if err != nil {
		return err
	}
	until := now.Add(v.cacheTTL)
	for _, c := range chain {
		if c.NotAfter.Before(until) {
			until = c.NotAfter
		}
	}
	v.verified.put(key, verification{at: now, until: until}, 1)
	return nil
}

// verify checks cert's chain at now and returns the chain it verified
// through.
func (v *X509Verifier) verify(cert *x509.Certificate, now time.Time) ([]*x509.Certificate, error) {
	chains, err := cert.Verify(x509.VerifyOptions{
		Roots:         v.roots,
		Intermediates: v.intermediates,
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		CurrentTime:   now,
	})
	if err == nil {
		if len(chains) == 0 { // cannot happen: x509 returns an error instead
			return nil, fail(ErrUntrusted, errors.New("no chain"))
		}
		return chains[0], nil
	}
	var invalid x509.CertificateInvalidError
	if errors.As(err, &invalid) {
		switch invalid.Reason {
		case x509.Expired:
			return nil, fail(ErrExpired, err)
		case x509.IncompatibleUsage:
			return nil, fail(ErrKeyUsage, err)
		}
	}
	return nil, fail(ErrUntrusted, err)
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
