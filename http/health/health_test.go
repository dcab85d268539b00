package health

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"
)

func get(t *testing.T, h http.Handler) (int, Status) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/", nil))
	var s Status
	if err := json.Unmarshal(rec.Body.Bytes(), &s); err != nil {
		t.Fatalf("body %q: %v", rec.Body, err)
	}
	return rec.Code, s
}

func TestLive(t *testing.T) {
	code, s := get(t, Live())
	if code != http.StatusOK || s.Status != "ok" {
		t.Errorf("got %d %+v, want 200 ok", code, s)
	}
}

func TestReady(t *testing.T) {
	var down error
	h := Ready(func(context.Context) error { return down })
	if code, s := get(t, h); code != http.StatusOK || s.Status != "ready" {
		t.Errorf("up: got %d %+v, want 200 ready", code, s)
	}
	down = errors.New("connection refused")
	if code, s := get(t, h); code != http.StatusServiceUnavailable || s.Status != "unavailable" || s.Error != "storage unavailable" {
		t.Errorf("down: got %d %+v, want 503 unavailable", code, s)
	}
}

// TestReadyHidesStorageError: the storage error (which can name hosts,
// users and paths) is logged, and not in the unauthenticated answer.
func TestReadyHidesStorageError(t *testing.T) {
	const secret = `dial tcp db-primary.internal:5432: password authentication failed for user "picomdm"`
	var logs bytes.Buffer
	h := Ready(func(context.Context) error { return errors.New(secret) },
		WithLogger(slog.New(slog.NewTextHandler(&logs, nil))))
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/readyz", nil))
	if rec.Code != http.StatusServiceUnavailable {
		t.Fatalf("status %d, want 503", rec.Code)
	}
	for _, leak := range []string{"db-primary", "5432", "password", "picomdm"} {
		if strings.Contains(rec.Body.String(), leak) {
			t.Errorf("answer %q contains %q", rec.Body, leak)
		}
	}
	if !strings.Contains(rec.Body.String(), `"storage unavailable"`) {
		t.Errorf("answer %q, want the generic error", rec.Body)
	}
	if !strings.Contains(logs.String(), "db-primary.internal:5432: password authentication failed") {
		t.Errorf("log %q lacks the storage error", logs.String())
	}
}

func TestReadyTimeout(t *testing.T) {
	h := Ready(func(ctx context.Context) error {
		<-ctx.Done()
		return ctx.Err()
	}, WithTimeout(10*time.Millisecond))
	code, s := get(t, h)
	if code != http.StatusServiceUnavailable || s.Error != errTimeout.Error() {
		t.Errorf("got %d %+v, want 503 with %q", code, s, errTimeout)
	}
}

type pingable struct{ err error }

func (p pingable) Ping(context.Context) error { return p.err }

func TestStorePinger(t *testing.T) {
	if err := StorePinger(struct{}{})(t.Context()); err != nil {
		t.Errorf("store without Ping: %v, want ready", err)
	}
	want := errors.New("down")
	if err := StorePinger(pingable{want})(t.Context()); err != want {
		t.Errorf("store with Ping: %v, want %v", err, want)
	}
}

func TestReadyDraining(t *testing.T) {
	var draining bool
	pinged := false
	h := Ready(func(context.Context) error { pinged = true; return nil }, WithDraining(func() bool { return draining }))
	if code, _ := get(t, h); code != http.StatusOK {
		t.Errorf("before shutdown: %d, want 200", code)
	}
	draining, pinged = true, false
	if code, s := get(t, h); code != http.StatusServiceUnavailable || s.Error != "shutting down" || pinged {
		t.Errorf("draining: got %d %+v (pinged %v), want 503 shutting down without a ping", code, s, pinged)
	}
}

// TestReadyWarnings: warnings ride on a ready answer and keep it 200;
// none leaves the field out; an unready answer does not ask for them.
func TestReadyWarnings(t *testing.T) {
	var down error
	var warnings []string
	asked := 0
	h := Ready(func(context.Context) error { return down }, WithWarnings(func(ctx context.Context) []string {
		asked++
		if _, ok := ctx.Deadline(); !ok {
			t.Error("warnings called without the probe's timeout")
		}
		return warnings
	}))

	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/readyz", nil))
	if rec.Code != http.StatusOK || strings.Contains(rec.Body.String(), "warnings") {
		t.Errorf("no warnings: got %d %s, want 200 without a warnings field", rec.Code, rec.Body)
	}

	warnings = []string{"push certificate for topic com.apple.mgmt.External.a expires on 2026-12-20 10:00 UTC (in 5 days)", "second"}
	code, s := get(t, h)
	if code != http.StatusOK || s.Status != "ready" || !slices.Equal(s.Warnings, warnings) {
		t.Errorf("with warnings: got %d %+v, want 200 ready with %q", code, s, warnings)
	}

	down = errors.New("connection refused")
	asked = 0
	code, s = get(t, h)
	if code != http.StatusServiceUnavailable || s.Warnings != nil || asked != 0 {
		t.Errorf("down: got %d %+v (warnings asked %d times), want 503 without warnings", code, s, asked)
	}
}
