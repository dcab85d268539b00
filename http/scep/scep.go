// Package scep serves the built-in SCEP CA at /scep (RFC 8894): the
// operations GetCACaps, GetCACert and PKIOperation, by GET and POST, as
// Apple devices use them while installing an enrollment profile's SCEP
// payload. The protocol — decrypting the request, checking its
// signature, the CertRep answer — is github.com/micromdm/scep/v2's
// server (scepserver.Service); this package is its HTTP binding: it bounds
// what an unauthenticated client may send before anything is decoded,
// answers a request that does not decode with 400 (never the library's
// error text), and logs through slog.
package scep

import (
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"

	scepserver "github.com/micromdm/scep/v2/server"

	pmlog "github.com/picomdm/picomdm/log"
	"github.com/picomdm/picomdm/service/scepca"
)

// Path is where the SCEP endpoint is served.
const Path = "/scep"

// MaxMessageBytes bounds a PKIOperation message (a POST body, or a GET's
// message parameter decoded): a CSR wrapped in two CMS layers is a few
// KiB.
const MaxMessageBytes = 64 << 10

// Caps is the GetCACaps answer (RFC 8894 §3.5.2): what this CA does.
// Renewal is not offered: every request must carry a challenge, and a
// renewal request carries none.
const Caps = "POSTPKIOperation\nSHA-256\nSHA-512\nAES\nSCEPStandard"

// The media types of the answers (RFC 8894 §4).
const (
	contentCACert     = "application/x-x509-ca-cert"
	contentCAChain    = "application/x-x509-ca-ra-cert"
	contentPKIMessage = "application/x-pki-message"
)

// Option configures the handler.
type Option func(*config)

type config struct{ logger *slog.Logger }

// WithLogger sets the logger.
func WithLogger(logger *slog.Logger) Option { return func(c *config) { c.logger = logger } }

// handler binds a scepserver.Service to HTTP.
type handler struct {
	svc    scepserver.Service
	logger *slog.Logger
}

// New returns the /scep handler issuing through issuer.
func New(issuer *scepca.Issuer, opts ...Option) (http.Handler, error) {
	var c config
	for _, opt := range opts {
		opt(&c)
	}
	logger := pmlog.Or(c.logger)
	ca := issuer.CA()
	svc, err := scepserver.NewService(ca.Cert, ca.Key, issuer, scepserver.WithLogger(kitLogger{logger: logger}))
	if err != nil {
		return nil, fmt.Errorf("scep service: %w", err)
	}
	return &handler{svc: svc, logger: logger}, nil
}

// errBadMessage is the answer to a PKIOperation message that is not one.
var errBadMessage = errors.New("invalid SCEP message")

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodPost {
		w.Header().Set("Allow", "GET, POST")
		h.fail(w, r, http.StatusMethodNotAllowed, "method not allowed", fmt.Errorf("method %s", r.Method))
		return
	}
	ctx := r.Context()
	switch op := r.URL.Query().Get("operation"); op {
	case "GetCACaps":
		w.Header().Set("Content-Type", "text/plain")
		io.WriteString(w, Caps)
	case "GetCACert":
		cert, n, err := h.svc.GetCACert(ctx, "")
		if err != nil {
			h.fail(w, r, http.StatusInternalServerError, "internal error", err)
			return
		}
		ct := contentCACert
		if n > 1 {
			ct = contentCAChain
		}
		w.Header().Set("Content-Type", ct)
		w.Write(cert)
	case "PKIOperation":
		msg, status, err := message(w, r)
		if err != nil {
			h.fail(w, r, status, http.StatusText(status), err)
			return
		}
		// The library's errors are about the message (undecodable, not
		// encrypted to this CA, a bad signature): a request the CA
		// refuses (a bad challenge, say) is no error but a CertRep
		// FAILURE, which the device understands.
		rep, err := h.svc.PKIOperation(ctx, msg)
		if err != nil {
			h.fail(w, r, http.StatusBadRequest, errBadMessage.Error(), err)
			return
		}
		w.Header().Set("Content-Type", contentPKIMessage)
		w.Write(rep)
	default:
		h.fail(w, r, http.StatusBadRequest, "unknown SCEP operation", fmt.Errorf("operation %q", clip(op)))
	}
}

// message reads a PKIOperation's message: a POST's body, or a GET's
// base64 message parameter, at most MaxMessageBytes.
func message(w http.ResponseWriter, r *http.Request) ([]byte, int, error) {
	if r.Method == http.MethodPost {
		if r.ContentLength > MaxMessageBytes {
			return nil, http.StatusRequestEntityTooLarge, fmt.Errorf("message of %d bytes", r.ContentLength)
		}
		b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxMessageBytes))
		var tooLarge *http.MaxBytesError
		switch {
		case errors.As(err, &tooLarge):
			return nil, http.StatusRequestEntityTooLarge, err
		case err != nil:
			return nil, http.StatusBadRequest, fmt.Errorf("reading message: %w", err)
		}
		return b, 0, nil
	}
	text := r.URL.Query().Get("message")
	if base64.StdEncoding.DecodedLen(len(text)) > MaxMessageBytes {
		return nil, http.StatusRequestEntityTooLarge, fmt.Errorf("message of %d base64 bytes", len(text))
	}
	// Clients differ in padding and alphabet; a '+' may arrive as ' '.
	text = strings.ReplaceAll(text, " ", "+")
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if b, err := enc.DecodeString(text); err == nil {
			return b, 0, nil
		}
	}
	return nil, http.StatusBadRequest, errors.New("message parameter is not base64")
}

// fail logs err and answers status with a fixed text (never err's: it may
// describe internals to an unauthenticated client).
func (h *handler) fail(w http.ResponseWriter, r *http.Request, status int, text string, err error) {
	level := slog.LevelWarn
	if status >= 500 {
		level = slog.LevelError
	}
	h.logger.Log(r.Context(), level, "scep: request refused", "status", status, "err", err)
	http.Error(w, text, status)
}

// kitLogger writes the go-kit key-value log lines of the SCEP library to
// slog at debug level (its own failures reach the Issuer's log too).
type kitLogger struct{ logger *slog.Logger }

// Log implements go-kit's log.Logger, which scepserver.WithLogger takes.
func (k kitLogger) Log(keyvals ...any) error {
	k.logger.Debug("scep library", keyvals...)
	return nil
}

// clip shortens a client-supplied string for a log line.
func clip(s string) string {
	if len(s) > 64 {
		return s[:64] + "…"
	}
	return s
}
