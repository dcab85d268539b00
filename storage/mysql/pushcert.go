package mysql

import (
	"context"
	"crypto/tls"

	"github.com/picomdm/picomdm/storage"
	"github.com/picomdm/picomdm/storage/internal/sqlstore"
)

// StorePushCert implements storage.PushCertStore (sqlstore.StorePushCert):
// one upsert by PRIMARY, the key sealed with the store's KeySealer.
func (s *Store) StorePushCert(ctx context.Context, pemCert, pemKey []byte) error {
	return sqlstore.StorePushCert(ctx, s.execCount, `INSERT INTO push_certs
	(topic, cert_pem, key_pem, stale_token, not_after, updated_at)
VALUES (?, ?, ?, ?, ?, UTC_TIMESTAMP(6))
ON DUPLICATE KEY UPDATE cert_pem = VALUES(cert_pem), key_pem = VALUES(key_pem),
	stale_token = VALUES(stale_token), not_after = VALUES(not_after), updated_at = UTC_TIMESTAMP(6)`,
		s.sealer, pemCert, pemKey)
}

// RetrievePushCert implements storage.PushCertStore: the key is opened
// with the store's KeySealer, and a key that does not open is an error.
// PRIMARY.
func (s *Store) RetrievePushCert(ctx context.Context, topic string) (*tls.Certificate, string, error) {
	return sqlstore.RetrievePushCert(s.db.QueryRowContext(ctx,
		"SELECT cert_pem, key_pem, stale_token FROM push_certs WHERE topic = ?", topic), s.sealer, topic)
}

// IsPushCertStale implements storage.PushCertStore. An unknown topic is
// stale: whatever the caller holds for it is not current. PRIMARY.
func (s *Store) IsPushCertStale(ctx context.Context, topic, staleToken string) (bool, error) {
	return sqlstore.IsPushCertStale(s.db.QueryRowContext(ctx,
		"SELECT stale_token FROM push_certs WHERE topic = ?", topic), topic, staleToken)
}

// RetrievePushCertInfos implements storage.PushCertStore.
func (s *Store) RetrievePushCertInfos(ctx context.Context) ([]storage.PushCertInfo, error) {
	return sqlstore.PushCertInfos(ctx, s.db)
}
