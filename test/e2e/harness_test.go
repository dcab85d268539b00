// Package e2e drives the real PicoMDM server — wired by the same code as
// the picomdm command, from command-line flags — over HTTP with simulated
// devices that sign their requests exactly as Apple devices do.
package e2e

import (
	"context"
	"encoding/json"
	"github.com/picomdm/picomdm/test/logtest"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/picomdm/picomdm/cmd/picomdm/app"
	"github.com/picomdm/picomdm/test/apiclient"
	"github.com/picomdm/picomdm/test/device"
	"github.com/picomdm/picomdm/test/sqltest"
)

const apiKey = "e2e-api-key"

// server is one running PicoMDM under test.
type server struct {
	t      *testing.T
	app    *app.App
	http   *httptest.Server
	ca     *device.CA
	URL    string
	stdout *logtest.Buffer
	stderr *logtest.Buffer

	stopOnce sync.Once
}

// startServer runs the server on file storage in a temp dir with a fresh
// device CA, the API key above, and the extra flags given.
func startServer(t *testing.T, extra ...string) *server {
	t.Helper()
	ca, err := device.NewCA()
	if err != nil {
		t.Fatal(err)
	}
	return startServerWithCA(t, ca, extra...)
}

// startServerWithCA is startServer with a given device CA.
func startServerWithCA(t *testing.T, ca *device.CA, extra ...string) *server {
	t.Helper()
	dir := t.TempDir()
	caFile := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(caFile, ca.CertPEM(), 0o644); err != nil {
		t.Fatal(err)
	}
	args := append([]string{
		"-ca", caFile, "-api", apiKey,
		"-storage", "file", "-storage-dsn", filepath.Join(dir, "db"),
	}, extra...)
	return startWithArgs(t, ca, args, nil)
}

func startWithArgs(t *testing.T, ca *device.CA, args []string, env map[string]string) *server {
	t.Helper()
	s := &server{t: t, ca: ca, stdout: &logtest.Buffer{}, stderr: &logtest.Buffer{}}
	a, err := app.New(args, func(k string) string { return env[k] }, s.stdout, s.stderr)
	if err != nil {
		t.Fatalf("app.New(%v): %v", args, err)
	}
	s.app = a
	s.http = httptest.NewServer(a.Handler())
	s.URL = s.http.URL
	t.Cleanup(func() {
		s.stop()
		if t.Failed() {
			t.Logf("server log:\n%s", s.stderr.String())
		}
	})
	return s
}

// stop shuts the server down and releases its storage (idempotent), e.g.
// to start another server on the same storage directory.
func (s *server) stop() {
	s.stopOnce.Do(func() {
		s.http.Close()
		s.app.Close()
	})
}

func (s *server) mdmURL() string { return s.URL + "/mdm" }

// newDevice makes a device with an identity from the server's CA.
func (s *server) newDevice(opts ...device.Option) *device.Device {
	s.t.Helper()
	d, err := device.New(s.ca, s.mdmURL(), opts...)
	if err != nil {
		s.t.Fatal(err)
	}
	return d
}

// enrolled makes a device and enrolls it (Authenticate + TokenUpdate).
func (s *server) enrolled(opts ...device.Option) *device.Device {
	s.t.Helper()
	d := s.newDevice(opts...)
	if err := d.Enroll(ctx(s.t)); err != nil {
		s.t.Fatalf("enroll: %v", err)
	}
	return d
}

// apiResult is the enqueue/push JSON.
type apiResult struct {
	Status map[string]struct {
		PushResult   string `json:"push_result"`
		PushError    string `json:"push_error"`
		CommandError string `json:"command_error"`
	} `json:"status"`
	NoPush       bool   `json:"no_push"`
	PushError    string `json:"push_error"`
	CommandError string `json:"command_error"`
	CommandUUID  string `json:"command_uuid"`
	RequestType  string `json:"request_type"`
	Error        string `json:"error"`
}

// enqueue queues raw for ids with nopush and returns the status and JSON.
func (s *server) enqueue(raw []byte, ids ...string) (int, apiResult) {
	s.t.Helper()
	status, body, err := apiclient.Enqueue(ctx(s.t), s.URL, apiKey, ids, raw, true)
	if err != nil {
		s.t.Fatal(err)
	}
	var res apiResult
	if err := json.Unmarshal(body, &res); err != nil {
		s.t.Fatalf("enqueue answered non-JSON %q (%d): %v", body, status, err)
	}
	return status, res
}

// command queues a new command of requestType for ids (expecting 200) and
// returns its UUID and raw bytes.
func (s *server) command(requestType string, ids ...string) (string, []byte) {
	s.t.Helper()
	uuid, raw := apiclient.NewCommand(requestType, nil)
	if status, res := s.enqueue(raw, ids...); status != http.StatusOK {
		s.t.Fatalf("enqueue %s to %v: %d %+v", requestType, ids, status, res)
	}
	return uuid, raw
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return c
}

// statusOf returns the HTTP status of a device error (200 for nil).
func statusOf(t *testing.T, err error) int {
	t.Helper()
	if err == nil {
		return http.StatusOK
	}
	var se *device.StatusError
	if !asStatus(err, &se) {
		t.Fatalf("not an HTTP status error: %v", err)
	}
	return se.Code
}

// backends are the storage backends the attack tests run against, each
// with a fresh store.
var backends = []struct {
	name string
	dsn  func(testing.TB) string
}{
	{"file", func(tb testing.TB) string { return filepath.Join(tb.TempDir(), "db") }},
	{"mysql", sqltest.MySQL},
	{"pgsql", sqltest.PostgreSQL},
}

// startOn runs the server on the named backend with a fresh device CA and
// the extra flags given.
func startOn(t *testing.T, storageName, dsn string, extra ...string) *server {
	t.Helper()
	ca, args := backendArgs(t, storageName, dsn, extra...)
	return startWithArgs(t, ca, args, nil)
}

// backendArgs makes a fresh device CA and the server flags for the named
// backend, followed by extra.
func backendArgs(t *testing.T, storageName, dsn string, extra ...string) (*device.CA, []string) {
	t.Helper()
	ca, err := device.NewCA()
	if err != nil {
		t.Fatal(err)
	}
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(caFile, ca.CertPEM(), 0o644); err != nil {
		t.Fatal(err)
	}
	return ca, append([]string{"-ca", caFile, "-api", apiKey, "-storage", storageName, "-storage-dsn", dsn}, extra...)
}
