package certrequest

import (
	"bytes"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/micromdm/plist"

	"github.com/picomdm/picomdm/test/testpki"
)

// vendorPKI is a fake of Apple's chain: a self-signed root, a WWDR-like
// intermediate and an MDM signing certificate for the vendor, all RSA.
type vendorPKI struct {
	root, intermediate, vendor *x509.Certificate
	vendorKey                  crypto.Signer
	intermediateKey            crypto.Signer
	issuer                     *testpki.CA // the intermediate, for more vendor certificates
}

var (
	pkiOnce sync.Once
	pki     vendorPKI
)

// fakePKI builds the fake chain once for the package's tests (RSA key
// generation is the slow part).
func fakePKI(t *testing.T) vendorPKI {
	t.Helper()
	pkiOnce.Do(func() {
		root := testpki.NewCA(t, "Fake Apple Root CA", testpki.RSA())
		inter := root.Intermediate(t, "Fake Apple Worldwide Developer Relations CA", testpki.RSA())
		vendor := inter.Issue(t, "MDM Vendor: Example", testpki.RSA())
		pki = vendorPKI{
			root: root.Cert, intermediate: inter.Cert, vendor: vendor.Cert,
			vendorKey: vendor.Key, intermediateKey: inter.Key, issuer: inter,
		}
	})
	if pki.vendor == nil {
		t.Fatal("fake PKI not built")
	}
	return pki
}

// customerCSR makes a customer key and CSR with NewKey and NewCSR.
func customerCSR(t *testing.T) []byte {
	t.Helper()
	key, err := NewKey()
	if err != nil {
		t.Fatal(err)
	}
	der, err := NewCSR(key, pkix.Name{CommonName: "Example Customer", Organization: []string{"Example Inc"}}, "mdm@example.com")
	if err != nil {
		t.Fatal(err)
	}
	return der
}

// TestNewCSR checks the key size and the CSR's subject, email attribute
// (IA5String, in the subject) and signature.
func TestNewCSR(t *testing.T) {
	key, err := NewKey()
	if err != nil {
		t.Fatal(err)
	}
	if key.N.BitLen() != KeyBits {
		t.Errorf("key has %d bits, want %d", key.N.BitLen(), KeyBits)
	}
	extra := make([]pkix.AttributeTypeAndValue, 0, 4)
	der, err := NewCSR(key, pkix.Name{CommonName: "Example Customer", Organization: []string{"Example Inc"}, ExtraNames: extra}, "mdm@example.com")
	if err != nil {
		t.Fatal(err)
	}
	// extra has room for one more: an append to it would show in extra[:1].
	if extra[:1][0].Type != nil {
		t.Error("NewCSR wrote into the caller's ExtraNames array")
	}
	csr, err := x509.ParseCertificateRequest(der)
	if err != nil {
		t.Fatal(err)
	}
	if err := csr.CheckSignature(); err != nil {
		t.Errorf("CSR signature: %v", err)
	}
	if csr.SignatureAlgorithm != x509.SHA256WithRSA {
		t.Errorf("signature algorithm %v", csr.SignatureAlgorithm)
	}
	if !key.PublicKey.Equal(csr.PublicKey) {
		t.Error("CSR public key is not the key's")
	}
	if csr.Subject.CommonName != "Example Customer" || len(csr.Subject.Organization) != 1 || csr.Subject.Organization[0] != "Example Inc" {
		t.Errorf("subject = %v", csr.Subject)
	}

	type atv struct {
		Type  asn1.ObjectIdentifier
		Value asn1.RawValue
	}
	// encoding/asn1 reads a slice type whose name ends in SET as a SET OF.
	type atvSET []atv
	var rdns []atvSET
	if _, err := asn1.Unmarshal(csr.RawSubject, &rdns); err != nil {
		t.Fatal(err)
	}
	found := false
	for _, rdn := range rdns {
		for _, a := range rdn {
			if a.Type.Equal(oidEmailAddress) {
				found = true
				if a.Value.Tag != asn1.TagIA5String || string(a.Value.Bytes) != "mdm@example.com" {
					t.Errorf("emailAddress = tag %d %q, want IA5String mdm@example.com", a.Value.Tag, a.Value.Bytes)
				}
			}
		}
	}
	if !found {
		t.Errorf("no emailAddress in subject %v", csr.Subject)
	}

	// Without an email there is no emailAddress attribute.
	der, err = NewCSR(key, pkix.Name{CommonName: "No Mail"}, "")
	if err != nil {
		t.Fatal(err)
	}
	if csr, err = x509.ParseCertificateRequest(der); err != nil {
		t.Fatal(err)
	}
	for _, n := range csr.Subject.Names {
		if n.Type.Equal(oidEmailAddress) {
			t.Errorf("emailAddress %v without -email", n.Value)
		}
	}

	small, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	for name, tc := range map[string]struct {
		key     *rsa.PrivateKey
		subject pkix.Name
		email   string
	}{
		"nil key":         {nil, pkix.Name{CommonName: "x"}, ""},
		"small key":       {small, pkix.Name{CommonName: "x"}, ""},
		"no common name":  {key, pkix.Name{Organization: []string{"x"}}, ""},
		"non-ASCII email": {key, pkix.Name{CommonName: "x"}, "é@example.com"},
	} {
		if _, err := NewCSR(tc.key, tc.subject, tc.email); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

// TestSign checks the Push Certificate Request: base64 of a plist with the
// three keys, the CSR as given, a signature that verifies with the vendor
// certificate over the CSR DER, and the chain in Apple's order with
// 64-character PEM lines.
func TestSign(t *testing.T) {
	p := fakePKI(t)
	csrDER := customerCSR(t)
	// Root first and a stray certificate: Sign must order the chain and
	// leave out what it does not need.
	stray := p.issuer.Issue(t, "Stray", testpki.RSA()).Cert
	out, err := Sign(csrDER, p.vendor, p.vendorKey, []*x509.Certificate{p.root, stray, p.intermediate})
	if err != nil {
		t.Fatal(err)
	}
	if bytes.ContainsAny(out, "\n\r") {
		t.Error("request has line breaks")
	}
	raw, err := base64.StdEncoding.DecodeString(string(out))
	if err != nil {
		t.Fatalf("request is not base64: %v", err)
	}
	var req map[string]any
	if err := plist.Unmarshal(raw, &req); err != nil {
		t.Fatalf("request is not a plist: %v\n%s", err, raw)
	}
	if len(req) != 3 {
		t.Errorf("request has keys %v, want 3", req)
	}
	str := func(k string) string {
		s, ok := req[k].(string)
		if !ok {
			t.Fatalf("%s = %T, want a string", k, req[k])
		}
		return s
	}

	gotCSR, err := base64.StdEncoding.DecodeString(str("PushCertRequestCSR"))
	if err != nil || !bytes.Equal(gotCSR, csrDER) {
		t.Errorf("PushCertRequestCSR is not base64 of the CSR DER (%v)", err)
	}

	sig, err := base64.StdEncoding.DecodeString(str("PushCertSignature"))
	if err != nil {
		t.Fatal(err)
	}
	digest := sha256.Sum256(csrDER)
	if err := rsa.VerifyPKCS1v15(p.vendor.PublicKey.(*rsa.PublicKey), crypto.SHA256, digest[:], sig); err != nil {
		t.Errorf("signature does not verify with the vendor certificate: %v", err)
	}
	if err := p.vendor.CheckSignature(x509.SHA256WithRSA, csrDER, sig); err != nil {
		t.Errorf("x509 CheckSignature: %v", err)
	}

	chainPEM := str("PushCertCertificateChain")
	var blocks []*pem.Block
	rest := []byte(chainPEM)
	for {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		blocks = append(blocks, b)
	}
	if len(bytes.TrimSpace(rest)) != 0 {
		t.Errorf("chain has trailing non-PEM text %q", rest)
	}
	want := []*x509.Certificate{p.vendor, p.intermediate, p.root}
	if len(blocks) != len(want) {
		t.Fatalf("chain has %d certificates, want %d (vendor, intermediate, root)", len(blocks), len(want))
	}
	for i, b := range blocks {
		if b.Type != "CERTIFICATE" || !bytes.Equal(b.Bytes, want[i].Raw) {
			t.Errorf("chain[%d] is %s, want %q", i, b.Type, want[i].Subject.CommonName)
		}
	}
	// Every base64 line of a block is 64 characters but its last.
	var body []string
	for _, line := range strings.Split(strings.TrimSuffix(chainPEM, "\n"), "\n") {
		switch {
		case strings.HasPrefix(line, "-----BEGIN "):
			body = body[:0]
		case strings.HasPrefix(line, "-----END "):
			for i, l := range body {
				if len(l) > 64 || i < len(body)-1 && len(l) != 64 || len(l) == 0 {
					t.Errorf("PEM line %d of a block has %d characters", i, len(l))
				}
			}
		default:
			body = append(body, line)
		}
	}
}

// TestSignRefuses checks each refusal and its sentinel error.
func TestSignRefuses(t *testing.T) {
	p := fakePKI(t)
	csrDER := customerCSR(t)
	chain := []*x509.Certificate{p.intermediate, p.root}

	broken := bytes.Clone(csrDER)
	broken[len(broken)-1] ^= 0xff // the last byte is the signature's
	if _, err := x509.ParseCertificateRequest(broken); err != nil {
		t.Fatalf("broken CSR should still parse: %v", err)
	}
	ecKey := testpki.NewECDSAKey(t)
	ecVendor := p.issuer.Issue(t, "EC Vendor", testpki.Key(ecKey)).Cert
	expired := p.issuer.Issue(t, "Expired Vendor", testpki.Key(p.vendorKey), testpki.Validity(time.Now().Add(-time.Hour), time.Now().Add(-time.Minute))).Cert
	selfSignedVendor := testpki.NewCA(t, "Self-signed Vendor", testpki.Key(p.vendorKey)).Cert

	for name, tc := range map[string]struct {
		csr   []byte
		cert  *x509.Certificate
		key   crypto.Signer
		chain []*x509.Certificate
		want  error
	}{
		"broken CSR signature": {broken, p.vendor, p.vendorKey, chain, ErrBadCSR},
		"CSR not DER":          {[]byte("not a csr"), p.vendor, p.vendorKey, chain, ErrBadCSR},
		"mismatched key":       {csrDER, p.vendor, p.intermediateKey, chain, ErrVendorKeyMismatch},
		"ECDSA key":            {csrDER, p.vendor, ecKey, chain, ErrVendorKeyNotRSA},
		"ECDSA cert and key":   {csrDER, ecVendor, ecKey, chain, ErrVendorKeyNotRSA},
		"no intermediate":      {csrDER, p.vendor, p.vendorKey, []*x509.Certificate{p.root}, ErrIncompleteChain},
		"no root":              {csrDER, p.vendor, p.vendorKey, []*x509.Certificate{p.intermediate}, ErrIncompleteChain},
		"empty chain":          {csrDER, p.vendor, p.vendorKey, nil, ErrIncompleteChain},
		"expired vendor":       {csrDER, expired, p.vendorKey, chain, ErrIncompleteChain},
		"self-signed vendor":   {csrDER, selfSignedVendor, p.vendorKey, append(chain, selfSignedVendor), ErrIncompleteChain},
	} {
		out, err := Sign(tc.csr, tc.cert, tc.key, tc.chain)
		if !errors.Is(err, tc.want) {
			t.Errorf("%s: error %v, want %v", name, err, tc.want)
		}
		if out != nil {
			t.Errorf("%s: output %q with an error", name, out)
		}
	}
	if _, err := Sign(csrDER, nil, nil, chain); err == nil {
		t.Error("nil vendor: no error")
	}
}
