package pgsql

import (
	"database/sql"
	"testing"

	"github.com/picomdm/picomdm/storage"
	"github.com/picomdm/picomdm/storage/internal/sqlstore/sqlstoretest"
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
		return open(t, dsn, nil, WithKeySealer(sealer))
	}
	storagetest.RunKeySealing(t, openSealed, sqlstoretest.RawKeys(db))
}
