package sqlstore

import (
	"context"
	"fmt"

	"github.com/picomdm/picomdm/storage"
)

// Sealing the stored private keys (storage.PrivateKeySealer) in both SQL
// backends: every key is read and opened first, so a key that does not
// open fails the call before anything is rewritten; then the plaintext
// ones are rewritten sealed, each only while its row still holds the
// plaintext read, so a key another replica stored meanwhile never gets
// the old one back. The stale token stays: it derives from the plaintext
// key.

// StoredKey is one private key as it is stored, and sealed.
type StoredKey struct {
	// CA says it is the SCEP CA's key (scep_ca); else a push
	// certificate's (push_certs).
	CA bool
	// Row is its row's primary key: the topic, or the CA's name.
	Row string
	// Stored is the key_pem column as read; Sealed what replaces it.
	Stored, Sealed []byte
}

// Name is what the KeySealer binds k to.
func (k StoredKey) Name() string {
	if k.CA {
		return storage.SCEPCAKeyName
	}
	return storage.PushKeyNamePrefix + k.Row
}

// KeysToSeal reads every stored private key with query and args
// (selecting the table, 'push' or 'ca', the row's primary key and
// key_pem, of push_certs and scep_ca) and returns the plaintext ones with
// Sealed set: an error for a key that does not open with sealer, none
// when sealer does not seal (no storage key).
func KeysToSeal(ctx context.Context, db Querier, sealer storage.KeySealer, query string, args ...any) ([]StoredKey, error) {
	keys, err := queryAll(ctx, db, func(sc RowScanner) (StoredKey, error) {
		var k StoredKey
		var table string
		if err := sc.Scan(&table, &k.Row, &k.Stored); err != nil {
			return k, err
		}
		k.CA = table == "ca"
		return k, nil
	}, query, args...)
	if err != nil {
		return nil, fmt.Errorf("reading private keys: %w", err)
	}
	var plain []StoredKey
	for _, k := range keys {
		key, err := sealer.Open(k.Name(), k.Stored)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", k.Name(), err)
		}
		if sealer.IsSealed(k.Stored) {
			continue
		}
		if k.Sealed, err = sealer.Seal(k.Name(), key); err != nil {
			return nil, fmt.Errorf("%s: %w", k.Name(), err)
		}
		if sealer.IsSealed(k.Sealed) { // else no storage key: nothing to seal with
			plain = append(plain, k)
		}
	}
	return plain, nil
}
