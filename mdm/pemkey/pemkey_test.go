package pemkey

import (
	"crypto"
	"crypto/ecdh"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"strings"
	"testing"

	"github.com/picomdm/picomdm/test/testpki"
)

func pemOf(typ string, der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}

// TestParse reads each encoding, under its own PEM type and under another
// one, after blocks that hold no key.
func TestParse(t *testing.T) {
	rsaKey, ecKey := testpki.NewRSAKey(t), testpki.NewECDSAKey(t)
	_, edKey, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	pkcs8 := func(k crypto.Signer) []byte {
		der, err := x509.MarshalPKCS8PrivateKey(k)
		if err != nil {
			t.Fatal(err)
		}
		return der
	}
	sec1, err := x509.MarshalECPrivateKey(ecKey)
	if err != nil {
		t.Fatal(err)
	}
	prefix := append(pemOf("CERTIFICATE", []byte("not parsed")), pemOf("EC PARAMETERS", []byte{6, 8})...)
	for name, tc := range map[string]struct {
		pem  []byte
		want crypto.Signer
	}{
		"PKCS #8 RSA":           {pemOf("PRIVATE KEY", pkcs8(rsaKey)), rsaKey},
		"PKCS #8 ECDSA":         {pemOf("PRIVATE KEY", pkcs8(ecKey)), ecKey},
		"PKCS #8 Ed25519":       {pemOf("PRIVATE KEY", pkcs8(edKey)), edKey},
		"PKCS #1":               {pemOf("RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(rsaKey)), rsaKey},
		"SEC 1":                 {pemOf("EC PRIVATE KEY", sec1), ecKey},
		"PKCS #8 labelled RSA":  {pemOf("RSA PRIVATE KEY", pkcs8(rsaKey)), rsaKey},
		"SEC 1 labelled PKCS 8": {pemOf("PRIVATE KEY", sec1), ecKey},
		"after other blocks":    {append(prefix, pemOf("PRIVATE KEY", pkcs8(ecKey))...), ecKey},
	} {
		got, err := Parse(tc.pem)
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if pub, ok := got.Public().(interface{ Equal(crypto.PublicKey) bool }); !ok || !pub.Equal(tc.want.Public()) {
			t.Errorf("%s: parsed a different key", name)
		}
	}
}

// TestParseRefuses checks each refusal and what its error says.
func TestParseRefuses(t *testing.T) {
	xKey, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	xDER, err := x509.MarshalPKCS8PrivateKey(xKey)
	if err != nil {
		t.Fatal(err)
	}
	legacy := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Headers: map[string]string{"Proc-Type": "4,ENCRYPTED", "DEK-Info": "AES-128-CBC,00"}, Bytes: []byte{1}})
	for name, tc := range map[string]struct {
		pem  []byte
		is   error
		text string
	}{
		"empty":                  {nil, ErrNoKey, "no PEM private key"},
		"certificate only":       {pemOf("CERTIFICATE", []byte{1}), ErrNoKey, "no PEM private key"},
		"PKCS #8 encrypted":      {pemOf("ENCRYPTED PRIVATE KEY", []byte("opaque")), ErrEncrypted, "encrypted"},
		"legacy encrypted":       {legacy, ErrEncrypted, "encrypted"},
		"garbage under its name": {pemOf("RSA PRIVATE KEY", []byte("garbage")), nil, "parsing RSA PRIVATE KEY"},
		"unknown type":           {pemOf("OPENSSH PRIVATE KEY", []byte("garbage")), nil, "is not a PKCS #8, PKCS #1 or EC private key"},
		"key that cannot sign":   {pemOf("PRIVATE KEY", xDER), nil, "is not a signing key"},
	} {
		_, err := Parse(tc.pem)
		if err == nil {
			t.Errorf("%s: no error", name)
			continue
		}
		if tc.is != nil && !errors.Is(err, tc.is) {
			t.Errorf("%s: %v, want %v", name, err, tc.is)
		}
		if !strings.Contains(err.Error(), tc.text) {
			t.Errorf("%s: %q does not say %q", name, err, tc.text)
		}
	}
}
