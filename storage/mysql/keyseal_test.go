package mysql

import (
	"testing"

	"github.com/picomdm/picomdm/storage"
	"github.com/picomdm/picomdm/storage/storagetest"
	"github.com/picomdm/picomdm/test/sqltest"
)

// TestKeySealing: the key-sealing conformance suite on a fresh database,
// reopened with each step's sealer; the raw keys are the key_pem columns
// as stored.
func TestKeySealing(t *testing.T) {
	dsn := sqltest.MySQL(t)
	// admin reads the raw columns: a store of its own, not one of open's.
	admin, err := Open(dsn, map[string]string{"migrate": "0"})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { admin.Close() })
	open := func(t *testing.T, sealer storage.KeySealer) storage.Store {
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
		rows, err := admin.db.Query("SELECT key_pem FROM push_certs UNION ALL SELECT key_pem FROM scep_ca")
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
	storagetest.RunKeySealing(t, open, rawKeys)
}
