// Package core is the innermost link of the service chain: it turns
// check-in messages and command reports into storage operations and picks
// the next command for a device, following Apple's check-in and command
// protocols.
package core

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"

	"github.com/micromdm/plist"
	pmlog "github.com/picomdm/picomdm/log"
	"github.com/picomdm/picomdm/mdm"
	"github.com/picomdm/picomdm/service"
	"github.com/picomdm/picomdm/storage"
)

// DeclarativeManagementHandler answers DeclarativeManagement check-ins
// (e.g. by forwarding them to a DDM server).
type DeclarativeManagementHandler interface {
	DeclarativeManagement(r *mdm.Request, msg *mdm.DeclarativeManagement) ([]byte, error)
}

// GetTokenHandler answers GetToken check-ins.
type GetTokenHandler interface {
	GetToken(r *mdm.Request, msg *mdm.GetToken) (*mdm.GetTokenResponse, error)
}

// Errors for messages the server was not set up to answer; they map to a
// 500 for the device, as Apple's protocol has no better answer.
var (
	ErrNoDeclarativeManagement = errors.New("declarative management is not configured")
	ErrNoGetToken              = errors.New("no GetToken handler is configured")
)

// Service is the core service. Its zero value is not usable: build it with
// New.
type Service struct {
	store  storage.Store
	logger *slog.Logger

	userAuthZeroLengthChallenge bool
	dm                          DeclarativeManagementHandler
	getToken                    GetTokenHandler
}

// Option configures a Service.
type Option func(*Service)

// WithLogger sets the logger.
func WithLogger(logger *slog.Logger) Option { return func(s *Service) { s.logger = logger } }

// WithUserAuthenticateZeroLengthDigestChallenge answers the first
// UserAuthenticate (no DigestResponse) with an empty DigestChallenge (the
// -ua-zl-dc flag) instead of declining it with a 410. The second one, with
// a DigestResponse, is accepted either way.
func WithUserAuthenticateZeroLengthDigestChallenge() Option {
	return func(s *Service) { s.userAuthZeroLengthChallenge = true }
}

// WithDeclarativeManagement sets the handler for DeclarativeManagement
// check-ins.
func WithDeclarativeManagement(h DeclarativeManagementHandler) Option {
	return func(s *Service) { s.dm = h }
}

// WithGetToken sets the handler for GetToken check-ins.
func WithGetToken(h GetTokenHandler) Option { return func(s *Service) { s.getToken = h } }

// New returns the core service over store. It panics on a nil store, so a
// wiring mistake fails at start-up, not at the first request.
func New(store storage.Store, opts ...Option) *Service {
	if store == nil {
		panic("core: nil store")
	}
	s := &Service{store: store}
	for _, opt := range opts {
		opt(s)
	}
	s.logger = pmlog.Or(s.logger)
	return s
}

// Authenticate stores the device and resets it for a fresh enrollment.
func (s *Service) Authenticate(r *mdm.Request, msg *mdm.Authenticate) error {
	if r.Type != mdm.Device && r.Type != mdm.UserEnrollmentDevice {
		return fmt.Errorf("authenticate on a %s channel", r.Type)
	}
	if err := s.store.StoreAuthenticate(r, msg); err != nil {
		return fmt.Errorf("storing authenticate: %w", err)
	}
	return nil
}

// TokenUpdate stores the channel's push token and enables it.
func (s *Service) TokenUpdate(r *mdm.Request, msg *mdm.TokenUpdate) error {
	if err := s.store.StoreTokenUpdate(r, msg); err != nil {
		return fmt.Errorf("storing token update: %w", err)
	}
	return nil
}

// CheckOut disables the enrollment (and a device's user channels).
func (s *Service) CheckOut(r *mdm.Request, msg *mdm.CheckOut) error {
	if err := s.store.Disable(r); err != nil {
		return fmt.Errorf("disabling enrollment: %w", err)
	}
	return nil
}

// userAuthDecline is the 410 Apple's protocol uses to decline a user
// channel for a network user.
var userAuthDecline = service.NewStatusError(http.StatusGone, errors.New("user channel declined (UserAuthenticate)"))

// UserAuthenticate answers Apple's UserAuthenticate check-in. The second
// message of the exchange, the one carrying a DigestResponse, is stored
// and answered with an empty 200 whatever the configuration, as NanoMDM
// does. The first one (no DigestResponse) is declined with a 410 unless
// the zero-length digest challenge flow is on: then it is stored and
// answered with an empty DigestChallenge.
func (s *Service) UserAuthenticate(r *mdm.Request, msg *mdm.UserAuthenticate) ([]byte, error) {
	if msg.DigestResponse == "" && !s.userAuthZeroLengthChallenge {
		return nil, userAuthDecline
	}
	if err := s.store.StoreUserAuthenticate(r, msg); err != nil {
		return nil, fmt.Errorf("storing user authenticate: %w", err)
	}
	if msg.DigestResponse != "" {
		return nil, nil
	}
	out, err := plist.Marshal(struct{ DigestChallenge string }{""})
	if err != nil {
		return nil, fmt.Errorf("encoding digest challenge: %w", err)
	}
	return out, nil
}

// SetBootstrapToken escrows the device's bootstrap token.
func (s *Service) SetBootstrapToken(r *mdm.Request, msg *mdm.SetBootstrapToken) error {
	if err := s.store.StoreBootstrapToken(r, msg); err != nil {
		return fmt.Errorf("storing bootstrap token: %w", err)
	}
	return nil
}

// GetBootstrapToken returns the escrowed bootstrap token, or nil.
func (s *Service) GetBootstrapToken(r *mdm.Request, msg *mdm.GetBootstrapToken) (*mdm.BootstrapToken, error) {
	tok, err := s.store.RetrieveBootstrapToken(r, msg)
	if err != nil {
		return nil, fmt.Errorf("retrieving bootstrap token: %w", err)
	}
	return tok, nil
}

// DeclarativeManagement hands the message to the configured handler.
func (s *Service) DeclarativeManagement(r *mdm.Request, msg *mdm.DeclarativeManagement) ([]byte, error) {
	if s.dm == nil {
		return nil, ErrNoDeclarativeManagement
	}
	return s.dm.DeclarativeManagement(r, msg)
}

// GetToken hands the message to the configured handler.
func (s *Service) GetToken(r *mdm.Request, msg *mdm.GetToken) (*mdm.GetTokenResponse, error) {
	if s.getToken == nil {
		return nil, ErrNoGetToken
	}
	return s.getToken.GetToken(r, msg)
}

// CommandAndReportResults stores the report, then returns the next command.
// Right after a NotNow, NotNow'd commands are skipped for the rest of the
// exchange; the next Idle makes them eligible again (storage keeps that
// deferral, so any replica may serve the next request). A store that
// implements storage.CommandReportAndNexter does both in one go (one
// database round trip where it can); any other gets the two calls.
func (s *Service) CommandAndReportResults(r *mdm.Request, results *mdm.CommandResults) (*mdm.Command, error) {
	cmd, err := storage.StoreReportAndRetrieveNext(s.store, r, results)
	if err != nil {
		return nil, fmt.Errorf("command report: %w", err)
	}
	return cmd, nil
}
