package pgsql

import (
	"context"
	"fmt"

	"github.com/lib/pq"
	"github.com/picomdm/picomdm/storage"
	"github.com/picomdm/picomdm/storage/internal/sqlstore"
)

var _ storage.PrivateKeySealer = (*Store)(nil)

// Sealing the stored private keys (storage.PrivateKeySealer). Both tables
// are tiny (one push certificate per topic, one CA), so they are read
// whole.
const (
	// Index: none needed, a full read of both small tables.
	storedKeysSQL = `
SELECT 'push', topic, key_pem FROM push_certs
UNION ALL
SELECT 'ca', name, key_pem FROM scep_ca`
	// The rewrites replace a key only while it is still the plaintext
	// read, so a certificate stored meanwhile (by another replica) never
	// gets the old key back; the stale token stays, as it derives from the
	// plaintext pair. Index: each table's primary key.
	sealPushKeysSQL = `
UPDATE push_certs p SET key_pem = k.sealed
FROM unnest($1::text[], $2::bytea[], $3::bytea[]) AS k (topic, plain, sealed)
WHERE p.topic = k.topic AND p.key_pem = k.plain`
	sealSCEPCAKeySQL = `UPDATE scep_ca SET key_pem = $3::bytea WHERE name = $1 AND key_pem = $2::bytea`
)

// SealPrivateKeys implements storage.PrivateKeySealer: every key is read
// and opened first (sqlstore.KeysToSeal), so a key that does not open
// fails the call with nothing changed; then the push certificates' are
// rewritten in one statement, the CA's in another.
func (s *Store) SealPrivateKeys(ctx context.Context) (int, error) {
	var keys []sqlstore.StoredKey
	err := withRetry(ctx, func() error {
		var err error
		keys, err = sqlstore.KeysToSeal(ctx, s.db, s.sealer, storedKeysSQL)
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("sealing private keys: %w", err)
	}
	var topics []string
	var plain, sealed [][]byte
	var ca []sqlstore.StoredKey
	for _, k := range keys {
		if k.CA {
			ca = append(ca, k)
			continue
		}
		topics, plain, sealed = append(topics, k.Row), append(plain, k.Stored), append(sealed, k.Sealed)
	}
	n := 0
	if len(topics) > 0 {
		rewritten, err := s.execCount(ctx, sealPushKeysSQL, pq.Array(topics), pq.Array(plain), pq.Array(sealed))
		if err != nil {
			return 0, fmt.Errorf("sealing private keys: push certificates: %w", err)
		}
		n += int(rewritten)
	}
	for _, k := range ca {
		rewritten, err := s.execCount(ctx, sealSCEPCAKeySQL, k.Row, k.Stored, k.Sealed)
		if err != nil {
			return n, fmt.Errorf("sealing private keys: SCEP CA: %w", err)
		}
		n += int(rewritten)
	}
	return n, nil
}
