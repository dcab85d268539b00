package pgsql

import (
	"context"
	"crypto/tls"

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

// StorePushCert implements storage.PushCertStore (sqlstore.StorePushCert,
// storePushCertSQL): the key is stored sealed by the store's KeySealer,
// bound to the topic's row.
func (s *Store) StorePushCert(ctx context.Context, pemCert, pemKey []byte) error {
	return sqlstore.StorePushCert(ctx, s.execCount, storePushCertSQL, s.sealer, pemCert, pemKey)
}

// Push certificate lookups. Index: push_certs primary key.
const (
	retrievePushCertSQL = `SELECT cert_pem, key_pem, stale_token FROM push_certs WHERE topic = $1`
	staleTokenSQL       = `SELECT stale_token FROM push_certs WHERE topic = $1`
)

// RetrievePushCert implements storage.PushCertStore
// (retrievePushCertSQL): a key that does not open with the store's
// KeySealer is an error.
func (s *Store) RetrievePushCert(ctx context.Context, topic string) (*tls.Certificate, string, error) {
	return sqlstore.RetrievePushCert(s.row(ctx, retrievePushCertSQL, topic), s.sealer, topic)
}

// IsPushCertStale implements storage.PushCertStore (staleTokenSQL).
func (s *Store) IsPushCertStale(ctx context.Context, topic, staleToken string) (bool, error) {
	return sqlstore.IsPushCertStale(s.row(ctx, staleTokenSQL, topic), topic, staleToken)
}

// RetrievePushCertInfos implements storage.PushCertStore.
func (s *Store) RetrievePushCertInfos(ctx context.Context) ([]storage.PushCertInfo, error) {
	return sqlstore.PushCertInfos(ctx, s.db)
}
