// Package multi is the service-chain link that fans a request out to
// several services: the first one's answer goes to the device; the others
// (webhook, …) run afterwards, off the device's request, each with a
// timeout, and their errors are only logged. A request the first service
// refuses or fails goes no further: the others only ever hear of requests
// that succeeded, so a refused Authenticate emits no webhook event.
package multi

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"sync"
	"time"

	pmlog "github.com/picomdm/picomdm/log"
	"github.com/picomdm/picomdm/mdm"
	"github.com/picomdm/picomdm/service"
)

// DefaultTimeout bounds how long each other service may run per request.
const DefaultTimeout = 30 * time.Second

// Multi calls the first service and then, when it succeeded, the others.
type Multi struct {
	first   service.CheckinAndCommandService
	others  []service.CheckinAndCommandService
	logger  *slog.Logger
	timeout time.Duration
	wg      sync.WaitGroup
}

// Option configures a Multi.
type Option func(*Multi)

// WithLogger sets the logger the others' errors go to.
func WithLogger(logger *slog.Logger) Option { return func(m *Multi) { m.logger = logger } }

// WithTimeout bounds each other service's run.
func WithTimeout(d time.Duration) Option { return func(m *Multi) { m.timeout = d } }

// New returns a Multi answering with first and running others after it.
func New(first service.CheckinAndCommandService, others []service.CheckinAndCommandService, opts ...Option) *Multi {
	if first == nil {
		panic("multi: nil first service")
	}
	m := &Multi{first: first, others: others, timeout: DefaultTimeout}
	for _, opt := range opts {
		opt(m)
	}
	m.logger = pmlog.Or(m.logger)
	return m
}

// Wait blocks until every background run started so far has finished (for
// graceful shutdown and tests).
func (m *Multi) Wait() { m.wg.Wait() }

// Queuer is implemented by other services that only put work on their
// own bounded queue and never block (the webhook). Multi calls them in the
// request's goroutine, so one enrollment's events reach their queue in the
// order its requests were answered; goroutines started per request could
// swap two quick requests.
type Queuer interface {
	// QueuesOnly reports that every method returns at once.
	QueuesOnly() bool
}

// runOthers runs call against every other service, unless firstErr says
// the first service refused or failed the request: queuers right away, the
// rest in the background, with a context detached from the device's
// request (which ends when we answer) but bounded by the timeout.
func (m *Multi) runOthers(r *mdm.Request, firstErr error, what string, call func(service.CheckinAndCommandService, *mdm.Request) error) {
	if firstErr != nil || len(m.others) == 0 {
		return
	}
	base := context.WithoutCancel(r.Context)
	for _, svc := range m.others {
		if q, ok := svc.(Queuer); ok && q.QueuesOnly() {
			if err := call(svc, r.Clone(base)); err != nil {
				m.logger.WarnContext(base, "secondary service failed", "message", what, "err", err)
			}
			continue
		}
		m.wg.Add(1)
		go func() {
			defer m.wg.Done()
			ctx, cancel := context.WithTimeout(base, m.timeout)
			defer cancel()
			if err := call(svc, r.Clone(ctx)); err != nil {
				m.logger.WarnContext(ctx, "secondary service failed", "message", what, "err", err)
			}
		}()
	}
}

// Authenticate implements service.Checkin.
func (m *Multi) Authenticate(r *mdm.Request, msg *mdm.Authenticate) error {
	err := m.first.Authenticate(r, msg)
	m.runOthers(r, err, msg.MessageType.MessageType, func(s service.CheckinAndCommandService, r *mdm.Request) error {
		return s.Authenticate(r, msg)
	})
	return err
}

// TokenUpdate implements service.Checkin.
func (m *Multi) TokenUpdate(r *mdm.Request, msg *mdm.TokenUpdate) error {
	err := m.first.TokenUpdate(r, msg)
	m.runOthers(r, err, msg.MessageType.MessageType, func(s service.CheckinAndCommandService, r *mdm.Request) error {
		return s.TokenUpdate(r, msg)
	})
	return err
}

// CheckOut implements service.Checkin.
func (m *Multi) CheckOut(r *mdm.Request, msg *mdm.CheckOut) error {
	err := m.first.CheckOut(r, msg)
	m.runOthers(r, err, msg.MessageType.MessageType, func(s service.CheckinAndCommandService, r *mdm.Request) error {
		return s.CheckOut(r, msg)
	})
	return err
}

// refusal is err unless it is the 410 with which the first service
// declines a user channel (UserAuthenticate): that is the protocol's
// answer to an authenticated request, not a refusal, and the others hear
// of it as NanoMDM's webhook does.
func refusal(err error) error {
	if se, ok := errors.AsType[*service.StatusError](err); ok && se.Status == http.StatusGone {
		return nil
	}
	return err
}

// UserAuthenticate implements service.Checkin.
func (m *Multi) UserAuthenticate(r *mdm.Request, msg *mdm.UserAuthenticate) ([]byte, error) {
	out, err := m.first.UserAuthenticate(r, msg)
	m.runOthers(r, refusal(err), msg.MessageType.MessageType, func(s service.CheckinAndCommandService, r *mdm.Request) error {
		_, err := s.UserAuthenticate(r, msg)
		return err
	})
	return out, err
}

// SetBootstrapToken implements service.Checkin.
func (m *Multi) SetBootstrapToken(r *mdm.Request, msg *mdm.SetBootstrapToken) error {
	err := m.first.SetBootstrapToken(r, msg)
	m.runOthers(r, err, msg.MessageType.MessageType, func(s service.CheckinAndCommandService, r *mdm.Request) error {
		return s.SetBootstrapToken(r, msg)
	})
	return err
}

// GetBootstrapToken implements service.Checkin.
func (m *Multi) GetBootstrapToken(r *mdm.Request, msg *mdm.GetBootstrapToken) (*mdm.BootstrapToken, error) {
	tok, err := m.first.GetBootstrapToken(r, msg)
	m.runOthers(r, err, msg.MessageType.MessageType, func(s service.CheckinAndCommandService, r *mdm.Request) error {
		_, err := s.GetBootstrapToken(r, msg)
		return err
	})
	return tok, err
}

// DeclarativeManagement implements service.Checkin.
func (m *Multi) DeclarativeManagement(r *mdm.Request, msg *mdm.DeclarativeManagement) ([]byte, error) {
	out, err := m.first.DeclarativeManagement(r, msg)
	m.runOthers(r, err, msg.MessageType.MessageType, func(s service.CheckinAndCommandService, r *mdm.Request) error {
		_, err := s.DeclarativeManagement(r, msg)
		return err
	})
	return out, err
}

// GetToken implements service.Checkin.
func (m *Multi) GetToken(r *mdm.Request, msg *mdm.GetToken) (*mdm.GetTokenResponse, error) {
	tok, err := m.first.GetToken(r, msg)
	m.runOthers(r, err, msg.MessageType.MessageType, func(s service.CheckinAndCommandService, r *mdm.Request) error {
		_, err := s.GetToken(r, msg)
		return err
	})
	return tok, err
}

// ReportPreparer is implemented by other services that want to hand
// something to the first service's storage with a command report, such
// as the webhook's event, which a store writes in the report's own
// transaction (storage.PendingEvent). Multi calls PrepareReport before
// the first service and passes the request it returns to every service.
type ReportPreparer interface {
	PrepareReport(r *mdm.Request, results *mdm.CommandResults) *mdm.Request
}

// CommandAndReportResults implements service.CommandAndReportResults.
func (m *Multi) CommandAndReportResults(r *mdm.Request, results *mdm.CommandResults) (*mdm.Command, error) {
	for _, svc := range m.others {
		if p, ok := svc.(ReportPreparer); ok {
			r = p.PrepareReport(r, results)
		}
	}
	cmd, err := m.first.CommandAndReportResults(r, results)
	m.runOthers(r, err, "report "+results.Status, func(s service.CheckinAndCommandService, r *mdm.Request) error {
		_, err := s.CommandAndReportResults(r, results)
		return err
	})
	return cmd, err
}
