package http_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	picohttp "github.com/picomdm/picomdm/http"
	"github.com/picomdm/picomdm/http/auth"
	"github.com/picomdm/picomdm/mdm"
	"github.com/picomdm/picomdm/service"
	"github.com/picomdm/picomdm/storage"
)

func TestStatusFor(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  error
		want int
	}{
		{"parse error", &mdm.ParseError{What: "check-in", Err: mdm.ErrUnknownMessageType}, http.StatusBadRequest},
		{"wrapped parse error", fmt.Errorf("decoding: %w", &mdm.ParseError{What: "x", Err: errors.New("y")}), http.StatusBadRequest},
		{"missing identity", &auth.Error{Kind: auth.ErrNoIdentity}, http.StatusBadRequest},
		{"malformed identity", &auth.Error{Kind: auth.ErrMalformed}, http.StatusBadRequest},
		{"bad signature", &auth.Error{Kind: auth.ErrBadSignature}, http.StatusBadRequest},
		{"untrusted", &auth.Error{Kind: auth.ErrUntrusted}, http.StatusBadRequest},
		{"key usage", &auth.Error{Kind: auth.ErrKeyUsage}, http.StatusBadRequest},
		{"expired", fmt.Errorf("verifying: %w", &auth.Error{Kind: auth.ErrExpired}), http.StatusBadRequest},
		{"status error", service.NewStatusError(http.StatusGone, errors.New("declined")), http.StatusGone},
		{"wrapped status error", fmt.Errorf("ua: %w", service.NewStatusError(http.StatusGone, nil)), http.StatusGone},
		{"status error wins over what it wraps", service.NewStatusError(http.StatusGone, &mdm.ParseError{}), http.StatusGone},
		{"status error with no status", service.NewStatusError(0, errors.New("x")), http.StatusInternalServerError},
		{"command exists", fmt.Errorf("enqueue: %w", storage.ErrCommandExists), http.StatusConflict},
		{"not found", fmt.Errorf("topic: %w", storage.ErrNotFound), http.StatusNotFound},
		{"bad cursor", fmt.Errorf("listing: %w", storage.ErrBadCursor), http.StatusBadRequest},
		{"already answered", fmt.Errorf("cancelling: %w", storage.ErrAlreadyAnswered), http.StatusConflict},
		{"too large", fmt.Errorf("reading: %w", &http.MaxBytesError{Limit: 1}), http.StatusRequestEntityTooLarge},
		{"plain error", errors.New("database down"), http.StatusInternalServerError},
		{"nil", nil, http.StatusInternalServerError},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := picohttp.StatusFor(tc.err); got != tc.want {
				t.Fatalf("StatusFor(%v) = %d, want %d", tc.err, got, tc.want)
			}
		})
	}
}

func TestWriteDeviceError(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  error
		want int
	}{
		{"parse error", &mdm.ParseError{What: "check-in", Err: errors.New("secret detail")}, http.StatusBadRequest},
		{"declined", service.NewStatusError(http.StatusGone, errors.New("secret detail")), http.StatusGone},
		{"never 401", service.NewStatusError(http.StatusUnauthorized, errors.New("secret detail")), http.StatusInternalServerError},
		{"fault", errors.New("secret detail"), http.StatusInternalServerError},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var logs bytes.Buffer
			logger := slog.New(slog.NewTextHandler(&logs, nil))
			rec := httptest.NewRecorder()
			picohttp.WriteDeviceError(rec, httptest.NewRequest(http.MethodPut, "/mdm", nil), logger, tc.err)
			if rec.Code != tc.want {
				t.Fatalf("status %d, want %d", rec.Code, tc.want)
			}
			if rec.Body.Len() != 0 {
				t.Fatalf("body %q, want empty", rec.Body)
			}
			if !strings.Contains(logs.String(), fmt.Sprintf("status=%d", tc.want)) || !strings.Contains(logs.String(), "secret detail") {
				t.Fatalf("log %q lacks the status or the error", logs.String())
			}
		})
	}
}

func TestWriteAPIError(t *testing.T) {
	rec := httptest.NewRecorder()
	picohttp.WriteAPIError(rec, httptest.NewRequest(http.MethodGet, "/v1/pushcert", nil), slog.New(slog.DiscardHandler),
		fmt.Errorf("retrieving push certificate: %w", storage.ErrNotFound))
	if rec.Code != http.StatusNotFound {
		t.Fatalf("status %d, want 404", rec.Code)
	}
	if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
		t.Fatalf("Content-Type %q", ct)
	}
	var got map[string]string
	if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil {
		t.Fatal(err)
	}
	if want := "retrieving push certificate: storage: not found"; got["error"] != want || len(got) != 1 {
		t.Fatalf("body %v, want {error: %q}", got, want)
	}
}

func TestWriteJSONUnencodable(t *testing.T) {
	rec := httptest.NewRecorder()
	picohttp.WriteJSON(rec, httptest.NewRequest(http.MethodGet, "/", nil), slog.New(slog.DiscardHandler), http.StatusOK, func() {})
	if rec.Code != http.StatusInternalServerError {
		t.Fatalf("status %d, want 500", rec.Code)
	}
	if !json.Valid(rec.Body.Bytes()) {
		t.Fatalf("body %q is not JSON", rec.Body)
	}
}

func TestReadBody(t *testing.T) {
	for _, tc := range []struct {
		name   string
		body   string
		limit  int64
		length int64 // announced Content-Length; 0 for the body's own
		status int
	}{
		{name: "within", body: "hello", limit: 5},
		{name: "over", body: "hello!", limit: 5, status: http.StatusRequestEntityTooLarge},
		{name: "default limit", body: "hello"},
		{name: "over default limit", body: strings.Repeat("x", int(picohttp.DefaultMaxBodySize)+1), status: http.StatusRequestEntityTooLarge},
		{name: "unknown length", body: "hello", length: -1},
		{name: "unknown length over", body: "hello!", limit: 5, length: -1, status: http.StatusRequestEntityTooLarge},
		{name: "more than announced", body: "hello, world", length: 5},
		{name: "more than announced over", body: "hello!", limit: 5, length: 2, status: http.StatusRequestEntityTooLarge},
		{name: "less than announced", body: "hello", length: 50},
		{name: "large", body: strings.Repeat("x", 1<<20)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := httptest.NewRecorder()
			req := httptest.NewRequest(http.MethodPut, "/", strings.NewReader(tc.body))
			if tc.length != 0 {
				req.ContentLength = tc.length
			}
			got, err := picohttp.ReadBody(rec, req, tc.limit)
			if tc.status != 0 {
				if s := picohttp.StatusFor(err); s != tc.status {
					t.Fatalf("error %v maps to %d, want %d", err, s, tc.status)
				}
				return
			}
			if err != nil || string(got) != tc.body {
				t.Fatalf("ReadBody = %q, %v", got, err)
			}
		})
	}
}

func TestBasicAuth(t *testing.T) {
	const key = "s3cret"
	h := picohttp.BasicAuth(key)(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "ok")
	}))
	for _, tc := range []struct {
		name       string
		user, pass string
		noAuth     bool
		want       int
	}{
		{name: "nanomdm", user: "nanomdm", pass: key, want: http.StatusOK},
		{name: "picomdm", user: "picomdm", pass: key, want: http.StatusOK},
		{name: "no credentials", noAuth: true, want: http.StatusUnauthorized},
		{name: "wrong password", user: "nanomdm", pass: "s3cre", want: http.StatusUnauthorized},
		{name: "empty password", user: "nanomdm", pass: "", want: http.StatusUnauthorized},
		{name: "wrong user", user: "admin", pass: key, want: http.StatusUnauthorized},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req := httptest.NewRequest(http.MethodGet, "/v1/push/x", nil)
			if !tc.noAuth {
				req.SetBasicAuth(tc.user, tc.pass)
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code != tc.want {
				t.Fatalf("status %d, want %d", rec.Code, tc.want)
			}
			if tc.want != http.StatusUnauthorized {
				return
			}
			if got := rec.Header().Get("WWW-Authenticate"); got != `Basic realm="picomdm"` {
				t.Fatalf("WWW-Authenticate %q", got)
			}
			if got := strings.TrimSpace(rec.Body.String()); got != `{"error":"unauthorized"}` {
				t.Fatalf("body %q", got)
			}
		})
	}
}

func TestBasicAuthEmptyKeyPanics(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Fatal("BasicAuth(\"\") did not panic")
		}
	}()
	picohttp.BasicAuth("")
}
