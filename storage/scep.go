package storage

import (
	"context"
	"errors"
	"time"
)

// Errors of the SCEP CA store.
var (
	// ErrExists says the thing to create already exists: a SCEP CA (when
	// not replacing it) or a challenge with that ID or hash.
	ErrExists = errors.New("storage: already exists")
	// ErrChallengeUnusable says a one-time SCEP challenge is unknown,
	// already used, revoked or expired, so it issues no certificate.
	ErrChallengeUnusable = errors.New("storage: SCEP challenge is unknown, used, revoked or expired")
)

// SCEPChallenge is a one-time SCEP challenge password minted through the
// API. Only its hash is stored: the password itself is shown once, when
// it is minted, and a database dump does not give it away.
type SCEPChallenge struct {
	// ID names the challenge in the API; IDs sort in creation order.
	ID string
	// Hash is the lower-case hex SHA-256 of the challenge password.
	Hash string
	// Note is the operator's free text (who or what it is for).
	Note string
	// CreatedAt is when it was minted, ExpiresAt when it stops working.
	CreatedAt, ExpiresAt time.Time
	// UsedAt is when a certificate was issued for it (zero: unused).
	UsedAt time.Time
	// RevokedAt is when an operator revoked it (zero: not revoked).
	RevokedAt time.Time
}

// SCEPCert records one certificate the built-in SCEP CA issued.
type SCEPCert struct {
	// Serial is the certificate's serial number, lower-case hex, 32
	// digits: serials sort in issue order (see service/scepca).
	Serial string
	// Subject is the certificate's subject, in RFC 2253 form.
	Subject string
	// CertHash is the lower-case hex SHA-256 of the DER: the hash
	// cert-auth associates with the enrollment that uses it.
	CertHash string
	// NotBefore and NotAfter bound its validity; IssuedAt is when it was
	// issued.
	NotBefore, NotAfter, IssuedAt time.Time
	// ChallengeID is the one-time challenge it was issued for; empty when
	// the static challenge (-scep-challenge) was given.
	ChallengeID string
	// DER is the certificate.
	DER []byte
}

// SCEPStore keeps the built-in SCEP CA (DESIGN §6: every replica issues
// from the same CA, so it lives in storage), its one-time challenges and
// the certificates it issued.
type SCEPStore interface {
	// RetrieveSCEPCA returns the CA's PEM certificate and its PEM private
	// key (opened with the backend's KeySealer); ErrNotFound when none is
	// stored.
	RetrieveSCEPCA(ctx context.Context) (certPEM, keyPEM []byte, err error)
	// StoreSCEPCA stores certPEM and keyPEM (sealed with the backend's
	// KeySealer) as the CA. With replace false it stores nothing and
	// returns an error wrapping ErrExists when a CA is stored already, so
	// of two replicas creating one at their first start exactly one wins
	// and the other reads the winner's; with replace true it overwrites
	// (an operator's import).
	StoreSCEPCA(ctx context.Context, certPEM, keyPEM []byte, replace bool) error

	// CreateSCEPChallenge stores a new one-time challenge; an error
	// wrapping ErrExists when its ID or Hash is taken.
	CreateSCEPChallenge(ctx context.Context, c *SCEPChallenge) error
	// RetrieveSCEPChallenge returns challenge id; ErrNotFound if unknown.
	RetrieveSCEPChallenge(ctx context.Context, id string) (*SCEPChallenge, error)
	// RevokeSCEPChallenge marks challenge id revoked at now, so it issues
	// nothing more (revoking it again keeps the first time); ErrNotFound
	// if unknown.
	RevokeSCEPChallenge(ctx context.Context, id string, now time.Time) error
	// ListSCEPChallenges returns one page of challenges in ID (creation)
	// order, and the cursor of the next page ("" after the last).
	ListSCEPChallenges(ctx context.Context, p Page) ([]SCEPChallenge, string, error)
	// PurgeSCEPChallenges deletes the challenges that were never used and
	// expired before before (revoked or not), at most limit of them (the
	// oldest first), and returns how many it deleted. Used challenges are
	// kept: issued certificates name them.
	PurgeSCEPChallenges(ctx context.Context, before time.Time, limit int) (int, error)

	// StoreSCEPCert records c as issued. When challengeHash is not empty
	// the same atomic operation uses the one-time challenge of that hash:
	// if it is unknown, used, revoked, or expired (ExpiresAt not after
	// c.IssuedAt) nothing is stored and the error wraps
	// ErrChallengeUnusable; otherwise its UsedAt becomes c.IssuedAt and
	// c.ChallengeID its ID. So a challenge issues at most one certificate
	// however many replicas race for it, and a refused request leaves no
	// trace (STYLE §9). An existing Serial is an error wrapping ErrExists.
	StoreSCEPCert(ctx context.Context, c *SCEPCert, challengeHash string) error
	// RetrieveSCEPCert returns the issued certificate of serial;
	// ErrNotFound if unknown.
	RetrieveSCEPCert(ctx context.Context, serial string) (*SCEPCert, error)
	// ListSCEPCerts returns one page of issued certificates in serial
	// (issue) order, and the cursor of the next page ("" after the last).
	ListSCEPCerts(ctx context.Context, p Page) ([]SCEPCert, string, error)
}

// KeySealer encrypts the private keys a backend stores (push
// certificates' and the SCEP CA's) before it writes them, and decrypts
// them after it reads them: -storage-key (package storage/keyseal).
type KeySealer interface {
	// Seal returns key encrypted and bound to name, the row it is stored
	// in ("push:<topic>", "scep-ca"), so a sealed key copied to another
	// row does not open.
	Seal(name string, key []byte) ([]byte, error)
	// Open reverses Seal. Stored bytes that are not sealed (a key written
	// before a storage key was configured) come back unchanged; sealed
	// bytes it cannot open are an error, never garbage.
	Open(name string, stored []byte) ([]byte, error)
	// IsSealed reports whether stored is a sealed key.
	IsSealed(stored []byte) bool
}

// PrivateKeySealer is implemented by every backend: at start-up the
// server has each seal what it still holds in plaintext.
type PrivateKeySealer interface {
	// SealPrivateKeys opens every stored private key with the backend's
	// KeySealer — failing with its error (keyseal.ErrWrongKey,
	// keyseal.ErrNoKey) on the first that does not open — and rewrites
	// the keys still stored in plaintext sealed, when the sealer seals.
	// It returns how many it rewrote.
	SealPrivateKeys(ctx context.Context) (int, error)
}

// Names of the rows KeySealer binds sealed keys to.
const (
	// SCEPCAKeyName is the SCEP CA key's.
	SCEPCAKeyName = "scep-ca"
	// PushKeyNamePrefix, then the topic, is a push certificate key's.
	PushKeyNamePrefix = "push:"
)
