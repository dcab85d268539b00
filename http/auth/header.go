package auth

import (
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net/url"
	"strings"
)

// HeaderCert decodes the identity certificate a TLS-terminating proxy passes
// in a header (the -cert-header flag). A value starting with ':' is the
// RFC 9440 Client-Cert form, ":base64-DER:"; anything else is a URL-query
// escaped PEM certificate, as nginx's $ssl_client_escaped_cert produces.
func HeaderCert(value string) (*x509.Certificate, error) {
	if value == "" {
		return nil, fail(ErrNoIdentity, errors.New("no certificate header"))
	}
	var der []byte
	if strings.HasPrefix(value, ":") {
		// RFC 9440 section 2.2: a Structured Field Byte Sequence.
		if len(value) < 2 || !strings.HasSuffix(value, ":") {
			return nil, fail(ErrMalformed, errors.New("RFC 9440 certificate not enclosed in ':'"))
		}
		s := getScratch()
		defer putScratch(s)
		b, err := s.decodeBase64(value[1 : len(value)-1])
		if err != nil {
			return nil, fail(ErrMalformed, fmt.Errorf("decoding RFC 9440 base64: %w", err))
		}
		der = b
	} else {
		unescaped, err := url.QueryUnescape(value)
		if err != nil {
			return nil, fail(ErrMalformed, fmt.Errorf("unescaping PEM certificate: %w", err))
		}
		block, _ := pem.Decode([]byte(unescaped))
		if block == nil || block.Type != "CERTIFICATE" {
			return nil, fail(ErrMalformed, errors.New("no PEM CERTIFICATE block"))
		}
		der = block.Bytes
	}
	cert, err := parseCertificate(der)
	if err != nil {
		return nil, fail(ErrMalformed, fmt.Errorf("parsing certificate: %w", err))
	}
	return cert, nil
}
