package storagetest

import (
	"bytes"
	"context"
	"crypto"
	"crypto/tls"
	"errors"
	"slices"
	"sync"
	"testing"

	"github.com/picomdm/picomdm/storage"
	"github.com/picomdm/picomdm/storage/keyseal"
)

// RunKeySealing runs the conformance tests of private keys sealed at rest
// (storage.KeySealer, storage.PrivateKeySealer: -storage-key) against one
// backend: push certificates' and the SCEP CA's keys are stored sealed,
// open only with the key that sealed them, and keys stored in plaintext
// are sealed by SealPrivateKeys.
//
// The suite needs storage of its own, because SealPrivateKeys and rawKeys
// see every row: the caller creates one fresh, empty database or
// directory for this call (sqltest.MySQL(t), t.TempDir()), and
//
//   - open(t, sealer) returns a store of the backend on that same storage
//     every time, built with WithKeySealer(sealer) (sealer may be
//     keyseal.None). The suite calls open once per subtest, with that
//     subtest's t, uses the store only in that subtest, and never has two
//     stores from open in use at once. open must register the store's
//     Close with t.Cleanup: the subtest's cleanup then closes it before
//     the next subtest opens the storage again, so a backend that locks
//     its storage (file) reopens it. A backend that cannot reopen its
//     storage (inmem) may return the one store each time with its sealer
//     swapped.
//   - rawKeys(t) returns every private key stored — push certificates'
//     and the SCEP CA's — exactly as stored (column or file contents),
//     in any order. The suite calls it between subtests, when no store
//     from open is in use (file: closed).
//
// The steps, each a subtest building on the state the previous left (a
// failed step ends the run):
//  1. With sealer A, on the empty storage: no CA; of 8 concurrent
//     StoreSCEPCA(replace=false) exactly one succeeds, the others fail
//     with ErrExists, and the winner's CA is stored; a replacing CA is
//     stored; rawKeys is its one key, sealed (keyseal.IsSealed, and no
//     "PRIVATE KEY" in it).
//  2. With A: a push certificate is stored; it and the CA come back
//     exactly, its stale token is storage.ParsePushCert's of the
//     plaintext pair, SealPrivateKeys has nothing to do; rawKeys are the
//     two keys, sealed, the CA's unchanged.
//  3. With keyseal.None, then 4. with another key B: RetrievePushCert,
//     RetrieveSCEPCA and SealPrivateKeys fail with errors wrapping
//     keyseal.ErrNoKey (ErrWrongKey), return no certificate or key, and
//     change nothing; the stale token still checks.
//  5. With None: a second push certificate and a replacing CA are stored
//     in plaintext (rawKeys hold their PEM byte for byte);
//     SealPrivateKeys fails with ErrNoKey on the sealed one and rewrites
//     nothing.
//  6. With A: SealPrivateKeys rewrites the 2 plaintext keys, then 0;
//     rawKeys are all sealed, the one sealed before unchanged; every key
//     comes back exactly and no stale token changed.
func RunKeySealing(t *testing.T, open func(t *testing.T, sealer storage.KeySealer) storage.Store, rawKeys func(t *testing.T) [][]byte) {
	ctx := context.Background()
	sealerA, err := keyseal.New(RandomBytes(keyseal.KeySize))
	if err != nil {
		t.Fatalf("keyseal.New: %v", err)
	}
	sealerB, err := keyseal.New(RandomBytes(keyseal.KeySize))
	if err != nil {
		t.Fatalf("keyseal.New: %v", err)
	}
	// step runs fn on a store opened with sealer as subtest name, and
	// ends the run if it failed.
	step := func(name string, sealer storage.KeySealer, fn func(t *testing.T, s storage.Store)) {
		t.Helper()
		if !t.Run(name, func(t *testing.T) { fn(t, open(t, sealer)) }) {
			t.FailNow()
		}
	}

	var caCert, caKey []byte
	step("FreshCAConcurrent", sealerA, func(t *testing.T, s storage.Store) {
		if c, k, err := s.RetrieveSCEPCA(ctx); !errors.Is(err, storage.ErrNotFound) {
			t.Fatalf("RetrieveSCEPCA on fresh storage: %d, %d bytes, %v; want ErrNotFound", len(c), len(k), err)
		}
		if n, err := s.SealPrivateKeys(ctx); n != 0 || err != nil {
			t.Fatalf("SealPrivateKeys on fresh storage = %d, %v; want 0, nil", n, err)
		}
		caCert, caKey = storeCAConcurrently(t, s, 8)
		wantCA(t, s, caCert, caKey)
		// Replacing seals too.
		caCert, caKey = NewSCEPCA()
		if err := s.StoreSCEPCA(ctx, caCert, caKey, true); err != nil {
			t.Fatalf("StoreSCEPCA(replace): %v", err)
		}
		wantCA(t, s, caCert, caKey)
	})
	raw := rawKeys(t)
	wantSealed(t, raw, 1)
	sealedCA := raw[0]

	topic1 := NewTopic()
	cert1, key1 := NewPushCert(topic1)
	token1 := wantStaleToken(t, cert1, key1)
	step("SealedWithKey", sealerA, func(t *testing.T, s storage.Store) {
		if err := s.StorePushCert(ctx, cert1, key1); err != nil {
			t.Fatalf("StorePushCert: %v", err)
		}
		wantPushCertKey(t, s, topic1, cert1, key1, token1)
		wantCA(t, s, caCert, caKey)
		if n, err := s.SealPrivateKeys(ctx); n != 0 || err != nil {
			t.Fatalf("SealPrivateKeys with every key sealed = %d, %v; want 0, nil", n, err)
		}
		wantPushCertKey(t, s, topic1, cert1, key1, token1)
	})
	sealed := rawKeys(t)
	wantSealed(t, sealed, 2)
	// SealPrivateKeys left the sealed CA key as it was; the other one is
	// the push certificate's.
	i := slices.IndexFunc(sealed, func(k []byte) bool { return bytes.Equal(k, sealedCA) })
	if i < 0 {
		t.Fatal("rawKeys: the sealed CA key changed though the CA was not stored again")
	}
	sealedPush := sealed[1-i]

	for _, tc := range []struct {
		name   string
		sealer storage.KeySealer
		err    error
	}{
		{"NoKey", keyseal.None, keyseal.ErrNoKey},
		{"WrongKey", sealerB, keyseal.ErrWrongKey},
	} {
		step(tc.name, tc.sealer, func(t *testing.T, s storage.Store) {
			wantKeysRefused(t, s, tc.err, topic1, token1)
			if n, err := s.SealPrivateKeys(ctx); !errors.Is(err, tc.err) {
				t.Errorf("SealPrivateKeys = %d, %v; want %v", n, err, tc.err)
			}
		})
		wantRawKeys(t, "after "+tc.name, rawKeys(t), sealed)
	}

	topic2 := NewTopic()
	cert2, key2 := NewPushCert(topic2)
	token2 := wantStaleToken(t, cert2, key2)
	step("PlaintextWithoutKey", keyseal.None, func(t *testing.T, s storage.Store) {
		if err := s.StorePushCert(ctx, cert2, key2); err != nil {
			t.Fatalf("StorePushCert: %v", err)
		}
		caCert, caKey = NewSCEPCA()
		if err := s.StoreSCEPCA(ctx, caCert, caKey, true); err != nil {
			t.Fatalf("StoreSCEPCA(replace): %v", err)
		}
		wantPushCertKey(t, s, topic2, cert2, key2, token2)
		wantCA(t, s, caCert, caKey)
		if n, err := s.SealPrivateKeys(ctx); !errors.Is(err, keyseal.ErrNoKey) {
			t.Errorf("SealPrivateKeys with a sealed key and none configured = %d, %v; want ErrNoKey", n, err)
		}
	})
	wantRawKeys(t, "after storing in plaintext", rawKeys(t), [][]byte{sealedPush, key2, caKey})

	step("SealPlaintext", sealerA, func(t *testing.T, s storage.Store) {
		// Plaintext keys open with a key configured, before sealing too.
		wantPushCertKey(t, s, topic2, cert2, key2, token2)
		wantCA(t, s, caCert, caKey)
		if n, err := s.SealPrivateKeys(ctx); n != 2 || err != nil {
			t.Fatalf("SealPrivateKeys with 2 plaintext keys = %d, %v; want 2, nil", n, err)
		}
		if n, err := s.SealPrivateKeys(ctx); n != 0 || err != nil {
			t.Fatalf("SealPrivateKeys again = %d, %v; want 0, nil", n, err)
		}
		wantPushCertKey(t, s, topic1, cert1, key1, token1)
		wantPushCertKey(t, s, topic2, cert2, key2, token2)
		wantCA(t, s, caCert, caKey)
		for _, tc := range []struct{ topic, token string }{{topic1, token1}, {topic2, token2}} {
			if stale, err := s.IsPushCertStale(ctx, tc.topic, tc.token); stale || err != nil {
				t.Errorf("IsPushCertStale(%s) after sealing = %v, %v; want false", tc.topic, stale, err)
			}
		}
	})
	resealed := rawKeys(t)
	wantSealed(t, resealed, 3)
	if !slices.ContainsFunc(resealed, func(k []byte) bool { return bytes.Equal(k, sealedPush) }) {
		t.Error("SealPrivateKeys rewrote a key that was sealed already")
	}
}

// storeCAConcurrently races n StoreSCEPCA(replace=false) of distinct CAs
// on a store with none, checks exactly one won and the others failed
// with ErrExists, and returns the winner's CA.
func storeCAConcurrently(t testing.TB, s storage.Store, n int) (certPEM, keyPEM []byte) {
	t.Helper()
	type ca struct{ cert, key []byte }
	cas := make([]ca, n)
	for i := range cas {
		cas[i].cert, cas[i].key = NewSCEPCA()
	}
	errs := make([]error, n)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range cas {
		wg.Go(func() {
			<-start
			errs[i] = s.StoreSCEPCA(context.Background(), cas[i].cert, cas[i].key, false)
		})
	}
	close(start)
	wg.Wait()
	winner := -1
	for i, err := range errs {
		switch {
		case err == nil && winner >= 0:
			t.Errorf("StoreSCEPCA(replace=false) %d and %d both succeeded", winner, i)
		case err == nil:
			winner = i
		case !errors.Is(err, storage.ErrExists):
			t.Errorf("StoreSCEPCA(replace=false) %d: %v, want nil or ErrExists", i, err)
		}
	}
	if winner < 0 {
		t.Fatalf("none of %d StoreSCEPCA(replace=false) on a store without a CA succeeded: %v", n, errs)
	}
	return cas[winner].cert, cas[winner].key
}

// wantStaleToken returns the stale token of the plaintext pair: what
// RetrievePushCert must return however the key is stored.
func wantStaleToken(t testing.TB, certPEM, keyPEM []byte) string {
	t.Helper()
	pc, err := storage.ParsePushCert(certPEM, keyPEM)
	if err != nil {
		t.Fatalf("ParsePushCert: %v", err)
	}
	return pc.StaleToken
}

// wantPushCertKey asserts topic's push certificate is certPEM with the
// private key of keyPEM, and its stale token token.
func wantPushCertKey(t testing.TB, s storage.Store, topic string, certPEM, keyPEM []byte, token string) {
	t.Helper()
	cert, got, err := s.RetrievePushCert(context.Background(), topic)
	if err != nil {
		t.Fatalf("RetrievePushCert(%s): %v", topic, err)
	}
	wantUsableCert(t, cert, certPEM, topic)
	want, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatalf("test bug: %v", err)
	}
	if k, ok := cert.PrivateKey.(interface{ Equal(crypto.PrivateKey) bool }); !ok || !k.Equal(want.PrivateKey) {
		t.Errorf("RetrievePushCert(%s): private key is not the one stored", topic)
	}
	if got != token {
		t.Errorf("RetrievePushCert(%s): stale token %q, want %q (ParsePushCert of the plaintext pair)", topic, got, token)
	}
}

// wantKeysRefused asserts that the push certificate of topic and the CA
// do not open, with errors wrapping want, and that the stale token still
// checks (it needs no key).
func wantKeysRefused(t testing.TB, s storage.Store, want error, topic, token string) {
	t.Helper()
	ctx := context.Background()
	if cert, _, err := s.RetrievePushCert(ctx, topic); !errors.Is(err, want) || cert != nil {
		t.Errorf("RetrievePushCert(%s) = %v, %v; want nil, %v", topic, cert != nil, err, want)
	}
	if c, k, err := s.RetrieveSCEPCA(ctx); !errors.Is(err, want) || c != nil || k != nil {
		t.Errorf("RetrieveSCEPCA = %d, %d bytes, %v; want nothing, %v", len(c), len(k), err, want)
	}
	if stale, err := s.IsPushCertStale(ctx, topic, token); stale || err != nil {
		t.Errorf("IsPushCertStale(%s) = %v, %v; want false", topic, stale, err)
	}
}

// wantSealed asserts keys are n sealed keys with no PEM key in them.
func wantSealed(t testing.TB, keys [][]byte, n int) {
	t.Helper()
	if len(keys) != n {
		t.Fatalf("rawKeys: %d keys, want %d", len(keys), n)
	}
	for i, k := range keys {
		if bytes.Contains(k, []byte("PRIVATE KEY")) || !keyseal.IsSealed(k) {
			t.Errorf("raw key %d is not sealed: %.60q…", i, k)
		}
	}
}

// wantRawKeys asserts got and want hold the same keys, in any order.
func wantRawKeys(t testing.TB, what string, got, want [][]byte) {
	t.Helper()
	g, w := slices.Clone(got), slices.Clone(want)
	slices.SortFunc(g, bytes.Compare)
	slices.SortFunc(w, bytes.Compare)
	if !slices.EqualFunc(g, w, bytes.Equal) {
		t.Fatalf("rawKeys %s: %d keys %.40q, want %d %.40q", what, len(g), g, len(w), w)
	}
}
