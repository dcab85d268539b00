// Package mdm serves the device side of Apple's MDM protocol: the check-in
// and command endpoints devices PUT their plists to. A handler only adapts:
// it reads the body, establishes and verifies the device's identity
// certificate, builds an mdm.Request and hands the body to the service
// chain, then writes the bytes the chain answers with (or a bare status).
package mdm

import (
	"bytes"
	"crypto/x509"
	"io"
	"log/slog"
	"net/http"
	"strings"

	picohttp "github.com/picomdm/picomdm/http"
	"github.com/picomdm/picomdm/http/auth"
	"github.com/picomdm/picomdm/http/observe"
	"github.com/picomdm/picomdm/mdm"
	"github.com/picomdm/picomdm/service"
)

// CheckinContentType is the Content-Type prefix of check-in requests, from
// Apple's check-in protocol; any other request to /mdm is a command report.
const CheckinContentType = "application/x-apple-aspen-mdm-checkin"

// Option configures a device handler.
type Option func(*config)

type config struct {
	certHeader string
	verifier   auth.Verifier
	maxBody    int64
	logger     *slog.Logger
}

// WithCertHeader takes the identity certificate from header name (set by a
// TLS-terminating proxy; see auth.HeaderCert for the accepted forms)
// instead of the Mdm-Signature header. An empty name keeps Mdm-Signature.
func WithCertHeader(name string) Option {
	return func(c *config) { c.certHeader = name }
}

// WithVerifier sets the verifier every identity certificate must pass. It
// is required: building a handler without one panics.
func WithVerifier(v auth.Verifier) Option {
	return func(c *config) { c.verifier = v }
}

// WithMaxBodySize limits request bodies to n bytes (larger ones get 413);
// 0 or less means picohttp.DefaultMaxBodySize (10 MiB).
func WithMaxBodySize(n int64) Option {
	return func(c *config) { c.maxBody = n }
}

// WithLogger sets the logger failed requests are logged to; nil means
// slog.Default().
func WithLogger(logger *slog.Logger) Option {
	return func(c *config) { c.logger = logger }
}

func newConfig(opts []Option) *config {
	c := new(config)
	for _, opt := range opts {
		opt(c)
	}
	if c.verifier == nil {
		panic("http/mdm: no Verifier (use WithVerifier)")
	}
	if v, ok := c.verifier.(*auth.X509Verifier); ok && v == nil {
		panic("http/mdm: nil *auth.X509Verifier")
	}
	if c.maxBody <= 0 {
		c.maxBody = picohttp.DefaultMaxBodySize
	}
	if c.logger == nil {
		c.logger = slog.Default()
	}
	return c
}

// identity returns the request's identity certificate, verified.
func (c *config) identity(r *http.Request, body []byte) (*x509.Certificate, error) {
	return c.verified(r, func(header string) (*x509.Certificate, error) {
		return auth.SignatureCert(header, body)
	})
}

// verified takes the certificate from the cert header, or else from the
// Mdm-Signature header with fromSignature, and passes it to the verifier.
func (c *config) verified(r *http.Request, fromSignature func(header string) (*x509.Certificate, error)) (*x509.Certificate, error) {
	var (
		cert *x509.Certificate
		err  error
	)
	if c.certHeader != "" {
		cert, err = auth.HeaderCert(r.Header.Get(c.certHeader))
	} else {
		cert, err = fromSignature(r.Header.Get(auth.SignatureHeader))
	}
	if err != nil {
		return nil, err
	}
	if err := c.verifier.Verify(cert); err != nil {
		return nil, err
	}
	return cert, nil
}

// readBody reads r's body; one larger than picohttp.PreAuthBodySize only
// once the identity the headers claim has passed the verifier (the
// signature itself needs the whole body and is checked by identity).
func (c *config) readBody(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	return picohttp.ReadBodyAuthenticated(w, r, c.maxBody, func() error {
		_, err := c.verified(r, auth.SignatureSigner)
		return err
	})
}

// dispatchFunc hands a request body to the service chain and returns the
// bytes to answer with.
type dispatchFunc func(req *mdm.Request, r *http.Request, body []byte) ([]byte, error)

type handler struct {
	*config
	dispatch dispatchFunc
}

func newHandler(dispatch dispatchFunc, opts []Option) *handler {
	return &handler{config: newConfig(opts), dispatch: dispatch}
}

// ServeHTTP answers 200 with the service chain's bytes (an empty body when
// there are none, e.g. an empty queue), or a bare error status. Once the
// enrollment is resolved, every line logged for the request names it
// (enrollment_id), the failure line and Trace's closing line included.
func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	resp, req, err := h.serve(w, r)
	ctx := r.Context()
	if req != nil && req.EnrollID != nil {
		// The dispatch added the enrollment (and command UUID) to the
		// request's log attributes once it resolved them.
		ctx = req.Context
		observe.NoteEnrollmentID(r.Context(), req.ID)
	}
	if err != nil {
		picohttp.WriteDeviceError(w, r.WithContext(ctx), h.logger, err)
		return
	}
	if len(resp) == 0 {
		w.WriteHeader(http.StatusOK)
		return
	}
	w.Header().Set("Content-Type", contentType(resp))
	w.WriteHeader(http.StatusOK)
	if _, err := w.Write(resp); err != nil {
		h.logger.DebugContext(ctx, "writing mdm response", "err", err)
	}
}

// serve reads and authenticates the request and hands it to the service
// chain. The mdm.Request it returns (nil when the request failed before
// one was built) carries what the dispatch resolved: the enrollment ID and
// the log attributes naming it.
func (h *handler) serve(w http.ResponseWriter, r *http.Request) ([]byte, *mdm.Request, error) {
	body, err := h.readBody(w, r)
	if err != nil {
		return nil, nil, err
	}
	cert, err := h.identity(r, body)
	if err != nil {
		return nil, nil, err
	}
	req := mdm.NewRequest(auth.NewContext(r.Context(), cert), cert)
	req.Params = picohttp.URLParams(r)
	resp, err := h.dispatch(req, r, body)
	return resp, req, err
}

// isCheckin reports whether r is a check-in request by its Content-Type
// (media types are case-insensitive).
func isCheckin(r *http.Request) bool {
	ct := r.Header.Get("Content-Type")
	return len(ct) >= len(CheckinContentType) && strings.EqualFold(ct[:len(CheckinContentType)], CheckinContentType)
}

// CheckinAndCommandHandler serves /mdm when check-ins and command reports
// share it: a request whose Content-Type starts with CheckinContentType is
// a check-in, anything else a command report. It panics without a
// Verifier.
func CheckinAndCommandHandler(svc service.CheckinAndCommandService, opts ...Option) http.Handler {
	if svc == nil {
		panic("http/mdm: nil service")
	}
	return newHandler(func(req *mdm.Request, r *http.Request, body []byte) ([]byte, error) {
		if isCheckin(r) {
			return service.CheckinRequest(svc, req, body)
		}
		return service.CommandReportRequest(svc, req, body)
	}, opts)
}

// CheckinHandler serves a dedicated check-in endpoint (/checkin with the
// -checkin flag): every request is a check-in, whatever its Content-Type.
// It panics without a Verifier.
func CheckinHandler(svc service.Checkin, opts ...Option) http.Handler {
	if svc == nil {
		panic("http/mdm: nil service")
	}
	return newHandler(func(req *mdm.Request, _ *http.Request, body []byte) ([]byte, error) {
		return service.CheckinRequest(svc, req, body)
	}, opts)
}

// CommandHandler serves /mdm when check-ins have their own endpoint (the
// -checkin flag): every request is a command report, whatever its
// Content-Type. It panics without a Verifier.
func CommandHandler(svc service.CommandAndReportResults, opts ...Option) http.Handler {
	if svc == nil {
		panic("http/mdm: nil service")
	}
	return newHandler(func(req *mdm.Request, _ *http.Request, body []byte) ([]byte, error) {
		return service.CommandReportRequest(svc, req, body)
	}, opts)
}

// CertMiddleware verifies the identity of every request the way the device
// handlers do and puts the certificate in the request context (see
// auth.FromContext) before calling next; a request that fails gets the
// device-path error status (400 for an identity problem). The body is
// read to check an Mdm-Signature and handed on to next intact. Useful for
// device-authenticated endpoints such as an auth proxy. It panics without a
// Verifier.
func CertMiddleware(next http.Handler, opts ...Option) http.Handler {
	c := newConfig(opts)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := c.readBody(w, r)
		if err != nil {
			picohttp.WriteDeviceError(w, r, c.logger, err)
			return
		}
		cert, err := c.identity(r, body)
		if err != nil {
			picohttp.WriteDeviceError(w, r, c.logger, err)
			return
		}
		r = r.WithContext(auth.NewContext(r.Context(), cert))
		r.Body = io.NopCloser(bytes.NewReader(body))
		r.ContentLength = int64(len(body))
		next.ServeHTTP(w, r)
	})
}

// contentType labels an answer: Declarative Management answers are JSON,
// everything else (commands, tokens, digest challenges) a plist.
func contentType(body []byte) string {
	for _, c := range body {
		switch c {
		case ' ', '\t', '\r', '\n':
			continue
		case '{', '[':
			return "application/json"
		}
		break
	}
	return "application/xml"
}
