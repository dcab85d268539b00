package scepca

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/x509"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"time"

	"github.com/micromdm/scep/v2/depot"
	"github.com/smallstep/scep"

	pmlog "github.com/picomdm/picomdm/log"
	"github.com/picomdm/picomdm/storage"
)

// DefaultValidityDays is how long issued identity certificates are valid
// unless WithValidityDays says otherwise. A device does not renew its MDM
// identity by itself, so it is long.
const DefaultValidityDays = 730

// Limits on what a certificate request may carry.
const (
	// MaxChallengeBytes bounds a challenge password.
	MaxChallengeBytes = 256
	// MaxSubjectBytes bounds a requested subject, in RFC 2253 form.
	MaxSubjectBytes = 1024
	// minRSABits is the smallest RSA device key accepted.
	minRSABits = 2048
)

// Refusals the Issuer logs; the SCEP client gets a CertRep FAILURE
// (failInfo badRequest), the answer Apple devices understand.
var (
	ErrBadChallenge = errors.New("scepca: challenge password refused")
	ErrBadCSR       = errors.New("scepca: certificate request refused")
)

// Issuer signs certificate requests with the CA after checking their
// challenge password: the static one (WithStaticChallenge) or a one-time
// challenge minted through the API, used up in the same storage operation
// that records the issued certificate. It implements
// scepserver.CSRSignerContext.
type Issuer struct {
	ca           *CA
	store        storage.SCEPStore
	static       []byte
	validityDays int
	now          func() time.Time
	logger       *slog.Logger
}

// IssuerOption configures an Issuer.
type IssuerOption func(*Issuer)

// WithStaticChallenge accepts challenge (when not empty) from every
// device, as a profile's fixed SCEP challenge (-scep-challenge).
func WithStaticChallenge(challenge string) IssuerOption {
	return func(i *Issuer) { i.static = []byte(challenge) }
}

// WithValidityDays sets how many days issued certificates are valid.
func WithValidityDays(days int) IssuerOption { return func(i *Issuer) { i.validityDays = days } }

// WithClock sets the Issuer's clock (tests).
func WithClock(now func() time.Time) IssuerOption { return func(i *Issuer) { i.now = now } }

// WithLogger sets the Issuer's logger.
func WithLogger(logger *slog.Logger) IssuerOption { return func(i *Issuer) { i.logger = logger } }

// NewIssuer returns an Issuer for ca recording into store.
func NewIssuer(ca *CA, store storage.SCEPStore, opts ...IssuerOption) *Issuer {
	if ca == nil || store == nil {
		panic("scepca: NewIssuer needs a CA and a store")
	}
	i := &Issuer{ca: ca, store: store, validityDays: DefaultValidityDays, now: time.Now}
	for _, opt := range opts {
		opt(i)
	}
	i.logger = pmlog.Or(i.logger)
	return i
}

// CA returns the Issuer's CA.
func (i *Issuer) CA() *CA { return i.ca }

// SignCSRContext implements scepserver.CSRSignerContext: it checks m's
// challenge and CSR, signs, and records the certificate (using up a
// one-time challenge in the same operation). Any error makes the SCEP
// server answer a CertRep FAILURE.
func (i *Issuer) SignCSRContext(ctx context.Context, m *scep.CSRReqMessage) (*x509.Certificate, error) {
	log := i.logger.With("op", "scep")
	hash, err := i.checkChallenge(m.ChallengePassword)
	if err != nil {
		log.WarnContext(ctx, "SCEP request refused", "err", err)
		return nil, err
	}
	if err := checkCSR(m.CSR); err != nil {
		log.WarnContext(ctx, "SCEP request refused", "err", err)
		return nil, err
	}
	d := &recordingDepot{ctx: ctx, ca: i.ca, store: i.store, challengeHash: hash, now: i.now().UTC().Truncate(time.Millisecond)}
	signer := depot.NewSigner(d, depot.WithValidityDays(i.validityDays))
	cert, err := signer.SignCSR(m)
	if err != nil {
		if errors.Is(err, storage.ErrChallengeUnusable) {
			err = fmt.Errorf("%w: %w", ErrBadChallenge, err)
			log.WarnContext(ctx, "SCEP request refused", "err", err)
		} else {
			log.ErrorContext(ctx, "SCEP issuing failed", "err", err)
		}
		return nil, err
	}
	log.InfoContext(ctx, "SCEP certificate issued", "serial", d.record.Serial, "subject", d.record.Subject,
		"challenge_id", d.record.ChallengeID, "not_after", cert.NotAfter)
	return cert, nil
}

// checkChallenge returns "" for the static challenge, else the hash of
// the one-time challenge to use up.
func (i *Issuer) checkChallenge(pw string) (string, error) {
	switch {
	case pw == "":
		return "", fmt.Errorf("%w: none given", ErrBadChallenge)
	case len(pw) > MaxChallengeBytes:
		return "", fmt.Errorf("%w: %d bytes (at most %d)", ErrBadChallenge, len(pw), MaxChallengeBytes)
	case len(i.static) > 0 && subtle.ConstantTimeCompare(i.static, []byte(pw)) == 1:
		return "", nil
	}
	return ChallengeHash(pw), nil
}

// checkCSR refuses requests whose key is weak or whose subject is huge.
// The CSR's own signature was checked when the SCEP message was parsed
// (proof of possession); it is checked again here, cheaply, so that this
// signer never depends on that.
func checkCSR(csr *x509.CertificateRequest) error {
	if csr == nil {
		return fmt.Errorf("%w: no CSR", ErrBadCSR)
	}
	if err := csr.CheckSignature(); err != nil {
		return fmt.Errorf("%w: CSR signature: %v", ErrBadCSR, err)
	}
	switch pub := csr.PublicKey.(type) {
	case *rsa.PublicKey:
		if pub.N.BitLen() < minRSABits {
			return fmt.Errorf("%w: %d-bit RSA key (at least %d)", ErrBadCSR, pub.N.BitLen(), minRSABits)
		}
	case *ecdsa.PublicKey:
		if pub.Curve != elliptic.P256() && pub.Curve != elliptic.P384() {
			return fmt.Errorf("%w: ECDSA curve %s", ErrBadCSR, pub.Curve.Params().Name)
		}
	default:
		return fmt.Errorf("%w: key type %T", ErrBadCSR, csr.PublicKey)
	}
	if n := len(csr.Subject.String()); n > MaxSubjectBytes {
		return fmt.Errorf("%w: subject of %d bytes (at most %d)", ErrBadCSR, n, MaxSubjectBytes)
	}
	if n := len(csr.DNSNames) + len(csr.EmailAddresses) + len(csr.IPAddresses) + len(csr.URIs); n > 16 {
		return fmt.Errorf("%w: %d subject alternative names (at most 16)", ErrBadCSR, n)
	}
	return nil
}

// ChallengeHash is what storage keeps of a challenge password: the
// lower-case hex SHA-256.
func ChallengeHash(pw string) string {
	h := sha256.Sum256([]byte(pw))
	return hex.EncodeToString(h[:])
}

// NewSerial returns a certificate serial number that sorts in issue order
// and cannot be guessed: 64 bits of the time (nanoseconds) then 64 random
// bits, so replicas need no shared counter and storage lists issued
// certificates in order by serial.
func NewSerial(now time.Time) (*big.Int, error) {
	var b [16]byte
	binary.BigEndian.PutUint64(b[:8], uint64(now.UnixNano()))
	if _, err := rand.Read(b[8:]); err != nil {
		return nil, fmt.Errorf("scepca: serial: %w", err)
	}
	return new(big.Int).SetBytes(b[:]), nil
}

// SerialText is the storage form of a serial: 32 lower-case hex digits.
func SerialText(serial *big.Int) string { return fmt.Sprintf("%032x", serial) }

// recordingDepot is the depot.Depot of one request: the micromdm/scep
// signer asks it for the CA and a serial, then hands it the signed
// certificate, which it records — using up the request's challenge in the
// same storage operation. A certificate whose record fails is never
// returned to the client.
type recordingDepot struct {
	ctx           context.Context
	ca            *CA
	store         storage.SCEPStore
	challengeHash string
	now           time.Time
	record        *storage.SCEPCert
}

// CA implements depot.Depot.
func (d *recordingDepot) CA(_ []byte) ([]*x509.Certificate, *rsa.PrivateKey, error) {
	return []*x509.Certificate{d.ca.Cert}, d.ca.Key, nil
}

// Serial implements depot.Depot.
func (d *recordingDepot) Serial() (*big.Int, error) { return NewSerial(d.now) }

// HasCN implements depot.Depot. Every enrollment gets its own certificate;
// nothing is revoked by common name (cert-auth retires a re-enrolled
// device's earlier certificates instead).
func (d *recordingDepot) HasCN(string, int, *x509.Certificate, bool) (bool, error) { return false, nil }

// Put implements depot.Depot: it records the issued certificate.
func (d *recordingDepot) Put(_ string, crt *x509.Certificate) error {
	sum := sha256.Sum256(crt.Raw)
	rec := &storage.SCEPCert{
		Serial:    SerialText(crt.SerialNumber),
		Subject:   crt.Subject.String(),
		CertHash:  hex.EncodeToString(sum[:]),
		NotBefore: crt.NotBefore.UTC(),
		NotAfter:  crt.NotAfter.UTC(),
		IssuedAt:  d.now.UTC(),
		DER:       crt.Raw,
	}
	if err := d.store.StoreSCEPCert(d.ctx, rec, d.challengeHash); err != nil {
		return fmt.Errorf("recording issued certificate: %w", err)
	}
	d.record = rec
	return nil
}

var _ depot.Depot = (*recordingDepot)(nil)
