package device_test

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/picomdm/picomdm/test/device"
)

func verifyClientAuth(cert *x509.Certificate, pool *x509.CertPool, at time.Time) error {
	_, err := cert.Verify(x509.VerifyOptions{Roots: pool, CurrentTime: at, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
	return err
}

func TestIssue(t *testing.T) {
	ca := newCA(t)
	key, err := device.GenerateKey(device.RSA2048)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	cert, err := ca.Issue("leaf", key)
	if err != nil {
		t.Fatal(err)
	}
	if cert.Subject.CommonName != "leaf" || cert.KeyUsage&x509.KeyUsageDigitalSignature == 0 ||
		len(cert.ExtKeyUsage) != 1 || cert.ExtKeyUsage[0] != x509.ExtKeyUsageClientAuth {
		t.Errorf("leaf: CN %q usage %v ext %v", cert.Subject.CommonName, cert.KeyUsage, cert.ExtKeyUsage)
	}
	if d := cert.NotBefore.Sub(now.Add(-time.Hour)); d < -time.Minute || d > time.Minute {
		t.Errorf("NotBefore %v, want about an hour ago", cert.NotBefore)
	}
	if d := cert.NotAfter.Sub(now.AddDate(1, 0, 0)); d < -time.Minute || d > time.Minute {
		t.Errorf("NotAfter %v, want about a year from now", cert.NotAfter)
	}
	if err := verifyClientAuth(cert, ca.Pool(), now); err != nil {
		t.Errorf("leaf does not verify for client auth: %v", err)
	}

	noEKU, err := ca.Issue("no-client-auth", key, device.WithoutClientAuth())
	if err != nil {
		t.Fatal(err)
	}
	if err := verifyClientAuth(noEKU, ca.Pool(), now); err == nil {
		t.Error("WithoutClientAuth leaf verifies for client auth")
	}
	expired, err := ca.Issue("expired", key, device.WithNotBefore(now.Add(-48*time.Hour)), device.WithNotAfter(now.Add(-24*time.Hour)))
	if err != nil {
		t.Fatal(err)
	}
	if err := verifyClientAuth(expired, ca.Pool(), now); err == nil {
		t.Error("expired leaf verifies")
	}
}

// selfSignedCA builds a CA the way other tools do, to feed LoadCA.
func selfSignedCA(t *testing.T, key crypto.Signer, isCA bool) []byte {
	t.Helper()
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(42),
		Subject:               pkix.Name{CommonName: "external CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  isCA,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

func TestLoadCA(t *testing.T) {
	// Round trip through files, as devsim reads them.
	orig := newCA(t)
	keyPEM, err := orig.KeyPEM()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "ca.pem"), filepath.Join(dir, "ca.key")
	if err := os.WriteFile(certFile, orig.CertPEM(), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, keyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	certPEM, _ := os.ReadFile(certFile)
	keyPEM, _ = os.ReadFile(keyFile)

	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	ecKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ecDER, err := x509.MarshalECPrivateKey(ecKey)
	if err != nil {
		t.Fatal(err)
	}
	rsaPKCS1 := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(rsaKey)})
	ecSEC1 := append([]byte("-----BEGIN EC PARAMETERS-----\nBggqhkjOPQMBBw==\n-----END EC PARAMETERS-----\n"),
		pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: ecDER})...)
	encrypted := pem.EncodeToMemory(&pem.Block{Type: "ENCRYPTED PRIVATE KEY", Bytes: []byte{1, 2, 3}})

	for _, tc := range []struct {
		name          string
		certPEM, key  []byte
		wantErr       bool
		sameAsOrigCA  bool
		checkIssuance bool
	}{
		{"pkcs8 written by KeyPEM", certPEM, keyPEM, false, true, true},
		{"pkcs1 rsa", selfSignedCA(t, rsaKey, true), rsaPKCS1, false, false, true},
		{"sec1 ec with parameters", selfSignedCA(t, ecKey, true), ecSEC1, false, false, true},
		{"key does not match", certPEM, rsaPKCS1, true, false, false},
		{"not a CA", selfSignedCA(t, rsaKey, false), rsaPKCS1, true, false, false},
		{"encrypted key", certPEM, encrypted, true, false, false},
		{"no certificate", keyPEM, keyPEM, true, false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ca, err := device.LoadCA(tc.certPEM, tc.key)
			if tc.wantErr {
				if err == nil {
					t.Error("LoadCA succeeded")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if tc.sameAsOrigCA && !ca.Certificate().Equal(orig.Certificate()) {
				t.Error("loaded CA certificate differs")
			}
			leafKey, err := device.GenerateKey(device.ECDSAP256)
			if err != nil {
				t.Fatal(err)
			}
			leaf, err := ca.Issue("leaf", leafKey)
			if err != nil {
				t.Fatal(err)
			}
			pool := x509.NewCertPool()
			pool.AppendCertsFromPEM(tc.certPEM)
			if err := verifyClientAuth(leaf, pool, time.Now()); err != nil {
				t.Errorf("leaf of loaded CA does not chain to the PEM it was loaded from: %v", err)
			}
		})
	}
}

func TestParseKeyType(t *testing.T) {
	for in, want := range map[string]device.KeyType{"rsa": device.RSA2048, "ECDSA": device.ECDSAP256} {
		if got, err := device.ParseKeyType(in); err != nil || got != want {
			t.Errorf("ParseKeyType(%q) = %v, %v", in, got, err)
		}
	}
	if _, err := device.ParseKeyType("dsa"); err == nil {
		t.Error("ParseKeyType(dsa) succeeded")
	}
}
