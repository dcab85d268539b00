package auth

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"testing"

	"github.com/picomdm/picomdm/test/testpki"
	"github.com/smallstep/pkcs7"
)

// size returns how many certificates the cache holds.
func (c *boundedCache[V]) size() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.m)
}

// signWithCertificates is a detached signature over body by signer that
// carries signer's certificate followed by extra.
func signWithCertificates(t testing.TB, signer *testpki.Identity, body []byte, extra []*testpki.Identity) []byte {
	t.Helper()
	sd, err := pkcs7.NewSignedData(body)
	if err != nil {
		t.Fatal(err)
	}
	sd.SetDigestAlgorithm(pkcs7.OIDDigestAlgorithmSHA256)
	if err := sd.AddSigner(signer.Cert, signer.Key, pkcs7.SignerInfoConfig{}); err != nil {
		t.Fatal(err)
	}
	for _, id := range extra {
		sd.AddCertificate(id.Cert)
	}
	sd.Detach()
	der, err := sd.Finish()
	if err != nil {
		t.Fatal(err)
	}
	return der
}

// allIndefinite re-encodes every constructed element of the DER der with
// BER's indefinite length, certificates included: a BER encoding only the
// general path reads.
func allIndefinite(t testing.TB, der []byte) []byte {
	t.Helper()
	var out []byte
	for len(der) > 0 {
		tag, contents, whole, rest, ok := element(der)
		if !ok {
			t.Fatal("not DER")
		}
		if tag&0x20 == 0 || len(contents) == 0 {
			out = append(out, whole...)
		} else {
			out = append(out, tag, 0x80)
			out = append(out, allIndefinite(t, contents)...)
			out = append(out, 0, 0)
		}
		der = rest
	}
	return out
}

// issue returns n fresh identities of ca.
func issue(t testing.TB, ca *testpki.CA, n int) []*testpki.Identity {
	t.Helper()
	ids := make([]*testpki.Identity, n)
	for i := range ids {
		ids[i] = ca.Issue(t, fmt.Sprintf("extra %d", i))
	}
	return ids
}

// TestSignatureCertificateLimit: a signature may carry up to
// MaxSignatureCertificates certificates, on both paths; one more is
// refused as malformed.
func TestSignatureCertificateLimit(t *testing.T) {
	ca := testpki.NewCA(t, "Test CA")
	signer := ca.Issue(t, "device")
	extra := issue(t, ca, MaxSignatureCertificates)
	for _, n := range []int{1, 2, MaxSignatureCertificates, MaxSignatureCertificates + 1} {
		der := signWithCertificates(t, signer, testBody, extra[:n-1])
		for _, enc := range []struct {
			name string
			der  []byte
		}{
			{"DER", der},
			{"BER", allIndefinite(t, der)},
		} {
			t.Run(fmt.Sprintf("%d certificates %s", n, enc.name), func(t *testing.T) {
				// pkcs7 itself takes any number.
				if p7, err := pkcs7.Parse(bytes.Clone(enc.der)); err != nil || len(p7.Certificates) != n {
					t.Fatalf("pkcs7 reads %v, %v", p7, err)
				}
				cert, err := SignatureCert(encodeBase64(enc.der), testBody)
				if n > MaxSignatureCertificates {
					if !errors.Is(err, ErrMalformed) {
						t.Fatalf("error %v, want ErrMalformed", err)
					}
					return
				}
				if err != nil || !cert.Equal(signer.Cert) {
					t.Fatalf("refused: %v", err)
				}
			})
		}
	}
}

// TestThousandCertificates is the attack: a signature carrying 1,000
// certificates (valid, and signing the body) is refused, and none of them
// is parsed into parsedCerts, on either path.
func TestThousandCertificates(t *testing.T) {
	ca := testpki.NewCA(t, "Test CA")
	signer := ca.Issue(t, "device")
	extra := issue(t, ca, 999)
	der := signWithCertificates(t, signer, testBody, extra)
	for _, enc := range []struct {
		name string
		der  []byte
	}{
		{"DER", der},
		{"BER", allIndefinite(t, der)},
	} {
		t.Run(enc.name, func(t *testing.T) {
			before := parsedCerts.size()
			_, err := SignatureCert(encodeBase64(enc.der), testBody)
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error %v, want ErrMalformed", err)
			}
			if after := parsedCerts.size(); after > before {
				t.Fatalf("parsed-certificate cache grew from %d to %d", before, after)
			}
			for _, id := range append([]*testpki.Identity{signer}, extra...) {
				if _, ok := parsedCerts.get(sha256.Sum256(id.Cert.Raw)); ok {
					t.Fatalf("certificate %q was parsed into the cache", id.Cert.Subject)
				}
			}
		})
	}
}

func TestCountSignatureCertificates(t *testing.T) {
	ca := testpki.NewCA(t, "Test CA")
	signer := ca.Issue(t, "device")
	extra := issue(t, ca, 4)
	three := signWithCertificates(t, signer, testBody, extra[:2])
	p := splitSignedData(t, three)
	noVersion := p
	noVersion.version = nil
	noCerts := p
	noCerts.certs = nil
	// Without a version a [0] can come third or fourth: pkcs7 reads the
	// first, both are counted. A [0] further on is not read as
	// certificates by pkcs7, nor counted.
	twoFields := noVersion
	twoFields.certs = append(bytes.Clone(p.certs), tlv(tagContext0, extra[2].Cert.Raw, extra[3].Cert.Raw)...)
	fifth := p
	fifth.certs = append(bytes.Clone(p.certs), tlv(tagContext0, extra[2].Cert.Raw, extra[3].Cert.Raw)...)
	for _, tc := range []struct {
		name string
		ber  []byte
		want int
		ok   bool
	}{
		{"DER", three, 3, true},
		{"outer indefinite", indefinite(t, three), 3, true},
		{"all indefinite", allIndefinite(t, three), 3, true},
		{"trailing data after the ContentInfo", append(bytes.Clone(three), 0x05, 0x00), 3, true},
		{"no version", noVersion.join(), 3, true},
		{"no certificates", noCerts.join(), 0, true},
		{"[0] third and fourth", twoFields.join(), 5, true},
		{"[0] fourth and fifth", fifth.join(), 3, true},
		{"only a content type", tlv(tagSequence, []byte(oidSignedData)), 0, true},
		{"empty", nil, 0, false},
		{"truncated", three[:len(three)/2], 0, false},
		{"unterminated indefinite", []byte{tagSequence, 0x80, 0x04, 0x00}, 0, false},
		{"indefinite primitive", []byte{tagOctetString, 0x80, 0x00, 0x00}, 0, false},
		{"five length octets", []byte{tagSequence, 0x85, 1, 0, 0, 0, 0}, 0, false},
		{"leading zero length", []byte{tagSequence, 0x81, 0x00}, 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n, ok := countSignatureCertificates(tc.ber, 100)
			if n != tc.want || ok != tc.ok {
				t.Fatalf("count %d, %v; want %d, %v", n, ok, tc.want, tc.ok)
			}
		})
	}
	// It stops counting past the limit.
	if n, ok := countSignatureCertificates(three, 1); n != 2 || !ok {
		t.Fatalf("count with limit 1: %d, %v; want 2 (limit+1), true", n, ok)
	}
}

// FuzzCountSignatureCertificates checks the count against pkcs7: whatever
// pkcs7 parses, the count reads, and it counts at least the certificates
// pkcs7 parsed.
func FuzzCountSignatureCertificates(f *testing.F) {
	ca := testpki.NewCA(f, "Fuzz CA")
	signer := ca.Issue(f, "device")
	der := signWithCertificates(f, signer, testBody, issue(f, ca, 2))
	f.Add(der)
	f.Add(indefinite(f, der))
	f.Add(allIndefinite(f, der))
	f.Add([]byte{tagSequence, 0x80, 0x00, 0x00})
	f.Add([]byte{tagSequence, 0x80, tagSequence, 0x80, 0x00, 0x00, 0x00, 0x00})
	f.Fuzz(func(t *testing.T, ber []byte) {
		n, ok := countSignatureCertificates(ber, 1<<20)
		p7, err := pkcs7.Parse(bytes.Clone(ber))
		if err != nil {
			return
		}
		if !ok {
			t.Fatal("pkcs7 parses what the count cannot read")
		}
		if n < len(p7.Certificates) {
			t.Fatalf("counted %d certificates, pkcs7 parsed %d", n, len(p7.Certificates))
		}
	})
}
