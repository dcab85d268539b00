package app

import (
	"context"
	"crypto"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/picomdm/picomdm/http/api"
	httpenroll "github.com/picomdm/picomdm/http/enroll"
	httpscep "github.com/picomdm/picomdm/http/scep"
	"github.com/picomdm/picomdm/mdm/profile"
	"github.com/picomdm/picomdm/service/enroll"
	"github.com/picomdm/picomdm/service/scepca"
	"github.com/picomdm/picomdm/storage"
	"github.com/picomdm/picomdm/storage/keyseal"
)

// startupTimeout bounds each storage step of start-up (sealing keys,
// loading the SCEP CA).
const startupTimeout = time.Minute

// keySealer returns the sealer of -storage-key / -storage-key-file, or nil
// (no key: keys stay as stored, with a warning).
func (a *App) keySealer() (storage.KeySealer, error) {
	key, err := keyseal.LoadKey(a.Config.StorageKey, a.Config.StorageKeyFile)
	if err != nil {
		return nil, fmt.Errorf("-storage-key: %w", err)
	}
	if key == nil {
		a.Logger.Warn("no -storage-key: push certificate and SCEP CA private keys are stored unencrypted")
		return nil, nil
	}
	s, err := keyseal.New(key)
	if err != nil {
		return nil, fmt.Errorf("-storage-key: %w", err)
	}
	a.Logger.Info("private keys are sealed at rest", "storage_key_id", s.ID())
	return s, nil
}

// sealKeys has store seal the private keys it still holds in plaintext,
// and fails when one does not open: a wrong -storage-key (or none for
// sealed keys) stops the server at start, rather than serving garbage.
func (a *App) sealKeys(name string, store storage.Store) error {
	ctx, cancel := context.WithTimeout(context.Background(), startupTimeout)
	defer cancel()
	n, err := store.SealPrivateKeys(ctx)
	switch {
	case errors.Is(err, keyseal.ErrNoKey):
		return fmt.Errorf("storage %s holds private keys sealed with a storage key: start with that -storage-key: %w", name, err)
	case errors.Is(err, keyseal.ErrWrongKey):
		return fmt.Errorf("storage %s: -storage-key is not the key its private keys were sealed with: %w", name, err)
	case err != nil:
		return fmt.Errorf("storage %s: sealing private keys: %w", name, err)
	}
	if n > 0 {
		a.Logger.Info("sealed plaintext private keys with -storage-key", "storage", name, "keys", n)
	}
	return nil
}

// loadSCEPCA loads (or creates, or imports from -scep-ca) the built-in
// SCEP CA.
func (a *App) loadSCEPCA(store storage.SCEPStore) (*scepca.CA, error) {
	cfg := a.Config
	ctx, cancel := context.WithTimeout(context.Background(), startupTimeout)
	defer cancel()
	if cfg.SCEPCA != "" {
		certPEM, err := os.ReadFile(cfg.SCEPCA)
		if err != nil {
			return nil, fmt.Errorf("reading -scep-ca: %w", err)
		}
		keyPEM, err := os.ReadFile(cfg.SCEPCAKey)
		if err != nil {
			return nil, fmt.Errorf("reading -scep-ca-key: %w", err)
		}
		ca, replaced, err := scepca.Import(ctx, store, certPEM, keyPEM)
		if err != nil {
			return nil, fmt.Errorf("importing -scep-ca: %w", err)
		}
		if replaced {
			a.Logger.Warn("imported -scep-ca as the SCEP CA (any CA stored before is replaced; restart the other replicas)", "subject", ca.Cert.Subject.String())
		}
		return ca, nil
	}
	ca, created, err := scepca.Load(ctx, store)
	if err != nil {
		return nil, err
	}
	if created {
		a.Logger.Info("created the SCEP CA", "subject", ca.Cert.Subject.String(), "not_after", ca.Cert.NotAfter)
	}
	return ca, nil
}

// checkSCEPFlags checks the built-in CA's flags; without -scep they
// must not be given (they would be silently ignored).
func checkSCEPFlags(cfg *Config) error {
	if !cfg.SCEP {
		if cfg.SCEPCA != "" || cfg.SCEPCAKey != "" || cfg.SCEPChallenge != "" {
			return errors.New("-scep-ca, -scep-ca-key and -scep-challenge configure the built-in SCEP CA: they need -scep")
		}
		return nil
	}
	if (cfg.SCEPCA == "") != (cfg.SCEPCAKey == "") {
		return errors.New("-scep-ca and -scep-ca-key go together")
	}
	if cfg.SCEPKeySize != 2048 && cfg.SCEPKeySize != 4096 {
		return fmt.Errorf("-scep-key-size %d: want 2048 or 4096 (the SCEP CA refuses smaller keys)", cfg.SCEPKeySize)
	}
	if cfg.SCEPValidityDays < 1 {
		return fmt.Errorf("-scep-validity-days %d: want at least 1", cfg.SCEPValidityDays)
	}
	if cfg.EnrollChallengeTTL < time.Second || cfg.EnrollChallengeTTL > scepca.MaxChallengeTTL {
		return fmt.Errorf("-enroll-challenge-ttl %v: want 1s to %v", cfg.EnrollChallengeTTL, scepca.MaxChallengeTTL)
	}
	return nil
}

// wireSCEP serves /scep from ca and schedules the purge of expired
// challenges.
func (a *App) wireSCEP(register func(string, http.Handler), ca *scepca.CA, store storage.SCEPStore) error {
	cfg := a.Config
	if cfg.SCEPChallenge == "" {
		a.Logger.Info("no -scep-challenge: devices enroll with one-time challenges only")
	}
	issuer := scepca.NewIssuer(ca, store, scepca.WithStaticChallenge(cfg.SCEPChallenge),
		scepca.WithValidityDays(cfg.SCEPValidityDays), scepca.WithLogger(a.Logger))
	h, err := httpscep.New(issuer, httpscep.WithLogger(a.Logger))
	if err != nil {
		return err
	}
	register(httpscep.Path, h)
	// Every profile download may mint a challenge: the unused ones are
	// deleted a while after they expired, one replica at a time.
	a.jobs = append(a.jobs, backgroundJob{name: "scep-challenge-purge", interval: time.Hour, run: func(ctx context.Context, now time.Time) error {
		n, err := store.PurgeSCEPChallenges(ctx, now.Add(-ChallengeRetention), challengePurgeBatch)
		if n > 0 {
			a.Logger.Info("purged expired unused SCEP challenges", "deleted", n)
		}
		return err
	}})
	return nil
}

// ChallengeRetention is how long an unused one-time challenge is kept
// after it expired (visible through the API) before the purge deletes it.
// With -enroll-rate it bounds the rows unauthenticated downloads can
// leave: rate × (-enroll-challenge-ttl + ChallengeRetention) per replica.
const ChallengeRetention = 24 * time.Hour

// challengePurgeBatch bounds one purge run.
const challengePurgeBatch = 10000

// profileBuilder returns the generated enrollment profile's builder
// (nil without -public-url).
func (a *App) profileBuilder(store enroll.Store) (*enroll.Builder, error) {
	cfg := a.Config
	if cfg.PublicURL == "" {
		return nil, nil
	}
	if !cfg.SCEP {
		return nil, errors.New("-public-url serves a profile for the built-in SCEP CA: it needs -scep (or use -enroll-profile with picoprofile for another SCEP server)")
	}
	ecfg := enroll.Config{
		PublicURL:       cfg.PublicURL,
		Checkin:         cfg.Checkin,
		Topic:           cfg.EnrollTopic,
		StaticChallenge: cfg.SCEPChallenge,
		OneTime:         cfg.EnrollOneTime,
		ChallengeTTL:    cfg.EnrollChallengeTTL,
		KeySize:         cfg.SCEPKeySize,
		Subject:         cfg.SCEPSubject,
	}
	if cfg.Dev && ecfg.Topic == "" {
		ecfg.FallbackTopic = DevTopic
	}
	signer, err := readProfileSigner(cfg)
	if err != nil {
		return nil, err
	}
	if signer != nil {
		ecfg.SignCert, ecfg.SignIntermediates, ecfg.SignKey = signer.certs[0], signer.certs[1:], signer.key
	}
	b, err := enroll.New(ecfg, store, cfg.Dev)
	if err != nil {
		return nil, fmt.Errorf("-public-url: %w", err)
	}
	return b, nil
}

// profileSigner is -enroll-sign-cert and -enroll-sign-key, read.
type profileSigner struct {
	certs []*x509.Certificate
	key   crypto.PrivateKey
}

// readProfileSigner reads -enroll-sign-cert and -enroll-sign-key (nil
// when neither is given).
func readProfileSigner(cfg *Config) (*profileSigner, error) {
	if (cfg.EnrollSignCert == "") != (cfg.EnrollSignKey == "") {
		return nil, errors.New("-enroll-sign-cert and -enroll-sign-key go together")
	}
	if cfg.EnrollSignCert == "" {
		return nil, nil
	}
	certPEM, err := os.ReadFile(cfg.EnrollSignCert)
	if err != nil {
		return nil, fmt.Errorf("reading -enroll-sign-cert: %w", err)
	}
	keyPEM, err := os.ReadFile(cfg.EnrollSignKey)
	if err != nil {
		return nil, fmt.Errorf("reading -enroll-sign-key: %w", err)
	}
	certs, key, err := profile.ParseSigner(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("-enroll-sign-cert: %w", err)
	}
	return &profileSigner{certs: certs, key: key}, nil
}

// enrollmentRoutes are the enrollment API's routes (with -scep).
func enrollmentRoutes(store storage.SCEPStore, b *enroll.Builder, a *App) map[string]http.Handler {
	var pb httpenroll.ProfileBuilder
	if b != nil {
		pb = b
	}
	return api.EnrollmentRoutes(store, pb, a.Logger)
}

// devPublicURL is -public-url's default in -dev mode: plain HTTP on the
// -listen port of this machine.
func devPublicURL(listen string) string {
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return "http://127.0.0.1:9000"
	}
	if host == "" || host == "0.0.0.0" || host == "::" {
		host = "127.0.0.1"
	}
	return "http://" + net.JoinHostPort(host, port)
}

// DevTopic is the push topic of -dev profiles while no push certificate
// is stored (development devices are not pushed).
const DevTopic = "com.apple.mgmt.External.00000000-0000-0000-0000-000000000000"

// caPool is the PEM the device-identity verifier trusts: the built-in CA
// (if any) and -ca.
func caPEMs(builtin *scepca.CA, caFile string) ([]byte, error) {
	var out []byte
	if builtin != nil {
		out = append(out, builtin.CertPEM...)
	}
	if caFile != "" {
		b, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("reading -ca: %w", err)
		}
		if pool := x509.NewCertPool(); !pool.AppendCertsFromPEM(b) {
			return nil, fmt.Errorf("-ca %s: no PEM certificates", caFile)
		}
		out = append(out, b...)
	}
	return out, nil
}
