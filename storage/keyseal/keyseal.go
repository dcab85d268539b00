// Package keyseal encrypts the private keys PicoMDM stores — push
// certificates' and the built-in SCEP CA's — with the operator's storage
// key (-storage-key), so a database dump, a backup or a copied storage
// directory does not give away the keys to every managed device.
//
// A sealed key is text, so it fits the columns and files plaintext PEM
// keys used:
//
//	picomdm-sealed:v1:<key id>:<base64 of nonce and AES-256-GCM ciphertext>
//
// The key id (8 hex digits derived from the storage key) lets a wrong key
// be named as such rather than reported as corruption; the row's name is
// the GCM additional data, so a sealed key moved to another row does not
// open.
package keyseal

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/picomdm/picomdm/storage"
)

// KeySize is the storage key's size: AES-256.
const KeySize = 32

// prefix starts every sealed key.
const prefix = "picomdm-sealed:v1:"

// Errors Open returns.
var (
	// ErrNoKey says a key is sealed but no storage key is configured.
	ErrNoKey = errors.New("keyseal: key is sealed but no storage key is configured (-storage-key)")
	// ErrWrongKey says a sealed key does not open with the configured
	// storage key: another key sealed it, or the row was altered.
	ErrWrongKey = errors.New("keyseal: sealed key does not open with the configured storage key")
)

// IsSealed reports whether stored is a sealed key.
func IsSealed(stored []byte) bool { return bytes.HasPrefix(stored, []byte(prefix)) }

// Sealer seals and opens keys with one storage key. It implements
// storage.KeySealer.
type Sealer struct {
	aead cipher.AEAD
	id   string
}

// New returns the Sealer of a KeySize-byte storage key.
func New(key []byte) (*Sealer, error) {
	if len(key) != KeySize {
		return nil, fmt.Errorf("keyseal: storage key is %d bytes, want %d", len(key), KeySize)
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("keyseal: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("keyseal: %w", err)
	}
	return &Sealer{aead: aead, id: KeyID(key)}, nil
}

// KeyID is the public 8-hex-digit id of a storage key: what a sealed key
// records of the key that sealed it (logged, never secret).
func KeyID(key []byte) string {
	h := sha256.Sum256(append([]byte("picomdm storage key id\x00"), key...))
	return hex.EncodeToString(h[:4])
}

// ID returns the Sealer's KeyID.
func (s *Sealer) ID() string { return s.id }

// Seal implements storage.KeySealer.
func (s *Sealer) Seal(name string, key []byte) ([]byte, error) {
	nonce := make([]byte, s.aead.NonceSize(), s.aead.NonceSize()+len(key)+s.aead.Overhead())
	if _, err := rand.Read(nonce); err != nil {
		return nil, fmt.Errorf("keyseal: %w", err)
	}
	ct := s.aead.Seal(nonce, nonce, key, []byte(name))
	out := make([]byte, 0, len(prefix)+len(s.id)+1+base64.StdEncoding.EncodedLen(len(ct)))
	out = append(out, prefix...)
	out = append(out, s.id...)
	out = append(out, ':')
	return base64.StdEncoding.AppendEncode(out, ct), nil
}

// Open implements storage.KeySealer.
func (s *Sealer) Open(name string, stored []byte) ([]byte, error) {
	if !IsSealed(stored) {
		return stored, nil
	}
	id, ct, err := split(stored)
	if err != nil {
		return nil, err
	}
	if id != s.id {
		return nil, fmt.Errorf("%w: %s was sealed with storage key %s, the configured key is %s", ErrWrongKey, name, id, s.id)
	}
	if len(ct) < s.aead.NonceSize() {
		return nil, fmt.Errorf("%w: %s is truncated", ErrWrongKey, name)
	}
	key, err := s.aead.Open(nil, ct[:s.aead.NonceSize()], ct[s.aead.NonceSize():], []byte(name))
	if err != nil {
		return nil, fmt.Errorf("%w: %s was altered or belongs to another row", ErrWrongKey, name)
	}
	return key, nil
}

// IsSealed implements storage.KeySealer.
func (s *Sealer) IsSealed(stored []byte) bool { return IsSealed(stored) }

// split parses a sealed key into its key id and ciphertext.
func split(stored []byte) (string, []byte, error) {
	rest := stored[len(prefix):]
	i := bytes.IndexByte(rest, ':')
	if i < 0 {
		return "", nil, fmt.Errorf("%w: malformed sealed key", ErrWrongKey)
	}
	ct, err := base64.StdEncoding.DecodeString(string(bytes.TrimSpace(rest[i+1:])))
	if err != nil {
		return "", nil, fmt.Errorf("%w: malformed sealed key: %v", ErrWrongKey, err)
	}
	return string(rest[:i]), ct, nil
}

// None is the KeySealer of a server without a storage key: it stores keys
// as they are, and refuses sealed ones with ErrNoKey.
var None storage.KeySealer = none{}

type none struct{}

func (none) Seal(_ string, key []byte) ([]byte, error) { return key, nil }

func (none) Open(name string, stored []byte) ([]byte, error) {
	if IsSealed(stored) {
		id, _, _ := split(stored)
		return nil, fmt.Errorf("%w: %s was sealed with storage key %s", ErrNoKey, name, id)
	}
	return stored, nil
}

func (none) IsSealed(stored []byte) bool { return IsSealed(stored) }

// Or returns s, or None when s is nil: what backends use.
func Or(s storage.KeySealer) storage.KeySealer {
	if s == nil {
		return None
	}
	return s
}

// ParseKey reads a storage key written as base64 (standard or URL
// alphabet, padded or not) or hex: KeySize bytes, as
// `openssl rand -base64 32` makes. Surrounding white space is ignored.
func ParseKey(text string) ([]byte, error) {
	text = strings.TrimSpace(text)
	if text == "" {
		return nil, errors.New("keyseal: empty storage key")
	}
	if len(text) == 2*KeySize {
		if b, err := hex.DecodeString(text); err == nil {
			return b, nil
		}
	}
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if b, err := enc.DecodeString(text); err == nil {
			if len(b) != KeySize {
				return nil, fmt.Errorf("keyseal: storage key decodes to %d bytes, want %d (make one with: openssl rand -base64 32)", len(b), KeySize)
			}
			return b, nil
		}
	}
	return nil, fmt.Errorf("keyseal: storage key is neither base64 nor hex of %d bytes (make one with: openssl rand -base64 32)", KeySize)
}

// LoadKey returns the storage key given as text, or read from file (one
// of them; both empty: nil, no key).
func LoadKey(text, file string) ([]byte, error) {
	switch {
	case text != "" && file != "":
		return nil, errors.New("keyseal: give the storage key or its file, not both")
	case file != "":
		b, err := os.ReadFile(file)
		if err != nil {
			return nil, fmt.Errorf("keyseal: reading storage key file: %w", err)
		}
		return ParseKey(string(b))
	case text != "":
		return ParseKey(text)
	}
	return nil, nil
}
