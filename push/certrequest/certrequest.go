// Package certrequest makes the files of Apple's MDM push certificate
// flow, as Apple's "Setting Up Push Notifications for Your MDM Customers"
// and "MDM Vendor CSR Signing Overview" describe it: the customer makes an
// RSA key and a certificate signing request (NewKey, NewCSR); an MDM
// vendor, who holds an MDM signing certificate from Apple's developer
// portal, signs that CSR into a Push Certificate Request (Sign); the
// customer uploads the request at https://identity.apple.com/pushcert and
// gets back the APNs MDM push certificate for the key of the first step.
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
	"fmt"
	"slices"

	"github.com/micromdm/plist"
)

// KeyBits is the size of the RSA key NewKey makes, the size Apple's push
// certificate portal expects.
const KeyBits = 2048

// oidEmailAddress is PKCS #9 emailAddress, the subject attribute Apple's
// CSR instructions (Keychain Access' "User Email Address") put the
// requester's address in.
var oidEmailAddress = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 1}

// Errors Sign returns, wrapped with the details; callers check them with
// errors.Is.
var (
	// ErrBadCSR: the CSR does not parse or its signature does not verify.
	ErrBadCSR = errors.New("invalid certificate signing request")
	// ErrVendorKeyNotRSA: the vendor key is not an RSA key. Apple issues
	// MDM signing certificates for RSA keys and the request is signed
	// SHA256WithRSA.
	ErrVendorKeyNotRSA = errors.New("vendor key is not an RSA key")
	// ErrVendorKeyMismatch: the vendor key is not the vendor
	// certificate's.
	ErrVendorKeyMismatch = errors.New("vendor key does not match the vendor certificate")
	// ErrIncompleteChain: the vendor certificate does not chain through
	// the given certificates to a self-signed root among them.
	ErrIncompleteChain = errors.New("vendor certificate chain is incomplete")
)

// NewKey makes the customer's push certificate key: RSA, KeyBits bits.
func NewKey() (*rsa.PrivateKey, error) {
	key, err := rsa.GenerateKey(rand.Reader, KeyBits)
	if err != nil {
		return nil, fmt.Errorf("generating RSA key: %w", err)
	}
	return key, nil
}

// NewCSR makes the customer's certificate signing request for key and
// returns its DER. subject needs a CommonName (Organization is optional);
// a non-empty email is added to the subject as emailAddress, as Apple's
// "Setting Up Push Notifications for Your MDM Customers" has the customer
// do. The request is signed SHA256WithRSA. The key must be RSA of at least
// KeyBits bits.
func NewCSR(key *rsa.PrivateKey, subject pkix.Name, email string) (der []byte, err error) {
	if key == nil {
		return nil, errors.New("making CSR: no key")
	}
	if n := key.N.BitLen(); n < KeyBits {
		return nil, fmt.Errorf("making CSR: RSA key of %d bits, need at least %d", n, KeyBits)
	}
	if subject.CommonName == "" {
		return nil, errors.New("making CSR: subject needs a common name")
	}
	// Do not append to the caller's slice: it may share its array.
	subject.ExtraNames = slices.Clone(subject.ExtraNames)
	if email != "" {
		for _, r := range email {
			if r < 0x20 || r > 0x7e {
				return nil, fmt.Errorf("making CSR: email address %q is not printable ASCII", email)
			}
		}
		// emailAddress is an IA5String (RFC 5280, appendix A); a plain Go
		// string would be encoded as UTF8String.
		subject.ExtraNames = append(subject.ExtraNames, pkix.AttributeTypeAndValue{
			Type:  oidEmailAddress,
			Value: asn1.RawValue{Tag: asn1.TagIA5String, Bytes: []byte(email)},
		})
	}
	der, err = x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		Subject:            subject,
		SignatureAlgorithm: x509.SHA256WithRSA,
	}, key)
	if err != nil {
		return nil, fmt.Errorf("making CSR: %w", err)
	}
	return der, nil
}

// pushCertRequest is the dictionary of Apple's Push Certificate Request
// ("MDM Vendor CSR Signing Overview"); every value is a string.
type pushCertRequest struct {
	// PushCertRequestCSR is base64 of the customer's CSR DER.
	PushCertRequestCSR string `plist:"PushCertRequestCSR"`
	// PushCertCertificateChain is PEM: the MDM signing certificate, the
	// WWDR intermediate, the Apple root.
	PushCertCertificateChain string `plist:"PushCertCertificateChain"`
	// PushCertSignature is base64 of the SHA256WithRSA signature of the
	// CSR DER by the MDM signing certificate's key.
	PushCertSignature string `plist:"PushCertSignature"`
}

// Sign makes the Push Certificate Request of Apple's "MDM Vendor CSR
// Signing Overview" and returns the file the customer uploads at
// https://identity.apple.com/pushcert: base64 of a plist dictionary with
// PushCertRequestCSR (base64 of csrDER), PushCertSignature (base64 of the
// SHA256WithRSA signature of csrDER by vendorKey) and
// PushCertCertificateChain (PEM of vendorCert, then the intermediates,
// then the root).
//
// vendorCert is the vendor's MDM signing certificate ("MDM CSR" in Apple's
// developer portal) and vendorKey its RSA private key. chain holds the
// rest of the way to Apple's root: the WWDR intermediate and the Apple
// Inc. root, in any order. Sign refuses, with ErrBadCSR, a CSR that does
// not parse or whose signature does not verify; with ErrVendorKeyNotRSA or
// ErrVendorKeyMismatch, a key that is not RSA or not the certificate's;
// with ErrIncompleteChain, a vendorCert that does not verify through chain
// to a self-signed certificate of chain (so an expired certificate is
// refused too). The chain written is the verified one, so certificates of
// chain it does not need are left out.
func Sign(csrDER []byte, vendorCert *x509.Certificate, vendorKey crypto.Signer, chain []*x509.Certificate) ([]byte, error) {
	csr, err := x509.ParseCertificateRequest(csrDER)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadCSR, err)
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, fmt.Errorf("%w: signature: %w", ErrBadCSR, err)
	}
	if vendorCert == nil || vendorKey == nil {
		return nil, errors.New("signing push certificate request: no vendor certificate or key")
	}
	pub, ok := vendorKey.Public().(*rsa.PublicKey)
	if !ok {
		return nil, fmt.Errorf("%w: it is %T", ErrVendorKeyNotRSA, vendorKey.Public())
	}
	if !pub.Equal(vendorCert.PublicKey) {
		return nil, fmt.Errorf("%w (certificate %q)", ErrVendorKeyMismatch, vendorCert.Subject.CommonName)
	}
	verified, err := verifyChain(vendorCert, chain)
	if err != nil {
		return nil, err
	}

	digest := sha256.Sum256(csrDER)
	sig, err := vendorKey.Sign(rand.Reader, digest[:], crypto.SHA256)
	if err != nil {
		return nil, fmt.Errorf("signing push certificate request: %w", err)
	}
	// A crypto.Signer may be a token or a KMS; make sure it gave the
	// PKCS #1 v1.5 signature Apple checks and not, say, PSS.
	if err := rsa.VerifyPKCS1v15(pub, crypto.SHA256, digest[:], sig); err != nil {
		return nil, fmt.Errorf("signing push certificate request: vendor key made a signature that is not SHA256WithRSA: %w", err)
	}

	var chainPEM bytes.Buffer
	for _, c := range verified {
		// pem.Encode writes 64-character lines, as the portal wants.
		if err := pem.Encode(&chainPEM, &pem.Block{Type: "CERTIFICATE", Bytes: c.Raw}); err != nil {
			return nil, fmt.Errorf("encoding certificate chain: %w", err)
		}
	}
	b, err := plist.Marshal(pushCertRequest{
		PushCertRequestCSR:       base64.StdEncoding.EncodeToString(csrDER),
		PushCertCertificateChain: chainPEM.String(),
		PushCertSignature:        base64.StdEncoding.EncodeToString(sig),
	})
	if err != nil {
		return nil, fmt.Errorf("encoding push certificate request: %w", err)
	}
	out := make([]byte, base64.StdEncoding.EncodedLen(len(b)))
	base64.StdEncoding.Encode(out, b)
	return out, nil
}

// verifyChain checks that vendorCert chains through chain to a self-signed
// certificate of chain and returns that chain, vendorCert first and the
// root last.
func verifyChain(vendorCert *x509.Certificate, chain []*x509.Certificate) ([]*x509.Certificate, error) {
	if selfSigned(vendorCert) {
		return nil, fmt.Errorf("%w: the vendor certificate %q is self-signed, not an MDM signing certificate issued by Apple", ErrIncompleteChain, vendorCert.Subject.CommonName)
	}
	roots, intermediates := x509.NewCertPool(), x509.NewCertPool()
	haveRoot := false
	for _, c := range chain {
		if c == nil {
			continue
		}
		if selfSigned(c) {
			roots.AddCert(c)
			haveRoot = true
		} else {
			intermediates.AddCert(c)
		}
	}
	if !haveRoot {
		return nil, fmt.Errorf("%w: no self-signed root certificate (the Apple Inc. root) in the chain", ErrIncompleteChain)
	}
	chains, err := vendorCert.Verify(x509.VerifyOptions{
		Roots:         roots,
		Intermediates: intermediates,
		// Apple's MDM signing certificate carries Apple's own extended
		// key usage, none of the ones Verify knows.
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
	})
	if err != nil {
		return nil, fmt.Errorf("%w: verifying the vendor certificate %q, issued by %q, against the chain (it needs that intermediate and the Apple root): %w",
			ErrIncompleteChain, vendorCert.Subject.CommonName, vendorCert.Issuer.CommonName, err)
	}
	return chains[0], nil
}

// selfSigned reports whether c is its own issuer and its signature
// verifies with its own key.
func selfSigned(c *x509.Certificate) bool {
	return bytes.Equal(c.RawSubject, c.RawIssuer) && c.CheckSignatureFrom(c) == nil
}
