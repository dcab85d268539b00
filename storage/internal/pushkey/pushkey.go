// Package pushkey seals and opens push certificates' private keys the way
// every backend stores them: sealed by the store's storage.KeySealer under
// the name storage.PushKeyNamePrefix+topic, so a sealed key only opens as
// its own topic's.
package pushkey

import (
	"crypto/tls"
	"fmt"

	"github.com/picomdm/picomdm/storage"
)

// Seal is the first step of storage.PushCertStore.StorePushCert: it checks
// the pair and derives what is stored (storage.ParsePushCert), and returns
// that with pemKey sealed for its topic.
func Seal(sealer storage.KeySealer, pemCert, pemKey []byte) (*storage.PushCert, []byte, error) {
	pc, err := storage.ParsePushCert(pemCert, pemKey)
	if err != nil {
		return nil, nil, fmt.Errorf("storing push cert: %w", err)
	}
	sealed, err := sealer.Seal(storage.PushKeyNamePrefix+pc.Topic, pemKey)
	if err != nil {
		return nil, nil, fmt.Errorf("storing push cert for topic %q: sealing key: %w", pc.Topic, err)
	}
	return pc, sealed, nil
}

// Open is the last step of storage.PushCertStore.RetrievePushCert: the
// certificate of topic from its stored PEM certificate and its key as
// Seal sealed it.
func Open(sealer storage.KeySealer, topic string, pemCert, sealedKey []byte) (*tls.Certificate, error) {
	key, err := sealer.Open(storage.PushKeyNamePrefix+topic, sealedKey)
	if err != nil {
		return nil, fmt.Errorf("push cert for topic %q: opening key: %w", topic, err)
	}
	cert, err := tls.X509KeyPair(pemCert, key)
	if err != nil {
		return nil, fmt.Errorf("push cert for topic %q: %w", topic, err)
	}
	return &cert, nil
}
