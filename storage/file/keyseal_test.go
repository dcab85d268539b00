package file

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/picomdm/picomdm/storage"
	"github.com/picomdm/picomdm/storage/storagetest"
)

// TestKeySealing runs the key-sealing conformance suite on a fresh
// directory, reopened by each step (the previous step's cleanup closes its
// store, releasing the directory lock).
func TestKeySealing(t *testing.T) {
	dir := t.TempDir()
	openStore := func(t *testing.T, sealer storage.KeySealer) storage.Store {
		return open(t, dir, WithKeySealer(sealer))
	}
	rawKeys := func(t *testing.T) [][]byte {
		t.Helper()
		var keys [][]byte
		entries, err := os.ReadDir(filepath.Join(dir, "pushcerts"))
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range entries {
			if !strings.HasSuffix(e.Name(), ".json") {
				continue
			}
			var rec pushCertRecord
			if ok, err := readJSON(filepath.Join(dir, "pushcerts", e.Name()), &rec); err != nil || !ok {
				t.Fatalf("reading %s: %v, %v", e.Name(), ok, err)
			}
			keys = append(keys, rec.Key)
		}
		var ca scepCARecord
		ok, err := readJSON(filepath.Join(dir, "scep", "ca.json"), &ca)
		if err != nil {
			t.Fatal(err)
		}
		if ok {
			keys = append(keys, ca.Key)
		}
		return keys
	}
	storagetest.RunKeySealing(t, openStore, rawKeys)
}
