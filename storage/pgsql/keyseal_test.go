package pgsql

import (
	"database/sql"
	"testing"

	"github.com/picomdm/picomdm/storage"
	"github.com/picomdm/picomdm/storage/storagetest"
	"github.com/picomdm/picomdm/test/sqltest"
)

// TestKeySealing runs the key sealing conformance suite on a database of
// its own: SealPrivateKeys and the raw key read see every row.
func TestKeySealing(t *testing.T) {
	dsn := sqltest.PostgreSQL(t)
	db, err := sql.Open("postgres", dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	openSealed := func(t *testing.T, sealer storage.KeySealer) storage.Store {
		s, err := Open(dsn, nil, WithKeySealer(sealer))
		if err != nil {
			t.Fatalf("Open: %v", err)
		}
		t.Cleanup(func() {
			if err := s.Close(); err != nil {
				t.Errorf("Close: %v", err)
			}
		})
		return s
	}
	rawKeys := func(t *testing.T) [][]byte {
		rows, err := db.Query(`SELECT key_pem FROM push_certs UNION ALL SELECT key_pem FROM scep_ca`)
		if err != nil {
			t.Fatalf("reading raw keys: %v", err)
		}
		defer rows.Close()
		var keys [][]byte
		for rows.Next() {
			var k []byte
			if err := rows.Scan(&k); err != nil {
				t.Fatalf("reading raw keys: %v", err)
			}
			keys = append(keys, k)
		}
		if err := rows.Err(); err != nil {
			t.Fatalf("reading raw keys: %v", err)
		}
		return keys
	}
	storagetest.RunKeySealing(t, openSealed, rawKeys)
}
