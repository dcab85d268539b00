package authproxy_test

import (
	"bytes"
	"context"
	"errors"
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
	"github.com/picomdm/picomdm/http/internal/testpki"
	httpmdm "github.com/picomdm/picomdm/http/mdm"
	"github.com/picomdm/picomdm/storage/inmem"
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

func (u *upstream) last(t *testing.T) (*http.Request, []byte) {
	t.Helper()
	u.mu.Lock()
	defer u.mu.Unlock()
	if len(u.reqs) == 0 {
		t.Fatal("nothing reached upstream")
	}
	return u.reqs[len(u.reqs)-1], u.body[len(u.body)-1]
}

type fixture struct {
	ca       *testpki.CA
	device   *testpki.Identity
	stranger *testpki.Identity // valid, but associated with no enrollment
	store    *inmem.Store
	up       *upstream
	server   *httptest.Server // the PicoMDM side: CertMiddleware + proxy
}

func newFixture(t *testing.T, targetPath string, opts ...authproxy.Option) *fixture {
	t.Helper()
	f := &fixture{ca: testpki.NewCA(t, "Device CA"), store: inmem.New(), up: new(upstream)}
	f.device = f.ca.Issue(t, "device")
	f.stranger = f.ca.Issue(t, "stranger")
	if err := f.store.AssociateCertHash(context.Background(), "UDID-1", auth.CertHash(f.device.Cert), f.device.Cert.NotAfter); err != nil {
		t.Fatal(err)
	}
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
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := len(f.up.reqs)
			resp := f.do(t, http.MethodGet, "/authproxy/x", tc.id, []byte("x"), nil)
			if resp.StatusCode != tc.want {
				t.Fatalf("status %d, want %d", resp.StatusCode, tc.want)
			}
			if len(f.up.reqs) != before {
				t.Fatal("the request reached upstream")
			}
		})
	}
}

func TestWithoutMiddleware(t *testing.T) {
	// Wired without CertMiddleware: no certificate in the context is a
	// 400, never a pass-through.
	h := authproxy.New(&url.URL{Scheme: "http", Host: "127.0.0.1:1"}, inmem.New(), authproxy.WithLogger(quiet))
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/authproxy/x", nil))
	if rec.Code != http.StatusBadRequest {
		t.Fatalf("status %d, want 400", rec.Code)
	}
}

type failingResolver struct{}

func (failingResolver) EnrollmentFromCertHash(context.Context, string) (string, error) {
	return "", errors.New("database down")
}

func TestResolverFailure(t *testing.T) {
	ca := testpki.NewCA(t, "CA")
	id := ca.Issue(t, "device")
	h := authproxy.New(&url.URL{Scheme: "http", Host: "127.0.0.1:1"}, failingResolver{}, authproxy.WithLogger(quiet))
	rec := httptest.NewRecorder()
	req := httptest.NewRequest(http.MethodGet, "/authproxy/x", nil)
	h.ServeHTTP(rec, req.WithContext(auth.NewContext(req.Context(), id.Cert)))
	if rec.Code != http.StatusInternalServerError {
		t.Fatalf("status %d, want 500", rec.Code)
	}
}

func TestUpstreamDown(t *testing.T) {
	dead := httptest.NewServer(http.NotFoundHandler())
	deadURL, _ := url.Parse(dead.URL)
	dead.Close()

	var logs bytes.Buffer
	store := inmem.New()
	ca := testpki.NewCA(t, "CA")
	id := ca.Issue(t, "device")
	store.AssociateCertHash(context.Background(), "UDID-9", auth.CertHash(id.Cert), id.Cert.NotAfter)
	h := authproxy.New(deadURL, store, authproxy.WithLogger(slog.New(slog.NewTextHandler(&logs, nil))))
	rec := httptest.NewRecorder()
	req := httptest.NewRequest(http.MethodGet, "/authproxy/x", nil)
	h.ServeHTTP(rec, req.WithContext(auth.NewContext(req.Context(), id.Cert)))
	if rec.Code != http.StatusBadGateway {
		t.Fatalf("status %d, want 502", rec.Code)
	}
	if !strings.Contains(logs.String(), "trace_id=") || !strings.Contains(logs.String(), "status=502") {
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
		store := inmem.New()
		ca := testpki.NewCA(t, "CA")
		id := ca.Issue(t, "device")
		store.AssociateCertHash(context.Background(), "UDID", auth.CertHash(id.Cert), id.Cert.NotAfter)
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
		"nil target":   func() { authproxy.New(nil, inmem.New()) },
		"nil resolver": func() { authproxy.New(&url.URL{Scheme: "http", Host: "h"}, nil) },
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
