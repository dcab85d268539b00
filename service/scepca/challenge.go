package scepca

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"time"
	"unicode/utf8"

	"github.com/picomdm/picomdm/storage"
)

// Bounds on one-time challenges.
const (
	// DefaultChallengeTTL is how long a minted challenge stays valid when
	// the caller does not say.
	DefaultChallengeTTL = 24 * time.Hour
	// MaxChallengeTTL is the longest validity a challenge may be given.
	MaxChallengeTTL = 90 * 24 * time.Hour
	// MaxNoteBytes bounds a challenge's note.
	MaxNoteBytes = 255
)

// ErrBadChallengeRequest says a mint request is out of bounds.
var ErrBadChallengeRequest = errors.New("scepca: bad challenge request")

// MintChallenge makes a one-time challenge valid for ttl (0:
// DefaultChallengeTTL) from now, stores it (its hash only) and returns the
// password — shown this once — with the stored record.
func MintChallenge(ctx context.Context, store storage.SCEPStore, now time.Time, ttl time.Duration, note string) (string, *storage.SCEPChallenge, error) {
	if ttl == 0 {
		ttl = DefaultChallengeTTL
	}
	if ttl < time.Second || ttl > MaxChallengeTTL {
		return "", nil, fmt.Errorf("%w: ttl %v outside 1s…%v", ErrBadChallengeRequest, ttl, MaxChallengeTTL)
	}
	if len(note) > MaxNoteBytes || !utf8.ValidString(note) {
		return "", nil, fmt.Errorf("%w: note must be UTF-8 of at most %d bytes", ErrBadChallengeRequest, MaxNoteBytes)
	}
	var secret [32]byte
	if _, err := rand.Read(secret[:]); err != nil {
		return "", nil, fmt.Errorf("minting challenge: %w", err)
	}
	pw := base64.RawURLEncoding.EncodeToString(secret[:])
	id, err := newChallengeID(now)
	if err != nil {
		return "", nil, err
	}
	now = now.UTC().Truncate(time.Millisecond)
	c := &storage.SCEPChallenge{ID: id, Hash: ChallengeHash(pw), Note: note, CreatedAt: now, ExpiresAt: now.Add(ttl)}
	if err := store.CreateSCEPChallenge(ctx, c); err != nil {
		return "", nil, fmt.Errorf("storing challenge: %w", err)
	}
	return pw, c, nil
}

// newChallengeID returns an ID that sorts in creation order: 16 hex digits
// of the time in nanoseconds, then 8 random ones.
func newChallengeID(now time.Time) (string, error) {
	var b [12]byte
	binary.BigEndian.PutUint64(b[:8], uint64(now.UnixNano()))
	if _, err := rand.Read(b[8:]); err != nil {
		return "", fmt.Errorf("minting challenge: %w", err)
	}
	return hex.EncodeToString(b[:]), nil
}

// ChallengeState names a challenge's state at now: "used", "revoked",
// "expired" or "valid".
func ChallengeState(c *storage.SCEPChallenge, now time.Time) string {
	switch {
	case !c.UsedAt.IsZero():
		return "used"
	case !c.RevokedAt.IsZero():
		return "revoked"
	case !c.ExpiresAt.After(now):
		return "expired"
	}
	return "valid"
}
