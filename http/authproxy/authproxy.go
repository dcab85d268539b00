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
// through the cert-auth association, and serves only enabled enrollments.
//
// The upstream trusts the proxy, so the proxy forwards nothing that could
// make a request mean more upstream than the device may ask for: paths
// with dot segments or encoded slashes, which an upstream may resolve
// outside the target's path, are refused, and the device's credentials
// (Authorization, Proxy-Authorization, Cookie) are not passed on.
package authproxy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"

	picohttp "github.com/picomdm/picomdm/http"
	"github.com/picomdm/picomdm/http/auth"
	"github.com/picomdm/picomdm/http/observe"
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

// EnrollmentRetriever reads an enrollment, to know whether it is enabled;
// storage.InspectionStore (implemented by every backend) is one.
type EnrollmentRetriever interface {
	// RetrieveEnrollment returns enrollment id, or an error wrapping
	// storage.ErrNotFound.
	RetrieveEnrollment(ctx context.Context, id string) (*storage.EnrollmentInfo, error)
}

var _ EnrollmentRetriever = storage.InspectionStore(nil)

// Store is what the proxy reads from storage: the enrollment a
// certificate belongs to, and whether that enrollment is enabled.
type Store interface {
	EnrollmentResolver
	EnrollmentRetriever
}

// deviceCredentials are the request headers never passed upstream: the
// upstream authenticates the device by X-Enrollment-ID alone, and must
// not receive credentials the device (or whoever holds its certificate)
// adds, which it might honour on the proxy's trusted connection.
var deviceCredentials = []string{"Authorization", "Proxy-Authorization", "Cookie"}

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
	store     Store
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

// Refusals, besides the identity errors CertMiddleware answers.
var (
	// errNoEnrollment is the 403 for a verified certificate that belongs
	// to no enrollment (one that never completed Authenticate, or was
	// enrolled elsewhere).
	errNoEnrollment = errors.New("identity certificate is associated with no enrollment")
	// errDisabled is the 403 for a certificate whose enrollment is
	// disabled (checked out, or re-enrolling and not yet through its
	// TokenUpdate).
	errDisabled = errors.New("enrollment is disabled")
	// errUnsafePath is the 400 for a path an upstream might resolve
	// outside the target's path.
	errUnsafePath = errors.New("path has a dot segment or an encoded slash")
)

// New returns the auth proxy to target. Each request's verified identity
// certificate (auth.FromContext) is mapped to its enrollment ID by store;
// the request, its path stripped of the prefix and joined to target's
// path, goes to target with EnrollmentIDHeader and a random TraceIDHeader,
// without the device's credential headers (Authorization,
// Proxy-Authorization, Cookie). A path with a dot segment ("." or "..",
// however percent-encoded, also before a ";" parameter as in "..;") or an
// encoded slash or backslash ("%2F", "%5C") gets 400; a request without
// a certificate in its context 400 (CertMiddleware is missing in front);
// a certificate with no enrollment, or whose enrollment is disabled, 403;
// a storage failure 500; an upstream that cannot be reached 502. It panics
// on a nil target or store.
func New(target *url.URL, store Store, opts ...Option) http.Handler {
	if target == nil {
		panic("authproxy: nil target URL")
	}
	if store == nil {
		panic("authproxy: nil Store")
	}
	p := &proxy{target: target, store: store, prefix: DefaultPathPrefix}
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

// ServeHTTP checks the path, resolves the caller's enrollment and
// forwards the request.
func (p *proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if err := checkPath(r); err != nil {
		picohttp.WriteDeviceError(w, r, p.logger, service.NewStatusError(http.StatusBadRequest, err))
		return
	}
	cert, ok := auth.FromContext(r.Context())
	if !ok {
		picohttp.WriteDeviceError(w, r, p.logger, &auth.Error{Kind: auth.ErrNoIdentity,
			Err: errors.New("authproxy: no verified certificate in the request context")})
		return
	}
	id, err := p.enrollment(r.Context(), auth.CertHash(cert))
	if id != "" {
		r = r.WithContext(observe.WithEnrollmentID(r.Context(), id))
	}
	if err != nil {
		picohttp.WriteDeviceError(w, r, p.logger, err)
		return
	}
	fw := &forward{enrollmentID: id, traceID: observe.NewTraceID()}
	p.logger.DebugContext(r.Context(), "auth proxy request",
		"trace_id", fw.traceID, "method", r.Method, "path", r.URL.Path)
	p.rp.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), forwardKey{}, fw)))
}

// enrollment returns the enabled enrollment the certificate hash belongs
// to; the ID also comes with an error about that enrollment, for the log.
func (p *proxy) enrollment(ctx context.Context, hash string) (string, error) {
	id, err := p.store.EnrollmentFromCertHash(ctx, hash)
	if errors.Is(err, storage.ErrNotFound) {
		return "", service.NewStatusError(http.StatusForbidden, fmt.Errorf("authproxy: cert hash %s: %w", hash, errNoEnrollment))
	}
	if err != nil {
		return "", fmt.Errorf("authproxy: resolving cert hash %s: %w", hash, err)
	}
	info, err := p.store.RetrieveEnrollment(ctx, id)
	switch {
	case errors.Is(err, storage.ErrNotFound):
		// Associated, but the enrollment is gone (or never got its
		// TokenUpdate): as good as disabled.
		return id, service.NewStatusError(http.StatusForbidden, fmt.Errorf("authproxy: %w", errDisabled))
	case err != nil:
		return id, fmt.Errorf("authproxy: retrieving enrollment: %w", err)
	case !info.Enabled:
		return id, service.NewStatusError(http.StatusForbidden, fmt.Errorf("authproxy: %w", errDisabled))
	}
	return id, nil
}

// checkPath refuses a request path an upstream might resolve outside the
// target's path: one with a dot segment ("." or ".."), in any
// percent-encoding ("%2e%2E") and also before a ";" path parameter ("..;"
// means ".." to some servers); one with an encoded slash or backslash
// ("%2F", "%5C"), or a backslash, which some servers take for a
// separator; or one whose segments, decoded once, still hold an encoded
// dot, slash or backslash (for servers that decode twice). Go's ServeMux
// already redirects plain dot segments away before the proxy sees them;
// the check does not depend on it. Both the path as it will be forwarded
// (the URL's escaped path) and the request target the client sent are
// checked.
func checkPath(r *http.Request) error {
	if err := checkSegments(r.URL.EscapedPath()); err != nil {
		return err
	}
	if target := r.RequestURI; strings.HasPrefix(target, "/") {
		target, _, _ = strings.Cut(target, "?")
		return checkSegments(target)
	}
	return nil
}

// checkSegments checks every segment of an escaped path for checkPath.
func checkSegments(escaped string) error {
	for seg := range strings.SplitSeq(escaped, "/") {
		decoded, err := url.PathUnescape(seg)
		if err != nil {
			return fmt.Errorf("authproxy: %w: %v", errUnsafePath, err)
		}
		name, _, _ := strings.Cut(decoded, ";")
		lower := strings.ToLower(decoded)
		if name == "." || name == ".." || strings.ContainsAny(decoded, `/\`) ||
			strings.Contains(lower, "%2e") || strings.Contains(lower, "%2f") || strings.Contains(lower, "%5c") {
			return fmt.Errorf("authproxy: %w: segment %q", errUnsafePath, seg)
		}
	}
	return nil
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
	// Never trust identity headers the device sent, nor pass on its
	// credentials.
	pr.Out.Header.Del(EnrollmentIDHeader)
	pr.Out.Header.Del(TraceIDHeader)
	for _, h := range deviceCredentials {
		pr.Out.Header.Del(h)
	}
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
