package storage

import (
	"crypto/x509"
	"encoding/asn1"
	"errors"
	"fmt"
)

// oidUserID is the LDAP "UID" attribute (RFC 4519). Apple puts an MDM push
// certificate's APNs topic in the UID attribute of its Subject.
var oidUserID = asn1.ObjectIdentifier{0, 9, 2342, 19200300, 100, 1, 1}

// errNoTopic is wrapped when a certificate's Subject has no usable UID.
var errNoTopic = errors.New("certificate subject has no UID (APNs topic)")

// TopicFromCert returns the APNs topic of an MDM push certificate: the UID
// attribute (OID 0.9.2342.19200300.100.1.1) of its Subject, such as
// "com.apple.mgmt.External.<uuid>". Backends key push certificates by it.
// It does not check the "com.apple.mgmt" prefix; callers that accept
// certificates from operators do.
func TopicFromCert(cert *x509.Certificate) (string, error) {
	if cert == nil {
		return "", fmt.Errorf("reading push topic: %w", errors.New("nil certificate"))
	}
	for _, attr := range cert.Subject.Names {
		if !attr.Type.Equal(oidUserID) {
			continue
		}
		topic, ok := attr.Value.(string)
		if !ok || topic == "" {
			return "", fmt.Errorf("reading push topic: %w", errNoTopic)
		}
		return topic, nil
	}
	return "", fmt.Errorf("reading push topic: %w", errNoTopic)
}
