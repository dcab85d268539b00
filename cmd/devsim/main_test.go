package main

import (
	"bytes"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/picomdm/picomdm/cmd/picomdm/app"
	"github.com/picomdm/picomdm/mdm"
	"github.com/picomdm/picomdm/storage"
	"github.com/picomdm/picomdm/test/apiclient"
	"github.com/picomdm/picomdm/test/apnsmock"
	"github.com/picomdm/picomdm/test/device"
)

// writeCA writes a throw-away device CA to files, as the server's -dev
// mode does.
func writeCA(t *testing.T) (certFile, keyFile string) {
	t.Helper()
	ca, err := device.NewCA()
	if err != nil {
		t.Fatal(err)
	}
	keyPEM, err := ca.KeyPEM()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "ca.pem"), filepath.Join(dir, "ca.key")
	if err := os.WriteFile(certFile, ca.CertPEM(), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, keyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}

func TestRun(t *testing.T) {
	certFile, keyFile := writeCA(t)
	uuid, raw := apiclient.NewCommand("DeviceInformation", nil)
	var (
		mu      sync.Mutex
		served  bool
		answers []string
	)
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if r.Header.Get(device.SignatureHeader) == "" {
			http.Error(w, "unsigned", http.StatusBadRequest)
			return
		}
		if r.Header.Get("Content-Type") == device.ContentTypeCheckin {
			return
		}
		report, err := mdm.DecodeCommandResults(body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		mu.Lock()
		defer mu.Unlock()
		if report.Status != mdm.StatusIdle {
			answers = append(answers, report.Status)
		}
		if !served {
			served = true
			w.Write(raw)
		}
	}))
	defer ts.Close()

	var out bytes.Buffer
	args := []string{"-url", ts.URL + "/mdm", "-ca-cert", certFile, "-ca-key", keyFile, "-key-type", "ecdsa", "-answer", "NotNow", "-v"}
	if err := run(t.Context(), args, &out); err != nil {
		t.Fatal(err)
	}
	lines := strings.SplitN(out.String(), "\n", 3)
	if len(lines) < 3 || !strings.HasSuffix(lines[1], " "+uuid+" DeviceInformation") ||
		!strings.HasPrefix(lines[1], lines[0]+" ") || !strings.Contains(lines[2], "<plist") {
		t.Errorf("output:\n%s", out.String())
	}
	if len(answers) != 1 || answers[0] != "NotNow" {
		t.Errorf("answers = %v, want [NotNow]", answers)
	}
}

func TestRunErrors(t *testing.T) {
	certFile, keyFile := writeCA(t)
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "nope", http.StatusInternalServerError)
	}))
	defer ts.Close()
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"no CA", []string{"-url", ts.URL}, "-ca-cert and -ca-key are required"},
		{"bad key type", []string{"-ca-cert", certFile, "-ca-key", keyFile, "-key-type", "dsa"}, "unknown key type"},
		{"server error", []string{"-url", ts.URL, "-ca-cert", certFile, "-ca-key", keyFile, "-key-type", "ecdsa"}, "500"},
		{"bench without API key", []string{"bench", "-ca-key", keyFile}, "-api-key and -ca-key are required"},
		{"bench key without certificate", []string{"bench", "-api-key", "k", "-ca-key", keyFile}, "no PEM CERTIFICATE"},
		{"bench server error", []string{"bench", "-url", ts.URL + "/mdm", "-api-key", "k", "-ca-cert", certFile, "-ca-key", keyFile,
			"-key-type", "ecdsa", "-devices", "2", "-progress", "0"}, "500"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := run(t.Context(), tc.args, io.Discard)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("run = %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

// TestWriteCertificates checks "devsim ca" and "devsim apns-cert" write what
// the server and the bench load: a device CA, and a certificate and key
// the mock APNs can serve.
func TestWriteCertificates(t *testing.T) {
	dir := t.TempDir()
	caCert, caKey := filepath.Join(dir, "ca.pem"), filepath.Join(dir, "ca.key")
	if err := run(t.Context(), []string{"ca", "-cert", caCert, "-key", caKey}, io.Discard); err != nil {
		t.Fatal(err)
	}
	if _, err := loadCA(caCert, caKey); err != nil {
		t.Errorf("loading the written CA: %v", err)
	}
	apnsCert, apnsKey := filepath.Join(dir, "apns.pem"), filepath.Join(dir, "apns.key")
	if err := run(t.Context(), []string{"apns-cert", "-cert", apnsCert, "-key", apnsKey}, io.Discard); err != nil {
		t.Fatal(err)
	}
	certPEM, _ := os.ReadFile(apnsCert)
	keyPEM, _ := os.ReadFile(apnsKey)
	mock, err := apnsmock.Listen("127.0.0.1:0", certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	mock.Close()
}

// TestPushCert checks "devsim push-cert" writes a pair the server takes as
// the push certificate of the topic.
func TestPushCert(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "push.pem"), filepath.Join(dir, "push.key")
	const topic = "com.apple.mgmt.External.01234567-89ab-4cde-8f01-23456789abcd"
	if err := run(t.Context(), []string{"push-cert", "-topic", topic, "-cert", certFile, "-key", keyFile}, io.Discard); err != nil {
		t.Fatal(err)
	}
	certPEM, _ := os.ReadFile(certFile)
	keyPEM, _ := os.ReadFile(keyFile)
	pc, err := storage.ParsePushCert(certPEM, keyPEM)
	if err != nil || pc.Topic != topic {
		t.Fatalf("written push certificate: %+v, %v", pc, err)
	}
}

// TestRunFromProfile enrolls devices the way "devsim -profile-url" does
// against the real server: profile download, SCEP, check-in.
func TestRunFromProfile(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	base := "http://" + ln.Addr().String()
	dir := t.TempDir()
	a, err := app.New([]string{"-storage", "file", "-storage-dsn", dir, "-scep", "-public-url", base, "-api", "k"}, nil, io.Discard, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: a.Handler()}
	go srv.Serve(ln)
	t.Cleanup(func() {
		srv.Close()
		a.Close()
	})
	const topic = "com.apple.mgmt.External.76543210-89ab-4cde-8f01-23456789abcd"
	certPEM, keyPEM := apnsmock.NewProviderCertificate(topic)
	api := &apiclient.Client{BaseURL: base, APIKey: "k"}
	if status, body, err := api.PutPushCert(t.Context(), append(certPEM, keyPEM...)); err != nil || status != http.StatusOK {
		t.Fatalf("uploading the push certificate: %d %s %v", status, body, err)
	}
	var out bytes.Buffer
	if err := run(t.Context(), []string{"-profile-url", base + "/mdm/enroll", "-devices", "2"}, &out); err != nil {
		t.Fatal(err)
	}
	ids := strings.Fields(out.String())
	if len(ids) != 2 {
		t.Fatalf("output %q, want two enrollment IDs", out.String())
	}
	for _, id := range ids {
		if _, err := a.Store.RetrieveEnrollment(t.Context(), id); err != nil {
			t.Errorf("enrollment %s: %v", id, err)
		}
	}
}
