package device

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"fmt"
	"strings"
)

// KeyType is the kind of private key a device's identity uses.
type KeyType int

const (
	// RSA2048 is what devices get from SCEP enrollment; the default.
	RSA2048 KeyType = iota
	// ECDSAP256 is an ECDSA key on NIST P-256 (e.g. ACME device
	// attestation identities).
	ECDSAP256
)

// String returns "rsa" or "ecdsa", the names ParseKeyType accepts.
func (k KeyType) String() string {
	switch k {
	case RSA2048:
		return "rsa"
	case ECDSAP256:
		return "ecdsa"
	}
	return fmt.Sprintf("KeyType(%d)", int(k))
}

// ParseKeyType parses "rsa" or "ecdsa" (case-insensitive).
func ParseKeyType(s string) (KeyType, error) {
	switch strings.ToLower(s) {
	case "rsa", "rsa2048", "rsa-2048":
		return RSA2048, nil
	case "ecdsa", "ec", "p256", "p-256":
		return ECDSAP256, nil
	}
	return 0, fmt.Errorf("device: unknown key type %q (want rsa or ecdsa)", s)
}

// GenerateKey returns a new private key of type k.
func GenerateKey(k KeyType) (crypto.Signer, error) {
	switch k {
	case RSA2048:
		return rsa.GenerateKey(rand.Reader, 2048)
	case ECDSAP256:
		return ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	}
	return nil, fmt.Errorf("device: unknown key type %v", k)
}
