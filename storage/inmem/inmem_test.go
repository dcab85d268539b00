package inmem

import (
	"bytes"
	"context"
	"fmt"
	"testing"

	"github.com/picomdm/picomdm/storage"
	"github.com/picomdm/picomdm/storage/keyseal"
	"github.com/picomdm/picomdm/storage/storagetest"
)

func TestConformance(t *testing.T) {
	store := New()
	storagetest.Run(t, store)
	// Twice against the same store: the suite must not depend on a fresh
	// one, as it will not get one from a shared database.
	storagetest.Run(t, store)
}

func TestKeySealing(t *testing.T) {
	store := New()
	storagetest.RunKeySealing(t,
		func(t *testing.T, sealer storage.KeySealer) storage.Store { return store.reopen(sealer) },
		func(t *testing.T) [][]byte { return store.rawKeys() })
}

// TestWithKeySealer: the option is what New stores with, and nil is
// keyseal.None.
func TestWithKeySealer(t *testing.T) {
	ctx := context.Background()
	sealer, err := keyseal.New(storagetest.RandomBytes(keyseal.KeySize))
	if err != nil {
		t.Fatal(err)
	}
	certPEM, keyPEM := storagetest.NewSCEPCA()
	for _, tc := range []struct {
		name   string
		opts   []Option
		sealed bool
	}{
		{"default", nil, false},
		{"nil", []Option{WithKeySealer(nil)}, false},
		{"key", []Option{WithKeySealer(sealer)}, true},
	} {
		s := New(tc.opts...)
		if err := s.StoreSCEPCA(ctx, certPEM, keyPEM, false); err != nil {
			t.Fatalf("%s: StoreSCEPCA: %v", tc.name, err)
		}
		raw := s.rawKeys()
		if len(raw) != 1 {
			t.Fatalf("%s: %d keys stored, want 1", tc.name, len(raw))
		}
		if keyseal.IsSealed(raw[0]) != tc.sealed {
			t.Errorf("%s: stored CA key sealed = %v, want %v", tc.name, keyseal.IsSealed(raw[0]), tc.sealed)
		}
		if _, key, err := s.RetrieveSCEPCA(ctx); err != nil || !bytes.Equal(key, keyPEM) {
			t.Errorf("%s: RetrieveSCEPCA: key differs, %v", tc.name, err)
		}
	}
}

func BenchmarkNextCommand(b *testing.B) {
	for _, history := range []int{10, 10000} {
		b.Run(fmt.Sprintf("history=%d", history), func(b *testing.B) {
			storagetest.BenchmarkNextCommand(b, New(), history)
		})
	}
}

func BenchmarkEnqueue(b *testing.B) {
	for _, targets := range []int{1000, 10000} {
		b.Run(fmt.Sprintf("targets=%d", targets), func(b *testing.B) {
			storagetest.BenchmarkEnqueue(b, New(), targets)
		})
	}
}

func BenchmarkCommandRoundTrip(b *testing.B) {
	storagetest.BenchmarkCommandRoundTrip(b, New())
}

func BenchmarkReportAndNext(b *testing.B) {
	b.Run("separate", func(b *testing.B) { storagetest.BenchmarkReportAndNext(b, New(), 100) })
	b.Run("combined", func(b *testing.B) { storagetest.BenchmarkReportAndNextCombined(b, New(), 100) })
}

func BenchmarkDeviceRoundTrip(b *testing.B) {
	for _, mode := range storagetest.Modes {
		b.Run(mode.Name, func(b *testing.B) { storagetest.BenchmarkDeviceRoundTrip(b, New(), mode.Combined) })
	}
}

func BenchmarkEnrollPair(b *testing.B) {
	storagetest.BenchmarkEnrollPair(b, New(), true)
}
