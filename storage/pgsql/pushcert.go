package pgsql

import (
	"context"
	"crypto/tls"
	"database/sql"
	"errors"
	"fmt"

	"github.com/picomdm/picomdm/storage"
	"github.com/picomdm/picomdm/storage/internal/sqlstore"
)

// storePushCertSQL replaces the topic's certificate. Index: push_certs
// primary key.
const storePushCertSQL = `
INSERT INTO push_certs (topic, cert_pem, key_pem, stale_token, not_after)
VALUES ($1, $2::bytea, $3::bytea, $4, $5::timestamptz)
ON CONFLICT (topic) DO UPDATE SET
    cert_pem    = EXCLUDED.cert_pem,
    key_pem     = EXCLUDED.key_pem,
    stale_token = EXCLUDED.stale_token,
    not_after   = EXCLUDED.not_after,
    updated_at  = now()`

// StorePushCert implements storage.PushCertStore. The pair must match and
// the certificate must carry a topic; the stale token is derived from the
// plaintext certificate and key, so storing the same pair again does not
// make every replica reload it, a new pair always changes it, and sealing
// the key (a fresh nonce each time) does not. The key is stored sealed by
// the store's KeySealer, bound to the topic's row.
func (s *Store) StorePushCert(ctx context.Context, pemCert, pemKey []byte) error {
	pc, err := storage.ParsePushCert(pemCert, pemKey)
	if err != nil {
		return fmt.Errorf("storing push cert: %w", err)
	}
	topic := pc.Topic
	sealed, err := s.sealer.Seal(storage.PushKeyNamePrefix+topic, pemKey)
	if err != nil {
		return fmt.Errorf("storing push cert for topic %q: sealing its key: %w", topic, err)
	}
	err = s.exec(ctx, storePushCertSQL, topic, pemCert, sealed, pc.StaleToken, pc.NotAfter)
	if err != nil {
		return fmt.Errorf("storing push cert for topic %q: %w", topic, err)
	}
	return nil
}

// Push certificate lookups. Index: push_certs primary key.
const (
	retrievePushCertSQL = `SELECT cert_pem, key_pem, stale_token FROM push_certs WHERE topic = $1`
	staleTokenSQL       = `SELECT stale_token FROM push_certs WHERE topic = $1`
)

// RetrievePushCert implements storage.PushCertStore. A key that does not
// open with the store's KeySealer is an error (wrapping keyseal.ErrNoKey or
// keyseal.ErrWrongKey), never a certificate.
func (s *Store) RetrievePushCert(ctx context.Context, topic string) (*tls.Certificate, string, error) {
	var certPEM, keyPEM []byte
	var staleToken string
	err := s.queryRow(ctx, retrievePushCertSQL, []any{topic}, &certPEM, &keyPEM, &staleToken)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, "", fmt.Errorf("push cert for topic %q: %w", topic, storage.ErrNotFound)
	}
	if err != nil {
		return nil, "", fmt.Errorf("push cert for topic %q: %w", topic, err)
	}
	keyPEM, err = s.sealer.Open(storage.PushKeyNamePrefix+topic, keyPEM)
	if err != nil {
		return nil, "", fmt.Errorf("push cert for topic %q: opening its key: %w", topic, err)
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, "", fmt.Errorf("push cert for topic %q: %w", topic, err)
	}
	return &cert, staleToken, nil
}

// IsPushCertStale implements storage.PushCertStore. An unknown topic is
// stale: whatever the caller holds for it is not current.
func (s *Store) IsPushCertStale(ctx context.Context, topic, staleToken string) (bool, error) {
	var current string
	err := s.queryRow(ctx, staleTokenSQL, []any{topic}, &current)
	if errors.Is(err, sql.ErrNoRows) {
		return true, nil
	}
	if err != nil {
		return false, fmt.Errorf("push cert staleness for topic %q: %w", topic, err)
	}
	return current != staleToken, nil
}

// RetrievePushCertInfos implements storage.PushCertStore.
func (s *Store) RetrievePushCertInfos(ctx context.Context) ([]storage.PushCertInfo, error) {
	return sqlstore.PushCertInfos(ctx, s.db)
}
