// Package pemkey reads unencrypted private keys from PEM, in the forms
// openssl and Go write them: PKCS #8 ("PRIVATE KEY"), PKCS #1 ("RSA
// PRIVATE KEY") and SEC 1 ("EC PRIVATE KEY"). It is the one key parser of
// the commands and packages that take a key file or upload.
package pemkey

import (
	"crypto"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"strings"
)

// ErrNoKey is the error of Parse for PEM that holds no private key block.
var ErrNoKey = errors.New("no PEM private key")

// ErrEncrypted is the error for an encrypted private key, which is
// refused: there is no passphrase to decrypt it with.
var ErrEncrypted = errors.New("the private key is encrypted")

// IsKey reports whether block holds a private key, encrypted or not: its
// type ends in "PRIVATE KEY".
func IsKey(block *pem.Block) bool { return strings.HasSuffix(block.Type, "PRIVATE KEY") }

// IsEncrypted reports whether block is an encrypted private key: PKCS #8
// "ENCRYPTED PRIVATE KEY", or a legacy OpenSSL key with a Proc-Type
// ENCRYPTED header.
func IsEncrypted(block *pem.Block) bool {
	return block.Type == "ENCRYPTED PRIVATE KEY" || IsKey(block) && strings.Contains(block.Headers["Proc-Type"], "ENCRYPTED")
}

// Parse returns the first private key block of b, parsed by ParseBlock.
// Blocks that hold no private key (certificates, the "EC PARAMETERS" of
// openssl ecparam) are skipped.
func Parse(b []byte) (crypto.Signer, error) {
	for {
		var block *pem.Block
		if block, b = pem.Decode(b); block == nil {
			return nil, ErrNoKey
		}
		if IsKey(block) {
			return ParseBlock(block)
		}
	}
}

// keyParsers are the encodings a private key block may hold, by the PEM
// type that names each.
var keyParsers = []struct {
	pemType string
	parse   func([]byte) (any, error)
}{
	{"PRIVATE KEY", x509.ParsePKCS8PrivateKey},
	{"RSA PRIVATE KEY", func(der []byte) (any, error) { return x509.ParsePKCS1PrivateKey(der) }},
	{"EC PRIVATE KEY", func(der []byte) (any, error) { return x509.ParseECPrivateKey(der) }},
}

// ParseBlock parses the unencrypted PKCS #8, PKCS #1 or SEC 1 private key
// in block, whatever its PEM type says (tools that relabel keys exist);
// the error is that of the encoding its type names, if any. The key must
// be one that signs (RSA, ECDSA or Ed25519). An encrypted key is
// ErrEncrypted.
func ParseBlock(block *pem.Block) (crypto.Signer, error) {
	if IsEncrypted(block) {
		return nil, ErrEncrypted
	}
	var named error
	for _, p := range keyParsers {
		key, err := p.parse(block.Bytes)
		if err != nil {
			if p.pemType == block.Type {
				named = err
			}
			continue
		}
		signer, ok := key.(crypto.Signer)
		if !ok {
			return nil, fmt.Errorf("%s block: %T is not a signing key", block.Type, key)
		}
		return signer, nil
	}
	if named != nil {
		return nil, fmt.Errorf("parsing %s: %w", block.Type, named)
	}
	return nil, fmt.Errorf("%s block is not a PKCS #8, PKCS #1 or EC private key", block.Type)
}
