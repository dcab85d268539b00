package profile

import (
	"crypto"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"

	"github.com/smallstep/pkcs7"

	"github.com/picomdm/picomdm/mdm/pemkey"
)

// Sign wraps profile in CMS SignedData with the content attached, signed
// by key with cert, the form devices show as "Verified" when they trust
// cert's issuer. Extra certificates (intermediates) go into the
// SignedData so the device can build the chain.
func Sign(profile []byte, cert *x509.Certificate, key crypto.PrivateKey, intermediates ...*x509.Certificate) ([]byte, error) {
	if cert == nil || key == nil {
		return nil, errors.New("profile: signing needs a certificate and a key")
	}
	sd, err := pkcs7.NewSignedData(profile)
	if err != nil {
		return nil, fmt.Errorf("profile: signing: %w", err)
	}
	if err := sd.AddSigner(cert, key, pkcs7.SignerInfoConfig{}); err != nil {
		return nil, fmt.Errorf("profile: signing: %w", err)
	}
	for _, c := range intermediates {
		sd.AddCertificate(c)
	}
	signed, err := sd.Finish()
	if err != nil {
		return nil, fmt.Errorf("profile: signing: %w", err)
	}
	return signed, nil
}

// SignPEM is Sign with the signer read from PEM (see ParseSigner).
func SignPEM(profile, certPEM, keyPEM []byte) ([]byte, error) {
	certs, key, err := ParseSigner(certPEM, keyPEM)
	if err != nil {
		return nil, err
	}
	return Sign(profile, certs[0], key, certs[1:]...)
}

// ParseSigner reads a profile signer from PEM: certPEM holds the signing
// certificate first, then any intermediates; keyPEM holds its private key
// (PKCS#8, PKCS#1 or SEC 1). certs has at least one element.
func ParseSigner(certPEM, keyPEM []byte) (certs []*x509.Certificate, key crypto.PrivateKey, err error) {
	for rest := certPEM; ; {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, nil, fmt.Errorf("profile: parsing signing certificate: %w", err)
		}
		certs = append(certs, c)
	}
	if len(certs) == 0 {
		return nil, nil, errors.New("profile: no CERTIFICATE block in the signing certificate PEM")
	}
	if key, err = pemkey.Parse(keyPEM); err != nil {
		return nil, nil, fmt.Errorf("profile: signing key: %w", err)
	}
	return certs, key, nil
}
