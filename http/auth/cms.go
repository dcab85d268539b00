package auth

import (
	"bytes"
	"crypto"
	"crypto/subtle"
	"crypto/x509"
	"encoding/asn1"
	"math"
	"math/big"
	"sync/atomic"
	"time"

	"github.com/smallstep/pkcs7"
)

// This file is the fast path of SignatureCert: it verifies the one shape
// of Mdm-Signature devices send, a DER-encoded CMS SignedData (RFC 5652)
// with no encapsulated content, the signer's certificate, exactly one
// signer identified by issuer and serial number, and signed attributes.
//
// The general path, github.com/smallstep/pkcs7, converts its input from
// BER to DER, decodes it by reflection, parses every certificate and
// re-encodes the signed attributes; that was about half the cost of a
// request's signature check. Here the DER is walked in place and
// certificates come from parsedCerts.
//
// The fast path only ever accepts. Anything it does not recognise or
// cannot verify, it hands to the general path, which decides exactly as
// before, with the same error kinds. So it must accept nothing pkcs7
// would refuse: it follows pkcs7's choices of certificate, digest and
// signature algorithm, and falls back for every optional part, encoding
// variant and ordering pkcs7 might read differently.

// oid returns the DER encoding (tag, length, contents) of an object
// identifier, to compare with the identifier elements of a signature.
func oid(id asn1.ObjectIdentifier) string {
	b, err := asn1.Marshal(id)
	if err != nil {
		panic(err)
	}
	return string(b)
}

var (
	oidSignedData    = oid(pkcs7.OIDSignedData)
	oidMessageDigest = oid(pkcs7.OIDAttributeMessageDigest)
	oidSigningTime   = oid(pkcs7.OIDAttributeSigningTime)

	// digestHashes is pkcs7's getHashForOID: the hash a signer's
	// digestAlgorithm names.
	digestHashes = map[string]crypto.Hash{
		oid(pkcs7.OIDDigestAlgorithmSHA1):        crypto.SHA1,
		oid(pkcs7.OIDDigestAlgorithmECDSASHA1):   crypto.SHA1,
		oid(pkcs7.OIDDigestAlgorithmDSA):         crypto.SHA1,
		oid(pkcs7.OIDDigestAlgorithmDSASHA1):     crypto.SHA1,
		oid(pkcs7.OIDEncryptionAlgorithmRSA):     crypto.SHA1,
		oid(pkcs7.OIDDigestAlgorithmSHA256):      crypto.SHA256,
		oid(pkcs7.OIDDigestAlgorithmECDSASHA256): crypto.SHA256,
		oid(pkcs7.OIDDigestAlgorithmSHA384):      crypto.SHA384,
		oid(pkcs7.OIDDigestAlgorithmECDSASHA384): crypto.SHA384,
		oid(pkcs7.OIDDigestAlgorithmSHA512):      crypto.SHA512,
		oid(pkcs7.OIDDigestAlgorithmECDSASHA512): crypto.SHA512,
	}

	// signatureAlgorithms is pkcs7's getSignatureAlgorithm: the
	// x509.SignatureAlgorithm for a signer's signatureAlgorithm and
	// digestAlgorithm ("" matches any digestAlgorithm).
	signatureAlgorithms = map[[2]string]x509.SignatureAlgorithm{}
)

func init() {
	add := func(alg x509.SignatureAlgorithm, sigs []asn1.ObjectIdentifier, digests ...asn1.ObjectIdentifier) {
		for _, s := range sigs {
			if len(digests) == 0 {
				signatureAlgorithms[[2]string{oid(s), ""}] = alg
			}
			for _, d := range digests {
				signatureAlgorithms[[2]string{oid(s), oid(d)}] = alg
			}
		}
	}
	one := func(id asn1.ObjectIdentifier) []asn1.ObjectIdentifier { return []asn1.ObjectIdentifier{id} }
	add(x509.ECDSAWithSHA1, one(pkcs7.OIDDigestAlgorithmECDSASHA1))
	add(x509.ECDSAWithSHA256, one(pkcs7.OIDDigestAlgorithmECDSASHA256))
	add(x509.ECDSAWithSHA384, one(pkcs7.OIDDigestAlgorithmECDSASHA384))
	add(x509.ECDSAWithSHA512, one(pkcs7.OIDDigestAlgorithmECDSASHA512))
	rsa := []asn1.ObjectIdentifier{
		pkcs7.OIDEncryptionAlgorithmRSA, pkcs7.OIDEncryptionAlgorithmRSASHA1, pkcs7.OIDEncryptionAlgorithmRSASHA256,
		pkcs7.OIDEncryptionAlgorithmRSASHA384, pkcs7.OIDEncryptionAlgorithmRSASHA512,
	}
	add(x509.SHA1WithRSA, rsa, pkcs7.OIDDigestAlgorithmSHA1, pkcs7.OIDEncryptionAlgorithmRSASHA1)
	add(x509.SHA256WithRSA, rsa, pkcs7.OIDDigestAlgorithmSHA256, pkcs7.OIDEncryptionAlgorithmRSASHA256)
	add(x509.SHA384WithRSA, rsa, pkcs7.OIDDigestAlgorithmSHA384, pkcs7.OIDEncryptionAlgorithmRSASHA384)
	add(x509.SHA512WithRSA, rsa, pkcs7.OIDDigestAlgorithmSHA512, pkcs7.OIDEncryptionAlgorithmRSASHA512)
	// DSA is left to the general path: crypto/x509 no longer verifies it.
	ecdsaKey := []asn1.ObjectIdentifier{
		pkcs7.OIDEncryptionAlgorithmECDSAP256, pkcs7.OIDEncryptionAlgorithmECDSAP384, pkcs7.OIDEncryptionAlgorithmECDSAP521,
	}
	add(x509.ECDSAWithSHA1, ecdsaKey, pkcs7.OIDDigestAlgorithmSHA1)
	add(x509.ECDSAWithSHA256, ecdsaKey, pkcs7.OIDDigestAlgorithmSHA256)
	add(x509.ECDSAWithSHA384, ecdsaKey, pkcs7.OIDDigestAlgorithmSHA384)
	add(x509.ECDSAWithSHA512, ecdsaKey, pkcs7.OIDDigestAlgorithmSHA512)
}

func signatureAlgorithm(sigAlg, digestAlg []byte) (x509.SignatureAlgorithm, bool) {
	if alg, ok := signatureAlgorithms[[2]string{string(sigAlg), ""}]; ok {
		return alg, true
	}
	alg, ok := signatureAlgorithms[[2]string{string(sigAlg), string(digestAlg)}]
	return alg, ok
}

// DER tags used below.
const (
	tagInteger     = 0x02
	tagOctetString = 0x04
	tagOID         = 0x06
	tagSequence    = 0x30
	tagSet         = 0x31
	tagContext0    = 0xa0 // [0], constructed
)

// element splits the DER element at the start of b into its tag, its
// contents, the whole element and what follows it. ok is false unless the
// element has a low tag number and a definite, minimally encoded length
// (BER's indefinite lengths go to the general path) that fits in b.
func element(b []byte) (tag byte, contents, whole, rest []byte, ok bool) {
	if len(b) < 2 || b[0]&0x1f == 0x1f {
		return 0, nil, nil, nil, false
	}
	n, hdr := int(b[1]), 2
	if n&0x80 != 0 {
		k := n & 0x7f
		if k == 0 || k > 3 || len(b) < 2+k || b[2] == 0 {
			return 0, nil, nil, nil, false
		}
		n = 0
		for _, c := range b[2 : 2+k] {
			n = n<<8 | int(c)
		}
		if n < 0x80 {
			return 0, nil, nil, nil, false
		}
		hdr += k
	}
	if n > len(b)-hdr {
		return 0, nil, nil, nil, false
	}
	return b[0], b[hdr : hdr+n], b[:hdr+n], b[hdr+n:], true
}

// expect reads an element with tag from *b and advances *b past it.
func expect(b *[]byte, tag byte) (contents, whole []byte, ok bool) {
	t, contents, whole, rest, ok := element(*b)
	if !ok || t != tag {
		return nil, nil, false
	}
	*b = rest
	return contents, whole, true
}

// validOID reports whether contents encode an object identifier as
// encoding/asn1 (and so pkcs7) reads it: non-empty, every arc minimally
// encoded, terminated and at most math.MaxInt32.
func validOID(contents []byte) bool {
	if len(contents) == 0 {
		return false
	}
	var arc uint64
	start := true
	for _, c := range contents {
		if start && c == 0x80 {
			return false
		}
		if arc = arc<<7 | uint64(c&0x7f); arc > math.MaxInt32 {
			return false
		}
		if start = c&0x80 == 0; start {
			arc = 0
		}
	}
	return start
}

// expectOID reads an object identifier element and returns it whole.
func expectOID(b *[]byte) ([]byte, bool) {
	contents, whole, ok := expect(b, tagOID)
	if !ok || !validOID(contents) {
		return nil, false
	}
	return whole, true
}

// expectAlgorithm reads an AlgorithmIdentifier, a SEQUENCE of an object
// identifier and optional parameters, and returns the identifier element.
func expectAlgorithm(b *[]byte) ([]byte, bool) {
	seq, _, ok := expect(b, tagSequence)
	if !ok {
		return nil, false
	}
	id, ok := expectOID(&seq)
	if !ok {
		return nil, false
	}
	if len(seq) > 0 {
		if _, _, _, seq, ok = element(seq); !ok || len(seq) > 0 {
			return nil, false
		}
	}
	return id, true
}

// expectSmallInt reads an INTEGER that fits one byte (a CMS version).
func expectSmallInt(b *[]byte) bool {
	contents, _, ok := expect(b, tagInteger)
	return ok && len(contents) == 1
}

// signerInfo is what the fast path reads of a SignedData.
type signerInfo struct {
	certs     []byte // contents of the certificates field
	issuer    []byte // the signer's issuer Name, whole
	serial    []byte // contents of the signer's serial number INTEGER
	digestAlg []byte // digestAlgorithm identifier element
	attrs     []byte // the signedAttrs element, whole ([0] tag included)
	sigAlg    []byte // signatureAlgorithm identifier element
	signature []byte
}

// parseSignedData reads der as the shape of SignedData the fast path
// handles (see the top of this file).
func parseSignedData(der []byte) (si signerInfo, ok bool) {
	// ContentInfo ::= SEQUENCE { contentType, [0] EXPLICIT content }
	ci, _, ok := expect(&der, tagSequence)
	if !ok || len(der) > 0 {
		return si, false
	}
	if ct, ok := expectOID(&ci); !ok || string(ct) != oidSignedData {
		return si, false
	}
	explicit, _, ok := expect(&ci, tagContext0)
	if !ok || len(ci) > 0 {
		return si, false
	}
	sd, _, ok := expect(&explicit, tagSequence)
	if !ok || len(explicit) > 0 {
		return si, false
	}
	// SignedData ::= SEQUENCE { version, digestAlgorithms SET OF,
	//   encapContentInfo, certificates [0] IMPLICIT, signerInfos SET OF }
	if !expectSmallInt(&sd) {
		return si, false
	}
	algs, _, ok := expect(&sd, tagSet)
	if !ok {
		return si, false
	}
	for len(algs) > 0 {
		if _, ok := expectAlgorithm(&algs); !ok {
			return si, false
		}
	}
	// Detached: the encapsulated content is only its type.
	eci, _, ok := expect(&sd, tagSequence)
	if !ok {
		return si, false
	}
	if _, ok := expectOID(&eci); !ok || len(eci) > 0 {
		return si, false
	}
	if si.certs, _, ok = expect(&sd, tagContext0); !ok {
		return si, false
	}
	signers, _, ok := expect(&sd, tagSet)
	if !ok || len(sd) > 0 {
		return si, false
	}
	signer, _, ok := expect(&signers, tagSequence)
	if !ok || len(signers) > 0 {
		return si, false
	}
	// SignerInfo ::= SEQUENCE { version, sid IssuerAndSerialNumber,
	//   digestAlgorithm, signedAttrs [0] IMPLICIT, signatureAlgorithm,
	//   signature }
	if !expectSmallInt(&signer) {
		return si, false
	}
	ias, _, ok := expect(&signer, tagSequence)
	if !ok {
		return si, false
	}
	if _, _, si.issuer, ias, ok = element(ias); !ok {
		return si, false
	}
	if si.serial, _, ok = expect(&ias, tagInteger); !ok || len(ias) > 0 {
		return si, false
	}
	if si.digestAlg, ok = expectAlgorithm(&signer); !ok {
		return si, false
	}
	if _, si.attrs, ok = expect(&signer, tagContext0); !ok {
		return si, false
	}
	if si.sigAlg, ok = expectAlgorithm(&signer); !ok {
		return si, false
	}
	if si.signature, _, ok = expect(&signer, tagOctetString); !ok || len(signer) > 0 {
		return si, false
	}
	return si, true
}

// signedAttributes are the signed attributes the fast path reads: the
// values (the contents of each attribute's SET of values) of the first
// messageDigest and signingTime attributes.
type signedAttributes struct {
	messageDigest, signingTime []byte
}

// parseAttributes reads the signedAttrs element. It refuses attributes
// out of DER order: pkcs7 re-encodes them sorted before verifying, so it
// would verify other bytes than these.
func parseAttributes(attrs []byte) (sa signedAttributes, ok bool) {
	_, set, _, _, _ := element(attrs)
	if len(set) == 0 {
		return sa, false
	}
	var prev []byte
	for len(set) > 0 {
		attr, whole, ok := expect(&set, tagSequence)
		if !ok || bytes.Compare(prev, whole) > 0 {
			return sa, false
		}
		prev = whole
		typ, ok := expectOID(&attr)
		if !ok {
			return sa, false
		}
		values, _, ok := expect(&attr, tagSet)
		if !ok || len(attr) > 0 {
			return sa, false
		}
		switch string(typ) {
		case oidMessageDigest:
			if sa.messageDigest == nil {
				sa.messageDigest = values
			}
		case oidSigningTime:
			if sa.signingTime == nil {
				sa.signingTime = values
			}
		}
	}
	return sa, sa.messageDigest != nil
}

// signerCertificate returns the first certificate of the certificates
// field with the signer's issuer and serial number, as pkcs7 picks it.
// Every certificate must parse, as pkcs7 requires. More than
// MaxSignatureCertificates are left to the general path, which refuses
// them, before any is parsed.
func signerCertificate(si *signerInfo) (*x509.Certificate, bool) {
	for certs, n := si.certs, 0; len(certs) > 0; n++ {
		if _, _, ok := expect(&certs, tagSequence); !ok || n == MaxSignatureCertificates {
			return nil, false
		}
	}
	// A serial number is a positive, minimally encoded INTEGER
	// (crypto/x509 refuses negative ones).
	s := si.serial
	if len(s) == 0 || s[0]&0x80 != 0 || len(s) > 1 && s[0] == 0 && s[1]&0x80 == 0 {
		return nil, false
	}
	serial := new(big.Int).SetBytes(s)
	var signer *x509.Certificate
	certs := si.certs
	for len(certs) > 0 {
		_, der, ok := expect(&certs, tagSequence)
		if !ok {
			return nil, false
		}
		cert, err := parseCertificate(der)
		if err != nil {
			return nil, false
		}
		if signer == nil && cert.SerialNumber.Cmp(serial) == 0 && bytes.Equal(cert.RawIssuer, si.issuer) {
			signer = cert
		}
	}
	return signer, signer != nil
}

// verifyDetached is the fast path: it returns the signer's certificate if
// der is a signature of the handled shape that verifies over body, and
// false otherwise. It writes to der (and restores it). A panic, which the
// fuzz tests make sure does not happen, counts as false, so that the
// general path has the last word.
func verifyDetached(der, body []byte) (cert *x509.Certificate, ok bool) {
	defer func() {
		if recover() != nil {
			fastPathPanics.Add(1)
			cert, ok = nil, false
		}
	}()
	return verifyDetachedDER(der, body)
}

// fastPathPanics counts the panics verifyDetached recovered from, for the
// tests.
var fastPathPanics atomic.Int64

func verifyDetachedDER(der, body []byte) (*x509.Certificate, bool) {
	si, ok := parseSignedData(der)
	if !ok {
		return nil, false
	}
	attrs, ok := parseAttributes(si.attrs)
	if !ok {
		return nil, false
	}
	hash, ok := digestHashes[string(si.digestAlg)]
	if !ok || !hash.Available() {
		return nil, false
	}
	alg, ok := signatureAlgorithm(si.sigAlg, si.digestAlg)
	if !ok {
		return nil, false
	}
	cert, ok := signerCertificate(&si)
	if !ok {
		return nil, false
	}
	// The messageDigest attribute (its first value, an OCTET STRING) must
	// be the digest of the body...
	tag, digest, _, _, ok := element(attrs.messageDigest)
	if !ok || tag != tagOctetString {
		return nil, false
	}
	h := hash.New()
	h.Write(body)
	if subtle.ConstantTimeCompare(digest, h.Sum(nil)) != 1 {
		return nil, false
	}
	// ...made while the certificate was valid, if it says when...
	if attrs.signingTime != nil {
		var signingTime time.Time
		if _, err := asn1.Unmarshal(attrs.signingTime, &signingTime); err == nil &&
			(signingTime.After(cert.NotAfter) || signingTime.Before(cert.NotBefore)) {
			return nil, false
		}
	}
	// ...and the signature is over the DER of the attributes as a SET OF
	// (RFC 5652 section 5.4): their [0] IMPLICIT tag swapped for SET's.
	si.attrs[0] = tagSet
	defer func() { si.attrs[0] = tagContext0 }()
	if err := cert.CheckSignature(alg, si.attrs, si.signature); err != nil {
		return nil, false
	}
	return cert, true
}
