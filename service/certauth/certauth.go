// Package certauth is the service-chain link that ties a device's identity
// certificate to its enrollment: the certificate's hash is associated with
// the device channel at Authenticate, and every later message must come
// with an associated certificate. It stops one enrolled device from
// speaking for another with its own, valid, certificate.
package certauth

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"

	pmlog "github.com/picomdm/picomdm/log"
	"github.com/picomdm/picomdm/mdm"
	"github.com/picomdm/picomdm/service"
	"github.com/picomdm/picomdm/storage"
)

// Refusals; they map to a 500 for the device (never a 401, which can make a
// device drop its enrollment).
var (
	ErrNoCertificate  = errors.New("certauth: request has no identity certificate")
	ErrHashInUse      = errors.New("certauth: certificate is associated with another enrollment")
	ErrNotAssociated  = errors.New("certauth: certificate is not associated with this enrollment")
	errUnexpectedNext = errors.New("certauth: nil next service")
)

// HashCert returns the lower-case hex SHA-256 of the certificate's DER, the
// hash cert-auth associates.
func HashCert(cert *x509.Certificate) string {
	sum := sha256.Sum256(cert.Raw)
	return hex.EncodeToString(sum[:])
}

// CertAuth wraps the next service with certificate authorization.
type CertAuth struct {
	next   service.CheckinAndCommandService
	store  storage.CertAuthStore
	logger *slog.Logger
	retro  bool
}

// Option configures a CertAuth.
type Option func(*CertAuth)

// WithLogger sets the logger.
func WithLogger(logger *slog.Logger) Option { return func(c *CertAuth) { c.logger = logger } }

// WithRetroactive lets an enrollment that has no association yet (e.g. a
// migrated one) create it with a certificate hash never seen before (the
// -retro flag).
func WithRetroactive() Option { return func(c *CertAuth) { c.retro = true } }

// New wraps next. It panics on nil arguments (a wiring mistake).
func New(next service.CheckinAndCommandService, store storage.CertAuthStore, opts ...Option) *CertAuth {
	if next == nil || store == nil {
		panic(errUnexpectedNext)
	}
	c := &CertAuth{next: next, store: store}
	for _, opt := range opts {
		opt(c)
	}
	c.logger = pmlog.Or(c.logger)
	return c
}

// Authenticate implements service.Checkin. The certificate's association
// is not made here but handed to storage in the request's context
// (storage.WithCertAssociation), which makes it in the same atomic
// operation as StoreAuthenticate: an Authenticate that the rest of the
// chain refuses, or that storage fails to store, leaves no association,
// and one whose certificate another enrollment has is refused by storage
// with nothing written (DESIGN §2). A successful one retires the device's
// earlier certificates.
func (c *CertAuth) Authenticate(r *mdm.Request, msg *mdm.Authenticate) error {
	if r.Certificate == nil {
		c.logger.WarnContext(r.Context, "cert-auth refused: Authenticate has no identity certificate", "enrollment_id", r.ID)
		return ErrNoCertificate
	}
	hash := HashCert(r.Certificate)
	assoc := storage.CertAssociation{Hash: hash, NotAfter: r.Certificate.NotAfter}
	err := c.next.Authenticate(r.Clone(storage.WithCertAssociation(r.Context, assoc)), msg)
	if errors.Is(err, storage.ErrCertHashInUse) {
		c.logger.WarnContext(r.Context, "cert-auth refused: certificate in use by another enrollment", "enrollment_id", r.ID, "cert_hash", hash)
		return fmt.Errorf("%w: %w", ErrHashInUse, err)
	}
	return err
}

// validate runs for every message after Authenticate. With -retro, an
// enrollment that has no association yet may create one with a hash
// nobody has: validate then returns a function that makes it, to be
// called only once the rest of the chain succeeded (a refused request
// leaves nothing behind).
func (c *CertAuth) validate(r *mdm.Request) (associate func() error, err error) {
	if r.Certificate == nil {
		c.logger.WarnContext(r.Context, "cert-auth refused: request has no identity certificate", "enrollment_id", r.ID)
		return nil, ErrNoCertificate
	}
	ctx, id, hash := r.Context, r.DeviceID(), HashCert(r.Certificate)
	ok, err := c.store.IsCertHashAssociated(ctx, id, hash)
	if err != nil {
		return nil, fmt.Errorf("certauth: checking association: %w", err)
	}
	if ok {
		return nil, nil
	}
	if c.retro {
		has, err := c.store.EnrollmentHasCertHash(ctx, id)
		if err != nil {
			return nil, fmt.Errorf("certauth: checking enrollment: %w", err)
		}
		known, err := c.store.HasCertHash(ctx, hash)
		if err != nil {
			return nil, fmt.Errorf("certauth: checking hash: %w", err)
		}
		if !has && !known {
			notAfter := r.Certificate.NotAfter
			return func() error {
				if err := c.store.AssociateCertHash(ctx, id, hash, notAfter); err != nil {
					return fmt.Errorf("certauth: associating retroactively: %w", err)
				}
				c.logger.InfoContext(ctx, "cert-auth: retroactive association", "enrollment_id", id, "cert_hash", hash)
				return nil
			}, nil
		}
	}
	c.logger.WarnContext(ctx, "cert-auth refused: certificate not associated with enrollment", "enrollment_id", r.ID, "cert_hash", hash)
	return nil, ErrNotAssociated
}

// guard runs call after validate, and a retroactive association only
// after call succeeded.
func guard[T any](c *CertAuth, r *mdm.Request, call func() (T, error)) (T, error) {
	var zero T
	associate, err := c.validate(r)
	if err != nil {
		return zero, err
	}
	out, err := call()
	if err != nil || associate == nil {
		return out, err
	}
	if err := associate(); err != nil {
		return zero, err
	}
	return out, nil
}

// guardErr is guard for methods that return only an error.
func guardErr(c *CertAuth, r *mdm.Request, call func() error) error {
	_, err := guard(c, r, func() (struct{}, error) { return struct{}{}, call() })
	return err
}

// TokenUpdate implements service.Checkin.
func (c *CertAuth) TokenUpdate(r *mdm.Request, msg *mdm.TokenUpdate) error {
	return guardErr(c, r, func() error { return c.next.TokenUpdate(r, msg) })
}

// CheckOut implements service.Checkin.
func (c *CertAuth) CheckOut(r *mdm.Request, msg *mdm.CheckOut) error {
	return guardErr(c, r, func() error { return c.next.CheckOut(r, msg) })
}

// UserAuthenticate implements service.Checkin.
func (c *CertAuth) UserAuthenticate(r *mdm.Request, msg *mdm.UserAuthenticate) ([]byte, error) {
	return guard(c, r, func() ([]byte, error) { return c.next.UserAuthenticate(r, msg) })
}

// SetBootstrapToken implements service.Checkin.
func (c *CertAuth) SetBootstrapToken(r *mdm.Request, msg *mdm.SetBootstrapToken) error {
	return guardErr(c, r, func() error { return c.next.SetBootstrapToken(r, msg) })
}

// GetBootstrapToken implements service.Checkin.
func (c *CertAuth) GetBootstrapToken(r *mdm.Request, msg *mdm.GetBootstrapToken) (*mdm.BootstrapToken, error) {
	return guard(c, r, func() (*mdm.BootstrapToken, error) { return c.next.GetBootstrapToken(r, msg) })
}

// DeclarativeManagement implements service.Checkin.
func (c *CertAuth) DeclarativeManagement(r *mdm.Request, msg *mdm.DeclarativeManagement) ([]byte, error) {
	return guard(c, r, func() ([]byte, error) { return c.next.DeclarativeManagement(r, msg) })
}

// GetToken implements service.Checkin.
func (c *CertAuth) GetToken(r *mdm.Request, msg *mdm.GetToken) (*mdm.GetTokenResponse, error) {
	return guard(c, r, func() (*mdm.GetTokenResponse, error) { return c.next.GetToken(r, msg) })
}

// CommandAndReportResults implements service.CommandAndReportResults.
func (c *CertAuth) CommandAndReportResults(r *mdm.Request, results *mdm.CommandResults) (*mdm.Command, error) {
	return guard(c, r, func() (*mdm.Command, error) { return c.next.CommandAndReportResults(r, results) })
}
