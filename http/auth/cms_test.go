package auth

import (
	"bytes"
	"crypto"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/picomdm/picomdm/test/testpki"
	"github.com/smallstep/pkcs7"
)

var testBody = []byte(`<?xml version="1.0" encoding="UTF-8"?><plist version="1.0"><dict><key>MessageType</key><string>TokenUpdate</string></dict></plist>`)

// signSHA1 is a detached signature with a SHA-1 digest.
func signSHA1(t testing.TB, id *testpki.Identity, body []byte) []byte {
	t.Helper()
	sd, err := pkcs7.NewSignedData(body)
	if err != nil {
		t.Fatal(err)
	}
	sd.SetDigestAlgorithm(pkcs7.OIDDigestAlgorithmSHA1)
	if err := sd.AddSigner(id.Cert, id.Key, pkcs7.SignerInfoConfig{}); err != nil {
		t.Fatal(err)
	}
	sd.Detach()
	der, err := sd.Finish()
	if err != nil {
		t.Fatal(err)
	}
	return der
}

// TestVerifyDetachedFastPath checks that the fast path, not the general
// one, verifies what devices send, and leaves its input as it was.
func TestVerifyDetachedFastPath(t *testing.T) {
	ca := testpki.NewCA(t, "Test CA")
	ec := ca.Issue(t, "ecdsa device")
	rsa := ca.Issue(t, "rsa device", testpki.RSA())
	for _, tc := range []struct {
		name string
		id   *testpki.Identity
		der  []byte
	}{
		{"ECDSA", ec, ec.SignDER(t, testBody)},
		{"RSA", rsa, rsa.SignDER(t, testBody)},
		{"RSA SHA-1", rsa, signSHA1(t, rsa, testBody)},
		{"ECDSA SHA-1", ec, signSHA1(t, ec, testBody)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := bytes.Clone(tc.der)
			cert, ok := verifyDetached(tc.der, testBody)
			if !ok {
				t.Fatal("fast path refused a device signature")
			}
			if !cert.Equal(tc.id.Cert) {
				t.Fatalf("got certificate %q, want %q", cert.Subject, tc.id.Cert.Subject)
			}
			if !bytes.Equal(tc.der, in) {
				t.Fatal("fast path changed its input")
			}
			if _, ok := verifyDetached(tc.der, append(bytes.Clone(testBody), ' ')); ok {
				t.Fatal("fast path accepted the signature for another body")
			}
		})
	}
}

// indefinite re-encodes the outer SEQUENCE of der with BER's indefinite
// length.
func indefinite(t testing.TB, der []byte) []byte {
	t.Helper()
	_, contents, _, rest, ok := element(der)
	if !ok || len(rest) > 0 {
		t.Fatal("not one DER element")
	}
	out := append([]byte{tagSequence, 0x80}, contents...)
	return append(out, 0, 0)
}

// unsortedAttributes returns der with its signed attributes in reverse
// order, validly re-signed by id over the new order.
func unsortedAttributes(t testing.TB, der []byte, id *testpki.Identity) []byte {
	t.Helper()
	der = bytes.Clone(der)
	si, ok := parseSignedData(der)
	if !ok {
		t.Fatal("not a SignedData the fast path reads")
	}
	_, set, _, _, _ := element(si.attrs)
	var attrs [][]byte
	for len(set) > 0 {
		_, whole, ok := expect(&set, tagSequence)
		if !ok {
			t.Fatal("bad attribute")
		}
		attrs = append(attrs, bytes.Clone(whole))
	}
	if len(attrs) < 2 {
		t.Fatal("fewer than two attributes")
	}
	slices.Reverse(attrs)
	_, set, _, _, _ = element(si.attrs)
	copy(set, bytes.Join(attrs, nil))
	signed := bytes.Clone(si.attrs)
	signed[0] = tagSet
	digest := sha256.Sum256(signed)
	sig, err := id.Key.Sign(rand.Reader, digest[:], crypto.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	if len(sig) != len(si.signature) {
		t.Fatal("signature length changed")
	}
	copy(si.signature, sig)
	if err := id.Cert.CheckSignature(x509.SHA256WithRSA, signed, sig); err != nil {
		t.Fatalf("re-signing: %v", err)
	}
	return der
}

// TestVerifyDetachedFallsBack checks encodings the fast path leaves to
// pkcs7, and that SignatureCert then answers as pkcs7 does.
func TestVerifyDetachedFallsBack(t *testing.T) {
	ca := testpki.NewCA(t, "Test CA")
	rsa := ca.Issue(t, "rsa device", testpki.RSA())
	der := rsa.SignDER(t, testBody)
	for _, tc := range []struct {
		name string
		der  []byte
		kind error // nil: pkcs7 accepts it
	}{
		// BER: pkcs7 converts it to DER and verifies it.
		{"indefinite length", indefinite(t, der), nil},
		// pkcs7 sorts the attributes before checking the signature, which
		// then does not verify.
		{"unsorted attributes", unsortedAttributes(t, der, rsa), ErrBadSignature},
		{"trailing data", append(bytes.Clone(der), 0), ErrMalformed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, ok := verifyDetached(bytes.Clone(tc.der), testBody); ok {
				t.Fatal("fast path accepted it")
			}
			_, pkcs7Err := verifyPKCS7(bytes.Clone(tc.der), testBody)
			cert, err := SignatureCert(encodeBase64(tc.der), testBody)
			if (err == nil) != (pkcs7Err == nil) || err != nil && !errors.Is(err, tc.kind) {
				t.Fatalf("SignatureCert error %v, pkcs7 %v, want kind %v", err, pkcs7Err, tc.kind)
			}
			if tc.kind == nil && !cert.Equal(rsa.Cert) {
				t.Fatal("wrong certificate")
			}
		})
	}
}

// FuzzVerifyDetached checks that the fast path accepts nothing the general
// path refuses, returns the same certificate, and leaves its input alone.
func FuzzVerifyDetached(f *testing.F) {
	ca := testpki.NewCA(f, "Fuzz CA")
	ec := ca.Issue(f, "ecdsa device")
	rsa := ca.Issue(f, "rsa device", testpki.RSA())
	f.Add(ec.SignDER(f, testBody), testBody)
	f.Add(rsa.SignDER(f, testBody), testBody)
	f.Add(signSHA1(f, rsa, testBody), testBody)
	f.Add(rsa.SignDER(f, nil), []byte(nil))
	f.Add(unsortedAttributes(f, rsa.SignDER(f, testBody), rsa), testBody)
	f.Fuzz(func(t *testing.T, der, body []byte) {
		in := bytes.Clone(der)
		panics := fastPathPanics.Load()
		cert, ok := verifyDetached(der, body)
		if fastPathPanics.Load() != panics {
			t.Fatal("fast path panicked")
		}
		if !bytes.Equal(der, in) {
			t.Fatal("fast path changed its input")
		}
		if !ok {
			return
		}
		want, err := verifyPKCS7(bytes.Clone(der), body)
		if err != nil {
			t.Fatalf("fast path accepted what pkcs7 refuses: %v", err)
		}
		if !cert.Equal(want) {
			t.Fatalf("fast path returned %q, pkcs7 %q", cert.Subject, want.Subject)
		}
	})
}

func TestElement(t *testing.T) {
	long := append([]byte{0x04, 0x81, 0x80}, make([]byte, 0x80)...)
	for _, tc := range []struct {
		name string
		in   []byte
		ok   bool
	}{
		{"short form", []byte{0x04, 0x01, 0xff}, true},
		{"long form", long, true},
		{"long form for a short length", []byte{0x04, 0x81, 0x01, 0xff}, false},
		{"leading zero length byte", []byte{0x04, 0x82, 0x00, 0x80}, false},
		{"indefinite", []byte{0x30, 0x80, 0x00, 0x00}, false},
		{"high tag number", []byte{0x1f, 0x01, 0x00}, false},
		{"past the end", []byte{0x04, 0x02, 0xff}, false},
		{"four length bytes", []byte{0x04, 0x84, 0x01, 0x00, 0x00, 0x00}, false},
		{"truncated", []byte{0x04}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, _, _, _, ok := element(tc.in); ok != tc.ok {
				t.Fatalf("ok = %v, want %v", ok, tc.ok)
			}
		})
	}
}

func TestValidOID(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   []byte
		ok   bool
	}{
		{"SHA-256", []byte{0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01}, true},
		{"empty", nil, false},
		{"unterminated", []byte{0x2a, 0x86}, false},
		{"leading 0x80", []byte{0x2a, 0x80, 0x01}, false},
		{"arc of 2^31-1", []byte{0x2a, 0x87, 0xff, 0xff, 0xff, 0x7f}, true},
		{"arc of 2^31", []byte{0x2a, 0x88, 0x80, 0x80, 0x80, 0x00}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := validOID(tc.in); got != tc.ok {
				t.Fatalf("validOID = %v, want %v", got, tc.ok)
			}
		})
	}
}

// TestVerifyCache checks what the verifier remembers: successes only,
// never past the chain's validity, for at most the TTL, and only forward
// in time.
func TestVerifyCache(t *testing.T) {
	ca := testpki.NewCA(t, "Test CA")
	now := time.Now()
	clock := now
	v, err := NewVerifier(ca.PEM(), nil, WithClock(func() time.Time { return clock }))
	if err != nil {
		t.Fatal(err)
	}
	remembered := func(cert *x509.Certificate) (verification, bool) {
		return v.verified.get(sha256.Sum256(cert.Raw))
	}

	// A certificate expiring before the TTL is remembered until it
	// expires, then refused.
	short := ca.Issue(t, "short", testpki.Validity(now.Add(-time.Hour), now.Add(30*time.Second)))
	if err := v.Verify(short.Cert); err != nil {
		t.Fatal(err)
	}
	if hit, ok := remembered(short.Cert); !ok || !hit.until.Equal(short.Cert.NotAfter) || !hit.at.Equal(now) {
		t.Fatalf("remembered %+v, %v; want from now until NotAfter", hit, ok)
	}
	clock = short.Cert.NotAfter // still valid: x509 accepts NotAfter itself
	if err := v.Verify(short.Cert); err != nil {
		t.Fatalf("at NotAfter: %v", err)
	}
	clock = short.Cert.NotAfter.Add(time.Second)
	if err := v.Verify(short.Cert); !errors.Is(err, ErrExpired) {
		t.Fatalf("after NotAfter: error %v, want ErrExpired", err)
	}
	if _, ok := remembered(short.Cert); ok {
		t.Fatal("an expired certificate is still remembered")
	}

	// Otherwise it is remembered for the TTL, then verified afresh.
	clock = now
	long := ca.Issue(t, "long")
	if err := v.Verify(long.Cert); err != nil {
		t.Fatal(err)
	}
	if hit, _ := remembered(long.Cert); !hit.until.Equal(now.Add(DefaultVerifyCacheTTL)) {
		t.Fatalf("remembered until %v, want %v", hit.until, now.Add(DefaultVerifyCacheTTL))
	}
	clock = now.Add(DefaultVerifyCacheTTL + time.Second)
	if err := v.Verify(long.Cert); err != nil {
		t.Fatal(err)
	}
	if hit, _ := remembered(long.Cert); !hit.at.Equal(clock) {
		t.Fatalf("not verified afresh after the TTL: remembered at %v", hit.at)
	}
	// A clock that went back is not trusted with the remembered result.
	clock = now.Add(-time.Minute)
	if err := v.Verify(long.Cert); err != nil {
		t.Fatal(err)
	}
	if hit, _ := remembered(long.Cert); !hit.at.Equal(clock) {
		t.Fatalf("not verified afresh for an earlier time: remembered at %v", hit.at)
	}

	// Failures are not remembered.
	clock = now
	for _, tc := range []struct {
		name string
		cert *x509.Certificate
		kind error
	}{
		{"other CA", testpki.NewCA(t, "Other CA").Issue(t, "d").Cert, ErrUntrusted},
		{"not yet valid", ca.Issue(t, "d", testpki.Validity(now.Add(time.Hour), now.Add(2*time.Hour))).Cert, ErrExpired},
		{"server auth", ca.Issue(t, "d", testpki.ExtKeyUsage(x509.ExtKeyUsageServerAuth)).Cert, ErrKeyUsage},
	} {
		for range 2 {
			if err := v.Verify(tc.cert); !errors.Is(err, tc.kind) {
				t.Fatalf("%s: error %v, want %v", tc.name, err, tc.kind)
			}
		}
		if _, ok := remembered(tc.cert); ok {
			t.Fatalf("%s: failure remembered", tc.name)
		}
	}

	off, err := NewVerifier(ca.PEM(), nil, WithVerifyCache(0, 0))
	if err != nil {
		t.Fatal(err)
	}
	if off.verified != nil {
		t.Fatal("cache not off")
	}
	if err := off.Verify(long.Cert); err != nil {
		t.Fatal(err)
	}
}

func TestBoundedCache(t *testing.T) {
	c := newBoundedCache[int](48)
	for i := range 100 {
		c.put(certKey{byte(i)}, i, 3)
		if c.total > 48 || len(c.m) > 16 {
			t.Fatalf("%d entries costing %d, want at most 48", len(c.m), c.total)
		}
		if v, ok := c.get(certKey{byte(i)}); !ok || v != i {
			t.Fatalf("entry %d missing right after put", i)
		}
	}
	c.put(certKey{99}, -1, 3) // replacing an entry evicts nothing
	if v, _ := c.get(certKey{99}); v != -1 || len(c.m) != 16 || c.total != 48 {
		t.Fatalf("replaced entry %d, %d entries costing %d", v, len(c.m), c.total)
	}
	c.put(certKey{200}, 200, 4) // over a sixteenth: not kept
	if _, ok := c.get(certKey{200}); ok {
		t.Fatal("an oversized entry was kept")
	}
	c.delete(certKey{99})
	if _, ok := c.get(certKey{99}); ok || c.total != 45 {
		t.Fatalf("after delete: total %d", c.total)
	}
}

// TestParseCertificateCopies checks that a cached certificate does not
// share memory with the (pooled) buffer it was parsed from.
func TestParseCertificateCopies(t *testing.T) {
	id := testpki.NewCA(t, "Test CA").Issue(t, "d")
	buf := bytes.Clone(id.Cert.Raw)
	cert, err := parseCertificate(buf)
	if err != nil {
		t.Fatal(err)
	}
	clear(buf)
	if !bytes.Equal(cert.Raw, id.Cert.Raw) {
		t.Fatal("certificate changed with its buffer")
	}
	again, err := parseCertificate(id.Cert.Raw)
	if err != nil || again != cert {
		t.Fatal("certificate parsed again")
	}
}

func encodeBase64(der []byte) string { return base64.StdEncoding.EncodeToString(der) }

// tlv encodes a DER element.
func tlv(tag byte, contents ...[]byte) []byte {
	body := bytes.Join(contents, nil)
	n := len(body)
	var length []byte
	switch {
	case n < 0x80:
		length = []byte{byte(n)}
	case n < 0x100:
		length = []byte{0x81, byte(n)}
	case n < 0x10000:
		length = []byte{0x82, byte(n >> 8), byte(n)}
	default:
		length = []byte{0x83, byte(n >> 16), byte(n >> 8), byte(n)}
	}
	return append(append([]byte{tag}, length...), body...)
}

// signedDataParts is a SignedData taken apart, to be put together with
// changes in the parts no signature covers.
type signedDataParts struct {
	version, algs, eci, certs, signer []byte // whole elements
}

func splitSignedData(t testing.TB, der []byte) signedDataParts {
	t.Helper()
	var p signedDataParts
	ci, _, ok1 := expect(&der, tagSequence)
	_, ok2 := expectOID(&ci)
	explicit, _, ok3 := expect(&ci, tagContext0)
	sd, _, ok4 := expect(&explicit, tagSequence)
	_, version, ok5 := expect(&sd, tagInteger)
	_, algs, ok6 := expect(&sd, tagSet)
	_, eci, ok7 := expect(&sd, tagSequence)
	_, certs, ok8 := expect(&sd, tagContext0)
	signers, _, ok9 := expect(&sd, tagSet)
	_, signer, ok10 := expect(&signers, tagSequence)
	if !(ok1 && ok2 && ok3 && ok4 && ok5 && ok6 && ok7 && ok8 && ok9 && ok10) {
		t.Fatal("unexpected SignedData shape")
	}
	p.version, p.algs, p.eci, p.certs, p.signer = version, algs, eci, certs, signer
	return p
}

func (p signedDataParts) join() []byte {
	sd := tlv(tagSequence, p.version, p.algs, p.eci, p.certs, tlv(tagSet, p.signer))
	return tlv(tagSequence, []byte(oidSignedData), tlv(tagContext0, sd))
}

// TestVerifyDetachedAgreesWithPKCS7 changes the parts of a signature no
// signature covers, in ways the fast path reads and ways it leaves alone,
// and checks it never accepts what pkcs7 refuses.
func TestVerifyDetachedAgreesWithPKCS7(t *testing.T) {
	ca := testpki.NewCA(t, "Test CA")
	other := testpki.NewCA(t, "Other CA")
	rsa := ca.Issue(t, "rsa device", testpki.RSA())
	der := rsa.SignDER(t, testBody)
	p := splitSignedData(t, der)
	if !bytes.Equal(p.join(), der) {
		t.Fatal("split and join do not round-trip")
	}
	_, certsContents, _, _, _ := element(p.certs)
	sha256Alg := tlv(tagSequence, []byte(oid(pkcs7.OIDDigestAlgorithmSHA256)))
	for _, tc := range []struct {
		name   string
		change func(p *signedDataParts)
		fast   bool // the fast path verifies it
	}{
		{"unchanged", func(*signedDataParts) {}, true},
		{"version 3", func(p *signedDataParts) { p.version = []byte{tagInteger, 1, 3} }, true},
		{"two-byte version", func(p *signedDataParts) { p.version = []byte{tagInteger, 2, 0, 1} }, false},
		{"no digest algorithms", func(p *signedDataParts) { p.algs = tlv(tagSet) }, true},
		{"two digest algorithms", func(p *signedDataParts) { p.algs = tlv(tagSet, sha256Alg, sha256Alg) }, true},
		{"digest algorithm with parameters", func(p *signedDataParts) {
			p.algs = tlv(tagSet, tlv(tagSequence, []byte(oid(pkcs7.OIDDigestAlgorithmSHA256)), []byte{0x05, 0}))
		}, true},
		{"digest algorithm not an OID", func(p *signedDataParts) { p.algs = tlv(tagSet, tlv(tagSequence, []byte{0x04, 0})) }, false},
		{"other content type", func(p *signedDataParts) { p.eci = tlv(tagSequence, []byte(oidSignedData)) }, true},
		{"attached content", func(p *signedDataParts) {
			p.eci = tlv(tagSequence, []byte(oid(pkcs7.OIDData)), tlv(tagContext0, tlv(tagOctetString, testBody)))
		}, false},
		{"another certificate first", func(p *signedDataParts) {
			p.certs = tlv(tagContext0, other.Cert.Raw, certsContents)
		}, true},
		{"signer's certificate twice", func(p *signedDataParts) {
			p.certs = tlv(tagContext0, certsContents, certsContents)
		}, true},
		{"a certificate that does not parse", func(p *signedDataParts) {
			p.certs = tlv(tagContext0, certsContents, tlv(tagSequence, []byte{tagInteger, 1, 1}))
		}, false},
		{"no certificates", func(p *signedDataParts) { p.certs = tlv(tagContext0) }, false},
		{"only another certificate", func(p *signedDataParts) { p.certs = tlv(tagContext0, other.Cert.Raw) }, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			q := p
			tc.change(&q)
			der := q.join()
			cert, ok := verifyDetached(bytes.Clone(der), testBody)
			if ok != tc.fast {
				t.Fatalf("fast path verified: %v, want %v", ok, tc.fast)
			}
			want, err := verifyPKCS7(bytes.Clone(der), testBody)
			if ok && (err != nil || !cert.Equal(want)) {
				t.Fatalf("fast path accepted what pkcs7 answers %v", err)
			}
			got, err2 := SignatureCert(encodeBase64(der), testBody)
			if (err == nil) != (err2 == nil) || err == nil && !got.Equal(want) {
				t.Fatalf("SignatureCert %v, pkcs7 %v", err2, err)
			}
		})
	}
}
