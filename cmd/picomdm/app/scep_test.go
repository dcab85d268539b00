package app

import (
	"bytes"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/picomdm/picomdm/http/api"
	"github.com/picomdm/picomdm/mdm/profile"
	"github.com/picomdm/picomdm/service/scepca"
	"github.com/picomdm/picomdm/test/logtest"
	"github.com/picomdm/picomdm/test/testpki"
)

// importCA is one SCEP CA (scepca.NewCA) shared by the tests below, made
// once: a CA key is 3072-bit RSA, slow to generate under -race.
var importCA struct {
	once      sync.Once
	cert, key []byte
	err       error
}

// importCAFiles writes the shared CA's certificate and key to a temporary
// directory and returns their paths.
func importCAFiles(t *testing.T) (certFile, keyFile string) {
	t.Helper()
	importCA.once.Do(func() { importCA.cert, importCA.key, importCA.err = scepca.NewCA("PicoMDM app test CA") })
	if importCA.err != nil {
		t.Fatal(importCA.err)
	}
	return writeCAFiles(t, importCA.cert, importCA.key)
}

func writeCAFiles(t *testing.T, certPEM, keyPEM []byte) (certFile, keyFile string) {
	t.Helper()
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "scep-ca.pem"), filepath.Join(dir, "scep-ca.key")
	if err := os.WriteFile(certFile, certPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, keyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}

// ecdsaCA returns a self-signed ECDSA CA certificate and key in PEM: a
// valid CA, but not one SCEP can use.
func ecdsaCA(t *testing.T) (certPEM, keyPEM []byte) {
	t.Helper()
	ca := testpki.NewCA(t, "ECDSA test CA")
	return ca.PEM(), ca.KeyPEM(t, "PRIVATE KEY")
}

// startApp runs New(args), which must succeed, and serves its handler;
// it returns the app, the server's URL and the app's log.
func startApp(t *testing.T, args ...string) (*App, string, *logtest.Buffer) {
	t.Helper()
	var log logtest.Buffer
	a, err := New(args, nil, io.Discard, &log)
	if err != nil {
		t.Fatalf("New(%q): %v", args, err)
	}
	srv := httptest.NewServer(a.Handler())
	t.Cleanup(func() {
		srv.Close()
		a.Close()
	})
	return a, srv.URL, &log
}

// httpGet GETs url and returns the status, content type and body.
func httpGet(t *testing.T, url string) (int, string, []byte) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, resp.Header.Get("Content-Type"), body
}

// TestSCEPFlagErrors: the flags of the built-in SCEP CA and the generated
// enrollment profile are checked at start; a bad one stops New with an
// error naming what is wrong.
func TestSCEPFlagErrors(t *testing.T) {
	caFile, caKeyFile := importCAFiles(t)
	ecCert, ecKey := ecdsaCA(t)
	ecCertFile, ecKeyFile := writeCAFiles(t, ecCert, ecKey)
	// -scep with an imported CA (so no CA key is generated per case) on
	// throw-away storage.
	scep := []string{"-storage", "inmem", "-scep", "-scep-ca", caFile, "-scep-ca-key", caKeyFile}
	with := func(extra ...string) []string { return append(slices.Clone(scep), extra...) }
	for _, tc := range []struct {
		name string
		args []string
		want string // in the error
		is   error  // the error wraps it, when not nil
	}{
		{"-public-url without -scep", []string{"-storage", "inmem", "-ca", caFile, "-public-url", "https://mdm.example.com"}, "-scep", nil},
		{"-public-url ftp", with("-public-url", "ftp://x"), "https", nil},
		{"-public-url https without host", with("-public-url", "https://"), "https", nil},
		{"-public-url https with a path but no host", with("-public-url", "https:///mdm"), "https", nil},
		{"-public-url relative", with("-public-url", "mdm.example.com"), "https", nil},
		{"-public-url with a query", with("-public-url", "https://mdm.example.com/?a=b"), "query", nil},
		{"-public-url http on a public host without -dev", with("-public-url", "http://mdm.example.com"), "https", nil},
		{"-scep-ca without -scep-ca-key", []string{"-storage", "inmem", "-scep", "-scep-ca", caFile}, "-scep-ca-key", nil},
		{"-scep-ca-key without -scep-ca", []string{"-storage", "inmem", "-scep", "-scep-ca-key", caKeyFile}, "-scep-ca", nil},
		{"-scep-ca missing", []string{"-storage", "inmem", "-scep", "-scep-ca", filepath.Join(t.TempDir(), "missing.pem"), "-scep-ca-key", caKeyFile}, "-scep-ca", nil},
		{"-scep-ca with an ECDSA key", []string{"-storage", "inmem", "-scep", "-scep-ca", ecCertFile, "-scep-ca-key", ecKeyFile}, "RSA", scepca.ErrNotRSA},
		{"-scep-ca with another CA's key", []string{"-storage", "inmem", "-scep", "-scep-ca", caFile, "-scep-ca-key", ecKeyFile}, "-scep-ca", nil},
		{"-scep-key-size 3000", with("-public-url", "https://mdm.example.com", "-scep-key-size", "3000"), "-scep-key-size", nil},
		{"-scep-validity-days 0", with("-scep-validity-days", "0"), "-scep-validity-days", nil},
		{"-scep-validity-days negative", with("-scep-validity-days", "-1"), "-scep-validity-days", nil},
		{"-enroll-challenge-ttl too long", with("-enroll-challenge-ttl", "100000h"), "-enroll-challenge-ttl", nil},
		{"-enroll-challenge-ttl zero", with("-enroll-challenge-ttl", "0s"), "-enroll-challenge-ttl", nil},
		{"-scep-ca without -scep", []string{"-storage", "inmem", "-ca", caFile, "-scep-ca", caFile, "-scep-ca-key", caKeyFile}, "-scep", nil},
		{"-scep-challenge without -scep", []string{"-storage", "inmem", "-ca", caFile, "-scep-challenge", "x"}, "-scep", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, err := New(tc.args, nil, io.Discard, io.Discard)
			if err == nil {
				a.Close()
				t.Fatalf("New(%q) succeeded, want an error", tc.args)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("New(%q): %v; want it to mention %q", tc.args, err, tc.want)
			}
			if tc.is != nil && !errors.Is(err, tc.is) {
				t.Errorf("New(%q): %v; want it to wrap %v", tc.args, err, tc.is)
			}
		})
	}
}

// TestSCEPPublicURLAccepted: https anywhere, and plain http on a loopback
// host (or anywhere with -dev), are public URLs the server starts with.
func TestSCEPPublicURLAccepted(t *testing.T) {
	caFile, caKeyFile := importCAFiles(t)
	for _, tc := range []struct {
		name string
		args []string
	}{
		{"https", []string{"-public-url", "https://mdm.example.com"}},
		{"https with a path", []string{"-public-url", "https://mdm.example.com/picomdm/"}},
		{"http on 127.0.0.1", []string{"-public-url", "http://127.0.0.1:1"}},
		{"http on localhost", []string{"-public-url", "http://localhost:9000"}},
		{"http on ::1", []string{"-public-url", "http://[::1]:9000"}},
		{"http on a public host with -dev", []string{"-dev", "-public-url", "http://mdm.example.com"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{"-storage", "file", "-storage-dsn", filepath.Join(t.TempDir(), "db"),
				"-scep", "-scep-ca", caFile, "-scep-ca-key", caKeyFile}, tc.args...)
			a, url, _ := startApp(t, args...)
			if !slices.Contains(a.Routes(), "/mdm/enroll") {
				t.Errorf("New(%q) serves no /mdm/enroll; routes %v", args, a.Routes())
			}
			// Without a stored push certificate the profile has no topic
			// yet (-dev falls back to a placeholder).
			want := http.StatusServiceUnavailable
			if slices.Contains(tc.args, "-dev") {
				want = http.StatusOK
			}
			if status, _, body := httpGet(t, url+"/mdm/enroll"); status != want {
				t.Errorf("GET /mdm/enroll: %d %s; want %d", status, body, want)
			}
		})
	}
}

// TestSCEPImportCA: -scep-ca and -scep-ca-key make the given CA the
// built-in one: GetCACert answers exactly its certificate, it stays
// stored for starts without the flags, and a start importing the CA
// already stored changes nothing and warns of no replacement.
func TestSCEPImportCA(t *testing.T) {
	caFile, caKeyFile := importCAFiles(t)
	block, _ := pem.Decode(importCA.cert)
	if block == nil {
		t.Fatal("scepca.NewCA made no PEM certificate")
	}
	dsn := filepath.Join(t.TempDir(), "db")
	base := []string{"-storage", "file", "-storage-dsn", dsn, "-scep"}
	imported := append(slices.Clone(base), "-scep-ca", caFile, "-scep-ca-key", caKeyFile)

	check := func(name string, args []string) *logtest.Buffer {
		t.Helper()
		a, url, log := startApp(t, args...)
		status, ctype, body := httpGet(t, url+"/scep?operation=GetCACert")
		if status != http.StatusOK || !bytes.Equal(body, block.Bytes) {
			t.Errorf("%s: GetCACert: %d %q, %d bytes; want 200 and exactly the imported certificate", name, status, ctype, len(body))
		}
		if strings.Contains(log.String(), "created the SCEP CA") {
			t.Errorf("%s: a new SCEP CA was created instead of using the imported one", name)
		}
		a.Close()
		return log
	}
	check("first import", imported)
	if log := check("second import of the same CA", imported); strings.Contains(log.String(), "replacing") {
		t.Errorf("importing the CA already stored warns of a replacement:\n%s", log)
	}
	check("start without -scep-ca", base)
}

// TestSCEPWithoutCA: with -scep and no -ca the server serves MDM,
// trusting its built-in CA, which it creates at the first start and keeps.
func TestSCEPWithoutCA(t *testing.T) {
	dsn := filepath.Join(t.TempDir(), "db")
	args := []string{"-storage", "file", "-storage-dsn", dsn, "-scep"}
	a, url, log := startApp(t, args...)
	for _, route := range []string{"/mdm", "/scep"} {
		if !slices.Contains(a.Routes(), route) {
			t.Errorf("-scep without -ca: %s not served; routes %v", route, a.Routes())
		}
	}
	if !strings.Contains(log.String(), "created the SCEP CA") {
		t.Errorf("the first -scep start does not log creating the SCEP CA:\n%s", log)
	}
	status, _, first := httpGet(t, url+"/scep?operation=GetCACert")
	if status != http.StatusOK {
		t.Fatalf("GetCACert: %d", status)
	}
	cert, err := x509.ParseCertificate(first)
	if err != nil || !cert.IsCA {
		t.Fatalf("GetCACert answered no CA certificate: %v", err)
	}
	if _, ok := cert.PublicKey.(*rsa.PublicKey); !ok {
		t.Errorf("the created CA's key is %T, want RSA", cert.PublicKey)
	}
	// An unsigned MDM request is refused by the device-identity check, not
	// for want of MDM.
	if status, _, _ := httpGet(t, url+"/mdm"); status == http.StatusNotFound {
		t.Errorf("/mdm answers 404 with -scep and no -ca")
	}
	a.Close()

	_, url, log = startApp(t, args...)
	if strings.Contains(log.String(), "created the SCEP CA") {
		t.Error("the second -scep start created another SCEP CA")
	}
	if _, _, again := httpGet(t, url+"/scep?operation=GetCACert"); !bytes.Equal(again, first) {
		t.Error("GetCACert after a restart answers another certificate")
	}
}

// TestSCEPDevMode: -dev serves the generated profile at /mdm/enroll (with
// a placeholder topic while no push certificate is stored) and the
// built-in CA at /scep.
func TestSCEPDevMode(t *testing.T) {
	a, url, _ := startApp(t, "-dev", "-storage", "file", "-storage-dsn", filepath.Join(t.TempDir(), "db"))
	if !a.Config.SCEP || a.Config.PublicURL == "" {
		t.Errorf("-dev: SCEP %v, public URL %q; want the built-in CA and a public URL", a.Config.SCEP, a.Config.PublicURL)
	}
	status, ctype, body := httpGet(t, url+"/mdm/enroll")
	if status != http.StatusOK || ctype != profile.ContentType {
		t.Fatalf("-dev: GET /mdm/enroll: %d %q %s", status, ctype, body)
	}
	for _, want := range []string{"com.apple.mdm", "com.apple.security.scep", DevTopic, a.Config.PublicURL + "/scep"} {
		if !bytes.Contains(body, []byte(want)) {
			t.Errorf("-dev profile does not contain %q", want)
		}
	}
	if status, _, body := httpGet(t, url+"/scep?operation=GetCACert"); status != http.StatusOK || len(body) == 0 {
		t.Errorf("-dev: GetCACert: %d, %d bytes", status, len(body))
	}
}

// TestSCEPRoutes: -scep serves /scep and, with -api, the enrollment API;
// -public-url adds /mdm/enroll and the API's profile route; without -scep
// none of them is registered.
func TestSCEPRoutes(t *testing.T) {
	caFile, caKeyFile := importCAFiles(t)
	enrollAPI := []string{api.RouteChallenges, api.RouteChallenge, api.RouteIssuedCerts, api.RouteIssuedCert}
	all := append([]string{"/scep", "/mdm/enroll", api.RouteEnrollProfile}, enrollAPI...)
	for _, tc := range []struct {
		name string
		args []string
		want []string // of all
	}{
		{"-scep -public-url -api", []string{"-scep", "-scep-ca", caFile, "-scep-ca-key", caKeyFile, "-public-url", "http://127.0.0.1:1", "-api", "k"}, all},
		{"-scep -api", []string{"-scep", "-scep-ca", caFile, "-scep-ca-key", caKeyFile, "-api", "k"}, append([]string{"/scep"}, enrollAPI...)},
		{"-scep -public-url", []string{"-scep", "-scep-ca", caFile, "-scep-ca-key", caKeyFile, "-public-url", "http://127.0.0.1:1"}, []string{"/scep", "/mdm/enroll"}},
		{"no -scep", []string{"-ca", caFile, "-api", "k"}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{"-storage", "inmem"}, tc.args...)
			a, _, _ := startApp(t, args...)
			routes := a.Routes()
			for _, r := range all {
				if got, want := slices.Contains(routes, r), slices.Contains(tc.want, r); got != want {
					t.Errorf("New(%q): route %s registered %v, want %v", args, r, got, want)
				}
			}
			if !slices.Contains(routes, "/mdm") {
				t.Errorf("New(%q) serves no /mdm", args)
			}
		})
	}
}

// TestRefusedStartStoresNoCA: a start refused for a bad flag creates no
// SCEP CA (every flag is checked first).
func TestRefusedStartStoresNoCA(t *testing.T) {
	dir := t.TempDir()
	args := []string{"-storage", "file", "-storage-dsn", dir, "-scep", "-public-url", "http://mdm.example.com"}
	if a, err := New(args, nil, io.Discard, io.Discard); err == nil {
		a.Close()
		t.Fatal("New succeeded with an http public URL on a public host")
	}
	if _, err := os.Stat(filepath.Join(dir, "scep", "ca.json")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("a refused start stored a CA: %v", err)
	}
}
