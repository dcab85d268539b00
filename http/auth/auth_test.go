package auth_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/picomdm/picomdm/http/auth"
	"github.com/picomdm/picomdm/test/testpki"
	"github.com/smallstep/pkcs7"
)

var body = []byte(`<?xml version="1.0" encoding="UTF-8"?><plist version="1.0"><dict><key>MessageType</key><string>Authenticate</string></dict></plist>`)

// wantKind fails t unless err is an *auth.Error of kind.
func wantKind(t *testing.T, err, kind error) {
	t.Helper()
	var authErr *auth.Error
	if !errors.As(err, &authErr) {
		t.Fatalf("error %v (%T) is not an *auth.Error", err, err)
	}
	if !errors.Is(err, kind) {
		t.Fatalf("error %v is not of kind %v", err, kind)
	}
}

func TestSignatureCert(t *testing.T) {
	ca := testpki.NewCA(t, "Test CA")
	ecID := ca.Issue(t, "ecdsa device")
	rsaID := ca.Issue(t, "rsa device", testpki.RSA())
	other := ca.Issue(t, "other device")

	sha1Sig := func() string {
		sd, err := pkcs7.NewSignedData(body)
		if err != nil {
			t.Fatal(err)
		}
		sd.SetDigestAlgorithm(pkcs7.OIDDigestAlgorithmSHA1)
		if err := sd.AddSigner(rsaID.Cert, rsaID.Key, pkcs7.SignerInfoConfig{}); err != nil {
			t.Fatal(err)
		}
		sd.Detach()
		der, err := sd.Finish()
		if err != nil {
			t.Fatal(err)
		}
		return base64.StdEncoding.EncodeToString(der)
	}()
	attached := func() string {
		// A non-detached signature over other content must not vouch for
		// this body.
		sd, err := pkcs7.NewSignedData([]byte("other content"))
		if err != nil {
			t.Fatal(err)
		}
		if err := sd.AddSigner(ecID.Cert, ecID.Key, pkcs7.SignerInfoConfig{}); err != nil {
			t.Fatal(err)
		}
		der, err := sd.Finish()
		if err != nil {
			t.Fatal(err)
		}
		return base64.StdEncoding.EncodeToString(der)
	}()
	degenerate, err := pkcs7.DegenerateCertificate(ecID.Cert.Raw)
	if err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		name   string
		header string
		body   []byte
		want   *x509.Certificate
		kind   error
	}{
		{name: "ECDSA", header: ecID.Sign(t, body), body: body, want: ecID.Cert},
		{name: "RSA", header: rsaID.Sign(t, body), body: body, want: rsaID.Cert},
		{name: "RSA SHA-1", header: sha1Sig, body: body, want: rsaID.Cert},
		{name: "empty body", header: ecID.Sign(t, nil), body: nil, want: ecID.Cert},
		{name: "missing", header: "", body: body, kind: auth.ErrNoIdentity},
		{name: "bad base64", header: "not base64!", body: body, kind: auth.ErrMalformed},
		{name: "not CMS", header: base64.StdEncoding.EncodeToString([]byte("garbage")), body: body, kind: auth.ErrMalformed},
		{name: "no signers", header: base64.StdEncoding.EncodeToString(degenerate), body: body, kind: auth.ErrMalformed},
		{name: "two signers", header: base64.StdEncoding.EncodeToString(testpki.SignDER(t, body, ecID, other)), body: body, kind: auth.ErrMalformed},
		{name: "other body", header: ecID.Sign(t, body), body: append(bytes.Clone(body), ' '), kind: auth.ErrBadSignature},
		{name: "attached other content", header: attached, body: body, kind: auth.ErrBadSignature},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cert, err := auth.SignatureCert(tc.header, tc.body)
			if tc.kind != nil {
				wantKind(t, err, tc.kind)
				if cert != nil {
					t.Fatal("certificate returned with an error")
				}
				return
			}
			if err != nil {
				t.Fatalf("SignatureCert: %v", err)
			}
			if !cert.Equal(tc.want) {
				t.Fatalf("got certificate %q, want %q", cert.Subject, tc.want.Subject)
			}
		})
	}
}

func TestSignatureCertExpiredAtSigning(t *testing.T) {
	ca := testpki.NewCA(t, "Test CA")
	expired := ca.Issue(t, "expired", testpki.Validity(time.Now().Add(-48*time.Hour), time.Now().Add(-24*time.Hour)))
	_, err := auth.SignatureCert(expired.Sign(t, body), body)
	wantKind(t, err, auth.ErrExpired)
}

func TestHeaderCert(t *testing.T) {
	ca := testpki.NewCA(t, "Test CA")
	id := ca.Issue(t, "device")
	pemText := string(id.PEM())
	// nginx's $ssl_client_escaped_cert escapes like a URL component: %20
	// for spaces, %0A for newlines, %2B for '+'.
	nginx := strings.NewReplacer("%", "%25", " ", "%20", "\n", "%0A", "+", "%2B", "/", "%2F", "=", "%3D").Replace(pemText)
	rfc9440 := ":" + base64.StdEncoding.EncodeToString(id.Cert.Raw) + ":"

	for _, tc := range []struct {
		name  string
		value string
		kind  error
	}{
		{name: "RFC 9440", value: rfc9440},
		{name: "nginx escaped PEM", value: nginx},
		{name: "query escaped PEM", value: url.QueryEscape(pemText)},
		{name: "missing", value: "", kind: auth.ErrNoIdentity},
		{name: "lone colon", value: ":", kind: auth.ErrMalformed},
		{name: "RFC 9440 unterminated", value: strings.TrimSuffix(rfc9440, ":"), kind: auth.ErrMalformed},
		{name: "RFC 9440 bad base64", value: ":!!!:", kind: auth.ErrMalformed},
		{name: "RFC 9440 not DER", value: ":" + base64.StdEncoding.EncodeToString([]byte("junk")) + ":", kind: auth.ErrMalformed},
		{name: "bad escape", value: "%zz", kind: auth.ErrMalformed},
		{name: "not PEM", value: "hello", kind: auth.ErrMalformed},
		{name: "PEM of a key", value: url.QueryEscape("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"), kind: auth.ErrMalformed},
		{name: "PEM not DER", value: url.QueryEscape("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"), kind: auth.ErrMalformed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cert, err := auth.HeaderCert(tc.value)
			if tc.kind != nil {
				wantKind(t, err, tc.kind)
				return
			}
			if err != nil {
				t.Fatalf("HeaderCert: %v", err)
			}
			if !cert.Equal(id.Cert) {
				t.Fatal("got a different certificate")
			}
		})
	}
}

func TestVerifier(t *testing.T) {
	ca := testpki.NewCA(t, "Test CA")
	inter := ca.Intermediate(t, "Test Intermediate")
	otherCA := testpki.NewCA(t, "Other CA")
	now := time.Now()

	direct, err := auth.NewVerifier(ca.PEM(), nil)
	if err != nil {
		t.Fatal(err)
	}
	withInter, err := auth.NewVerifier(ca.PEM(), inter.PEM())
	if err != nil {
		t.Fatal(err)
	}
	later, err := auth.NewVerifier(ca.PEM(), nil, auth.WithClock(func() time.Time { return now.Add(2 * 365 * 24 * time.Hour) }))
	if err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		name     string
		verifier auth.Verifier
		cert     *x509.Certificate
		kind     error
	}{
		{name: "good", verifier: direct, cert: ca.Issue(t, "d").Cert},
		{name: "RSA", verifier: direct, cert: ca.Issue(t, "d", testpki.RSA()).Cert},
		{name: "through intermediate", verifier: withInter, cert: inter.Issue(t, "d").Cert},
		{name: "no extended key usage extension", verifier: direct, cert: ca.Issue(t, "d", testpki.ExtKeyUsage()).Cert},
		{name: "client and server auth", verifier: direct, cert: ca.Issue(t, "d", testpki.ExtKeyUsage(x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth)).Cert},
		{name: "nil", verifier: direct, cert: nil, kind: auth.ErrNoIdentity},
		{name: "intermediate not configured", verifier: direct, cert: inter.Issue(t, "d").Cert, kind: auth.ErrUntrusted},
		{name: "other CA", verifier: direct, cert: otherCA.Issue(t, "d").Cert, kind: auth.ErrUntrusted},
		{name: "self-signed CA itself", verifier: direct, cert: otherCA.Cert, kind: auth.ErrUntrusted},
		{name: "server auth only", verifier: direct, cert: ca.Issue(t, "d", testpki.ExtKeyUsage(x509.ExtKeyUsageServerAuth)).Cert, kind: auth.ErrKeyUsage},
		{name: "expired", verifier: direct, cert: ca.Issue(t, "d", testpki.Validity(now.Add(-2*time.Hour), now.Add(-time.Hour))).Cert, kind: auth.ErrExpired},
		{name: "not yet valid", verifier: direct, cert: ca.Issue(t, "d", testpki.Validity(now.Add(time.Hour), now.Add(2*time.Hour))).Cert, kind: auth.ErrExpired},
		{name: "expired by the clock", verifier: later, cert: ca.Issue(t, "d").Cert, kind: auth.ErrExpired},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.verifier.Verify(tc.cert)
			if tc.kind == nil {
				if err != nil {
					t.Fatalf("Verify: %v", err)
				}
				return
			}
			wantKind(t, err, tc.kind)
		})
	}
}

func TestNewVerifier(t *testing.T) {
	ca := testpki.NewCA(t, "Test CA")
	junkCert := []byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
	keyOnly := []byte("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")
	for _, tc := range []struct {
		name      string
		ca, inter []byte
		wantErr   bool
	}{
		{name: "CA only", ca: ca.PEM()},
		{name: "CA after a key block", ca: append(bytes.Clone(keyOnly), ca.PEM()...)},
		{name: "no CA", ca: nil, wantErr: true},
		{name: "key only", ca: keyOnly, wantErr: true},
		{name: "undecodable CA", ca: junkCert, wantErr: true},
		{name: "undecodable intermediate", ca: ca.PEM(), inter: junkCert, wantErr: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := auth.NewVerifier(tc.ca, tc.inter)
			if (err != nil) != tc.wantErr {
				t.Fatalf("NewVerifier error = %v, want error %v", err, tc.wantErr)
			}
		})
	}
}

func TestCertHash(t *testing.T) {
	cert := testpki.NewCA(t, "Test CA").Issue(t, "d").Cert
	sum := sha256.Sum256(cert.Raw)
	want := hex.EncodeToString(sum[:])
	got := auth.CertHash(cert)
	if got != want {
		t.Fatalf("CertHash = %s, want %s", got, want)
	}
	if got != strings.ToLower(got) || len(got) != 64 {
		t.Fatalf("CertHash %q is not 64 lower-case hex digits", got)
	}
}

func TestContext(t *testing.T) {
	if _, ok := auth.FromContext(context.Background()); ok {
		t.Fatal("certificate in an empty context")
	}
	cert := testpki.NewCA(t, "Test CA").Issue(t, "d").Cert
	got, ok := auth.FromContext(auth.NewContext(context.Background(), cert))
	if !ok || got != cert {
		t.Fatal("certificate not carried by the context")
	}
}

func TestErrorText(t *testing.T) {
	err := &auth.Error{Kind: auth.ErrMalformed, Err: errors.New("cause")}
	if got, want := err.Error(), "auth: malformed identity: cause"; got != want {
		t.Fatalf("Error() = %q, want %q", got, want)
	}
	if got, want := (&auth.Error{Kind: auth.ErrNoIdentity}).Error(), auth.ErrNoIdentity.Error(); got != want {
		t.Fatalf("Error() = %q, want %q", got, want)
	}
}

// TestSignatureSigner: the signer SignatureSigner names without the body
// is the one SignatureCert verifies over it; garbage is refused alike.
func TestSignatureSigner(t *testing.T) {
	ca := testpki.NewCA(t, "CA")
	id := ca.Issue(t, "device")
	body := []byte("<plist/>")
	sig := id.Sign(t, body)
	signer, err := auth.SignatureSigner(sig)
	if err != nil {
		t.Fatal(err)
	}
	verified, err := auth.SignatureCert(sig, body)
	if err != nil {
		t.Fatal(err)
	}
	if !signer.Equal(verified) || !signer.Equal(id.Cert) {
		t.Fatal("SignatureSigner names another certificate than SignatureCert")
	}
	for _, bad := range []string{"", "not base64!", "bm90IGEgc2lnbmF0dXJl"} {
		if _, err := auth.SignatureSigner(bad); err == nil {
			t.Errorf("SignatureSigner(%q): no error", bad)
		}
	}
}
