package e2e

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"fmt"
	"github.com/picomdm/picomdm/test/logtest"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/picomdm/picomdm/cmd/picomdm/app"
	"github.com/picomdm/picomdm/mdm"
	"github.com/picomdm/picomdm/test/apiclient"
	"github.com/picomdm/picomdm/test/device"
	"github.com/smallstep/pkcs7"
)

// startServing runs the server as cmd/picomdm does, through app.Serve on
// a TCP listener, so that the listener's limits (header size, -max-conns)
// apply, on the named backend with a fresh device CA and the extra flags
// given. The server is stopped when the test ends (its stop method is not
// for it: there is no httptest server).
func startServing(t *testing.T, storageName, dsn string, extra ...string) *server {
	t.Helper()
	ca, args := backendArgs(t, storageName, dsn, extra...)
	s := &server{t: t, ca: ca, stdout: &logtest.Buffer{}, stderr: &logtest.Buffer{}}
	a, err := app.New(args, nil, s.stdout, s.stderr)
	if err != nil {
		t.Fatalf("app.New(%v): %v", args, err)
	}
	s.app = a
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		a.Close()
		t.Fatal(err)
	}
	s.URL = "http://" + ln.Addr().String()
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- a.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-served; err != nil {
			t.Errorf("Serve: %v", err)
		}
		a.Close()
		if t.Failed() {
			t.Logf("server log:\n%s", s.stderr.String())
		}
	})
	return s
}

// extraCertificates returns n certificates from a CA no server trusts,
// all for one key (issuing is the cost; the server never gets to look at
// them).
func extraCertificates(t *testing.T, n int) []*x509.Certificate {
	t.Helper()
	ca, err := device.NewCA()
	if err != nil {
		t.Fatal(err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	certs := make([]*x509.Certificate, n)
	for i := range certs {
		if certs[i], err = ca.Issue(fmt.Sprintf("padding %d", i), key); err != nil {
			t.Fatal(err)
		}
	}
	return certs
}

// signWith is an Mdm-Signature over body by d that carries d's
// certificate followed by extra: a valid signature by an enrolled device.
func signWith(t *testing.T, d *device.Device, body []byte, extra []*x509.Certificate) string {
	t.Helper()
	sd, err := pkcs7.NewSignedData(body)
	if err != nil {
		t.Fatal(err)
	}
	sd.SetDigestAlgorithm(pkcs7.OIDDigestAlgorithmSHA256)
	if err := sd.AddSigner(d.Cert, d.Key, pkcs7.SignerInfoConfig{}); err != nil {
		t.Fatal(err)
	}
	for _, cert := range extra {
		sd.AddCertificate(cert)
	}
	sd.Detach()
	der, err := sd.Finish()
	if err != nil {
		t.Fatal(err)
	}
	return base64.StdEncoding.EncodeToString(der)
}

// sendSigned PUTs body to the MDM endpoint with the given Mdm-Signature
// and returns the status and answer.
func sendSigned(t *testing.T, s *server, contentType string, body []byte, signature string) (int, []byte) {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx(t), http.MethodPut, s.mdmURL(), strings.NewReader(string(body)))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", contentType)
	req.Header.Set(device.SignatureHeader, signature)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	answer, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, answer
}

// TestAttackManyCertificates sends, through the real listener on every
// backend, messages of an enrolled device whose otherwise valid signature
// carries 1,000 certificates (about 700 KB of header, within the 1 MiB
// limit): each is refused with 400 and a log line, nothing changes, and
// the device goes on. Ten certificates, the limit, are accepted.
func TestAttackManyCertificates(t *testing.T) {
	extra := extraCertificates(t, 999)
	for _, backend := range backends {
		t.Run(backend.name, func(t *testing.T) {
			s := startServing(t, backend.name, backend.dsn(t))
			d := s.enrolled()
			uuid, raw := s.command("ProfileList", d.ID())
			idle := reportBody(t, map[string]any{"UDID": d.UDID, "Status": mdm.StatusIdle})
			tokenUpdate := reportBody(t, map[string]any{
				"MessageType": mdm.MessageTokenUpdate, "UDID": d.UDID,
				"Topic": d.Topic, "PushMagic": "attacker-magic", "Token": []byte("attacker-token"),
			})
			for _, tc := range []struct {
				name, contentType string
				body              []byte
			}{
				{"command report", device.ContentTypeReport, idle},
				{"check-in", device.ContentTypeCheckin, tokenUpdate},
			} {
				status, _ := sendSigned(t, s, tc.contentType, tc.body, signWith(t, d, tc.body, extra))
				if status != http.StatusBadRequest {
					t.Errorf("%s with 1,000 certificates: %d, want 400", tc.name, status)
				}
			}
			if got := s.logContains("more than 10 certificates"); got < 2 {
				t.Errorf("%d refusals logged, want 2", got)
			}
			assertQueueIntact(t, d, uuid, raw)

			// The limit itself: the device's certificate and nine more.
			status, answer := sendSigned(t, s, device.ContentTypeReport, idle, signWith(t, d, idle, extra[:9]))
			if status != http.StatusOK || !strings.Contains(string(answer), uuid) {
				t.Fatalf("10 certificates: %d %q, want 200 with the command", status, answer)
			}
			if next, err := d.Report(ctx(t), uuid, mdm.StatusAcknowledged, nil); err != nil || next != nil {
				t.Fatalf("after the attack: %v %v", next, err)
			}
		})
	}
}

// rawRequest writes a GET of target with a header of fill bytes on a new
// connection to s and returns the answer's status.
func rawRequest(t *testing.T, s *server, target string, fill int) int {
	t.Helper()
	conn, err := net.Dial("tcp", strings.TrimPrefix(s.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(30 * time.Second))
	// Written concurrently: the server may answer (and stop reading)
	// before all of it is sent.
	go fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: picomdm\r\nX-Fill: %s\r\n\r\n", target, strings.Repeat("f", fill))
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// TestHeaderLimit: the real listener takes Go's default 1 MiB of headers
// on the device and API routes alike, and answers 431 beyond without
// handing the request to any handler; NanoMDM's path form still names
// thousands of IDs.
func TestHeaderLimit(t *testing.T) {
	s := startServing(t, "file", filepath.Join(t.TempDir(), "db"))
	if got := rawRequest(t, s, "/version", 900<<10); got != http.StatusOK {
		t.Errorf("900 KiB of headers: %d, want 200", got)
	}
	for _, target := range []string{"/mdm", "/version", "/v1/enqueue/x"} {
		if got := rawRequest(t, s, target, 2<<20); got != http.StatusRequestHeaderFieldsTooLarge {
			t.Errorf("%s with 2 MiB of headers: %d, want 431", target, got)
		}
	}
	// 10,000 UUID-sized IDs in the path (about 370 KB) still go through.
	d := s.enrolled()
	ids := []string{d.ID()}
	for i := 1; i < 10000; i++ {
		ids = append(ids, fmt.Sprintf("%08X-0000-0000-0000-%012d", i, i))
	}
	uuid, raw := apiclient.NewCommand("DeviceInformation", nil)
	status, body := s.api(http.MethodPut, "/v1/enqueue/"+strings.Join(ids, ",")+"?nopush=1", raw)
	if status != http.StatusMultiStatus { // the 9,999 unknown IDs fail
		t.Fatalf("path form with 10,000 IDs: %d %.300s", status, body)
	}
	if cmd, err := d.Idle(ctx(t)); err != nil || cmd == nil || cmd.CommandUUID != uuid {
		t.Fatalf("command queued by the path form: %v %v", cmd, err)
	}
}

// TestAttackAuthProxy runs the auth proxy attacks through the real
// listener on every backend, against an upstream that records what
// reaches it: dot segments and encoded slashes are refused (400) and
// never forwarded, the device's credentials are not passed on, and a
// checked-out enrollment is refused (403) until it enrolls again.
func TestAttackAuthProxy(t *testing.T) {
	for _, backend := range backends {
		t.Run(backend.name, func(t *testing.T) {
			up := newRecorder(t, func(w http.ResponseWriter, r *http.Request, _ []byte) { io.WriteString(w, "upstream") })
			s := startServing(t, backend.name, backend.dsn(t), "-auth-proxy-url", up.srv.URL+"/base")
			c := ctx(t)
			d := s.enrolled()
			proxy := func(path string, header http.Header) int {
				t.Helper()
				req, err := d.NewRequest(c, s.URL+path, "application/json", []byte(`{}`), true)
				if err != nil {
					t.Fatal(err)
				}
				for k, v := range header {
					req.Header[k] = v
				}
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				return resp.StatusCode
			}

			for _, path := range []string{
				"/authproxy/%2e%2e/admin",
				"/authproxy/%2E%2e/admin",
				"/authproxy/a/.%2e/admin",
				"/authproxy/..%2fadmin",
				"/authproxy/..;/admin",
				"/authproxy/a%2fb",
				"/authproxy/a%5cb",
				"/authproxy/%252e%252e/admin",
			} {
				if got := proxy(path, nil); got != http.StatusBadRequest {
					t.Errorf("%s: %d, want 400", path, got)
				}
			}
			// A plain ".." is redirected out of /authproxy/ by the router.
			if got := proxy("/authproxy/../v1/enqueue/x", nil); got == http.StatusOK {
				t.Errorf("plain dot segment answered 200")
			}
			if n := len(up.all()); n != 0 {
				t.Fatalf("%d unsafe requests reached upstream: %+v", n, up.all())
			}

			if got := proxy("/authproxy/ok/path", http.Header{
				"Authorization": {"Basic bmFub21kbTplMmUtYXBpLWtleQ=="},
				"Cookie":        {"session=admin"},
			}); got != http.StatusOK {
				t.Fatalf("proxied request: %d", got)
			}
			got := up.all()[0]
			if got.Path != "/base/ok/path" || got.Header.Get("X-Enrollment-ID") != d.ID() {
				t.Fatalf("upstream saw %s %v", got.Path, got.Header)
			}
			for _, h := range []string{"Authorization", "Cookie", "Proxy-Authorization"} {
				if v := got.Header.Values(h); len(v) > 0 {
					t.Errorf("upstream received %s: %q", h, v)
				}
			}

			if err := d.CheckOut(c); err != nil {
				t.Fatal(err)
			}
			if got := proxy("/authproxy/ok/path", nil); got != http.StatusForbidden {
				t.Errorf("checked-out device: %d, want 403", got)
			}
			if err := d.Enroll(c); err != nil {
				t.Fatal(err)
			}
			if got := proxy("/authproxy/ok/path", nil); got != http.StatusOK {
				t.Errorf("enrolled again: %d, want 200", got)
			}
			if n := len(up.all()); n != 2 {
				t.Errorf("%d requests reached upstream, want 2", n)
			}
		})
	}
}
