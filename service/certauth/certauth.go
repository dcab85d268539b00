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

// associateNew runs at Authenticate: a hash already associated with another
// enrollment is refused; otherwise it is associated with this device. A
// store that implements storage.CertAuthAssociator decides in one round
// trip; any other in two.
func (c *CertAuth) associateNew(r *mdm.Request) error {
	if r.Certificate == nil {
		return ErrNoCertificate
	}
	ctx, id, hash := r.Context, r.DeviceID(), HashCert(r.Certificate)
	ours, err := storage.AssociateNewCertHash(ctx, c.store, id, hash, r.Certificate.NotAfter)
	if err != nil {
		return fmt.Errorf("certauth: %w", err)
	}
	if !ours {
		c.logger.WarnContext(ctx, "cert-auth refused: certificate in use by another enrollment", "enrollment_id", id, "cert_hash", hash)
		return ErrHashInUse
	}
	return nil
}

// validate runs for every message after Authenticate.
func (c *CertAuth) validate(r *mdm.Request) error {
	if r.Certificate == nil {
		return ErrNoCertificate
	}
	ctx, id, hash := r.Context, r.DeviceID(), HashCert(r.Certificate)
	ok, err := c.store.IsCertHashAssociated(ctx, id, hash)
	if err != nil {
		return fmt.Errorf("certauth: checking association: %w", err)
	}
	if ok {
		return nil
	}
	if c.retro {
		has, err := c.store.EnrollmentHasCertHash(ctx, id)
		if err != nil {
			return fmt.Errorf("certauth: checking enrollment: %w", err)
		}
		known, err := c.store.HasCertHash(ctx, hash)
		if err != nil {
			return fmt.Errorf("certauth: checking hash: %w", err)
		}
		if !has && !known {
			if err := c.store.AssociateCertHash(ctx, id, hash, r.Certificate.NotAfter); err != nil {
				return fmt.Errorf("certauth: associating retroactively: %w", err)
			}
			c.logger.InfoContext(ctx, "cert-auth: retroactive association", "enrollment_id", id, "cert_hash", hash)
			return nil
		}
	}
	c.logger.WarnContext(ctx, "cert-auth refused: certificate not associated with enrollment", "enrollment_id", id, "cert_hash", hash)
	return ErrNotAssociated
}

// Authenticate implements service.Checkin.
func (c *CertAuth) Authenticate(r *mdm.Request, msg *mdm.Authenticate) error {
	if err := c.associateNew(r); err != nil {
		return err
	}
	return c.next.Authenticate(r, msg)
}

// TokenUpdate implements service.Checkin.
func (c *CertAuth) TokenUpdate(r *mdm.Request, msg *mdm.TokenUpdate) error {
	if err := c.validate(r); err != nil {
		return err
	}
	return c.next.TokenUpdate(r, msg)
}

// CheckOut implements service.Checkin.
func (c *CertAuth) CheckOut(r *mdm.Request, msg *mdm.CheckOut) error {
	if err := c.validate(r); err != nil {
		return err
	}
	return c.next.CheckOut(r, msg)
}

// UserAuthenticate implements service.Checkin.
func (c *CertAuth) UserAuthenticate(r *mdm.Request, msg *mdm.UserAuthenticate) ([]byte, error) {
	if err := c.validate(r); err != nil {
		return nil, err
	}
	return c.next.UserAuthenticate(r, msg)
}

// SetBootstrapToken implements service.Checkin.
func (c *CertAuth) SetBootstrapToken(r *mdm.Request, msg *mdm.SetBootstrapToken) error {
	if err := c.validate(r); err != nil {
		return err
	}
	return c.next.SetBootstrapToken(r, msg)
}

// GetBootstrapToken implements service.Checkin.
func (c *CertAuth) GetBootstrapToken(r *mdm.Request, msg *mdm.GetBootstrapToken) (*mdm.BootstrapToken, error) {
	if err := c.validate(r); err != nil {
		return nil, err
	}
	return c.next.GetBootstrapToken(r, msg)
}

// DeclarativeManagement implements service.Checkin.
func (c *CertAuth) DeclarativeManagement(r *mdm.Request, msg *mdm.DeclarativeManagement) ([]byte, error) {
	if err := c.validate(r); err != nil {
		return nil, err
	}
	return c.next.DeclarativeManagement(r, msg)
}

// GetToken implements service.Checkin.
func (c *CertAuth) GetToken(r *mdm.Request, msg *mdm.GetToken) (*mdm.GetTokenResponse, error) {
	if err := c.validate(r); err != nil {
		return nil, err
	}
	return c.next.GetToken(r, msg)
}

// CommandAndReportResults implements service.CommandAndReportResults.
func (c *CertAuth) CommandAndReportResults(r *mdm.Request, results *mdm.CommandResults) (*mdm.Command, error) {
	if err := c.validate(r); err != nil {
		return nil, err
	}
	return c.next.CommandAndReportResults(r, results)
}
