package auth

import (
	"bytes"
	"crypto/x509"
	"errors"
	"fmt"

	"github.com/smallstep/pkcs7"
)

// SignatureHeader is the header a device signs its request bodies in, as
// described by Apple's MDM protocol ("SignMessage" in the MDM payload).
const SignatureHeader = "Mdm-Signature"

// SignatureCert returns the identity certificate that signed body. header is
// the Mdm-Signature value: base64 of a CMS (PKCS#7) detached signature over
// the body, with exactly one signer whose certificate it carries, among at
// most MaxSignatureCertificates (more are refused as ErrMalformed before
// any is parsed). It only checks the signature; chain, key usage and dates
// are the Verifier's job.
func SignatureCert(header string, body []byte) (*x509.Certificate, error) {
	return withSignatureDER(header, func(der []byte) (*x509.Certificate, error) {
		if cert, ok := verifyDetached(der, body); ok {
			return cert, nil
		}
		// What the fast path does not accept, the general path decides,
		// with the error to answer. It gets its own copy: der goes back
		// to the pool.
		return verifyPKCS7(bytes.Clone(der), body)
	})
}

// withSignatureDER decodes the Mdm-Signature header into a pooled buffer
// and hands it to parse. The header is attacker-controlled and the CMS
// parsers are not simple: a panic in them is a 400 like any other garbage,
// not a dropped connection.
func withSignatureDER(header string, parse func(der []byte) (*x509.Certificate, error)) (cert *x509.Certificate, err error) {
	if header == "" {
		return nil, fail(ErrNoIdentity, fmt.Errorf("no %s header", SignatureHeader))
	}
	s := getScratch()
	defer putScratch(s)
	der, err := s.decodeBase64(header)
	if err != nil {
		return nil, fail(ErrMalformed, fmt.Errorf("decoding %s base64: %w", SignatureHeader, err))
	}
	defer func() {
		if p := recover(); p != nil {
			cert, err = nil, fail(ErrMalformed, fmt.Errorf("parsing CMS: panic: %v", p))
		}
	}()
	return parse(der)
}

// verifyPKCS7 is SignatureCert's general path: any BER or DER encoding
// github.com/smallstep/pkcs7 understands.
func verifyPKCS7(der, body []byte) (*x509.Certificate, error) {
	p7, signer, err := parsePKCS7(der)
	if err != nil {
		return nil, err
	}
	// The signature is detached: the signed content is the request body.
	// Setting it also overrides any content an attached signature carried,
	// so what is verified is always this body.
	p7.Content = body
	if err := p7.Verify(); err != nil {
		var timeErr *pkcs7.SigningTimeNotValidError
		if errors.As(err, &timeErr) {
			return nil, fail(ErrExpired, err)
		}
		return nil, fail(ErrBadSignature, err)
	}
	return signer, nil
}

// parsePKCS7 parses a CMS signature with pkcs7, which parses every
// certificate before looking at the signer, so they are counted first:
// more than MaxSignatureCertificates are refused before any is parsed. It
// returns the signature and its one signer's certificate.
func parsePKCS7(der []byte) (*pkcs7.PKCS7, *x509.Certificate, error) {
	n, ok := countSignatureCertificates(der, MaxSignatureCertificates)
	if !ok {
		return nil, nil, fail(ErrMalformed, errors.New("parsing CMS: not a readable BER structure"))
	}
	if n > MaxSignatureCertificates {
		return nil, nil, fail(ErrMalformed, fmt.Errorf("CMS carries more than %d certificates", MaxSignatureCertificates))
	}
	p7, err := pkcs7.Parse(der)
	if err != nil {
		return nil, nil, fail(ErrMalformed, fmt.Errorf("parsing CMS: %w", err))
	}
	if n := len(p7.Signers); n != 1 {
		return nil, nil, fail(ErrMalformed, fmt.Errorf("CMS has %d signers, want exactly 1", n))
	}
	signer := p7.GetOnlySigner()
	if signer == nil {
		return nil, nil, fail(ErrMalformed, errors.New("CMS does not carry its signer's certificate"))
	}
	return p7, signer, nil
}

// SignatureSigner returns the certificate of the Mdm-Signature's signer
// without checking the signature, which needs the whole body. It lets a
// handler verify who claims to sign before it reads a large body (see
// http.ReadBodyAuthenticated); SignatureCert must still be called over the
// body. The same limits apply as for SignatureCert.
func SignatureSigner(header string) (*x509.Certificate, error) {
	return withSignatureDER(header, func(der []byte) (*x509.Certificate, error) {
		if si, ok := parseSignedData(der); ok {
			if cert, ok := signerCertificate(&si); ok {
				return cert, nil
			}
		}
		_, signer, err := parsePKCS7(bytes.Clone(der))
		return signer, err
	})
}
