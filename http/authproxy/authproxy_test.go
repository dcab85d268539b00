package authproxy_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"github.com/picomdm/picomdm/test/logtest"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"

	"github.com/picomdm/picomdm/http/auth"
	"github.com/picomdm/picomdm/http/authproxy"
	httpmdm "github.com/picomdm/picomdm/http/mdm"
	pmlog "github.com/picomdm/picomdm/log"
	"github.com/picomdm/picomdm/storage"
	"github.com/picomdm/picomdm/test/testpki"
)

var quiet = slog.New(slog.DiscardHandler)

// upstream records what reached the target.
type upstream struct {
	mu   sync.Mutex
	reqs []*http.Request
	body [][]byte
}

func (u *upstream) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b, _ := io.ReadAll(r.Body)
	u.mu.Lock()
	u.reqs = append(u.reqs, r)
	u.body = append(u.body, b)
	u.mu.Unlock()
	w.Header().Set("X-Upstream", "yes")
	w.WriteHeader(http.StatusTeapot)
	io.WriteString(w, "from upstream")
}

func (u *upstream) count() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return len(u.reqs)
}

func (u *upstream) last(t *testing.T) (*http.Request, []byte) {
	t.Helper()
	u.mu.Lock()
	defer u.mu.Unlock()
	if len(u.reqs) == 0 {
		t.Fatal("nothing reached upstream")
	}
	return u.reqs[len(u.reqs)-1], u.body[len(u.body)-1]
}

// fakeStore maps certificate hashes to enrollments, and knows which are
// enabled.
type fakeStore struct {
	mu       sync.Mutex
	hashes   map[string]string // cert hash → device-channel ID
	enabled  map[string]bool   // ID → enabled; absent: no enrollment
	retrieve error             // RetrieveEnrollment fails with it
}

func newFakeStore() *fakeStore {
	return &fakeStore{hashes: map[string]string{}, enabled: map[string]bool{}}
}

// enroll associates id's certificate and sets whether id is enabled.
func (s *fakeStore) enroll(id *testpki.Identity, enrollmentID string, enabled bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.hashes[auth.CertHash(id.Cert)] = enrollmentID
	s.enabled[enrollmentID] = enabled
}

func (s *fakeStore) EnrollmentFromCertHash(_ context.Context, hash string) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	id, ok := s.hashes[hash]
	if !ok {
		return "", fmt.Errorf("hash %s: %w", hash, storage.ErrNotFound)
	}
	return id, nil
}

func (s *fakeStore) RetrieveEnrollment(_ context.Context, id string) (*storage.EnrollmentInfo, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.retrieve != nil {
		return nil, s.retrieve
	}
	enabled, ok := s.enabled[id]
	if !ok {
		return nil, fmt.Errorf("enrollment %s: %w", id, storage.ErrNotFound)
	}
	return &storage.EnrollmentInfo{ID: id, Enabled: enabled}, nil
}

type fixture struct {
	ca       *testpki.CA
	device   *testpki.Identity
	stranger *testpki.Identity // valid, but associated with no enrollment
	store    *fakeStore
	up       *upstream
	server   *httptest.Server // the PicoMDM side: CertMiddleware + proxy
}

func newFixture(t *testing.T, targetPath string, opts ...authproxy.Option) *fixture {
	t.Helper()
	f := &fixture{ca: testpki.NewCA(t, "Device CA"), store: newFakeStore(), up: new(upstream)}
	f.device = f.ca.Issue(t, "device")
	f.stranger = f.ca.Issue(t, "stranger")
	f.store.enroll(f.device, "UDID-1", true)
	upSrv := httptest.NewServer(f.up)
	t.Cleanup(upSrv.Close)
	target, err := url.Parse(upSrv.URL + targetPath)
	if err != nil {
		t.Fatal(err)
	}
	verifier, err := auth.NewVerifier(f.ca.PEM(), nil)
	if err != nil {
		t.Fatal(err)
	}
	opts = append([]authproxy.Option{authproxy.WithLogger(quiet)}, opts...)
	proxy := authproxy.New(target, f.store, opts...)
	mux := http.NewServeMux()
	mux.Handle("/authproxy/", httpmdm.CertMiddleware(proxy, httpmdm.WithVerifier(verifier), httpmdm.WithLogger(quiet)))
	f.server = httptest.NewServer(mux)
	t.Cleanup(f.server.Close)
	return f
}

func (f *fixture) do(t *testing.T, method, path string, id *testpki.Identity, body []byte, header http.Header) *http.Response {
	t.Helper()
	req, err := http.NewRequest(method, f.server.URL+path, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if u, err := url.Parse(path); err == nil && u.Opaque == "" {
		// Send the path exactly as written (url.Parse would have
		// normalised some percent-encodings).
		req.URL.Opaque = strings.SplitN(path, "?", 2)[0]
		req.URL.RawQuery = u.RawQuery
	}
	for k, v := range header {
		req.Header[k] = v
	}
	if id != nil {
		req.Header.Set("Mdm-Signature", id.Sign(t, body))
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

func TestProxiesWithEnrollmentID(t *testing.T) {
	f := newFixture(t, "/base")
	body := []byte(`{"hello":"upstream"}`)
	spoof := http.Header{
		"X-Enrollment-Id": {"SOMEONE-ELSE"},
		"X-Trace-Id":      {"spoofed"},
		"Content-Type":    {"application/json"},
	}
	resp := f.do(t, http.MethodPost, "/authproxy/some/path?q=1", f.device, body, spoof)
	got, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusTeapot || string(got) != "from upstream" || resp.Header.Get("X-Upstream") != "yes" {
		t.Fatalf("answer %d %q %v", resp.StatusCode, got, resp.Header)
	}
	req, upBody := f.up.last(t)
	if req.URL.Path != "/base/some/path" || req.URL.RawQuery != "q=1" {
		t.Errorf("upstream path %q query %q", req.URL.Path, req.URL.RawQuery)
	}
	if req.Method != http.MethodPost || !bytes.Equal(upBody, body) || req.Header.Get("Content-Type") != "application/json" {
		t.Errorf("upstream got %s %q (%s)", req.Method, upBody, req.Header.Get("Content-Type"))
	}
	if ids := req.Header.Values(authproxy.EnrollmentIDHeader); len(ids) != 1 || ids[0] != "UDID-1" {
		t.Errorf("%s = %v, want [UDID-1]", authproxy.EnrollmentIDHeader, ids)
	}
	traces := req.Header.Values(authproxy.TraceIDHeader)
	if len(traces) != 1 || len(traces[0]) != 32 || traces[0] == "spoofed" {
		t.Errorf("%s = %v", authproxy.TraceIDHeader, traces)
	}

	// A second request gets a different trace ID.
	f.do(t, http.MethodGet, "/authproxy/", f.device, nil, nil)
	req2, _ := f.up.last(t)
	if req2.URL.Path != "/base/" {
		t.Errorf("upstream path %q, want /base/", req2.URL.Path)
	}
	if req2.Header.Get(authproxy.TraceIDHeader) == traces[0] {
		t.Error("trace ID reused")
	}
}

func TestRefusals(t *testing.T) {
	f := newFixture(t, "")
	other := testpki.NewCA(t, "Other CA").Issue(t, "foreign")
	tests := []struct {
		name string
		id   *testpki.Identity
		want int
	}{
		{"no identity", nil, http.StatusBadRequest},
		{"untrusted identity", other, http.StatusBadRequest},
		{"no enrollment", f.stranger, http.StatusForbidden},
		{"disabled enrollment", f.disabled(t), http.StatusForbidden},
		{"associated, but no enrollment record", f.orphan(t), http.StatusForbidden},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := f.up.count()
			resp := f.do(t, http.MethodGet, "/authproxy/x", tc.id, []byte("x"), nil)
			if resp.StatusCode != tc.want {
				t.Fatalf("status %d, want %d", resp.StatusCode, tc.want)
			}
			if f.up.count() != before {
				t.Fatal("the request reached upstream")
			}
		})
	}
}

// disabled returns an identity whose enrollment is disabled (checked out).
func (f *fixture) disabled(t *testing.T) *testpki.Identity {
	id := f.ca.Issue(t, "checked out")
	f.store.enroll(id, "UDID-OUT", false)
	return id
}

// orphan returns an identity associated with an ID no enrollment has.
func (f *fixture) orphan(t *testing.T) *testpki.Identity {
	id := f.ca.Issue(t, "orphan")
	f.store.enroll(id, "UDID-ORPHAN", true)
	f.store.mu.Lock()
	delete(f.store.enabled, "UDID-ORPHAN")
	f.store.mu.Unlock()
	return id
}

// TestDisabledEnrollment: an enrollment that checks out loses the proxy,
// and gets it back when it is enabled again; the refusal is logged with
// its enrollment ID.
func TestDisabledEnrollment(t *testing.T) {
	var logs logtest.Buffer
	f := newFixture(t, "", authproxy.WithLogger(textLogger(t, &logs)))
	if resp := f.do(t, http.MethodGet, "/authproxy/x", f.device, nil, nil); resp.StatusCode != http.StatusTeapot {
		t.Fatalf("enabled: %d", resp.StatusCode)
	}
	f.store.enroll(f.device, "UDID-1", false)
	before := f.up.count()
	if resp := f.do(t, http.MethodGet, "/authproxy/x", f.device, nil, nil); resp.StatusCode != http.StatusForbidden {
		t.Fatalf("disabled: %d, want 403", resp.StatusCode)
	}
	if f.up.count() != before {
		t.Fatal("a disabled enrollment's request reached upstream")
	}
	if !strings.Contains(logs.String(), "enrollment_id=UDID-1") || !strings.Contains(logs.String(), "status=403") {
		t.Errorf("log %q lacks the enrollment ID or status", logs.String())
	}
	f.store.enroll(f.device, "UDID-1", true)
	if resp := f.do(t, http.MethodGet, "/authproxy/x", f.device, nil, nil); resp.StatusCode != http.StatusTeapot {
		t.Fatalf("enabled again: %d", resp.StatusCode)
	}
}

// TestUnsafePaths is the traversal attack: paths an upstream could resolve
// outside the target's path are refused before anything is forwarded;
// look-alikes that are plain names go through.
func TestUnsafePaths(t *testing.T) {
	f := newFixture(t, "/base")
	for _, tc := range []struct {
		path string
		ok   bool
	}{
		{"/authproxy/%2e%2e/admin", false},
		{"/authproxy/%2E%2e/admin", false},
		{"/authproxy/a/.%2e/admin", false},
		{"/authproxy/a/%2e./admin", false},
		{"/authproxy/a/%2e/admin", false},
		{"/authproxy/..%2fadmin", false},
		{"/authproxy/..%2Fadmin", false},
		{"/authproxy/a%2fb", false},
		{"/authproxy/a%5cb", false},
		{"/authproxy/..%5cadmin", false},
		{"/authproxy/..;/admin", false},
		{"/authproxy/.;/admin", false},
		{"/authproxy/%2e%2e;x=1/admin", false},
		{"/authproxy/%252e%252e/admin", false}, // for an upstream that decodes twice
		{"/authproxy/%252fadmin", false},
		{"/authproxy/a\\b", false},
		{"/authproxy/ok/file.txt", true},
		{"/authproxy/...", true},
		{"/authproxy/a..b/.hidden", true},
		{"/authproxy/a;b=c", true},
		{"/authproxy/caf%C3%A9?next=../x", true}, // the query is not a path
	} {
		t.Run(tc.path, func(t *testing.T) {
			before := f.up.count()
			resp := f.do(t, http.MethodGet, tc.path, f.device, nil, nil)
			if !tc.ok {
				if resp.StatusCode != http.StatusBadRequest {
					t.Fatalf("status %d, want 400", resp.StatusCode)
				}
				if f.up.count() != before {
					t.Fatal("the request reached upstream")
				}
				return
			}
			if resp.StatusCode != http.StatusTeapot {
				t.Fatalf("status %d, want the upstream's 418", resp.StatusCode)
			}
			got, _ := f.up.last(t)
			if !strings.HasPrefix(got.URL.Path, "/base/") {
				t.Fatalf("upstream path %q is outside /base", got.URL.Path)
			}
		})
	}
}

// TestPlainDotSegments: the handler itself refuses plain dot segments,
// which ServeMux would otherwise redirect away (and CONNECT requests skip
// that redirect).
func TestPlainDotSegments(t *testing.T) {
	f := newFixture(t, "")
	up := new(upstream)
	srv := httptest.NewServer(up)
	defer srv.Close()
	target, _ := url.Parse(srv.URL + "/base")
	h := authproxy.New(target, f.store, authproxy.WithLogger(quiet))
	for _, path := range []string{"/authproxy/../admin", "/authproxy/a/./b", "/authproxy/a/.."} {
		req := httptest.NewRequest(http.MethodGet, "http://picomdm"+path, nil)
		req = req.WithContext(auth.NewContext(req.Context(), f.device.Cert))
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != http.StatusBadRequest || up.count() != 0 {
			t.Errorf("%s: status %d (%d upstream), want 400", path, rec.Code, up.count())
		}
	}
}

// TestCredentialsNotForwarded: the device's Authorization,
// Proxy-Authorization and Cookie headers do not reach upstream; other
// headers do.
func TestCredentialsNotForwarded(t *testing.T) {
	f := newFixture(t, "")
	f.do(t, http.MethodGet, "/authproxy/x", f.device, nil, http.Header{
		"Authorization":       {"Basic bmFub21kbTpzZWNyZXQ="},
		"Proxy-Authorization": {"Basic cHJveHk6c2VjcmV0"},
		"Cookie":              {"session=admin"},
		"X-Custom":            {"kept"},
	})
	got, _ := f.up.last(t)
	for _, h := range []string{"Authorization", "Proxy-Authorization", "Cookie"} {
		if v, ok := got.Header[h]; ok {
			t.Errorf("upstream received %s: %q", h, v)
		}
	}
	if got.Header.Get("X-Custom") != "kept" {
		t.Errorf("X-Custom = %q, want it forwarded", got.Header.Get("X-Custom"))
	}
}

// textLogger logs text lines to w, with the attributes request contexts
// carry (enrollment_id), as the server's logger does.
func textLogger(t *testing.T, w io.Writer) *slog.Logger {
	t.Helper()
	logger, err := pmlog.New(w, "text", false)
	if err != nil {
		t.Fatal(err)
	}
	return logger
}

func TestWithoutMiddleware(t *testing.T) {
	// Wired without CertMiddleware: no certificate in the context is a
	// 400, never a pass-through.
	h := authproxy.New(&url.URL{Scheme: "http", Host: "127.0.0.1:1"}, newFakeStore(), authproxy.WithLogger(quiet))
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/authproxy/x", nil))
	if rec.Code != http.StatusBadRequest {
		t.Fatalf("status %d, want 400", rec.Code)
	}
}

type failingResolver struct{ *fakeStore }

func (failingResolver) EnrollmentFromCertHash(context.Context, string) (string, error) {
	return "", errors.New("database down")
}

func TestStorageFailure(t *testing.T) {
	ca := testpki.NewCA(t, "CA")
	id := ca.Issue(t, "device")
	retrieveFails := newFakeStore()
	retrieveFails.enroll(id, "UDID", true)
	retrieveFails.retrieve = errors.New("database down")
	for name, store := range map[string]authproxy.Store{
		"resolving the certificate": failingResolver{newFakeStore()},
		"retrieving the enrollment": retrieveFails,
	} {
		t.Run(name, func(t *testing.T) {
			h := authproxy.New(&url.URL{Scheme: "http", Host: "127.0.0.1:1"}, store, authproxy.WithLogger(quiet))
			rec := httptest.NewRecorder()
			req := httptest.NewRequest(http.MethodGet, "/authproxy/x", nil)
			h.ServeHTTP(rec, req.WithContext(auth.NewContext(req.Context(), id.Cert)))
			if rec.Code != http.StatusInternalServerError {
				t.Fatalf("status %d, want 500", rec.Code)
			}
		})
	}
}

func TestUpstreamDown(t *testing.T) {
	dead := httptest.NewServer(http.NotFoundHandler())
	deadURL, _ := url.Parse(dead.URL)
	dead.Close()

	var logs bytes.Buffer
	store := newFakeStore()
	ca := testpki.NewCA(t, "CA")
	id := ca.Issue(t, "device")
	store.enroll(id, "UDID-9", true)
	h := authproxy.New(deadURL, store, authproxy.WithLogger(textLogger(t, &logs)))
	rec := httptest.NewRecorder()
	req := httptest.NewRequest(http.MethodGet, "/authproxy/x", nil)
	h.ServeHTTP(rec, req.WithContext(auth.NewContext(req.Context(), id.Cert)))
	if rec.Code != http.StatusBadGateway {
		t.Fatalf("status %d, want 502", rec.Code)
	}
	if !strings.Contains(logs.String(), "trace_id=") || !strings.Contains(logs.String(), "status=502") ||
		!strings.Contains(logs.String(), "enrollment_id=UDID-9") {
		t.Errorf("log %q lacks trace ID or status", logs.String())
	}
}

func TestPathPrefix(t *testing.T) {
	tests := []struct {
		prefix, path, want string
	}{
		{authproxy.DefaultPathPrefix, "/authproxy/a/b", "/a/b"},
		{authproxy.DefaultPathPrefix, "/authproxy", "/"},
		{authproxy.DefaultPathPrefix, "/authproxyx/a", "/authproxyx/a"},
		{"", "/authproxy/a", "/authproxy/a"},
		{"/custom/", "/custom/a", "/a"},
	}
	for _, tc := range tests {
		up := new(upstream)
		srv := httptest.NewServer(up)
		target, _ := url.Parse(srv.URL)
		store := newFakeStore()
		ca := testpki.NewCA(t, "CA")
		id := ca.Issue(t, "device")
		store.enroll(id, "UDID", true)
		h := authproxy.New(target, store, authproxy.WithLogger(quiet), authproxy.WithPathPrefix(tc.prefix))
		req := httptest.NewRequest(http.MethodGet, tc.path, nil)
		h.ServeHTTP(httptest.NewRecorder(), req.WithContext(auth.NewContext(req.Context(), id.Cert)))
		got, _ := up.last(t)
		if got.URL.Path != tc.want {
			t.Errorf("prefix %q path %q: upstream got %q, want %q", tc.prefix, tc.path, got.URL.Path, tc.want)
		}
		srv.Close()
	}
}

func TestNewPanics(t *testing.T) {
	for name, fn := range map[string]func(){
		"nil target": func() { authproxy.New(nil, newFakeStore()) },
		"nil store":  func() { authproxy.New(&url.URL{Scheme: "http", Host: "h"}, nil) },
	} {
		t.Run(name, func(t *testing.T) {
			defer func() {
				if recover() == nil {
					t.Fatal("no panic")
				}
			}()
			fn()
		})
	}
}
