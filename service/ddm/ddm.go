// Package ddm forwards Declarative Device Management check-ins to a DDM
// server (the -dm flag), the way NanoMDM does: the device's
// DeclarativeManagement message becomes an HTTP request to the server's
// base URL joined with the message's Endpoint ("tokens",
// "declaration-items", "status", "declaration/<type>/<identifier>"), and
// the server's answer is the device's answer. See Apple's "Integrating
// Declarative Management" and the DeclarativeManagement check-in message.
package ddm

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/picomdm/picomdm/mdm"
)

// Headers of a forwarded request. The enrollment headers are NanoMDM's, so
// DDM servers written for it (e.g. KMFDDM) work unchanged.
const (
	EnrollmentIDHeader       = "X-Enrollment-ID"
	EnrollmentTypeHeader     = "X-Enrollment-Type"
	EnrollmentParentIDHeader = "X-Enrollment-ParentID"
	// HMACHeader carries base64(HMAC-SHA256(body)) in either direction
	// when a key is configured.
	HMACHeader = "X-Hmac-Signature"
)

// DefaultTimeout bounds one forwarded request, answer included.
const DefaultTimeout = 30 * time.Second

// maxResponseSize bounds the DDM server's answer: it is held in memory and
// sent to the device as one body (declarations are small; a set of them
// is at most a few MiB).
const maxResponseSize = 32 << 20

// Forwarder forwards DeclarativeManagement check-ins to a DDM server. It
// implements core.DeclarativeManagementHandler. Build it with New.
type Forwarder struct {
	base    *url.URL
	client  *http.Client
	timeout time.Duration
	sendKey []byte
	recvKey []byte
}

// Option configures a Forwarder.
type Option func(*Forwarder)

// WithClient sets the HTTP client requests are sent with (default: a
// client of its own over http.DefaultTransport).
func WithClient(client *http.Client) Option {
	return func(f *Forwarder) { f.client = client }
}

// WithTimeout bounds each forwarded request (default DefaultTimeout); 0 or
// less keeps the default.
func WithTimeout(d time.Duration) Option {
	return func(f *Forwarder) { f.timeout = d }
}

// WithSendHMACKey signs every request: HMACHeader carries
// base64(HMAC-SHA256(key, body)) over the body sent (the empty body for a
// GET). The -dm-send-hmac-key flag.
func WithSendHMACKey(key []byte) Option {
	return func(f *Forwarder) { f.sendKey = bytes.Clone(key) }
}

// WithRecvHMACKey requires every answer to carry a HMACHeader that is
// base64(HMAC-SHA256(key, body)) over the answer's body; an answer without
// a valid one is an error, and nothing reaches the device. The
// -dm-recv-hmac-key flag.
func WithRecvHMACKey(key []byte) Option {
	return func(f *Forwarder) { f.recvKey = bytes.Clone(key) }
}

// New returns a Forwarder to the DDM server at baseURL, an absolute http or
// https URL. Endpoints are joined under its path, which is kept whether or
// not it ends in a slash ("http://h/x" and "http://h/x/" both send
// "tokens" to "http://h/x/tokens"); its query, if any, is kept too.
func New(baseURL string, opts ...Option) (*Forwarder, error) {
	base, err := url.Parse(baseURL)
	if err != nil {
		return nil, fmt.Errorf("ddm: parsing URL: %w", err)
	}
	if base.Scheme != "http" && base.Scheme != "https" || base.Host == "" {
		return nil, fmt.Errorf("ddm: URL %q is not an absolute http(s) URL", baseURL)
	}
	base.Fragment, base.RawFragment = "", ""
	f := &Forwarder{base: base}
	for _, opt := range opts {
		opt(f)
	}
	if f.client == nil {
		f.client = new(http.Client)
	}
	if f.timeout <= 0 {
		f.timeout = DefaultTimeout
	}
	return f, nil
}

// endpointURL returns the URL for endpoint: the base URL's path, a slash,
// and endpoint escaped as a path. Endpoints come from the device, so "."
// and ".." segments are refused: they must not reach outside the base path
// on a server that cleans paths.
func (f *Forwarder) endpointURL(endpoint string) (*url.URL, error) {
	endpoint = strings.TrimLeft(endpoint, "/")
	segments := strings.Split(endpoint, "/")
	escaped := make([]string, len(segments))
	for i, seg := range segments {
		if seg == "." || seg == ".." {
			return nil, fmt.Errorf("endpoint %q has a relative path segment", endpoint)
		}
		escaped[i] = url.PathEscape(seg)
	}
	u := *f.base
	u.Path = strings.TrimSuffix(f.base.Path, "/") + "/" + endpoint
	u.RawPath = strings.TrimSuffix(f.base.EscapedPath(), "/") + "/" + strings.Join(escaped, "/")
	return &u, nil
}

// sign returns base64(HMAC-SHA256(key, body)).
func sign(key, body []byte) string {
	mac := hmac.New(sha256.New, key)
	mac.Write(body)
	return base64.StdEncoding.EncodeToString(mac.Sum(nil))
}

// verify reports whether signature is sign(key, body).
func verify(key, body []byte, signature string) bool {
	got, err := base64.StdEncoding.DecodeString(signature)
	if err != nil {
		return false
	}
	mac := hmac.New(sha256.New, key)
	mac.Write(body)
	return hmac.Equal(got, mac.Sum(nil))
}

// ErrBadSignature says the DDM server's answer lacked a valid HMACHeader
// while WithRecvHMACKey is set.
var ErrBadSignature = errors.New("ddm: response HMAC signature missing or invalid")

// StatusError is a non-200 answer from the DDM server. The device gets a
// 500; the status is in the error text, so the log line carries it.
type StatusError struct {
	StatusCode int
	URL        string
}

// Error implements error.
func (e *StatusError) Error() string {
	return fmt.Sprintf("ddm: %s answered HTTP %d", e.URL, e.StatusCode)
}

// DeclarativeManagement forwards msg: a PUT of msg.Data (Content-Type
// application/json) when the device sent Data, else a GET, to the base URL
// joined with msg.Endpoint, with the enrollment headers. It returns the DDM
// server's body when it answers 200, and an error otherwise (which the
// device path turns into a 500).
func (f *Forwarder) DeclarativeManagement(r *mdm.Request, msg *mdm.DeclarativeManagement) ([]byte, error) {
	if r == nil || r.EnrollID == nil {
		return nil, errors.New("ddm: request without an enrollment ID")
	}
	u, err := f.endpointURL(msg.Endpoint)
	if err != nil {
		return nil, fmt.Errorf("ddm: %w", err)
	}
	ctx := r.Context
	if ctx == nil {
		ctx = context.Background()
	}
	ctx, cancel := context.WithTimeout(ctx, f.timeout)
	defer cancel()

	method, body := http.MethodGet, []byte(nil)
	if len(msg.Data) > 0 {
		method, body = http.MethodPut, msg.Data
	}
	req, err := http.NewRequestWithContext(ctx, method, u.String(), bytes.NewReader(body))
	if err != nil {
		return nil, fmt.Errorf("ddm: building request: %w", err)
	}
	if method == http.MethodGet {
		req.Body, req.ContentLength, req.GetBody = http.NoBody, 0, nil
	} else {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set(EnrollmentIDHeader, r.ID)
	req.Header.Set(EnrollmentTypeHeader, string(r.Type))
	if r.ParentID != "" {
		req.Header.Set(EnrollmentParentIDHeader, r.ParentID)
	}
	if f.sendKey != nil {
		req.Header.Set(HMACHeader, sign(f.sendKey, body))
	}

	resp, err := f.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("ddm: %s %s: %w", method, u.Redacted(), err)
	}
	defer resp.Body.Close()
	respBody, err := io.ReadAll(io.LimitReader(resp.Body, maxResponseSize+1))
	if err != nil {
		return nil, fmt.Errorf("ddm: reading answer of %s: %w", u.Redacted(), err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, &StatusError{StatusCode: resp.StatusCode, URL: u.Redacted()}
	}
	if len(respBody) > maxResponseSize {
		return nil, fmt.Errorf("ddm: answer of %s is larger than %d bytes", u.Redacted(), maxResponseSize)
	}
	if f.recvKey != nil && !verify(f.recvKey, respBody, resp.Header.Get(HMACHeader)) {
		return nil, fmt.Errorf("%w (from %s)", ErrBadSignature, u.Redacted())
	}
	return respBody, nil
}
