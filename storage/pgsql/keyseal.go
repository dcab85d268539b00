package pgsql

import (
	"context"
	"fmt"

	"github.com/lib/pq"
	"github.com/picomdm/picomdm/storage"
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

// plainKeys are the keys stored in plaintext of one table, with the
// sealed bytes that replace them.
type plainKeys struct {
	rows          []string // the rows' primary keys
	plain, sealed [][]byte
}

// add records the plaintext key of row and its sealed replacement.
func (p *plainKeys) add(row string, plain, sealed []byte) {
	p.rows = append(p.rows, row)
	p.plain = append(p.plain, plain)
	p.sealed = append(p.sealed, sealed)
}

// SealPrivateKeys implements storage.PrivateKeySealer. Every key is opened
// before any is rewritten, so a key that does not open fails the call with
// nothing changed.
func (s *Store) SealPrivateKeys(ctx context.Context) (int, error) {
	var push, ca plainKeys
	err := withRetry(ctx, func() error {
		push, ca = plainKeys{}, plainKeys{}
		rows, err := s.db.QueryContext(ctx, storedKeysSQL)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var table, row string
			var stored []byte
			if err := rows.Scan(&table, &row, &stored); err != nil {
				return err
			}
			name, keys := storage.PushKeyNamePrefix+row, &push
			if table == "ca" {
				name, keys = storage.SCEPCAKeyName, &ca
			}
			plain, err := s.sealer.Open(name, stored)
			if err != nil {
				return err
			}
			if s.sealer.IsSealed(stored) {
				continue
			}
			sealed, err := s.sealer.Seal(name, plain)
			if err != nil {
				return fmt.Errorf("%s: %w", name, err)
			}
			if s.sealer.IsSealed(sealed) { // else no storage key: nothing to seal with
				keys.add(row, plain, sealed)
			}
		}
		return rows.Err()
	})
	if err != nil {
		return 0, fmt.Errorf("sealing private keys: %w", err)
	}
	n := 0
	if len(push.rows) > 0 {
		rewritten, err := s.execCount(ctx, sealPushKeysSQL, pq.Array(push.rows), pq.Array(push.plain), pq.Array(push.sealed))
		if err != nil {
			return 0, fmt.Errorf("sealing private keys: push certificates: %w", err)
		}
		n += int(rewritten)
	}
	for i, row := range ca.rows {
		rewritten, err := s.execCount(ctx, sealSCEPCAKeySQL, row, ca.plain[i], ca.sealed[i])
		if err != nil {
			return n, fmt.Errorf("sealing private keys: SCEP CA: %w", err)
		}
		n += int(rewritten)
	}
	return n, nil
}
