package sqlstore

import (
	"context"
	"crypto/tls"
	"database/sql"
	"errors"
	"fmt"

	"github.com/picomdm/picomdm/storage"
	"github.com/picomdm/picomdm/storage/internal/pushkey"
)

// The push certificates (storage.PushCertStore) of both SQL backends: a
// push_certs table of topic, cert_pem, key_pem (sealed with the store's
// KeySealer, as package pushkey seals it), stale_token, not_after. The
// stale token is derived from the certificate and the plaintext key, so
// it changes exactly when they do, not when the key is sealed (or sealed
// again, with a fresh nonce), and storing the same pair twice (from two
// replicas) keeps it.

// StorePushCert implements storage.PushCertStore.StorePushCert: the pair
// must match and the certificate carry a topic; query upserts the
// topic's row, its arguments topic, cert_pem, key_pem, stale_token,
// not_after.
func StorePushCert(ctx context.Context, exec ExecFunc, query string, sealer storage.KeySealer, pemCert, pemKey []byte) error {
	pc, sealed, err := pushkey.Seal(sealer, pemCert, pemKey)
	if err != nil {
		return err
	}
	if _, err := exec(ctx, query, pc.Topic, pemCert, sealed, pc.StaleToken, pc.NotAfter); err != nil {
		return fmt.Errorf("storing push cert for topic %q: %w", pc.Topic, err)
	}
	return nil
}

// RetrievePushCert implements storage.PushCertStore.RetrievePushCert:
// row is the topic's cert_pem, key_pem, stale_token. A key that does not
// open with sealer is an error (wrapping keyseal.ErrNoKey or
// keyseal.ErrWrongKey), never a certificate.
func RetrievePushCert(row RowScanner, sealer storage.KeySealer, topic string) (*tls.Certificate, string, error) {
	var certPEM, keyPEM []byte
	var staleToken string
	if err := row.Scan(&certPEM, &keyPEM, &staleToken); err != nil {
		return nil, "", notFound(err, fmt.Sprintf("push cert for topic %q", topic))
	}
	cert, err := pushkey.Open(sealer, topic, certPEM, keyPEM)
	if err != nil {
		return nil, "", err
	}
	return cert, staleToken, nil
}

// IsPushCertStale implements storage.PushCertStore.IsPushCertStale: row
// is the topic's stale_token. An unknown topic is stale: whatever the
// caller holds for it is not current.
func IsPushCertStale(row RowScanner, topic, staleToken string) (bool, error) {
	var current string
	err := row.Scan(&current)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return true, nil
	case err != nil:
		return false, fmt.Errorf("push cert stale token for topic %q: %w", topic, err)
	}
	return current != staleToken, nil
}

// PushCertInfos lists the push_certs table (topic, not_after) in topic
// order; both SQL backends share the table's shape and this query (push
// certificates are few: a full scan of the primary key).
func PushCertInfos(ctx context.Context, db Querier) ([]storage.PushCertInfo, error) {
	out, err := queryAll(ctx, db, func(sc RowScanner) (storage.PushCertInfo, error) {
		var info storage.PushCertInfo
		var notAfter sql.NullTime
		if err := sc.Scan(&info.Topic, &notAfter); err != nil {
			return info, err
		}
		info.NotAfter = notAfter.Time
		return info, nil
	}, "SELECT topic, not_after FROM push_certs ORDER BY topic")
	if err != nil {
		return nil, fmt.Errorf("listing push certs: %w", err)
	}
	return out, nil
}
