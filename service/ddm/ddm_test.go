package ddm

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/picomdm/picomdm/mdm"
	"github.com/picomdm/picomdm/service/core"
)

// hook is a DDM server that records requests and answers with a canned
// status, body and headers.
type hook struct {
	mu       sync.Mutex
	requests []recorded
	status   int
	body     string
	header   http.Header
}

type recorded struct {
	method, path, rawPath, query string
	header                       http.Header
	body                         []byte
}

func newHook(t *testing.T, status int, body string) (*hook, *httptest.Server) {
	h := &hook{status: status, body: body, header: http.Header{}}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		h.mu.Lock()
		h.requests = append(h.requests, recorded{r.Method, r.URL.Path, r.URL.RawPath, r.URL.RawQuery, r.Header.Clone(), b})
		for k, v := range h.header {
			w.Header()[k] = v
		}
		h.mu.Unlock()
		w.WriteHeader(h.status)
		io.WriteString(w, h.body)
	}))
	t.Cleanup(srv.Close)
	return h, srv
}

func (h *hook) last(t *testing.T) recorded {
	t.Helper()
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.requests) == 0 {
		t.Fatal("the hook got no request")
	}
	return h.requests[len(h.requests)-1]
}

func deviceRequest() *mdm.Request {
	r := mdm.NewRequest(context.Background(), nil)
	r.EnrollID = &mdm.EnrollID{Type: mdm.Device, ID: "UDID-1"}
	return r
}

func userRequest() *mdm.Request {
	r := mdm.NewRequest(context.Background(), nil)
	r.EnrollID = &mdm.EnrollID{Type: mdm.User, ID: "UDID-1:USER-1", ParentID: "UDID-1"}
	return r
}

func mustNew(t *testing.T, base string, opts ...Option) *Forwarder {
	t.Helper()
	f, err := New(base, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func TestURLJoin(t *testing.T) {
	h, srv := newHook(t, http.StatusOK, "{}")
	tests := []struct {
		base, endpoint, wantPath, wantQuery string
	}{
		{srv.URL, "tokens", "/tokens", ""},
		{srv.URL + "/", "tokens", "/tokens", ""},
		{srv.URL + "/x/", "tokens", "/x/tokens", ""},
		{srv.URL + "/x", "tokens", "/x/tokens", ""},
		{srv.URL + "/x/y/", "declaration-items", "/x/y/declaration-items", ""},
		{srv.URL + "/x", "declaration/configuration/abc", "/x/declaration/configuration/abc", ""},
		{srv.URL + "/x", "/status", "/x/status", ""},
		{srv.URL + "/x?tenant=1", "tokens", "/x/tokens", "tenant=1"},
		// Identifiers are escaped as a path, never read as a query.
		{srv.URL + "/x", "declaration/asset/a b?c", "/x/declaration/asset/a b?c", ""},
	}
	for _, tc := range tests {
		t.Run(tc.base+"+"+tc.endpoint, func(t *testing.T) {
			f := mustNew(t, tc.base)
			if _, err := f.DeclarativeManagement(deviceRequest(), &mdm.DeclarativeManagement{Endpoint: tc.endpoint}); err != nil {
				t.Fatal(err)
			}
			got := h.last(t)
			if got.path != tc.wantPath || got.query != tc.wantQuery {
				t.Errorf("path %q query %q, want %q %q", got.path, got.query, tc.wantPath, tc.wantQuery)
			}
		})
	}
}

func TestRelativeEndpointRefused(t *testing.T) {
	h, srv := newHook(t, http.StatusOK, "{}")
	f := mustNew(t, srv.URL+"/x/")
	for _, ep := range []string{"../admin", "declaration/../../admin", "./tokens"} {
		if _, err := f.DeclarativeManagement(deviceRequest(), &mdm.DeclarativeManagement{Endpoint: ep}); err == nil {
			t.Errorf("endpoint %q: no error", ep)
		}
	}
	if len(h.requests) != 0 {
		t.Fatalf("%d requests reached the hook", len(h.requests))
	}
}

func TestMethodBodyAndHeaders(t *testing.T) {
	h, srv := newHook(t, http.StatusOK, `{"answer":1}`)
	f := mustNew(t, srv.URL)

	// No Data: a GET without a body or Content-Type.
	got, err := f.DeclarativeManagement(deviceRequest(), &mdm.DeclarativeManagement{Endpoint: "tokens"})
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != `{"answer":1}` {
		t.Errorf("answer %q", got)
	}
	req := h.last(t)
	if req.method != http.MethodGet || len(req.body) != 0 || req.header.Get("Content-Type") != "" {
		t.Errorf("GET: method %s body %q content-type %q", req.method, req.body, req.header.Get("Content-Type"))
	}
	if req.header.Get(EnrollmentIDHeader) != "UDID-1" || req.header.Get(EnrollmentTypeHeader) != "Device" {
		t.Errorf("enrollment headers %v", req.header)
	}
	if _, ok := req.header[EnrollmentParentIDHeader]; ok {
		t.Errorf("device request carries %s", EnrollmentParentIDHeader)
	}
	if req.header.Get(HMACHeader) != "" {
		t.Errorf("unsigned forwarder sent %s", HMACHeader)
	}

	// Data: a PUT of it as JSON; a user channel carries its parent.
	data := []byte(`{"StatusItems":{}}`)
	if _, err := f.DeclarativeManagement(userRequest(), &mdm.DeclarativeManagement{Endpoint: "status", Data: data}); err != nil {
		t.Fatal(err)
	}
	req = h.last(t)
	if req.method != http.MethodPut || string(req.body) != string(data) || req.header.Get("Content-Type") != "application/json" {
		t.Errorf("PUT: method %s body %q content-type %q", req.method, req.body, req.header.Get("Content-Type"))
	}
	if req.header.Get(EnrollmentIDHeader) != "UDID-1:USER-1" || req.header.Get(EnrollmentTypeHeader) != "User" || req.header.Get(EnrollmentParentIDHeader) != "UDID-1" {
		t.Errorf("enrollment headers %v", req.header)
	}
}

func TestSendHMAC(t *testing.T) {
	h, srv := newHook(t, http.StatusOK, "{}")
	key := []byte("send-key")
	f := mustNew(t, srv.URL, WithSendHMACKey(key))
	data := []byte(`{"x":1}`)
	for _, msg := range []*mdm.DeclarativeManagement{
		{Endpoint: "status", Data: data},
		{Endpoint: "tokens"}, // GET: signed over the empty body
	} {
		if _, err := f.DeclarativeManagement(deviceRequest(), msg); err != nil {
			t.Fatal(err)
		}
		req := h.last(t)
		if !verify(key, req.body, req.header.Get(HMACHeader)) {
			t.Errorf("%s %s: signature %q does not verify over %q", req.method, req.path, req.header.Get(HMACHeader), req.body)
		}
	}
	// Known answer, so the encoding (standard base64 of the raw MAC) is
	// pinned, not only self-consistent.
	if got, want := sign([]byte("key"), []byte("The quick brown fox jumps over the lazy dog")), "97yD9DBThCSxMpjmqm+xQ+9NWaFJRhdZl0edvC0aPNg="; got != want {
		t.Errorf("sign = %s, want %s", got, want)
	}
}

func TestRecvHMAC(t *testing.T) {
	key := []byte("recv-key")
	body := `{"Declarations":{}}`
	tests := []struct {
		name      string
		signature string
		wantErr   bool
	}{
		{"valid", sign(key, []byte(body)), false},
		{"missing", "", true},
		{"wrong key", sign([]byte("other"), []byte(body)), true},
		{"other body", sign(key, []byte("{}")), true},
		{"not base64", "!!!", true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h, srv := newHook(t, http.StatusOK, body)
			if tc.signature != "" {
				h.header.Set(HMACHeader, tc.signature)
			}
			f := mustNew(t, srv.URL, WithRecvHMACKey(key))
			got, err := f.DeclarativeManagement(deviceRequest(), &mdm.DeclarativeManagement{Endpoint: "declaration-items"})
			if tc.wantErr {
				if !errors.Is(err, ErrBadSignature) {
					t.Fatalf("err = %v, want ErrBadSignature", err)
				}
				return
			}
			if err != nil || string(got) != body {
				t.Fatalf("got %q, %v", got, err)
			}
		})
	}
}

func TestNon200IsError(t *testing.T) {
	for _, status := range []int{http.StatusNoContent, http.StatusNotFound, http.StatusInternalServerError} {
		_, srv := newHook(t, status, "nope")
		f := mustNew(t, srv.URL)
		_, err := f.DeclarativeManagement(deviceRequest(), &mdm.DeclarativeManagement{Endpoint: "tokens"})
		var se *StatusError
		if !errors.As(err, &se) || se.StatusCode != status {
			t.Fatalf("status %d: err = %v", status, err)
		}
		if !strings.Contains(err.Error(), fmt.Sprintf("HTTP %d", status)) {
			t.Errorf("error text %q does not name the status", err)
		}
	}
}

func TestTimeout(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer srv.Close()
	defer close(release)
	f := mustNew(t, srv.URL, WithTimeout(50*time.Millisecond))
	start := time.Now()
	_, err := f.DeclarativeManagement(deviceRequest(), &mdm.DeclarativeManagement{Endpoint: "tokens"})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want a deadline error", err)
	}
	if time.Since(start) > 5*time.Second {
		t.Fatalf("timeout took %v", time.Since(start))
	}
}

func TestNewRejectsBadURL(t *testing.T) {
	for _, u := range []string{"", "not a url", "/relative", "ftp://h/x", "http://"} {
		if _, err := New(u); err == nil {
			t.Errorf("New(%q): no error", u)
		}
	}
}

func TestNoEnrollment(t *testing.T) {
	f := mustNew(t, "http://127.0.0.1:1")
	if _, err := f.DeclarativeManagement(mdm.NewRequest(context.Background(), nil), &mdm.DeclarativeManagement{Endpoint: "tokens"}); err == nil {
		t.Fatal("no error for a request without an enrollment ID")
	}
}

var _ core.DeclarativeManagementHandler = (*Forwarder)(nil)
