package e2e

import (
	"bytes"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"database/sql"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/picomdm/picomdm/cmd/picomdm/app"
	"github.com/picomdm/picomdm/storage/keyseal"
	"github.com/picomdm/picomdm/test/device"
	"github.com/picomdm/picomdm/test/logtest"
)

// sealedPrefix starts every private key stored sealed (storage/keyseal's
// format, written out here so that a change to it shows up as a test
// failure rather than passing silently).
const sealedPrefix = "picomdm-sealed:v1:"

// keysealChallenge is the static SCEP challenge of the tests below.
const keysealChallenge = "keyseal-e2e-challenge"

// storageKeyText returns a fresh -storage-key: 32 random bytes in base64,
// as `openssl rand -base64 32` makes.
func storageKeyText(t *testing.T) string {
	t.Helper()
	k := make([]byte, keyseal.KeySize)
	if _, err := rand.Read(k); err != nil {
		t.Fatal(err)
	}
	return base64.StdEncoding.EncodeToString(k)
}

// keysealArgs are the flags of a server with the built-in SCEP CA (and no
// -ca: its CA is the only one trusted) on the named backend.
func keysealArgs(storageName, dsn string, extra ...string) []string {
	return append([]string{
		"-api", apiKey, "-storage", storageName, "-storage-dsn", dsn,
		"-scep", "-scep-challenge", keysealChallenge,
	}, extra...)
}

// startRefused runs app.New with args and env, which must fail, and returns
// its error.
func startRefused(t *testing.T, args []string, env map[string]string) error {
	t.Helper()
	a, err := app.New(args, func(k string) string { return env[k] }, io.Discard, &logtest.Buffer{})
	if err == nil {
		a.Close()
		t.Fatalf("app.New(%q) started; want an error", args)
	}
	return err
}

// pushCertServed asserts the server serves topic's push certificate.
func pushCertServed(t *testing.T, s *server, topic string) {
	t.Helper()
	status, body := s.api(http.MethodGet, "/v1/pushcert?topic="+topic, nil)
	var got struct {
		Topic string `json:"topic"`
	}
	if status != http.StatusOK || json.Unmarshal(body, &got) != nil || got.Topic != topic {
		t.Fatalf("GET /v1/pushcert?topic=%s: %d %s", topic, status, body)
	}
}

// caCert returns what GET /scep?operation=GetCACert answers (one CA: its
// DER certificate), checking it is a certificate.
func getCACertDER(t *testing.T, s *server) []byte {
	t.Helper()
	resp, err := http.Get(s.URL + "/scep?operation=GetCACert")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GetCACert: %d %s", resp.StatusCode, body)
	}
	if _, err := x509.ParseCertificate(body); err != nil {
		t.Fatalf("GetCACert answered no single DER certificate: %v", err)
	}
	return body
}

// scepEnrolledDevice enrolls a device whose identity the server's built-in CA
// issued over SCEP: this works only when the CA key opened.
func scepEnrolledDevice(t *testing.T, s *server) *device.Device {
	t.Helper()
	c := ctx(t)
	cert, key, err := device.SCEPEnroll(c, s.URL+"/scep", keysealChallenge, pkix.Name{CommonName: "keyseal-e2e"}, 2048)
	if err != nil {
		t.Fatalf("SCEP enrollment: %v", err)
	}
	d, err := device.New(nil, s.mdmURL(), device.WithIdentity(cert, key))
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Enroll(c); err != nil {
		t.Fatalf("enroll with the SCEP identity: %v", err)
	}
	return d
}

// rawStoredKeys reads every private key the way it lies in storage, bypassing
// PicoMDM: the push_certs and scep_ca rows of a database, or the key_pem
// fields of a file store's pushcerts/*.json and scep/ca.json (base64 of
// the stored bytes in JSON, decoded here). Keys are named by where they
// were read.
func rawStoredKeys(t *testing.T, storageName, dsn string) map[string][]byte {
	t.Helper()
	out := make(map[string][]byte)
	switch storageName {
	case "file":
		files, err := filepath.Glob(filepath.Join(dsn, "pushcerts", "*.json"))
		if err != nil {
			t.Fatal(err)
		}
		if ca := filepath.Join(dsn, "scep", "ca.json"); pathExists(t, ca) {
			files = append(files, ca)
		}
		for _, f := range files {
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			var rec struct {
				Key []byte `json:"key_pem"`
			}
			if err := json.Unmarshal(b, &rec); err != nil {
				t.Fatalf("%s: %v", f, err)
			}
			rel, _ := filepath.Rel(dsn, f)
			out[rel] = rec.Key
		}
	case "mysql", "pgsql":
		driver := map[string]string{"mysql": "mysql", "pgsql": "postgres"}[storageName]
		db, err := sql.Open(driver, dsn)
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		for _, q := range []struct{ name, query string }{
			{"push_certs", "SELECT topic, key_pem FROM push_certs"},
			{"scep_ca", "SELECT name, key_pem FROM scep_ca"},
		} {
			rows, err := db.Query(q.query)
			if err != nil {
				t.Fatalf("%s: %v", q.query, err)
			}
			for rows.Next() {
				var name string
				var key []byte
				if err := rows.Scan(&name, &key); err != nil {
					t.Fatal(err)
				}
				out[q.name+"/"+name] = key
			}
			if err := rows.Err(); err != nil {
				t.Fatal(err)
			}
			rows.Close()
		}
	default:
		t.Fatalf("no raw reader for storage %q", storageName)
	}
	return out
}

func pathExists(t *testing.T, path string) bool {
	t.Helper()
	_, err := os.Stat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return false
	}
	if err != nil {
		t.Fatal(err)
	}
	return true
}

// checkKeysSealed asserts raw holds want keys, every one sealed.
func checkKeysSealed(t *testing.T, raw map[string][]byte, want int) {
	t.Helper()
	if len(raw) != want {
		t.Fatalf("storage holds %d private keys (%s), want %d", len(raw), strings.Join(slices.Sorted(maps.Keys(raw)), ", "), want)
	}
	for name, key := range raw {
		if bytes.Contains(key, []byte("PRIVATE KEY")) {
			t.Errorf("%s is stored as a plaintext PEM key", name)
		}
		if !bytes.HasPrefix(key, []byte(sealedPrefix)) {
			t.Errorf("%s is stored as %.40q…, want it to start with %q", name, key, sealedPrefix)
		}
	}
}

// plaintextKeyFiles returns the files (and JSON fields) of a file store
// that hold a PEM private key, in their text or in a base64 JSON string
// (how []byte fields are written).
func plaintextKeyFiles(t *testing.T, dir string) []string {
	t.Helper()
	var leaks []string
	var walkJSON func(path string, v any)
	walkJSON = func(path string, v any) {
		switch v := v.(type) {
		case string:
			if b, err := base64.StdEncoding.DecodeString(v); err == nil && bytes.Contains(b, []byte("PRIVATE KEY")) {
				leaks = append(leaks, path)
			}
		case map[string]any:
			for k, e := range v {
				walkJSON(path+"."+k, e)
			}
		case []any:
			for i, e := range v {
				walkJSON(fmt.Sprintf("%s[%d]", path, i), e)
			}
		}
	}
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		if bytes.Contains(b, []byte("PRIVATE KEY")) {
			leaks = append(leaks, path)
		}
		var v any
		if json.Unmarshal(b, &v) == nil {
			walkJSON(path, v)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return leaks
}

// checkNoPlaintextKeyFiles asserts no file of a file store holds a PEM
// private key.
func checkNoPlaintextKeyFiles(t *testing.T, dir string) {
	t.Helper()
	if leaks := plaintextKeyFiles(t, dir); len(leaks) > 0 {
		t.Errorf("plaintext private keys in the storage directory: %s", strings.Join(leaks, ", "))
	}
}

// TestKeysAtRest: with -storage-key, the push certificate's and the SCEP
// CA's private keys are sealed in storage; a restart with the same key
// serves both (and a device the CA enrolled before checks in again); a
// restart with another key, or none, refuses to start, naming
// -storage-key, and leaves the stored keys as they were.
func TestKeysAtRest(t *testing.T) {
	for _, backend := range backends {
		t.Run(backend.name, func(t *testing.T) {
			runKeysAtRest(t, backend.name, backend.dsn(t))
		})
	}
}

func runKeysAtRest(t *testing.T, storageName, dsn string) {
	key := storageKeyText(t)
	s := startWithArgs(t, nil, keysealArgs(storageName, dsn, "-storage-key", key), nil)
	topic := uploadPushCert(t, s.URL)
	ca := getCACertDER(t, s)
	d := scepEnrolledDevice(t, s)
	s.stop()

	raw := rawStoredKeys(t, storageName, dsn)
	checkKeysSealed(t, raw, 2) // the push certificate's and the SCEP CA's
	if storageName == "file" {
		checkNoPlaintextKeyFiles(t, dsn)
	}

	// The same key: everything is served as before.
	s = startWithArgs(t, nil, keysealArgs(storageName, dsn, "-storage-key", key), nil)
	pushCertServed(t, s, topic)
	if got := getCACertDER(t, s); !bytes.Equal(got, ca) {
		t.Fatal("GetCACert after the restart answers another CA certificate")
	}
	d.ServerURL = s.mdmURL()
	if _, err := d.Idle(ctx(t)); err != nil {
		t.Fatalf("device enrolled before the restart: Idle: %v", err)
	}
	// The CA key opened: it decrypts and signs a new enrollment.
	scepEnrolledDevice(t, s)
	s.stop()

	for _, tc := range []struct {
		name string
		args []string
		env  map[string]string
		err  error
	}{
		{"another key", keysealArgs(storageName, dsn, "-storage-key", storageKeyText(t)), nil, keyseal.ErrWrongKey},
		{"another key from the environment", keysealArgs(storageName, dsn), map[string]string{"PICOMDM_STORAGE_KEY": storageKeyText(t)}, keyseal.ErrWrongKey},
		{"no key", keysealArgs(storageName, dsn), nil, keyseal.ErrNoKey},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := startRefused(t, tc.args, tc.env)
			if !strings.Contains(err.Error(), "-storage-key") {
				t.Errorf("start error %q does not mention -storage-key", err)
			}
			if !errors.Is(err, tc.err) {
				t.Errorf("start error %q does not wrap %v", err, tc.err)
			}
			if got := rawStoredKeys(t, storageName, dsn); !maps.EqualFunc(got, raw, bytes.Equal) {
				t.Error("a refused start changed the stored keys")
			}
		})
	}

	// The key given by the environment works as the flag does.
	s = startWithArgs(t, nil, keysealArgs(storageName, dsn), map[string]string{"PICOMDM_STORAGE_KEY": key})
	pushCertServed(t, s, topic)
}

// TestPlaintextKeysSealedOnStart: keys stored by a server without
// -storage-key are plaintext PEM; the first start with -storage-key
// seals them in place, says so in its log, and serves them; later starts
// have nothing left to seal.
func TestPlaintextKeysSealedOnStart(t *testing.T) {
	for _, backend := range backends {
		t.Run(backend.name, func(t *testing.T) {
			runPlaintextKeysSealedOnStart(t, backend.name, backend.dsn(t))
		})
	}
}

func runPlaintextKeysSealedOnStart(t *testing.T, storageName, dsn string) {
	s := startWithArgs(t, nil, keysealArgs(storageName, dsn), nil)
	if log := s.stderr.String(); !strings.Contains(log, "stored unencrypted") {
		t.Errorf("a start without -storage-key does not warn that keys are stored unencrypted; log:\n%s", log)
	}
	topic := uploadPushCert(t, s.URL)
	ca := getCACertDER(t, s)
	s.stop()
	raw := rawStoredKeys(t, storageName, dsn)
	if len(raw) != 2 {
		t.Fatalf("storage holds %d private keys, want 2 (push certificate, SCEP CA)", len(raw))
	}
	for name, k := range raw {
		if !bytes.Contains(k, []byte("PRIVATE KEY")) || bytes.HasPrefix(k, []byte(sealedPrefix)) {
			t.Fatalf("without -storage-key, %s is stored as %.40q…, want plaintext PEM", name, k)
		}
	}
	// The file check below finds plaintext keys where there are some.
	if storageName == "file" {
		if leaks := plaintextKeyFiles(t, dsn); len(leaks) != 2 {
			t.Fatalf("plaintext keys found in the storage directory: %v; want the push certificate's and the SCEP CA's", leaks)
		}
	}

	key := storageKeyText(t)
	s = startWithArgs(t, nil, keysealArgs(storageName, dsn, "-storage-key", key), nil)
	log := s.stderr.String()
	if !strings.Contains(log, "sealed plaintext private keys") || !strings.Contains(log, "keys=2") {
		t.Errorf("the sealing start does not log that it sealed 2 keys; log:\n%s", log)
	}
	checkKeysSealed(t, rawStoredKeys(t, storageName, dsn), 2)
	if storageName == "file" {
		checkNoPlaintextKeyFiles(t, dsn)
	}
	pushCertServed(t, s, topic)
	if got := getCACertDER(t, s); !bytes.Equal(got, ca) {
		t.Fatal("GetCACert after sealing answers another CA certificate")
	}
	scepEnrolledDevice(t, s)
	s.stop()

	sealed := rawStoredKeys(t, storageName, dsn)
	s = startWithArgs(t, nil, keysealArgs(storageName, dsn, "-storage-key", key), nil)
	if strings.Contains(s.stderr.String(), "sealed plaintext private keys") {
		t.Error("a start with every key sealed already logs that it sealed keys")
	}
	pushCertServed(t, s, topic)
	s.stop()
	if got := rawStoredKeys(t, storageName, dsn); !maps.EqualFunc(got, sealed, bytes.Equal) {
		t.Error("a start with every key sealed already rewrote them")
	}
}

// TestKeysAtRestKeyFlags: -storage-key-file holds the key (with the
// newline `openssl rand -base64 32 >file` leaves), the key may be written
// in hex as well as base64, and a malformed key, both flags at once or a
// missing key file stop the start with a message naming the flag.
func TestKeysAtRestKeyFlags(t *testing.T) {
	dsn := filepath.Join(t.TempDir(), "db")
	raw := make([]byte, keyseal.KeySize)
	if _, err := rand.Read(raw); err != nil {
		t.Fatal(err)
	}
	key := base64.StdEncoding.EncodeToString(raw)
	keyFile := filepath.Join(t.TempDir(), "storage.key")
	if err := os.WriteFile(keyFile, []byte(key+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	s := startWithArgs(t, nil, keysealArgs("file", dsn, "-storage-key-file", keyFile), nil)
	topic := uploadPushCert(t, s.URL)
	s.stop()
	checkKeysSealed(t, rawStoredKeys(t, "file", dsn), 2)

	// The same key as text, and in hex, opens what the file's sealed.
	for _, k := range []string{key, hex.EncodeToString(raw)} {
		s = startWithArgs(t, nil, keysealArgs("file", dsn, "-storage-key", k), nil)
		pushCertServed(t, s, topic)
		s.stop()
	}

	for _, tc := range []struct {
		name string
		args []string
		want string // in the error, beside -storage-key
	}{
		{"malformed key", []string{"-storage-key", "short"}, "base64"},
		{"16-byte key", []string{"-storage-key", base64.StdEncoding.EncodeToString(raw[:16])}, "32"},
		{"key and key file", []string{"-storage-key", key, "-storage-key-file", keyFile}, "not both"},
		{"missing key file", []string{"-storage-key-file", filepath.Join(t.TempDir(), "missing")}, "reading"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// A fresh directory: the flag is refused before storage is
			// looked at.
			fresh := filepath.Join(t.TempDir(), "db")
			err := startRefused(t, keysealArgs("file", fresh, tc.args...), nil)
			if msg := err.Error(); !strings.Contains(msg, "-storage-key") || !strings.Contains(msg, tc.want) {
				t.Errorf("start error %q: want it to name -storage-key and say %q", msg, tc.want)
			}
			if pathExists(t, fresh) {
				t.Errorf("a refused -storage-key created the storage directory %s", fresh)
			}
		})
	}
}
