package e2e

import (
	"bytes"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/picomdm/picomdm/mdm/profile"
	"github.com/picomdm/picomdm/storage/storagetest"
	"github.com/picomdm/picomdm/test/apiclient"
	"github.com/picomdm/picomdm/test/device"
	"github.com/smallstep/pkcs7"
)

// TestSeparateCheckinEndpoint: with -checkin, check-ins go to /checkin and
// /mdm takes command reports only.
func TestSeparateCheckinEndpoint(t *testing.T) {
	s := startServer(t, "-checkin")
	c := ctx(t)
	d := s.newDevice(device.WithCheckinURL(s.URL + "/checkin"))
	if err := d.Enroll(c); err != nil {
		t.Fatal(err)
	}
	uuid, _ := s.command("ProfileList", d.ID())
	if cmd, err := d.Idle(c); err != nil || cmd == nil || cmd.CommandUUID != uuid {
		t.Fatalf("command via /mdm: %v %v", cmd, err)
	}
	// A check-in sent to /mdm is read as a (status-less) report: 400.
	plain := s.newDevice()
	if err := plain.Authenticate(c); statusOf(t, err) != http.StatusBadRequest {
		t.Fatalf("check-in on /mdm with -checkin: %v", err)
	}
}

// TestCertHeader: behind a TLS-terminating proxy the certificate comes in
// a header, RFC 9440 or URL-escaped PEM.
func TestCertHeader(t *testing.T) {
	s := startServer(t, "-cert-header", "X-Client-Cert")
	c := ctx(t)
	for _, form := range []device.CertHeaderForm{device.CertHeaderRFC9440, device.CertHeaderEscapedPEM} {
		d := s.newDevice(device.WithCertHeader("X-Client-Cert", form))
		if err := d.Enroll(c); err != nil {
			t.Fatalf("form %d: %v", form, err)
		}
		uuid, _ := s.command("ProfileList", d.ID())
		if cmd, err := d.Idle(c); err != nil || cmd == nil || cmd.CommandUUID != uuid {
			t.Fatalf("form %d: %v %v", form, cmd, err)
		}
	}
	// Without the header: 400.
	d := s.newDevice()
	if err := d.Authenticate(c); statusOf(t, err) != http.StatusBadRequest {
		t.Fatalf("no cert header: %v", err)
	}
}

// TestDevMode: -dev without -ca creates a CA and API key devsim can use.
func TestDevMode(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "db")
	s := startWithArgs(t, nil, []string{"-dev", "-storage-dsn", dir}, nil)
	dev := s.app.Dev
	if dev == nil {
		t.Fatal("no dev files")
	}
	certPEM, err1 := os.ReadFile(dev.CACert)
	keyPEM, err2 := os.ReadFile(dev.CAKey)
	if err1 != nil || err2 != nil {
		t.Fatal(err1, err2)
	}
	ca, err := device.LoadCA(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	s.ca = ca
	if !strings.Contains(s.stderr.String(), "NOT FOR PRODUCTION") || !strings.Contains(s.stderr.String(), dev.CACert) {
		t.Fatalf("dev mode must warn and say where the files are:\n%s", s.stderr.String())
	}
	d := s.enrolled()
	uuid, raw := apiclient.NewCommand("ProfileList", nil)
	status, _, err := apiclient.Enqueue(ctx(t), s.URL, dev.APIKey, []string{d.ID()}, raw, true)
	if err != nil || status != http.StatusOK {
		t.Fatalf("enqueue with the dev API key: %d %v", status, err)
	}
	if cmd, err := d.Idle(ctx(t)); err != nil || cmd == nil || cmd.CommandUUID != uuid {
		t.Fatalf("%v %v", cmd, err)
	}
	// A restart reuses the same CA and key.
	s.stop()
	s2 := startWithArgs(t, ca, []string{"-dev", "-storage-dsn", dir}, nil)
	if s2.app.Dev.APIKey != dev.APIKey {
		t.Fatal("dev API key changed across restarts")
	}
	d.ServerURL = s2.mdmURL()
	if cmd, err := d.Idle(ctx(t)); err != nil || cmd == nil || cmd.CommandUUID != uuid {
		t.Fatalf("device of the first run after restart: %v %v; want its unanswered command", cmd, err)
	}
}

// TestEnvironment: flags can come from PICOMDM_* and NANOMDM_* variables,
// PICOMDM_ winning; the command line wins over both.
func TestEnvironment(t *testing.T) {
	ca, _ := device.NewCA()
	dir := t.TempDir()
	caFile := filepath.Join(dir, "ca.pem")
	os.WriteFile(caFile, ca.CertPEM(), 0o644)
	env := map[string]string{
		"NANOMDM_CA":          caFile,
		"NANOMDM_API":         "legacy-key",
		"PICOMDM_API":         "new-key",
		"PICOMDM_STORAGE_DSN": filepath.Join(dir, "db"),
		"NANOMDM_CHECKIN":     "true",
	}
	s := startWithArgs(t, ca, nil, env)
	if s.app.Config.APIKey != "new-key" || s.app.Config.CA != caFile || !s.app.Config.Checkin {
		t.Fatalf("config from env: %+v", s.app.Config)
	}
	s.stop()
	s = startWithArgs(t, ca, []string{"-api", "flag-key"}, env)
	if s.app.Config.APIKey != "flag-key" {
		t.Fatalf("flag must win over env: %q", s.app.Config.APIKey)
	}
}

// TestDump: -dump writes requests and the commands sent back.
func TestDump(t *testing.T) {
	s := startServer(t, "-dump")
	d := s.enrolled()
	uuid, _ := s.command("ProfileList", d.ID())
	if _, err := d.Idle(ctx(t)); err != nil {
		t.Fatal(err)
	}
	out := s.stdout.String()
	for _, want := range []string{"<string>Authenticate</string>", "<string>TokenUpdate</string>", "<string>Idle</string>", uuid} {
		if !strings.Contains(out, want) {
			t.Fatalf("dump lacks %q:\n%s", want, out)
		}
	}
}

// TestMigration: /migration takes raw check-ins without a device
// certificate; with -retro the migrated device then associates its
// certificate on first contact.
func TestMigration(t *testing.T) {
	src := startServer(t)
	d := src.enrolled()

	dst := startServerWithCA(t, src.ca, "-migration", "-retro")
	for _, msg := range []string{"Authenticate", "TokenUpdate"} {
		body := migrationBody(t, d, msg)
		req, _ := http.NewRequest(http.MethodPut, dst.URL+"/migration", bytes.NewReader(body))
		req.SetBasicAuth("nanomdm", apiKey)
		if got := do(t, req); got != http.StatusOK {
			t.Fatalf("migrating %s: %d", msg, got)
		}
	}
	req, _ := http.NewRequest(http.MethodPut, dst.URL+"/migration", strings.NewReader("garbage"))
	req.SetBasicAuth("nanomdm", apiKey)
	if got := do(t, req); got != http.StatusBadRequest {
		t.Fatalf("garbage migration: %d", got)
	}
	d.ServerURL = dst.mdmURL()
	uuid, _ := dst.command("ProfileList", d.ID())
	if cmd, err := d.Idle(ctx(t)); err != nil || cmd == nil || cmd.CommandUUID != uuid {
		t.Fatalf("migrated device: %v %v", cmd, err)
	}
	// Without -migration there is no endpoint.
	req, _ = http.NewRequest(http.MethodPut, src.URL+"/migration", strings.NewReader("x"))
	req.SetBasicAuth("nanomdm", apiKey)
	if got := do(t, req); got != http.StatusNotFound {
		t.Fatalf("/migration without -migration: %d", got)
	}
}

// migrationBody is the plist the device would send for msg.
func migrationBody(t *testing.T, d *device.Device, msg string) []byte {
	t.Helper()
	var got []byte
	srv := captureServer(t, &got)
	orig := d.ServerURL
	d.ServerURL = srv
	defer func() { d.ServerURL = orig }()
	switch msg {
	case "Authenticate":
		d.Authenticate(ctx(t))
	case "TokenUpdate":
		d.TokenUpdate(ctx(t))
	}
	return got
}

// TestDisableMDM: an API-only replica serves no MDM endpoint.
func TestDisableMDM(t *testing.T) {
	s := startWithArgs(t, nil, []string{"-disable-mdm", "-api", apiKey, "-storage-dsn", filepath.Join(t.TempDir(), "db")}, nil)
	resp, err := http.Post(s.URL+"/mdm", "application/x-apple-aspen-mdm-checkin", strings.NewReader("x"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Fatalf("/mdm on an API-only replica: %d", resp.StatusCode)
	}
	_, raw := apiclient.NewCommand("ProfileList", nil)
	status, _, _ := apiclient.Enqueue(ctx(t), s.URL, apiKey, []string{"X"}, raw, true)
	if status != http.StatusInternalServerError { // unknown enrollment, but the API is there
		t.Fatalf("API on -disable-mdm replica: %d", status)
	}
}

// TestSeveralBackends: repeated -storage flags write to every backend; a
// server on the second backend alone knows the device and its queue.
func TestSeveralBackends(t *testing.T) {
	ca, _ := device.NewCA()
	dir := t.TempDir()
	caFile := filepath.Join(dir, "ca.pem")
	os.WriteFile(caFile, ca.CertPEM(), 0o644)
	first, second := filepath.Join(dir, "first"), filepath.Join(dir, "second")
	s := startWithArgs(t, ca, []string{"-ca", caFile, "-api", apiKey,
		"-storage", "file", "-storage-dsn", first, "-storage", "file", "-storage-dsn", second}, nil)
	d := s.enrolled()
	uuid, _ := s.command("ProfileList", d.ID())
	s.stop()

	s2 := startWithArgs(t, ca, []string{"-ca", caFile, "-api", apiKey, "-storage", "file", "-storage-dsn", second}, nil)
	d.ServerURL = s2.mdmURL()
	if cmd, err := d.Idle(ctx(t)); err != nil || cmd == nil || cmd.CommandUUID != uuid {
		t.Fatalf("second backend: %v %v, want the command queued through the first server", cmd, err)
	}
}

// TestDisableMDMWithCheckin: -disable-mdm wins over -checkin: neither MDM
// endpoint is served, the API is.
func TestDisableMDMWithCheckin(t *testing.T) {
	s := startWithArgs(t, nil, []string{"-disable-mdm", "-checkin", "-api", apiKey, "-storage-dsn", filepath.Join(t.TempDir(), "db")}, nil)
	for _, path := range []string{"/mdm", "/checkin"} {
		resp, err := http.Post(s.URL+path, "application/x-apple-aspen-mdm-checkin", strings.NewReader("x"))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusNotFound {
			t.Fatalf("%s on an API-only replica: %d", path, resp.StatusCode)
		}
	}
	if status, _ := s.api(http.MethodGet, "/v1/pushcert?topic=x", nil); status != http.StatusNotFound {
		t.Fatalf("API on -disable-mdm -checkin replica: %d", status)
	}
}

// TestEnrollProfile: -enroll-profile serves the profile at /mdm/enroll,
// CMS-signed with -enroll-sign-cert/-enroll-sign-key.
func TestEnrollProfile(t *testing.T) {
	dir := t.TempDir()
	raw, err := profile.Generate(profile.Options{
		ServerURL: "https://mdm.example.com/mdm",
		Topic:     "com.apple.mgmt.External.test",
		SCEP:      &profile.SCEP{URL: "https://scep.example.com/scep", Challenge: "secret"},
	})
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, "enroll.mobileconfig")
	os.WriteFile(file, raw, 0o644)
	certPEM, keyPEM := storagetest.NewPushCert("")
	os.WriteFile(filepath.Join(dir, "sign.pem"), certPEM, 0o644)
	os.WriteFile(filepath.Join(dir, "sign.key"), keyPEM, 0o600)

	for _, signed := range []bool{false, true} {
		args := []string{"-enroll-profile", file}
		if signed {
			args = append(args, "-enroll-sign-cert", filepath.Join(dir, "sign.pem"), "-enroll-sign-key", filepath.Join(dir, "sign.key"))
		}
		s := startServer(t, args...)
		resp, err := http.Get(s.URL + "/mdm/enroll")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/x-apple-aspen-config" {
			t.Fatalf("signed=%v: %d %q", signed, resp.StatusCode, resp.Header.Get("Content-Type"))
		}
		if !signed && !bytes.Equal(body, raw) {
			t.Fatal("unsigned profile not served byte-exact")
		}
		if signed {
			p7, err := pkcs7.Parse(body)
			if err != nil || p7.Verify() != nil || !bytes.Equal(p7.Content, raw) {
				t.Fatalf("signed profile does not verify or differs: %v", err)
			}
		}
		s.stop()
	}
}
