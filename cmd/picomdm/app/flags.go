package app

import (
	"flag"
	"fmt"
	"github.com/picomdm/picomdm/http/api"
	"github.com/picomdm/picomdm/mdm/profile"
	"github.com/picomdm/picomdm/push/apns"
	"github.com/picomdm/picomdm/push/certwatch"
	"github.com/picomdm/picomdm/push/repush"
	"github.com/picomdm/picomdm/service/scepca"
	"github.com/picomdm/picomdm/service/webhook"
	"io"
	"strings"
	"time"
)

// Config is what the command line (and environment) says.
type Config struct {
	Listen       string
	APIKey       string
	CA           string
	Intermediate string
	CertHeader   string
	Checkin      bool
	Debug        bool
	Dump         bool
	DisableMDM   bool
	Migration    bool
	Retro        bool
	UAZLDC       bool
	// Storage, StorageDSN and StorageOptions may repeat: the i-th of each
	// describe backend i; the first backend answers, the others are
	// written to as well.
	Storage            []string
	StorageDSN         []string
	StorageOptions     []string
	Version            bool
	Healthcheck        string
	EnrollProfile      string
	EnrollSignCert     string
	EnrollSignKey      string
	Dev                bool
	WebhookURL         string
	WebhookHMACKey     string
	WebhookRetryFor    time.Duration
	WebhookQueueBytes  int64
	DM                 string
	DMSendHMACKey      string
	DMRecvHMACKey      string
	GetTokenStatic     []string
	AuthProxyURL       string
	EscrowKeyUnlockURL string
	PushURL            string
	PushCA             string
	PushWorkers        int
	PushExpiration     time.Duration
	RepushInterval     time.Duration
	RepushBackoff      string
	RepushMax          int
	LogFormat          string
	MaxBodyBytes       int64
	MaxIDs             int
	MaxConns           int
	ReadTimeout        time.Duration
	WriteTimeout       time.Duration
	IdleTimeout        time.Duration
	ShutdownWait       time.Duration
	MetricsListen      string
	Pprof              bool

	// WebhookWorkers, WebhookOutboxMaxEvents and WebhookFailedRetention
	// configure the durable outbox's delivery and bounds.
	WebhookWorkers         int
	WebhookOutboxMaxEvents int
	WebhookFailedRetention time.Duration

	// The built-in SCEP CA and the generated enrollment profile.
	SCEP               bool
	SCEPChallenge      string
	SCEPCA             string
	SCEPCAKey          string
	SCEPValidityDays   int
	SCEPKeySize        int
	SCEPSubject        string
	PublicURL          string
	EnrollTopic        string
	EnrollOneTime      bool
	EnrollChallengeTTL time.Duration
	EnrollRate         float64
	EnrollBurst        int
	// StorageKey and StorageKeyFile give the key private keys are sealed
	// with at rest.
	StorageKey     string
	StorageKeyFile string
	PushCertWarn   time.Duration
}

// EnvPrefix and LegacyEnvPrefix name the environment variables every flag
// can also be set by: PICOMDM_<NAME>, falling back to NanoMDM's spelling.
const (
	EnvPrefix       = "PICOMDM_"
	LegacyEnvPrefix = "NANOMDM_"
)

// newFlagSet defines every flag on a fresh FlagSet writing into cfg.
// NanoMDM's flags keep their names and meanings; new ones are additions.
func newFlagSet(cfg *Config, output io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("picomdm", flag.ContinueOnError)
	fs.SetOutput(output)
	fs.StringVar(&cfg.Listen, "listen", ":9000", "HTTP listen address")
	fs.StringVar(&cfg.APIKey, "api", "", "API key for API endpoints (HTTP Basic password; empty disables the API)")
	fs.StringVar(&cfg.CA, "ca", "", "path to PEM CA certificate(s) device identity certificates must chain to")
	fs.StringVar(&cfg.Intermediate, "intermediate", "", "path to PEM intermediate certificate(s)")
	fs.StringVar(&cfg.CertHeader, "cert-header", "", "HTTP header carrying the device certificate (RFC 9440 or URL-escaped PEM) instead of Mdm-Signature")
	fs.BoolVar(&cfg.Checkin, "checkin", false, "serve check-ins on a separate /checkin endpoint (/mdm then takes command reports only)")
	fs.BoolVar(&cfg.Debug, "debug", false, "log debug messages")
	fs.BoolVar(&cfg.Dump, "dump", false, "dump MDM requests and the answers sent back to stdout")
	fs.BoolVar(&cfg.DisableMDM, "disable-mdm", false, "disable the MDM endpoints (API-only replica)")
	fs.BoolVar(&cfg.Migration, "migration", false, "enable the /migration endpoint (needs -api)")
	fs.BoolVar(&cfg.Retro, "retro", false, "allow retroactive certificate-authorization association")
	fs.BoolVar(&cfg.UAZLDC, "ua-zl-dc", false, "answer UserAuthenticate with a zero-length DigestChallenge instead of declining it")
	fs.Var(&listFlag{values: &cfg.Storage, defaults: []string{"file"}}, "storage", "storage backend: file, mysql, pgsql or inmem; repeat to write to several (the first answers) (default file)")
	fs.Var(&listFlag{values: &cfg.StorageDSN}, "storage-dsn", "storage data source, one per -storage: a directory for file (default \"db\"), a DSN for mysql/pgsql")
	fs.Var(&listFlag{values: &cfg.StorageOptions}, "storage-options", "storage options, one per -storage, comma-separated key=value")
	fs.BoolVar(&cfg.Version, "version", false, "print version and exit")
	fs.StringVar(&cfg.EnrollProfile, "enroll-profile", "", "enrollment .mobileconfig file to serve at /mdm/enroll (see picoprofile)")
	fs.StringVar(&cfg.EnrollSignCert, "enroll-sign-cert", "", "PEM file of the certificate (then intermediates) that signs the served enrollment profile")
	fs.StringVar(&cfg.EnrollSignKey, "enroll-sign-key", "", "PEM file of the enrollment profile signing key")
	fs.StringVar(&cfg.Healthcheck, "healthcheck", "", "GET this URL and exit 0 if it answers 200, else 1 (for container HEALTHCHECKs); starts no server")
	fs.StringVar(&cfg.WebhookURL, "webhook-url", "", "URL to POST MicroMDM-compatible webhook events to")
	fs.StringVar(&cfg.WebhookHMACKey, "webhook-hmac-key", "", "key to sign webhook events with (X-Hmac-Signature: base64 HMAC-SHA256 of the body)")
	fs.DurationVar(&cfg.WebhookRetryFor, "webhook-retry-for", webhook.DefaultRetryFor, "how long, from when it was stored, a webhook event is retried while the receiver is unreachable before it is set aside")
	fs.Int64Var(&cfg.WebhookQueueBytes, "webhook-queue-bytes", webhook.DefaultQueueBytes, "no longer used: webhook events wait in the durable outbox (see -webhook-outbox-max-events); accepted for compatibility")
	fs.IntVar(&cfg.WebhookWorkers, "webhook-workers", webhook.DefaultWorkers, "webhook deliveries in flight at once in this process, each for a different enrollment")
	fs.IntVar(&cfg.WebhookOutboxMaxEvents, "webhook-outbox-max-events", webhook.DefaultOutboxMaxEvents, "most webhook events the outbox keeps; past it the oldest set-aside, then the oldest pending events are deleted (0: no bound)")
	fs.DurationVar(&cfg.WebhookFailedRetention, "webhook-failed-retention", webhook.DefaultFailedRetention, "how long set-aside (failed) webhook events are kept (0: until -webhook-outbox-max-events needs their room)")
	fs.StringVar(&cfg.DM, "dm", "", "URL to forward Declarative Management check-ins to")
	fs.StringVar(&cfg.DMSendHMACKey, "dm-send-hmac-key", "", "sign requests to -dm with X-Hmac-Signature (HMAC-SHA256)")
	fs.StringVar(&cfg.DMRecvHMACKey, "dm-recv-hmac-key", "", "require a valid X-Hmac-Signature on -dm answers")
	fs.Var(&listFlag{values: &cfg.GetTokenStatic}, "get-token-static", "TYPE=TOKEN: answer GetToken of TokenServiceType TYPE with a static token (TOKEN: base64:…, text:…, or base64 else text); repeatable")
	fs.StringVar(&cfg.AuthProxyURL, "auth-proxy-url", "", "target of the device-authenticated reverse proxy at /authproxy/")
	fs.StringVar(&cfg.EscrowKeyUnlockURL, "escrowkeyunlock-url", api.EscrowKeyUnlockURL, "Apple's escrow key unlock service URL")
	fs.StringVar(&cfg.PushURL, "push-url", apns.ProductionURL, "APNs base URL: production, development, or an https URL (test servers)")
	fs.StringVar(&cfg.PushCA, "push-ca", "", "PEM file of CA certificates to trust for -push-url instead of the system roots (test APNs servers)")
	fs.IntVar(&cfg.PushWorkers, "push-workers", apns.DefaultWorkers, "APNs pushes in flight at once, across all API requests")
	fs.DurationVar(&cfg.PushExpiration, "push-expiration", apns.DefaultExpiration, "apns-expiration: how long APNs keeps trying to reach an offline device (0: send none, as NanoMDM)")
	fs.DurationVar(&cfg.RepushInterval, "repush-interval", repush.DefaultInterval, "how often the re-push sweep runs: enrollments pushed, with pending commands, not seen since are pushed again (0: off)")
	fs.StringVar(&cfg.RepushBackoff, "repush-backoff", repush.DefaultBackoff, "comma-separated waits before re-pushing an enrollment after its 1st, 2nd, … push; the last repeats")
	fs.IntVar(&cfg.RepushMax, "repush-max", repush.DefaultMax, "most enrollments one re-push sweep round pushes (the sweep's global rate bound)")
	fs.BoolVar(&cfg.Dev, "dev", false, "development mode: without -ca, create a throw-away device CA and API key under the storage directory (NOT for production)")
	fs.StringVar(&cfg.LogFormat, "log-format", "text", "log format: text or json")
	fs.Int64Var(&cfg.MaxBodyBytes, "max-body-bytes", 4<<20, "largest request body accepted, in bytes")
	fs.IntVar(&cfg.MaxIDs, "max-ids", api.DefaultMaxIDs, "most enrollment IDs one /v1/enqueue or /v1/push call may name (more: 400)")
	fs.IntVar(&cfg.MaxConns, "max-conns", DefaultMaxConns, "most connections -listen serves at once; more wait to be accepted (0: unlimited)")
	fs.DurationVar(&cfg.ReadTimeout, "read-timeout", 60*time.Second, "HTTP server read timeout")
	fs.DurationVar(&cfg.WriteTimeout, "write-timeout", 60*time.Second, "HTTP server write timeout")
	fs.DurationVar(&cfg.IdleTimeout, "idle-timeout", 120*time.Second, "HTTP server idle (keep-alive) timeout")
	fs.DurationVar(&cfg.ShutdownWait, "shutdown-timeout", 30*time.Second, "how long to wait for in-flight requests on SIGTERM")
	fs.BoolVar(&cfg.Pprof, "pprof", false, "also serve Go's profiler (/debug/pprof/) on -metrics-listen")
	fs.BoolVar(&cfg.SCEP, "scep", false, "serve the built-in SCEP CA at /scep (its CA lives in storage; created at first start unless -scep-ca) and trust it for device identity")
	fs.StringVar(&cfg.SCEPChallenge, "scep-challenge", "", "static SCEP challenge every device may use (set it from PICOMDM_SCEP_CHALLENGE); empty: one-time challenges only")
	fs.StringVar(&cfg.SCEPCA, "scep-ca", "", "PEM file of a CA certificate to import as the built-in SCEP CA (with -scep-ca-key); replaces the stored one")
	fs.StringVar(&cfg.SCEPCAKey, "scep-ca-key", "", "PEM file of the RSA key of -scep-ca")
	fs.IntVar(&cfg.SCEPValidityDays, "scep-validity-days", scepca.DefaultValidityDays, "days the device identity certificates the SCEP CA issues are valid")
	fs.IntVar(&cfg.SCEPKeySize, "scep-key-size", 2048, "RSA key size the enrollment profile asks devices to generate: 2048 or 4096 (the SCEP CA refuses smaller keys)")
	fs.StringVar(&cfg.SCEPSubject, "scep-subject", profile.DefaultSCEPSubject, "certificate subject the enrollment profile asks for, as /O=…/CN=…")
	fs.StringVar(&cfg.PublicURL, "public-url", "", "URL devices reach this server at (https://mdm.example.com): serves the generated enrollment profile at /mdm/enroll (needs -scep)")
	fs.StringVar(&cfg.EnrollTopic, "enroll-topic", "", "push topic of the generated profile (default: the one stored push certificate's; needed when several are stored)")
	fs.BoolVar(&cfg.EnrollOneTime, "enroll-one-time", false, "every profile download carries a fresh one-time SCEP challenge, even when -scep-challenge is set")
	fs.DurationVar(&cfg.EnrollChallengeTTL, "enroll-challenge-ttl", time.Hour, "validity of the one-time challenge a downloaded profile carries")
	fs.Float64Var(&cfg.EnrollRate, "enroll-rate", 5, "generated profile downloads (/mdm/enroll) a second per replica, past a burst of -enroll-burst; more get 429 (0: no limit)")
	fs.IntVar(&cfg.EnrollBurst, "enroll-burst", 50, "profile downloads allowed at once before -enroll-rate applies")
	fs.StringVar(&cfg.StorageKey, "storage-key", "", "key sealing private keys at rest (push certificates', the SCEP CA's): 32 bytes in base64 or hex, e.g. from `openssl rand -base64 32`; set it from PICOMDM_STORAGE_KEY")
	fs.StringVar(&cfg.StorageKeyFile, "storage-key-file", "", "file holding -storage-key")
	fs.DurationVar(&cfg.PushCertWarn, "pushcert-check-interval", certwatch.DefaultInterval, "how often push certificate expiry is checked and logged (from 30 days ahead; 0: never)")
	fs.StringVar(&cfg.MetricsListen, "metrics-listen", "", "address to serve /metrics on, unauthenticated (empty: /metrics on -listen, behind the -api key)")
	return fs
}

// envName is the variable name for flag name under prefix.
func envName(prefix, name string) string {
	return prefix + strings.ToUpper(strings.ReplaceAll(name, "-", "_"))
}

// parseConfig parses args, then fills every flag not given on the command
// line from PICOMDM_<NAME> or, failing that, NANOMDM_<NAME>.
func parseConfig(args []string, getenv func(string) string, output io.Writer) (*Config, error) {
	cfg := new(Config)
	fs := newFlagSet(cfg, output)
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments: %v", fs.Args())
	}
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	var err error
	fs.VisitAll(func(f *flag.Flag) {
		if given[f.Name] || err != nil || getenv == nil {
			return
		}
		for _, prefix := range []string{EnvPrefix, LegacyEnvPrefix} {
			name := envName(prefix, f.Name)
			if v := getenv(name); v != "" {
				if setErr := fs.Set(f.Name, v); setErr != nil {
					err = fmt.Errorf("environment %s: %w", name, setErr)
				}
				return
			}
		}
	})
	if err != nil {
		return nil, err
	}
	if len(cfg.Storage) == 0 {
		cfg.Storage = []string{"file"}
	}
	if len(cfg.StorageDSN) > len(cfg.Storage) || len(cfg.StorageOptions) > len(cfg.Storage) {
		return nil, fmt.Errorf("more -storage-dsn or -storage-options than -storage flags")
	}
	for len(cfg.StorageDSN) < len(cfg.Storage) {
		cfg.StorageDSN = append(cfg.StorageDSN, "")
	}
	for len(cfg.StorageOptions) < len(cfg.Storage) {
		cfg.StorageOptions = append(cfg.StorageOptions, "")
	}
	for i := range cfg.Storage {
		if cfg.StorageDSN[i] == "" && cfg.Storage[i] == "file" {
			cfg.StorageDSN[i] = "db"
		}
	}
	return cfg, nil
}

// listFlag is a flag that may repeat; each use appends a value. The
// defaults apply only while the flag is not given at all.
type listFlag struct {
	values   *[]string
	defaults []string
	set      bool
}

func (l *listFlag) String() string {
	if l.values == nil {
		return ""
	}
	return strings.Join(*l.values, ",")
}

func (l *listFlag) Set(v string) error {
	if !l.set {
		*l.values = nil
		l.set = true
	}
	*l.values = append(*l.values, v)
	return nil
}
