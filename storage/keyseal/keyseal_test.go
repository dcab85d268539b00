package keyseal_test

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/picomdm/picomdm/storage"
	"github.com/picomdm/picomdm/storage/keyseal"
)

const pemKey = "-----BEGIN PRIVATE KEY-----\nMIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg\n-----END PRIVATE KEY-----\n"

func randomKey(t testing.TB) []byte {
	t.Helper()
	k := make([]byte, keyseal.KeySize)
	if _, err := rand.Read(k); err != nil {
		t.Fatal(err)
	}
	return k
}

func newSealer(t testing.TB, key []byte) *keyseal.Sealer {
	t.Helper()
	s, err := keyseal.New(key)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return s
}

func TestParseKey(t *testing.T) {
	// 0xfb 0xff give '+' and '/' in the standard alphabet, '-' and '_' in
	// the URL one, so each encoding is told apart.
	key := bytes.Repeat([]byte{0xfb, 0xff}, keyseal.KeySize/2)
	for _, tc := range []struct {
		name, text string
	}{
		{"base64 std", base64.StdEncoding.EncodeToString(key)},
		{"base64 std raw", base64.RawStdEncoding.EncodeToString(key)},
		{"base64 url", base64.URLEncoding.EncodeToString(key)},
		{"base64 url raw", base64.RawURLEncoding.EncodeToString(key)},
		{"hex", hex.EncodeToString(key)},
		{"hex upper case", strings.ToUpper(hex.EncodeToString(key))},
		{"openssl output with newline", base64.StdEncoding.EncodeToString(key) + "\n"},
		{"surrounding white space", " \t" + hex.EncodeToString(key) + "\r\n"},
	} {
		got, err := keyseal.ParseKey(tc.text)
		if err != nil || !bytes.Equal(got, key) {
			t.Errorf("ParseKey(%s %q) = %x, %v; want %x", tc.name, tc.text, got, err, key)
		}
	}
	// A hex key may also be valid base64: hex wins, as its length says.
	digits := bytes.Repeat([]byte{0x12, 0x34}, keyseal.KeySize/2)
	if got, err := keyseal.ParseKey(hex.EncodeToString(digits)); err != nil || !bytes.Equal(got, digits) {
		t.Errorf("ParseKey(hex that is also base64) = %x, %v; want %x", got, err, digits)
	}

	for _, tc := range []struct {
		name, text, wantErr string
	}{
		{"empty", "", "empty"},
		{"white space", " \n", "empty"},
		{"base64 of 16 bytes", base64.StdEncoding.EncodeToString(key[:16]), "16 bytes"},
		{"base64 of 33 bytes", base64.StdEncoding.EncodeToString(append(key, 1)), "33 bytes"},
		{"base64 of 31 bytes", base64.RawURLEncoding.EncodeToString(key[:31]), "31 bytes"},
		{"hex of 31 bytes", hex.EncodeToString(key[:31]), "want 32"},
		{"64 characters, not hex but base64", hex.EncodeToString(key[:31]) + "zz", "48 bytes"},
		{"junk", "not a storage key!", "neither"},
		{"64 characters, not hex", strings.Repeat("g", 63) + "!", "neither"},
	} {
		got, err := keyseal.ParseKey(tc.text)
		if err == nil || got != nil {
			t.Errorf("ParseKey(%s) = %x, %v; want an error", tc.name, got, err)
			continue
		}
		if !strings.Contains(err.Error(), tc.wantErr) {
			t.Errorf("ParseKey(%s): %q does not say %q", tc.name, err, tc.wantErr)
		}
	}
}

func TestNewKeySize(t *testing.T) {
	for _, n := range []int{0, 16, 31, 33, 64} {
		if s, err := keyseal.New(make([]byte, n)); err == nil || s != nil {
			t.Errorf("New(%d-byte key) = %v, %v; want an error", n, s, err)
		}
	}
}

func TestKeyID(t *testing.T) {
	a, b := randomKey(t), randomKey(t)
	id := keyseal.KeyID(a)
	if len(id) != 8 {
		t.Fatalf("KeyID = %q, want 8 hex digits", id)
	}
	if _, err := hex.DecodeString(id); err != nil {
		t.Fatalf("KeyID = %q: %v", id, err)
	}
	if keyseal.KeyID(a) != id || keyseal.KeyID(b) == id {
		t.Errorf("KeyID not a function of the key: %s, %s, %s", id, keyseal.KeyID(a), keyseal.KeyID(b))
	}
	if got := newSealer(t, a).ID(); got != id {
		t.Errorf("Sealer.ID = %q, want KeyID %q", got, id)
	}
	if strings.Contains(hex.EncodeToString(a), id) {
		t.Errorf("KeyID %q is a piece of the key", id)
	}
}

func TestSealOpen(t *testing.T) {
	key := randomKey(t)
	s := newSealer(t, key)
	name := storage.PushKeyNamePrefix + "com.apple.mgmt.External.test"
	sealed, err := s.Seal(name, []byte(pemKey))
	if err != nil {
		t.Fatalf("Seal: %v", err)
	}
	if !keyseal.IsSealed(sealed) || !s.IsSealed(sealed) {
		t.Fatalf("IsSealed(%q) = false", sealed)
	}
	if want := "picomdm-sealed:v1:" + s.ID() + ":"; !strings.HasPrefix(string(sealed), want) {
		t.Errorf("sealed key %q does not start with %q", sealed, want)
	}
	if bytes.Contains(sealed, []byte("PRIVATE KEY")) || bytes.Contains(sealed, []byte("MIGHAgEAMBMG")) {
		t.Errorf("sealed key shows the plaintext: %q", sealed)
	}
	if bytes.ContainsAny(sealed, "\n\r\x00") {
		t.Errorf("sealed key is not one line of text: %q", sealed)
	}
	got, err := s.Open(name, sealed)
	if err != nil || string(got) != pemKey {
		t.Fatalf("Open(Seal(k)) = %q, %v; want %q", got, err, pemKey)
	}
	// A fresh nonce each time; both open.
	again, err := s.Seal(name, []byte(pemKey))
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(again, sealed) {
		t.Error("sealing twice gave the same bytes: nonce reused")
	}
	if got, err := s.Open(name, again); err != nil || string(got) != pemKey {
		t.Errorf("Open(second seal) = %q, %v", got, err)
	}
	// Another Sealer of the same key opens it: nothing but the key is
	// needed (a restarted server).
	if got, err := newSealer(t, key).Open(name, sealed); err != nil || string(got) != pemKey {
		t.Errorf("Open with a new Sealer of the same key = %q, %v", got, err)
	}
	// A trailing newline (a file written by an editor) is tolerated.
	if got, err := s.Open(name, append(bytes.Clone(sealed), '\n')); err != nil || string(got) != pemKey {
		t.Errorf("Open(sealed + newline) = %q, %v", got, err)
	}
	// Empty and binary keys round-trip too.
	for _, plain := range [][]byte{{}, {0, 1, 2, 0xff}} {
		b, err := s.Seal(storage.SCEPCAKeyName, plain)
		if err != nil {
			t.Fatal(err)
		}
		if got, err := s.Open(storage.SCEPCAKeyName, b); err != nil || !bytes.Equal(got, plain) {
			t.Errorf("Open(Seal(%x)) = %x, %v", plain, got, err)
		}
	}
}

func TestOpenPlaintext(t *testing.T) {
	s := newSealer(t, randomKey(t))
	for _, stored := range [][]byte{[]byte(pemKey), {}, []byte("picomdm-sealed:v0:not ours")} {
		if s.IsSealed(stored) {
			t.Errorf("IsSealed(%q) = true", stored)
		}
		got, err := s.Open(storage.SCEPCAKeyName, stored)
		if err != nil || !bytes.Equal(got, stored) {
			t.Errorf("Open(plaintext %q) = %q, %v; want it unchanged", stored, got, err)
		}
	}
}

func TestNameBinding(t *testing.T) {
	s := newSealer(t, randomKey(t))
	sealed, err := s.Seal(storage.PushKeyNamePrefix+"topic.a", []byte(pemKey))
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{storage.PushKeyNamePrefix + "topic.b", storage.SCEPCAKeyName, "", storage.PushKeyNamePrefix + "topic.a "} {
		got, err := s.Open(name, sealed)
		if !errors.Is(err, keyseal.ErrWrongKey) || got != nil {
			t.Errorf("Open under %q of a key sealed for topic.a = %q, %v; want ErrWrongKey", name, got, err)
		}
	}
}

func TestWrongKey(t *testing.T) {
	a, b := newSealer(t, randomKey(t)), newSealer(t, randomKey(t))
	sealed, err := a.Seal(storage.SCEPCAKeyName, []byte(pemKey))
	if err != nil {
		t.Fatal(err)
	}
	got, err := b.Open(storage.SCEPCAKeyName, sealed)
	if !errors.Is(err, keyseal.ErrWrongKey) || got != nil {
		t.Fatalf("Open with another key = %q, %v; want ErrWrongKey", got, err)
	}
	for _, want := range []string{a.ID(), b.ID(), storage.SCEPCAKeyName} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("wrong-key error %q does not name %q", err, want)
		}
	}
	// The same key id on another key's ciphertext (a forged or altered
	// prefix) does not open either.
	forged := bytes.Replace(sealed, []byte(a.ID()), []byte(b.ID()), 1)
	if got, err := b.Open(storage.SCEPCAKeyName, forged); !errors.Is(err, keyseal.ErrWrongKey) || got != nil {
		t.Errorf("Open of a relabelled sealed key = %q, %v; want ErrWrongKey", got, err)
	}
}

func TestTampered(t *testing.T) {
	s := newSealer(t, randomKey(t))
	name := storage.SCEPCAKeyName
	sealed, err := s.Seal(name, []byte(pemKey))
	if err != nil {
		t.Fatal(err)
	}
	head := sealed[:bytes.LastIndexByte(sealed, ':')+1]
	ct, err := base64.StdEncoding.DecodeString(string(sealed[len(head):]))
	if err != nil {
		t.Fatalf("sealed key's ciphertext is not base64: %v", err)
	}
	reseal := func(ct []byte) []byte {
		return append(bytes.Clone(head), base64.StdEncoding.EncodeToString(ct)...)
	}
	for _, tc := range []struct {
		name   string
		stored []byte
	}{
		{"flipped nonce bit", reseal(flip(ct, 0))},
		{"flipped ciphertext bit", reseal(flip(ct, len(ct)/2))},
		{"flipped tag bit", reseal(flip(ct, len(ct)-1))},
		{"truncated", reseal(ct[:len(ct)-1])},
		{"shorter than a nonce", reseal(ct[:5])},
		{"empty ciphertext", head},
		{"not base64", append(bytes.Clone(head), "!!!"...)},
		{"no key id", []byte("picomdm-sealed:v1:" + base64.StdEncoding.EncodeToString(ct))},
	} {
		got, err := s.Open(name, tc.stored)
		if !errors.Is(err, keyseal.ErrWrongKey) || got != nil {
			t.Errorf("Open(%s) = %q, %v; want ErrWrongKey", tc.name, got, err)
		}
	}
}

func flip(b []byte, i int) []byte {
	b = bytes.Clone(b)
	b[i] ^= 0x01
	return b
}

func TestNone(t *testing.T) {
	n := keyseal.None
	stored, err := n.Seal(storage.SCEPCAKeyName, []byte(pemKey))
	if err != nil || string(stored) != pemKey {
		t.Fatalf("None.Seal = %q, %v; want the key as given", stored, err)
	}
	if n.IsSealed(stored) {
		t.Error("None.IsSealed(plaintext) = true")
	}
	if got, err := n.Open(storage.SCEPCAKeyName, stored); err != nil || string(got) != pemKey {
		t.Errorf("None.Open(plaintext) = %q, %v", got, err)
	}

	s := newSealer(t, randomKey(t))
	sealed, err := s.Seal(storage.SCEPCAKeyName, []byte(pemKey))
	if err != nil {
		t.Fatal(err)
	}
	if !n.IsSealed(sealed) {
		t.Error("None.IsSealed(sealed) = false")
	}
	got, err := n.Open(storage.SCEPCAKeyName, sealed)
	if !errors.Is(err, keyseal.ErrNoKey) || got != nil {
		t.Fatalf("None.Open(sealed) = %q, %v; want ErrNoKey", got, err)
	}
	if errors.Is(err, keyseal.ErrWrongKey) {
		t.Errorf("None.Open(sealed): %v is also ErrWrongKey", err)
	}
	if !strings.Contains(err.Error(), s.ID()) || !strings.Contains(err.Error(), storage.SCEPCAKeyName) {
		t.Errorf("no-key error %q does not name the key id %s and the row", err, s.ID())
	}
}

func TestOr(t *testing.T) {
	if keyseal.Or(nil) != keyseal.None {
		t.Error("Or(nil) is not None")
	}
	s := newSealer(t, randomKey(t))
	if keyseal.Or(s) != storage.KeySealer(s) {
		t.Error("Or(s) is not s")
	}
}

func TestLoadKey(t *testing.T) {
	key := randomKey(t)
	text := base64.StdEncoding.EncodeToString(key)
	file := filepath.Join(t.TempDir(), "storage.key")
	if err := os.WriteFile(file, []byte(text+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	if got, err := keyseal.LoadKey("", file); err != nil || !bytes.Equal(got, key) {
		t.Errorf("LoadKey(file) = %x, %v; want %x", got, err, key)
	}
	if got, err := keyseal.LoadKey(text, ""); err != nil || !bytes.Equal(got, key) {
		t.Errorf("LoadKey(text) = %x, %v; want %x", got, err, key)
	}
	if got, err := keyseal.LoadKey("", ""); err != nil || got != nil {
		t.Errorf("LoadKey(neither) = %x, %v; want nil, nil", got, err)
	}
	if got, err := keyseal.LoadKey(text, file); err == nil || got != nil {
		t.Errorf("LoadKey(both) = %x, %v; want an error", got, err)
	} else if !strings.Contains(err.Error(), "not both") {
		t.Errorf("LoadKey(both): %q does not say why", err)
	}
	missing := filepath.Join(t.TempDir(), "missing")
	if got, err := keyseal.LoadKey("", missing); !errors.Is(err, os.ErrNotExist) || got != nil {
		t.Errorf("LoadKey(missing file) = %x, %v; want ErrNotExist", got, err)
	}
	junk := filepath.Join(t.TempDir(), "junk")
	if err := os.WriteFile(junk, []byte("hunter2\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if got, err := keyseal.LoadKey("", junk); err == nil || got != nil {
		t.Errorf("LoadKey(junk file) = %x, %v; want an error", got, err)
	}
}
