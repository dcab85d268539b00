// Package authproxy is the device-authenticated reverse proxy served under
// /authproxy/ (the -auth-proxy-url flag): a device calls it with its MDM
// identity (an Mdm-Signature, or the certificate header a TLS-terminating
// proxy sets), and the request goes on to the target with the enrollment
// ID that identity belongs to, so the upstream service can trust
// X-Enrollment-ID without authenticating devices itself.
//
// The handler sits behind httpmdm.CertMiddleware, which verifies the
// identity certificate (400 when it is missing or invalid) and puts it in
// the request context; this package maps the certificate to its enrollment
// through the cert-auth association.
package authproxy

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"

	picohttp "github.com/picomdm/picomdm/http"
	"github.com/picomdm/picomdm/http/auth"
	"github.com/picomdm/picomdm/service"
	"github.com/picomdm/picomdm/storage"
)

// Headers set on every proxied request; values the device sent for them
// are replaced.
const (
	EnrollmentIDHeader = "X-Enrollment-ID"
	TraceIDHeader      = "X-Trace-ID"
)

// DefaultPathPrefix is stripped from the request path before forwarding.
const DefaultPathPrefix = "/authproxy"

// EnrollmentResolver finds the enrollment a verified identity certificate
// belongs to; storage.CertAuthLookup (implemented by every backend) is one.
type EnrollmentResolver interface {
	// EnrollmentFromCertHash returns the enrollment ID hash (lower-case
	// hex SHA-256 of the certificate DER) is associated with, or an error
	// wrapping storage.ErrNotFound.
	EnrollmentFromCertHash(ctx context.Context, hash string) (string, error)
}

var _ EnrollmentResolver = storage.CertAuthLookup(nil)

// Option configures the proxy.
type Option func(*proxy)

// WithLogger sets the logger; nil means slog.Default().
func WithLogger(logger *slog.Logger) Option {
	return func(p *proxy) { p.logger = logger }
}

// WithTransport sets the transport requests are forwarded with (default
// http.DefaultTransport).
func WithTransport(rt http.RoundTripper) Option {
	return func(p *proxy) { p.transport = rt }
}

// WithPathPrefix sets the prefix stripped from request paths (default
// DefaultPathPrefix); "" strips nothing, for a caller that strips it
// itself.
func WithPathPrefix(prefix string) Option {
	return func(p *proxy) { p.prefix = strings.TrimSuffix(prefix, "/") }
}

type proxy struct {
	target    *url.URL
	resolver  EnrollmentResolver
	logger    *slog.Logger
	transport http.RoundTripper
	prefix    string
	rp        *httputil.ReverseProxy
}

// forwardKey carries what Rewrite needs from ServeHTTP.
type forwardKey struct{}

type forward struct {
	enrollmentID, traceID string
}

// errNoEnrollment is the 403 for a verified certificate that belongs to no
// enrollment (one that never completed Authenticate, or was enrolled
// elsewhere).
var errNoEnrollment = errors.New("identity certificate is associated with no enrollment")

// New returns the auth proxy to target. Each request's verified identity
// certificate (auth.FromContext) is mapped to its enrollment ID by
// resolver; the request, its path stripped of the prefix and joined to
// target's path, goes to target with EnrollmentIDHeader and a random
// TraceIDHeader. A request without a certificate in its context gets 400
// (CertMiddleware is missing in front), a certificate with no enrollment
// 403, a resolver failure 500, and an upstream that cannot be reached 502.
// It panics on a nil target or resolver.
func New(target *url.URL, resolver EnrollmentResolver, opts ...Option) http.Handler {
	if target == nil {
		panic("authproxy: nil target URL")
	}
	if resolver == nil {
		panic("authproxy: nil EnrollmentResolver")
	}
	p := &proxy{target: target, resolver: resolver, prefix: DefaultPathPrefix}
	for _, opt := range opts {
		opt(p)
	}
	if p.logger == nil {
		p.logger = slog.Default()
	}
	p.rp = &httputil.ReverseProxy{
		Rewrite:      p.rewrite,
		Transport:    p.transport,
		ErrorHandler: p.upstreamError,
	}
	return p
}

// ServeHTTP resolves the caller's enrollment and forwards the request.
func (p *proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	cert, ok := auth.FromContext(r.Context())
	if !ok {
		picohttp.WriteDeviceError(w, r, p.logger, &auth.Error{Kind: auth.ErrNoIdentity,
			Err: errors.New("authproxy: no verified certificate in the request context")})
		return
	}
	hash := auth.CertHash(cert)
	id, err := p.resolver.EnrollmentFromCertHash(r.Context(), hash)
	if errors.Is(err, storage.ErrNotFound) {
		err = service.NewStatusError(http.StatusForbidden, fmt.Errorf("authproxy: cert hash %s: %w", hash, errNoEnrollment))
	} else if err != nil {
		err = fmt.Errorf("authproxy: resolving cert hash %s: %w", hash, err)
	}
	if err != nil {
		picohttp.WriteDeviceError(w, r, p.logger, err)
		return
	}
	fw := &forward{enrollmentID: id, traceID: newTraceID()}
	p.logger.DebugContext(r.Context(), "auth proxy request",
		"enrollment_id", id, "trace_id", fw.traceID, "method", r.Method, "path", r.URL.Path)
	p.rp.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), forwardKey{}, fw)))
}

// rewrite builds the upstream request.
func (p *proxy) rewrite(pr *httputil.ProxyRequest) {
	out := pr.Out.URL
	if p.prefix != "" {
		out.Path = stripPrefix(out.Path, p.prefix)
		if out.RawPath != "" {
			out.RawPath = stripPrefix(out.RawPath, p.prefix)
		}
	}
	pr.SetURL(p.target)
	pr.SetXForwarded()
	// Never trust identity headers the device sent.
	pr.Out.Header.Del(EnrollmentIDHeader)
	pr.Out.Header.Del(TraceIDHeader)
	if fw, ok := pr.In.Context().Value(forwardKey{}).(*forward); ok {
		pr.Out.Header.Set(EnrollmentIDHeader, fw.enrollmentID)
		pr.Out.Header.Set(TraceIDHeader, fw.traceID)
	}
}

// stripPrefix removes prefix from path when it is a whole leading segment
// ("/authproxy/x" → "/x", "/authproxy" → "/"), and leaves other paths
// ("/authproxyx") alone.
func stripPrefix(path, prefix string) string {
	rest, ok := strings.CutPrefix(path, prefix)
	if !ok || rest != "" && rest[0] != '/' {
		return path
	}
	if rest == "" {
		return "/"
	}
	return rest
}

// upstreamError answers 502 when the target cannot be reached or fails
// mid-answer, logging the trace ID so the failure can be matched upstream.
func (p *proxy) upstreamError(w http.ResponseWriter, r *http.Request, err error) {
	traceID := ""
	if fw, ok := r.Context().Value(forwardKey{}).(*forward); ok {
		traceID = fw.traceID
	}
	p.logger.ErrorContext(r.Context(), "auth proxy upstream failed",
		"status", http.StatusBadGateway, "err", err, "trace_id", traceID,
		"method", r.Method, "path", r.URL.Path)
	w.WriteHeader(http.StatusBadGateway)
}

// newTraceID returns 16 random bytes in hex.
func newTraceID() string {
	var b [16]byte
	rand.Read(b[:]) // never fails (crypto/rand, Go 1.24+)
	return hex.EncodeToString(b[:])
}
