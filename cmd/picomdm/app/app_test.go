package app

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/picomdm/picomdm/test/wait"
)

func TestParseConfigEnvironment(t *testing.T) {
	env := map[string]string{
		"PICOMDM_LISTEN":      ":9999",
		"NANOMDM_LISTEN":      ":8888",
		"NANOMDM_DEBUG":       "1",
		"NANOMDM_STORAGE_DSN": "/var/db",
	}
	cfg, err := parseConfig([]string{"-api", "k"}, func(k string) string { return env[k] }, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Listen != ":9999" || !cfg.Debug || cfg.StorageDSN[0] != "/var/db" || cfg.APIKey != "k" {
		t.Fatalf("config: %+v", cfg)
	}
	if _, err := parseConfig(nil, func(k string) string {
		if k == "PICOMDM_DEBUG" {
			return "maybe"
		}
		return ""
	}, io.Discard); err == nil || !strings.Contains(err.Error(), "PICOMDM_DEBUG") {
		t.Fatalf("bad env value: %v", err)
	}
	if _, err := parseConfig([]string{"stray"}, nil, io.Discard); err == nil {
		t.Fatal("stray argument accepted")
	}
	cfg, err = parseConfig(nil, nil, io.Discard)
	if cfg.StorageDSN[0] != "db" || cfg.Storage[0] != "file" || len(cfg.Storage) != 1 || cfg.Listen != ":9000" {
		t.Fatalf("defaults: %+v", cfg)
	}
	cfg, err = parseConfig([]string{"-storage", "file", "-storage-dsn", "a", "-storage", "inmem"}, nil, io.Discard)
	if err != nil || len(cfg.Storage) != 2 || cfg.Storage[1] != "inmem" || cfg.StorageDSN[0] != "a" || cfg.StorageDSN[1] != "" {
		t.Fatalf("repeated -storage: %+v %v", cfg, err)
	}
	if _, err := parseConfig([]string{"-storage-dsn", "a", "-storage-dsn", "b"}, nil, io.Discard); err == nil {
		t.Fatal("two DSNs for one backend accepted")
	}
}

func TestWiringErrors(t *testing.T) {
	dir := t.TempDir()
	for _, args := range [][]string{
		{"-storage-dsn", dir},                               // no -ca, no -dev
		{"-storage", "nosuch", "-disable-mdm"},              // unknown backend
		{"-disable-mdm", "-migration", "-storage", "inmem"}, // -migration without -api
		{"-ca", filepath.Join(dir, "missing.pem"), "-storage", "inmem"},
		{"-log-format", "xml", "-storage", "inmem", "-disable-mdm"},
	} {
		if _, err := New(args, nil, io.Discard, io.Discard); err == nil {
			t.Errorf("New(%v) succeeded, want an error", args)
		}
	}
}

func TestVersionFlag(t *testing.T) {
	var out bytes.Buffer
	if err := Main(context.Background(), []string{"-version"}, nil, &out, io.Discard); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(out.String(), "picomdm ") {
		t.Fatalf("version output %q", out.String())
	}
}

// serveApp runs a.Serve on a loopback listener. It returns the server's
// base URL and stop, which cancels Serve's context and returns Serve's
// error once it has returned.
func serveApp(t *testing.T, a *App) (baseURL string, stop func() error) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Serve(ctx, ln) }()
	return "http://" + ln.Addr().String(), func() error {
		cancel()
		select {
		case err := <-done:
			return err
		case <-time.After(10 * time.Second):
			t.Fatal("server did not shut down")
			return nil
		}
	}
}

// getWhenUp GETs url until it answers: a listener Serve opens itself may
// not be listening yet.
func getWhenUp(t *testing.T, url string) *http.Response {
	t.Helper()
	var resp *http.Response
	wait.Until(t, 10*time.Second, "GET "+url+" to answer", func() bool {
		var err error
		resp, err = http.Get(url)
		return err == nil
	})
	return resp
}

// TestGracefulShutdown: cancelling the context (SIGTERM in main) stops the
// server, letting an in-flight request finish.
func TestGracefulShutdown(t *testing.T) {
	a, err := New([]string{"-disable-mdm", "-api", "k", "-storage", "inmem"}, nil, io.Discard, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	baseURL, stop := serveApp(t, a)
	url := baseURL + "/version"
	getWhenUp(t, url).Body.Close()
	if err := stop(); err != nil {
		t.Fatalf("Serve after shutdown: %v", err)
	}
	if _, err := http.Get(url); err == nil {
		t.Fatal("server still answering after shutdown")
	}
}

func TestHealthcheckFlag(t *testing.T) {
	ok := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer ok.Close()
	bad := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(503) }))
	defer bad.Close()
	if err := Main(context.Background(), []string{"-healthcheck", ok.URL}, nil, io.Discard, io.Discard); err != nil {
		t.Fatalf("healthy: %v", err)
	}
	if err := Main(context.Background(), []string{"-healthcheck", bad.URL}, nil, io.Discard, io.Discard); err == nil {
		t.Fatal("503 passed the healthcheck")
	}
}

// TestMetricsListen: with -metrics-listen, /metrics is served there,
// unauthenticated.
func TestMetricsListen(t *testing.T) {
	probe, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := probe.Addr().String()
	probe.Close()
	a, err := New([]string{"-disable-mdm", "-storage", "inmem", "-metrics-listen", addr}, nil, io.Discard, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	_, stop := serveApp(t, a)
	defer stop()
	resp := getWhenUp(t, "http://"+addr+"/metrics")
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), "picomdm_build_info") {
		t.Fatalf("/metrics on -metrics-listen: %d", resp.StatusCode)
	}
}
