package health

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
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
	if code, s := get(t, h); code != http.StatusServiceUnavailable || s.Status != "unavailable" || s.Error != "connection refused" {
		t.Errorf("down: got %d %+v, want 503 unavailable", code, s)
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
