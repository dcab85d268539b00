package mysql

import (
	"context"
	"crypto/tls"
	"database/sql"
	"errors"
	"fmt"

	"github.com/picomdm/picomdm/storage"
	"github.com/picomdm/picomdm/storage/internal/sqlstore"
)

// StorePushCert implements storage.PushCertStore. The key is stored
// sealed with the store's KeySealer. The stale token is derived from the
// certificate and the plaintext key, so it changes exactly when they do,
// not when the key is sealed (or sealed again, with a fresh nonce), and
// storing the same pair twice (from two replicas) keeps it. PRIMARY.
func (s *Store) StorePushCert(ctx context.Context, pemCert, pemKey []byte) error {
	pc, err := storage.ParsePushCert(pemCert, pemKey)
	if err != nil {
		return fmt.Errorf("storing push cert: %w", err)
	}
	topic, token, notAfter := pc.Topic, pc.StaleToken, pc.NotAfter
	stored, err := s.sealer.Seal(storage.PushKeyNamePrefix+topic, pemKey)
	if err != nil {
		return fmt.Errorf("storing push cert for topic %q: sealing key: %w", topic, err)
	}
	_, err = s.exec(ctx, `INSERT INTO push_certs (topic, cert_pem, key_pem, stale_token, not_after, updated_at)
VALUES (?, ?, ?, ?, ?, UTC_TIMESTAMP(6))
ON DUPLICATE KEY UPDATE cert_pem = ?, key_pem = ?, stale_token = ?, not_after = ?,
	updated_at = UTC_TIMESTAMP(6)`,
		topic, pemCert, stored, token, notAfter,
		pemCert, stored, token, notAfter)
	if err != nil {
		return fmt.Errorf("storing push cert for topic %q: %w", topic, err)
	}
	return nil
}

// RetrievePushCert implements storage.PushCertStore: the key is opened
// with the store's KeySealer, and a key that does not open is an error.
// PRIMARY.
func (s *Store) RetrievePushCert(ctx context.Context, topic string) (*tls.Certificate, string, error) {
	var certPEM, keyPEM []byte
	var token string
	err := s.db.QueryRowContext(ctx, "SELECT cert_pem, key_pem, stale_token FROM push_certs WHERE topic = ?", topic).Scan(&certPEM, &keyPEM, &token)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return nil, "", fmt.Errorf("push cert for topic %q: %w", topic, storage.ErrNotFound)
	case err != nil:
		return nil, "", fmt.Errorf("push cert for topic %q: %w", topic, err)
	}
	keyPEM, err = s.sealer.Open(storage.PushKeyNamePrefix+topic, keyPEM)
	if err != nil {
		return nil, "", fmt.Errorf("push cert for topic %q: opening key: %w", topic, err)
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, "", fmt.Errorf("push cert for topic %q: %w", topic, err)
	}
	return &cert, token, nil
}

// IsPushCertStale implements storage.PushCertStore. An unknown topic is
// stale: whatever the caller holds for it is not current. PRIMARY.
func (s *Store) IsPushCertStale(ctx context.Context, topic, staleToken string) (bool, error) {
	var token string
	err := s.db.QueryRowContext(ctx, "SELECT stale_token FROM push_certs WHERE topic = ?", topic).Scan(&token)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return true, nil
	case err != nil:
		return false, fmt.Errorf("push cert stale token for topic %q: %w", topic, err)
	}
	return token != staleToken, nil
}

// RetrievePushCertInfos implements storage.PushCertStore.
func (s *Store) RetrievePushCertInfos(ctx context.Context) ([]storage.PushCertInfo, error) {
	return sqlstore.PushCertInfos(ctx, s.db)
}
