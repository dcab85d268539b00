package storage

import (
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/asn1"
	"encoding/hex"
	"errors"
	"fmt"
	"time"
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

// PushCert is what a backend stores for a push certificate, derived from
// the PEM pair by ParsePushCert.
type PushCert struct {
	Topic    string
	NotAfter time.Time
	// StaleToken changes exactly when the certificate or key does: it is
	// derived from them, so storing the same pair again (say from two
	// replicas) does not make every replica reload it.
	StaleToken string
}

// ParsePushCert checks that pemCert and pemKey are a matching pair whose
// certificate carries an APNs topic, and derives what backends store.
func ParsePushCert(pemCert, pemKey []byte) (*PushCert, error) {
	cert, err := tls.X509KeyPair(pemCert, pemKey)
	if err != nil {
		return nil, fmt.Errorf("push certificate: %w", err)
	}
	topic, err := TopicFromCert(cert.Leaf)
	if err != nil {
		return nil, fmt.Errorf("push certificate: %w", err)
	}
	h := sha256.New()
	h.Write(cert.Certificate[0])
	h.Write(pemKey)
	return &PushCert{
		Topic:      topic,
		NotAfter:   cert.Leaf.NotAfter.UTC(),
		StaleToken: hex.EncodeToString(h.Sum(nil)[:16]),
	}, nil
}
