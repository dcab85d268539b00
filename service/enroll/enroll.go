// Package enroll builds the enrollment profile PicoMDM serves at
// /mdm/enroll and through the API: a .mobileconfig whose MDM payload points
// at the server's public URL with the push topic of its push certificate,
// and whose SCEP payload makes the device request its identity from the
// built-in SCEP CA (/scep) with a challenge — the static -scep-challenge or
// a fresh one-time challenge — signed when a profile signer is configured.
package enroll

import (
	"context"
	"crypto"
	"crypto/x509"
	"errors"
	"fmt"
	"net/netip"
	"net/url"
	"strings"
	"time"

	"github.com/picomdm/picomdm/mdm/profile"
	"github.com/picomdm/picomdm/service/scepca"
	"github.com/picomdm/picomdm/storage"
)

// Limits on the URL parameters a profile passes to ServerURL.
const (
	// MaxParams is the most parameters one profile carries.
	MaxParams = 20
	// MaxParamsBytes bounds their encoded length.
	MaxParamsBytes = 2048
)

// Errors Profile returns.
var (
	// ErrNoTopic says no push certificate is stored yet, so the profile
	// has no push topic: upload one (PUT /v1/pushcert) first.
	ErrNoTopic = errors.New("enroll: no push certificate stored yet (PUT /v1/pushcert), so the profile has no push topic")
	// ErrManyTopics says several push certificates are stored and none is
	// chosen (-enroll-topic).
	ErrManyTopics = errors.New("enroll: several push certificates are stored; choose the profile's topic with -enroll-topic")
	// ErrBadParams says the URL parameters are out of bounds.
	ErrBadParams = errors.New("enroll: bad profile URL parameters")
)

// Store is what the Builder reads and writes: the stored push
// certificates' topics, and one-time challenges.
type Store interface {
	storage.PushCertStore
	storage.SCEPStore
}

// Config describes the profiles a Builder makes.
type Config struct {
	// PublicURL is the server's URL as devices reach it (through the TLS
	// proxy), e.g. https://mdm.example.com: ServerURL is PublicURL/mdm,
	// CheckInURL PublicURL/checkin, the SCEP URL PublicURL/scep.
	PublicURL string
	// Checkin sets CheckInURL (the server runs with -checkin).
	Checkin bool
	// Topic is the push topic; empty means the one stored push
	// certificate's.
	Topic string
	// FallbackTopic is the topic while no push certificate is stored
	// (-dev); empty makes that ErrNoTopic.
	FallbackTopic string
	// StaticChallenge is the SCEP challenge a profile carries unless
	// OneTime is set; empty means every profile gets a one-time challenge.
	StaticChallenge string
	// OneTime makes every profile carry a fresh one-time challenge.
	OneTime bool
	// ChallengeTTL is how long those challenges are valid (0: the
	// scepca default).
	ChallengeTTL time.Duration
	// KeySize is the device key's RSA size (0: 2048).
	KeySize int
	// Subject is the SCEP subject (empty: profile.DefaultSCEPSubject).
	Subject string
	// Name and Organization are the profile's display name and
	// organization (empty: defaults).
	Name, Organization string
	// AccessRights is the MDM payload's AccessRights (0: all).
	AccessRights int
	// SignCert, SignIntermediates and SignKey sign the profile when
	// SignCert is set.
	SignCert          *x509.Certificate
	SignIntermediates []*x509.Certificate
	SignKey           crypto.PrivateKey
}

// Builder makes enrollment profiles.
type Builder struct {
	cfg   Config
	base  *url.URL
	store Store
	now   func() time.Time
}

// New returns a Builder; it checks cfg.PublicURL: an absolute https URL,
// as Apple requires for ServerURL — or http when allowHTTP (-dev) or
// when its host is a loopback address (a test or a simulator on this
// machine; no real device reaches it).
func New(cfg Config, store Store, allowHTTP bool) (*Builder, error) {
	if store == nil {
		panic("enroll: nil store")
	}
	u, err := url.Parse(strings.TrimRight(cfg.PublicURL, "/"))
	if err == nil && u.Scheme == "http" && isLoopback(u.Hostname()) {
		allowHTTP = true
	}
	if err != nil || u.Host == "" || (u.Scheme != "https" && !(allowHTTP && u.Scheme == "http")) {
		return nil, fmt.Errorf("public URL %q: want an absolute https URL (devices require https for ServerURL)", cfg.PublicURL)
	}
	if u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("public URL %q: no query or fragment", cfg.PublicURL)
	}
	return &Builder{cfg: cfg, base: u, store: store, now: time.Now}, nil
}

// isLoopback reports whether host is localhost or a loopback IP.
func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.IsLoopback()
}

// Request says what one profile carries beyond the Config.
type Request struct {
	// Challenge is the SCEP challenge to carry; empty means the Config's
	// choice (static or a fresh one-time challenge).
	Challenge string
	// OneTime forces a fresh one-time challenge when Challenge is empty.
	OneTime bool
	// Params are added to ServerURL's (and CheckInURL's) query, so every
	// device request of the enrollment carries them (webhook url_params).
	Params url.Values
	// Note is stored with a minted challenge.
	Note string
}

// Profile is one built profile.
type Profile struct {
	// Body is the .mobileconfig, signed when a signer is configured.
	Body []byte
	// Challenge is the minted one-time challenge's record, nil when the
	// profile carries the static or a given challenge.
	Challenge *storage.SCEPChallenge
}

// Profile builds a profile for req.
func (b *Builder) Profile(ctx context.Context, req Request) (*Profile, error) {
	if err := checkParams(req.Params); err != nil {
		return nil, err
	}
	topic, err := b.topic(ctx)
	if err != nil {
		return nil, err
	}
	out := new(Profile)
	challenge := req.Challenge
	if challenge == "" {
		if b.cfg.StaticChallenge != "" && !b.cfg.OneTime && !req.OneTime {
			challenge = b.cfg.StaticChallenge
		} else {
			note := req.Note
			if note == "" {
				note = "enrollment profile"
			}
			pw, c, err := scepca.MintChallenge(ctx, b.store, b.now(), b.cfg.ChallengeTTL, note)
			if err != nil {
				return nil, err
			}
			challenge, out.Challenge = pw, c
		}
	}
	opts := profile.Options{
		ServerURL:    b.url("/mdm", req.Params),
		Topic:        topic,
		AccessRights: b.cfg.AccessRights,
		Name:         b.cfg.Name,
		Organization: b.cfg.Organization,
		SCEP: &profile.SCEP{
			URL:       b.url("/scep", nil),
			Challenge: challenge,
			Subject:   b.cfg.Subject,
			KeySize:   b.cfg.KeySize,
			Name:      "PicoMDM",
		},
	}
	if b.cfg.Checkin {
		opts.CheckInURL = b.url("/checkin", req.Params)
	}
	body, err := profile.Generate(opts)
	if err != nil {
		return nil, err
	}
	if b.cfg.SignCert != nil {
		if body, err = profile.Sign(body, b.cfg.SignCert, b.cfg.SignKey, b.cfg.SignIntermediates...); err != nil {
			return nil, err
		}
	}
	out.Body = body
	return out, nil
}

// url is the public URL of path with params.
func (b *Builder) url(path string, params url.Values) string {
	u := *b.base
	u.Path = strings.TrimRight(u.Path, "/") + path
	if len(params) > 0 {
		u.RawQuery = params.Encode()
	}
	return u.String()
}

// topic is the configured topic, or the single stored push certificate's.
func (b *Builder) topic(ctx context.Context) (string, error) {
	if b.cfg.Topic != "" {
		return b.cfg.Topic, nil
	}
	infos, err := b.store.RetrievePushCertInfos(ctx)
	if err != nil {
		return "", fmt.Errorf("reading push certificates: %w", err)
	}
	switch len(infos) {
	case 0:
		if b.cfg.FallbackTopic != "" {
			return b.cfg.FallbackTopic, nil
		}
		return "", ErrNoTopic
	case 1:
		return infos[0].Topic, nil
	}
	return "", ErrManyTopics
}

// checkParams bounds the parameters passed to ServerURL.
func checkParams(params url.Values) error {
	n := 0
	for _, vs := range params {
		n += len(vs)
	}
	if n > MaxParams {
		return fmt.Errorf("%w: %d parameters (at most %d)", ErrBadParams, n, MaxParams)
	}
	if l := len(params.Encode()); l > MaxParamsBytes {
		return fmt.Errorf("%w: %d bytes encoded (at most %d)", ErrBadParams, l, MaxParamsBytes)
	}
	for k := range params {
		if k == "" {
			return fmt.Errorf("%w: empty parameter name", ErrBadParams)
		}
	}
	return nil
}
