package auth_test

import (
	"bytes"
	"encoding/base64"
	"errors"
	"testing"

	"github.com/picomdm/picomdm/http/auth"
	"github.com/picomdm/picomdm/test/testpki"
)

// FuzzMdmSignature feeds SignatureCert arbitrary headers and bodies. It must
// never panic, must fail only with *auth.Error, and a certificate it returns
// must have signed exactly that body.
func FuzzMdmSignature(f *testing.F) {
	ca := testpki.NewCA(f, "Fuzz CA")
	ec := ca.Issue(f, "ecdsa device")
	rsa := ca.Issue(f, "rsa device", testpki.RSA())
	signers := map[string]*testpki.Identity{}
	add := func(id *testpki.Identity, body []byte) {
		header := id.Sign(f, body)
		signers[header] = id
		f.Add(header, body)
	}
	add(ec, body)
	add(rsa, body)
	add(ec, nil)
	add(rsa, []byte("x"))

	valid := ec.Sign(f, body)
	der, err := base64.StdEncoding.DecodeString(valid)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(valid, []byte("a different body"))
	f.Add("", body)
	f.Add("%%%", body)
	f.Add(base64.StdEncoding.EncodeToString([]byte{0x30, 0x80, 0x00, 0x00}), body)
	f.Add(base64.StdEncoding.EncodeToString([]byte{0x30, 0x84, 0xff, 0xff, 0xff, 0xff}), body)
	f.Add(base64.StdEncoding.EncodeToString(der[:len(der)/2]), body)
	f.Add(base64.StdEncoding.EncodeToString(testpki.SignDER(f, body, ec, rsa)), body)
	flipped := bytes.Clone(der)
	flipped[len(flipped)-10] ^= 0xff
	f.Add(base64.StdEncoding.EncodeToString(flipped), body)

	f.Fuzz(func(t *testing.T, header string, body []byte) {
		cert, err := auth.SignatureCert(header, body)
		if err != nil {
			var authErr *auth.Error
			if !errors.As(err, &authErr) {
				t.Fatalf("error %v (%T) is not an *auth.Error", err, err)
			}
			if cert != nil {
				t.Fatal("certificate returned with an error")
			}
			return
		}
		if cert == nil {
			t.Fatal("no certificate and no error")
		}
		if id, ok := signers[header]; ok && !cert.Equal(id.Cert) {
			t.Fatalf("got certificate %q, want the signer %q", cert.Subject, id.Cert.Subject)
		}
		// The signature vouches for this body only.
		if _, err := auth.SignatureCert(header, append(bytes.Clone(body), 0)); !errors.Is(err, auth.ErrBadSignature) {
			t.Fatalf("signature also accepted for another body (err %v)", err)
		}
	})
}
