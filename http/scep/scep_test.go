package scep_test

import (
	"bytes"
	"context"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/smallstep/scep"

	httpscep "github.com/picomdm/picomdm/http/scep"
	"github.com/picomdm/picomdm/service/scepca"
	"github.com/picomdm/picomdm/storage"
	"github.com/picomdm/picomdm/storage/inmem"
	"github.com/picomdm/picomdm/test/device"
	"github.com/picomdm/picomdm/test/logtest"
)

// newServer serves /scep from a fresh CA on an in-memory store.
func newServer(t *testing.T, opts ...scepca.IssuerOption) (*httptest.Server, *scepca.CA, storage.Store, *logtest.Buffer) {
	t.Helper()
	store := inmem.New()
	ca, created, err := scepca.Load(context.Background(), store)
	if err != nil || !created {
		t.Fatalf("Load: created=%v err=%v", created, err)
	}
	logs := &logtest.Buffer{}
	logger := slog.New(slog.NewJSONHandler(logs, nil))
	h, err := httpscep.New(scepca.NewIssuer(ca, store, append(opts, scepca.WithLogger(logger))...), httpscep.WithLogger(logger))
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle(httpscep.Path, h)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv, ca, store, logs
}

var subject = pkix.Name{CommonName: "device", Organization: []string{"PicoMDM"}}

func TestStaticChallenge(t *testing.T) {
	srv, ca, store, _ := newServer(t, scepca.WithStaticChallenge("s3cret"))
	ctx := context.Background()
	cert, key, err := device.SCEPEnroll(ctx, srv.URL+"/scep", "s3cret", subject, 2048)
	if err != nil {
		t.Fatalf("SCEPEnroll: %v", err)
	}
	if err := cert.CheckSignatureFrom(ca.Cert); err != nil {
		t.Errorf("issued certificate not signed by the CA: %v", err)
	}
	if !key.PublicKey.Equal(cert.PublicKey) {
		t.Error("issued certificate is not for the device's key")
	}
	if cert.Subject.CommonName != "device" || !hasClientAuth(cert) {
		t.Errorf("subject %v, ext key usage %v", cert.Subject, cert.ExtKeyUsage)
	}
	rec, err := store.RetrieveSCEPCert(ctx, scepca.SerialText(cert.SerialNumber))
	if err != nil {
		t.Fatalf("issued certificate not recorded: %v", err)
	}
	if rec.ChallengeID != "" || !bytes.Equal(rec.DER, cert.Raw) {
		t.Errorf("record: challenge %q, DER matches %v", rec.ChallengeID, bytes.Equal(rec.DER, cert.Raw))
	}
	// Chained to the CA, as cert-auth's verifier does.
	pool := x509.NewCertPool()
	pool.AddCert(ca.Cert)
	if _, err := cert.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Errorf("issued certificate does not verify against the CA: %v", err)
	}
}

func hasClientAuth(c *x509.Certificate) bool {
	for _, u := range c.ExtKeyUsage {
		if u == x509.ExtKeyUsageClientAuth {
			return true
		}
	}
	return false
}

func TestOneTimeChallenge(t *testing.T) {
	srv, _, store, logs := newServer(t, scepca.WithStaticChallenge("static"))
	ctx := context.Background()
	pw, c, err := scepca.MintChallenge(ctx, store, time.Now(), time.Hour, "for a test")
	if err != nil {
		t.Fatal(err)
	}
	cert, _, err := device.SCEPEnroll(ctx, srv.URL+"/scep", pw, subject, 2048)
	if err != nil {
		t.Fatalf("first use: %v", err)
	}
	rec, err := store.RetrieveSCEPCert(ctx, scepca.SerialText(cert.SerialNumber))
	if err != nil || rec.ChallengeID != c.ID {
		t.Fatalf("record %+v, %v; want challenge %s", rec, err, c.ID)
	}
	used, err := store.RetrieveSCEPChallenge(ctx, c.ID)
	if err != nil || used.UsedAt.IsZero() {
		t.Fatalf("challenge after use: %+v, %v", used, err)
	}
	before := countCerts(t, store)
	_, _, err = device.SCEPEnroll(ctx, srv.URL+"/scep", pw, subject, 2048)
	var fail *device.SCEPFailure
	if !errors.As(err, &fail) || fail.FailInfo != scep.BadRequest {
		t.Fatalf("second use: %v, want a CertRep FAILURE badRequest", err)
	}
	if n := countCerts(t, store); n != before {
		t.Errorf("refused request recorded a certificate: %d → %d", before, n)
	}
	if !strings.Contains(logs.String(), "SCEP request refused") {
		t.Errorf("no log line for the refusal:\n%s", logs)
	}
}

func TestRefusedChallenges(t *testing.T) {
	srv, _, store, _ := newServer(t, scepca.WithStaticChallenge("static"))
	ctx := context.Background()
	revokedPW, revoked, err := scepca.MintChallenge(ctx, store, time.Now(), time.Hour, "")
	if err != nil {
		t.Fatal(err)
	}
	if err := store.RevokeSCEPChallenge(ctx, revoked.ID, time.Now()); err != nil {
		t.Fatal(err)
	}
	expiredPW, _, err := scepca.MintChallenge(ctx, store, time.Now().Add(-2*time.Hour), time.Hour, "")
	if err != nil {
		t.Fatal(err)
	}
	for name, pw := range map[string]string{
		"none": "", "wrong static": "statiC", "unknown": "never-minted",
		"revoked": revokedPW, "expired": expiredPW, "oversized": strings.Repeat("x", scepca.MaxChallengeBytes+1),
	} {
		t.Run(name, func(t *testing.T) {
			before := countCerts(t, store)
			_, _, err := device.SCEPEnroll(ctx, srv.URL+"/scep", pw, subject, 2048)
			var fail *device.SCEPFailure
			if !errors.As(err, &fail) {
				t.Fatalf("err %v, want a CertRep FAILURE", err)
			}
			if n := countCerts(t, store); n != before {
				t.Errorf("refused request recorded a certificate")
			}
		})
	}
}

func TestWeakKeyRefused(t *testing.T) {
	srv, _, store, _ := newServer(t, scepca.WithStaticChallenge("static"))
	_, _, err := device.SCEPEnroll(context.Background(), srv.URL+"/scep", "static", subject, 1024)
	var fail *device.SCEPFailure
	if !errors.As(err, &fail) {
		t.Fatalf("1024-bit key: %v, want a CertRep FAILURE", err)
	}
	if n := countCerts(t, store); n != 0 {
		t.Errorf("%d certificates recorded", n)
	}
}

func TestBadRequests(t *testing.T) {
	srv, ca, _, _ := newServer(t)
	for _, tc := range []struct {
		name, method, query string
		body                []byte
		want                int
	}{
		{"no operation", "GET", "", nil, http.StatusBadRequest},
		{"unknown operation", "GET", "operation=GetNextCACert", nil, http.StatusBadRequest},
		{"PUT", "PUT", "operation=GetCACaps", nil, http.StatusMethodNotAllowed},
		{"huge message", "POST", "operation=PKIOperation", make([]byte, httpscep.MaxMessageBytes+1), http.StatusRequestEntityTooLarge},
		{"garbage message", "POST", "operation=PKIOperation", []byte("not CMS"), http.StatusBadRequest},
		{"garbage GET message", "GET", "operation=PKIOperation&message=bm90IENNUw", nil, http.StatusBadRequest},
		{"GET message not base64", "GET", "operation=PKIOperation&message=%25%25", nil, http.StatusBadRequest},
		{"huge GET message", "GET", "operation=PKIOperation&message=" + strings.Repeat("A", 4*httpscep.MaxMessageBytes/3+8), nil, http.StatusRequestEntityTooLarge},
		{"caps", "GET", "operation=GetCACaps", nil, http.StatusOK},
		{"ca cert", "GET", "operation=GetCACert", nil, http.StatusOK},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest(tc.method, srv.URL+"/scep?"+tc.query, bytes.NewReader(tc.body))
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			if resp.StatusCode != tc.want {
				t.Fatalf("status %d, want %d", resp.StatusCode, tc.want)
			}
			if tc.want != http.StatusOK {
				var b bytes.Buffer
				b.ReadFrom(resp.Body)
				if strings.Contains(b.String(), "ber2der") || strings.Contains(b.String(), "asn1") {
					t.Errorf("answer leaks the library's error: %q", b.String())
				}
			}
			if tc.name == "caps" {
				var b bytes.Buffer
				b.ReadFrom(resp.Body)
				if strings.Contains(b.String(), "Renewal") || !strings.Contains(b.String(), "POSTPKIOperation") {
					t.Errorf("GetCACaps: %q", b.String())
				}
			}
			if tc.name == "ca cert" {
				var b bytes.Buffer
				b.ReadFrom(resp.Body)
				if !bytes.Equal(b.Bytes(), ca.Cert.Raw) || resp.Header.Get("Content-Type") != "application/x-x509-ca-cert" {
					t.Errorf("GetCACert: %d bytes, %s", b.Len(), resp.Header.Get("Content-Type"))
				}
			}
		})
	}
}

func countCerts(t *testing.T, store storage.SCEPStore) int {
	t.Helper()
	certs, _, err := store.ListSCEPCerts(context.Background(), storage.Page{Limit: storage.MaxPageLimit})
	if err != nil {
		t.Fatal(err)
	}
	return len(certs)
}
