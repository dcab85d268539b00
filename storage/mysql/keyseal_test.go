package mysql

import (
	"testing"

	"github.com/picomdm/picomdm/storage"
	"github.com/picomdm/picomdm/storage/internal/sqlstore/sqlstoretest"
	"github.com/picomdm/picomdm/storage/storagetest"
	"github.com/picomdm/picomdm/test/sqltest"
)

// TestKeySealing: the key-sealing conformance suite on a fresh database,
// reopened with each step's sealer; the raw keys are the key_pem columns
// as stored.
func TestKeySealing(t *testing.T) {
	dsn := sqltest.MySQL(t)
	// admin reads the raw columns: a store of its own, not one of open's.
	admin := openDSN(t, dsn, map[string]string{"migrate": "0"})
	open := func(t *testing.T, sealer storage.KeySealer) storage.Store {
		return openDSN(t, dsn, nil, WithKeySealer(sealer))
	}
	storagetest.RunKeySealing(t, open, sqlstoretest.RawKeys(admin.db))
}
