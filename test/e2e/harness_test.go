// Package e2e drives the real PicoMDM server — wired by the same code as
// the picomdm command, from command-line flags — over HTTP with simulated
// devices that sign their requests exactly as Apple devices do.
package e2e

import (
	"bytes"
	"context"
	"encoding/json"
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
)

const apiKey = "e2e-api-key"

// syncBuffer is a goroutine-safe bytes.Buffer for the server's output.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// server is one running PicoMDM under test.
type server struct {
	t      *testing.T
	app    *app.App
	http   *httptest.Server
	ca     *device.CA
	URL    string
	stdout *syncBuffer
	stderr *syncBuffer

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
	s := &server{t: t, ca: ca, stdout: &syncBuffer{}, stderr: &syncBuffer{}}
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
