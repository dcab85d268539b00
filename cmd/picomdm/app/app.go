// Package app is the picomdm command: it turns flags (and PICOMDM_*
// environment variables) into a wired server — storage, the service chain,
// HTTP handlers — and serves it. main.go only calls Main; the end-to-end
// tests build the very same server with New.
package app

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"net/http/pprof"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	picohttp "github.com/picomdm/picomdm/http"
	"github.com/picomdm/picomdm/http/api"
	"github.com/picomdm/picomdm/http/auth"
	"github.com/picomdm/picomdm/http/authproxy"
	httpenroll "github.com/picomdm/picomdm/http/enroll"
	"github.com/picomdm/picomdm/http/health"
	httpmdm "github.com/picomdm/picomdm/http/mdm"
	"github.com/picomdm/picomdm/http/observe"
	pmlog "github.com/picomdm/picomdm/log"
	"github.com/picomdm/picomdm/mdm/profile"
	"github.com/picomdm/picomdm/metrics"
	"github.com/picomdm/picomdm/push"
	"github.com/picomdm/picomdm/push/apns"
	"github.com/picomdm/picomdm/push/certwatch"
	"github.com/picomdm/picomdm/push/repush"
	"github.com/picomdm/picomdm/service"
	"github.com/picomdm/picomdm/service/certauth"
	"github.com/picomdm/picomdm/service/core"
	"github.com/picomdm/picomdm/service/ddm"
	"github.com/picomdm/picomdm/service/dump"
	"github.com/picomdm/picomdm/service/gettoken"
	"github.com/picomdm/picomdm/service/multi"
	"github.com/picomdm/picomdm/service/runner"
	"github.com/picomdm/picomdm/service/scepca"
	"github.com/picomdm/picomdm/service/webhook"
	"github.com/picomdm/picomdm/storage"
	"github.com/picomdm/picomdm/storage/backends"
	"github.com/picomdm/picomdm/storage/tee"
	"golang.org/x/net/netutil"
)

// Version is the build's version, set with -ldflags "-X ...app.Version=...".
var Version = "dev"

// App is a wired PicoMDM server.
type App struct {
	Config *Config
	// Dev is set in -dev mode: where the throw-away CA and API key are.
	Dev     *DevFiles
	Logger  *slog.Logger
	Store   storage.Store
	handler http.Handler
	multi   *multi.Multi
	webhook *webhook.Webhook
	routes  []string
	closers []func() error
	// metrics feeds /metrics; draining turns /readyz to 503 at shutdown.
	metrics  *metrics.Registry
	draining atomic.Bool
	// owner names this process in outbox claims and job leases.
	owner string
	// jobs are the periodic background jobs (outbox trim, retention
	// purge, re-push sweep, …): wire appends to it, and startJobs runs
	// them all on the runner, one replica at a time.
	jobs   []backgroundJob
	runner *runner.Runner
}

// backgroundJob is one periodic job for the runner: name is its lease in
// storage (the same on every replica); an interval of 0 or less leaves it
// off.
type backgroundJob struct {
	name     string
	interval time.Duration
	run      runner.Job
}

// DefaultPurgeInterval is how often the retention purge of a backend runs
// when the backend does not say (a PurgeInterval method, its
// purge_interval option).
const DefaultPurgeInterval = time.Minute

// startJobs runs every job of a.jobs on a new runner, closed before
// storage is.
func (a *App) startJobs() {
	a.runner = runner.New(a.Store, runner.WithOwner(a.owner), runner.WithLogger(a.Logger))
	for _, j := range a.jobs {
		if j.interval > 0 {
			a.runner.Every(j.name, j.interval, j.run)
		}
	}
	a.closers = append([]func() error{func() error {
		ctx, cancel := context.WithTimeout(context.Background(), a.Config.ShutdownWait)
		defer cancel()
		return a.runner.Close(ctx)
	}}, a.closers...)
}

// MaxHeaderBytes bounds a request's header block, URL included, on every
// listener: Go's default of 1 MiB, so that no client that has not
// authenticated can make the server hold more than about that per
// connection (an Mdm-Signature is a few KiB). The path form of the API
// (/v1/enqueue/ID,ID,…) so names some tens of thousands of enrollments at
// most; a larger call lists them in the request body instead.
const MaxHeaderBytes = http.DefaultMaxHeaderBytes

// DefaultMaxConns is the default of -max-conns: the connections -listen
// serves at once. Behind a load balancer that pools its connections a
// replica sees a few hundred; each may hold up to MaxHeaderBytes of
// headers plus -max-body-bytes of body, so the cap bounds memory at a
// level a server can afford, and file descriptors below common limits.
const DefaultMaxConns = 10000

// readHeaderTimeout is how long a client may take to send its request
// headers, on every listener (slow-header clients hold a connection).
const readHeaderTimeout = 10 * time.Second

// errVersionPrinted makes Main exit 0 after -version, errHealthy after a
// passing -healthcheck.
var (
	errVersionPrinted = errors.New("version printed")
	errHealthy        = errors.New("healthy")
)

// healthcheck GETs url: nil for a 200, an error otherwise.
func healthcheck(url string) error {
	client := &http.Client{Timeout: 5 * time.Second}
	resp, err := client.Get(url)
	if err != nil {
		return fmt.Errorf("healthcheck: %w", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("healthcheck: %s answered %s", url, resp.Status)
	}
	return nil
}

// New parses args (plus getenv's PICOMDM_*/NANOMDM_* variables) and wires
// the server, without listening yet.
func New(args []string, getenv func(string) string, stdout, stderr io.Writer) (*App, error) {
	cfg, err := parseConfig(args, getenv, stderr)
	if err != nil {
		return nil, err
	}
	if cfg.Version {
		fmt.Fprintln(stdout, "picomdm", Version)
		return nil, errVersionPrinted
	}
	if cfg.Healthcheck != "" {
		if err := healthcheck(cfg.Healthcheck); err != nil {
			return nil, err
		}
		return nil, errHealthy
	}
	logger, err := pmlog.New(stderr, cfg.LogFormat, cfg.Debug)
	if err != nil {
		return nil, err
	}
	a := &App{Config: cfg, Logger: logger, owner: webhook.NewOwner()}
	if err := a.wire(stdout); err != nil {
		a.Close()
		return nil, err
	}
	return a, nil
}

// openStores opens every -storage backend; more than one are written to
// through a tee, the first answering.
func (a *App) openStores() (storage.Store, error) {
	cfg := a.Config
	sealer, err := a.keySealer()
	if err != nil {
		return nil, err
	}
	openOpts := []backends.Option{backends.WithLogger(a.Logger)}
	if sealer != nil {
		openOpts = append(openOpts, backends.WithKeySealer(sealer))
	}
	var stores []storage.Store
	for i, name := range cfg.Storage {
		store, closer, err := backends.Open(name, cfg.StorageDSN[i], cfg.StorageOptions[i], openOpts...)
		if err != nil {
			return nil, err
		}
		if closer != nil {
			a.closers = append(a.closers, closer)
		}
		if err := a.sealKeys(name, store); err != nil {
			return nil, err
		}
		// The retention purge runs on the runner, one replica at a time.
		if p, ok := store.(storage.Purger); ok {
			interval := DefaultPurgeInterval
			if pi, ok := store.(interface{ PurgeInterval() time.Duration }); ok && pi.PurgeInterval() > 0 {
				interval = pi.PurgeInterval()
			}
			a.jobs = append(a.jobs, backgroundJob{name: fmt.Sprintf("purge-%d-%s", i, name), interval: interval, run: func(ctx context.Context, now time.Time) error {
				n, err := p.Purge(ctx, now)
				if n > 0 {
					a.Logger.Info("retention purge", "storage", name, "deleted", n)
				}
				return err
			}})
		}
		stores = append(stores, store)
	}
	if len(stores) == 1 {
		return stores[0], nil
	}
	return tee.New(stores[0], stores[1:], a.Logger), nil
}

func (a *App) wire(stdout io.Writer) error {
	cfg := a.Config
	if cfg.MaxConns < 0 {
		return fmt.Errorf("-max-conns %d: want 0 (unlimited) or more", cfg.MaxConns)
	}
	store, err := a.openStores()
	if err != nil {
		return err
	}
	a.metrics = metrics.New(Version, metrics.WithLogger(a.Logger))
	store = a.metrics.InstrumentStore(store)
	a.Store = store

	if cfg.Dev && cfg.CA == "" && !cfg.DisableMDM {
		dir := "db"
		if cfg.Storage[0] == "file" {
			dir = cfg.StorageDSN[0]
		}
		dev, err := ensureDevFiles(dir)
		if err != nil {
			return fmt.Errorf("dev mode: %w", err)
		}
		a.Dev = dev
		cfg.CA = dev.CACert
		if cfg.APIKey == "" {
			cfg.APIKey = dev.APIKey
		}
		// The built-in CA too, with a profile at /mdm/enroll over plain
		// HTTP on this machine.
		cfg.SCEP = true
		if cfg.PublicURL == "" {
			cfg.PublicURL = devPublicURL(cfg.Listen)
		}
		a.Logger.Warn("DEVELOPMENT MODE: throw-away device CA and API key — NOT FOR PRODUCTION",
			"ca_cert", dev.CACert, "ca_key", dev.CAKey, "api_key_file", dev.APIKeyFile)
	}

	// The service chain, outermost first: dump → certauth → multi(core, …).
	var coreOpts []core.Option
	coreOpts = append(coreOpts, core.WithLogger(a.Logger))
	if cfg.UAZLDC {
		coreOpts = append(coreOpts, core.WithUserAuthenticateZeroLengthDigestChallenge())
	}
	if cfg.DM != "" {
		var dmOpts []ddm.Option
		if cfg.DMSendHMACKey != "" {
			dmOpts = append(dmOpts, ddm.WithSendHMACKey([]byte(cfg.DMSendHMACKey)))
		}
		if cfg.DMRecvHMACKey != "" {
			dmOpts = append(dmOpts, ddm.WithRecvHMACKey([]byte(cfg.DMRecvHMACKey)))
		}
		fwd, err := ddm.New(cfg.DM, dmOpts...)
		if err != nil {
			return fmt.Errorf("-dm: %w", err)
		}
		coreOpts = append(coreOpts, core.WithDeclarativeManagement(fwd))
	}
	if len(cfg.GetTokenStatic) > 0 {
		reg := gettoken.NewRegistry()
		for _, spec := range cfg.GetTokenStatic {
			typ, tok, err := gettoken.ParseStatic(spec)
			if err != nil {
				return fmt.Errorf("-get-token-static: %w", err)
			}
			reg.Register(typ, gettoken.StaticToken(tok))
		}
		coreOpts = append(coreOpts, core.WithGetToken(reg))
	}
	coreSvc := core.New(store, coreOpts...)
	var svc service.CheckinAndCommandService = coreSvc
	var others []service.CheckinAndCommandService
	if cfg.WebhookURL != "" {
		if u, err := url.Parse(cfg.WebhookURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fmt.Errorf("-webhook-url %q: want an http(s) URL", cfg.WebhookURL)
		}
		// The durable outbox (DESIGN §5). -webhook-queue-bytes no longer
		// applies (events wait in storage): accepted and ignored.
		if cfg.WebhookWorkers <= 0 {
			return fmt.Errorf("-webhook-workers %d: must be positive", cfg.WebhookWorkers)
		}
		whOpts := []webhook.Option{webhook.WithLogger(a.Logger), webhook.WithOwner(a.owner),
			webhook.WithRetryFor(cfg.WebhookRetryFor), webhook.WithWorkers(cfg.WebhookWorkers),
			webhook.WithOutboxMaxEvents(cfg.WebhookOutboxMaxEvents), webhook.WithFailedRetention(cfg.WebhookFailedRetention)}
		if cfg.WebhookHMACKey != "" {
			whOpts = append(whOpts, webhook.WithHMACKey([]byte(cfg.WebhookHMACKey)))
		}
		a.webhook = webhook.New(cfg.WebhookURL, store, store, whOpts...)
		a.metrics.RegisterWebhook(func() metrics.WebhookCounts {
			st := a.webhook.Stats()
			return metrics.WebhookCounts{Delivered: st.Delivered, Retries: st.Retries, SetAside: st.SetAside, StoreFailed: st.StoreFailed, Trimmed: st.Trimmed}
		})
		a.metrics.RegisterOutbox(store.OutboxStats, 2*time.Second)
		a.jobs = append(a.jobs, backgroundJob{name: "webhook-outbox-trim", interval: webhook.DefaultTrimInterval, run: a.webhook.Trim})
		others = append(others, a.webhook)
		// Close without Serve (tests) waits briefly for deliveries in
		// flight and releases the claims; after Serve's shutdown a second
		// Close is harmless.
		a.closers = append([]func() error{func() error {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			return a.webhook.Close(ctx)
		}}, a.closers...)
	}
	if len(others) > 0 {
		a.multi = multi.New(coreSvc, others, multi.WithLogger(a.Logger))
		svc = a.multi
	}
	// Migrated check-ins go into the core service only (DESIGN §3): they
	// carry no certificate (no certauth) and are not new device events (no
	// webhook).
	migrationSvc := coreSvc

	var certAuthOpts []certauth.Option
	certAuthOpts = append(certAuthOpts, certauth.WithLogger(a.Logger))
	if cfg.Retro {
		certAuthOpts = append(certAuthOpts, certauth.WithRetroactive())
	}
	svc = certauth.New(svc, store, certAuthOpts...)
	// Outside certauth, so check-ins it refuses count as check-in errors.
	svc = a.metrics.Service(svc)
	if cfg.Dump {
		svc = dump.New(svc, stdout)
	}

	mux := http.NewServeMux()
	register := func(pattern string, h http.Handler) { a.handle(mux, pattern, h) }
	// Every flag is checked before the CA is created or imported, so a
	// start refused for a bad flag stores nothing.
	if err := checkSCEPFlags(cfg); err != nil {
		return err
	}
	builder, err := a.profileBuilder(store)
	if err != nil {
		return err
	}
	var builtinCA *scepca.CA
	if cfg.SCEP {
		if builtinCA, err = a.loadSCEPCA(store); err != nil {
			return err
		}
	}
	if !cfg.DisableMDM {
		if cfg.CA == "" && builtinCA == nil {
			return errors.New("-ca is required (or -scep for the built-in SCEP CA, -dev for a throw-away development setup, or -disable-mdm)")
		}
		caPEM, err := caPEMs(builtinCA, cfg.CA)
		if err != nil {
			return err
		}
		if builtinCA != nil {
			if err := a.wireSCEP(register, builtinCA, store); err != nil {
				return err
			}
		}
		var intPEM []byte
		if cfg.Intermediate != "" {
			if intPEM, err = os.ReadFile(cfg.Intermediate); err != nil {
				return fmt.Errorf("reading -intermediate: %w", err)
			}
		}
		verifier, err := auth.NewVerifier(caPEM, intPEM)
		if err != nil {
			return fmt.Errorf("loading device CA: %w", err)
		}
		opts := []httpmdm.Option{httpmdm.WithVerifier(verifier), httpmdm.WithLogger(a.Logger), httpmdm.WithMaxBodySize(cfg.MaxBodyBytes)}
		if cfg.CertHeader != "" {
			opts = append(opts, httpmdm.WithCertHeader(cfg.CertHeader))
		}
		switch {
		case cfg.EnrollProfile != "":
			h, err := enrollProfileHandler(cfg)
			if err != nil {
				return err
			}
			a.handle(mux, "/mdm/enroll", h)
		case builder != nil:
			limiter := httpenroll.NewLimiter(cfg.EnrollRate, cfg.EnrollBurst, nil)
			a.handle(mux, "/mdm/enroll", httpenroll.Handler(builder, limiter, a.Logger))
		}
		if cfg.AuthProxyURL != "" {
			target, err := url.Parse(cfg.AuthProxyURL)
			if err != nil || !target.IsAbs() {
				return fmt.Errorf("-auth-proxy-url %q: not an absolute URL", cfg.AuthProxyURL)
			}
			a.handle(mux, "/authproxy/", httpmdm.CertMiddleware(authproxy.New(target, store, authproxy.WithLogger(a.Logger)), opts...))
		}
		if cfg.Checkin {
			a.handle(mux, "/checkin", httpmdm.CheckinHandler(svc, opts...))
			a.handle(mux, "/mdm", httpmdm.CommandHandler(svc, opts...))
		} else {
			a.handle(mux, "/mdm", httpmdm.CheckinAndCommandHandler(svc, opts...))
		}
	}

	pushOpts := []apns.Option{
		apns.WithBaseURL(cfg.PushURL),
		apns.WithWorkers(cfg.PushWorkers),
		apns.WithExpiration(cfg.PushExpiration),
		apns.WithLogger(a.Logger),
		apns.WithResultObserver(func(topic string, err error) {
			a.metrics.ObservePush(topic, metrics.PushResult(err))
		}),
	}
	a.metrics.RegisterPushCertExpiry(func(ctx context.Context) (map[string]time.Time, error) {
		infos, err := store.RetrievePushCertInfos(ctx)
		if err != nil {
			return nil, err
		}
		out := make(map[string]time.Time, len(infos))
		for _, info := range infos {
			out[info.Topic] = info.NotAfter
		}
		return out, nil
	}, 2*time.Second)
	// -push-ca replaces the system roots for Apple's services (APNs and
	// escrow key unlock), for test servers.
	var appleClient *http.Client
	if cfg.PushCA != "" {
		pemBytes, err := os.ReadFile(cfg.PushCA)
		if err != nil {
			return fmt.Errorf("reading -push-ca: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pemBytes) {
			return fmt.Errorf("-push-ca %s: no PEM certificates", cfg.PushCA)
		}
		pushOpts = append(pushOpts, apns.WithRootCAs(pool))
		appleClient = &http.Client{Timeout: time.Minute, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	}
	pushSvc, err := apns.NewService(store, pushOpts...)
	if err != nil {
		return fmt.Errorf("push service: %w", err)
	}
	a.closers = append([]func() error{pushSvc.Close}, a.closers...) // stop pushing before storage closes
	pusher, err := a.wireRepush(pushSvc, store)
	if err != nil {
		return err
	}
	if cfg.APIKey != "" {
		authed := picohttp.BasicAuth(cfg.APIKey)
		a.handle(mux, "/v1/pushcert", authed(api.PushCertHandler(store, a.Logger)))
		a.handle(mux, "/v1/pushcerts", authed(api.PushCertsHandler(store, a.Logger)))
		a.handle(mux, "/v1/escrowkeyunlock", authed(api.EscrowKeyUnlockHandler(store, cfg.EscrowKeyUnlockURL, appleClient, a.Logger)))
		// NanoMDM's path form (/v1/enqueue/ID,ID) and the body form
		// (POST /v1/enqueue with {"targets": […]}), one handler each.
		enqueue := api.EnqueueHandler(store, pusher, a.Logger, api.WithMaxIDs(cfg.MaxIDs))
		a.handle(mux, "/v1/enqueue", authed(http.StripPrefix("/v1/enqueue", enqueue)))
		a.handle(mux, "/v1/enqueue/", authed(http.StripPrefix("/v1/enqueue/", enqueue)))
		pushes := api.PushHandler(pusher, a.Logger, api.WithMaxIDs(cfg.MaxIDs))
		a.handle(mux, "/v1/push", authed(http.StripPrefix("/v1/push", pushes)))
		a.handle(mux, "/v1/push/", authed(http.StripPrefix("/v1/push/", pushes)))
		// The inspection routes and the typed command API (POST
		// /v1/commands queues like the enqueue handler).
		routes := api.InspectionRoutes(store, a.Logger)
		maps.Copy(routes, api.CommandRoutes(store, pusher, a.Logger, api.WithMaxIDs(cfg.MaxIDs)))
		// The webhook outbox: list, redeliver and drop set-aside events.
		maps.Copy(routes, api.WebhookEventRoutes(store, a.Logger))
		// The built-in CA's challenges and certificates, and profiles.
		if cfg.SCEP {
			maps.Copy(routes, enrollmentRoutes(store, builder, a))
		}
		for _, pattern := range slices.Sorted(maps.Keys(routes)) {
			a.handle(mux, pattern, authed(routes[pattern]))
		}
		if cfg.MetricsListen == "" {
			a.handle(mux, "/metrics", authed(a.metrics.Handler()))
		}
		if cfg.Migration {
			a.handle(mux, "/migration", authed(api.MigrationHandler(migrationSvc, a.Logger)))
		}
	} else {
		a.Logger.Warn("no -api key: API endpoints are disabled")
		if cfg.Migration {
			return errors.New("-migration needs -api")
		}
	}
	if cfg.Pprof && cfg.MetricsListen == "" {
		return errors.New("-pprof needs -metrics-listen (the profiler is never served on the public listener)")
	}
	if cfg.MetricsListen == "" && cfg.APIKey == "" {
		a.Logger.Warn("no -api key and no -metrics-listen: /metrics is disabled")
	}
	a.handle(mux, "/version", api.VersionHandler(Version))
	a.handle(mux, "/healthz", health.Live())
	// Push certificate expiry: logged 30, 7 and 1 days ahead (one
	// replica at a time) and shown on /readyz.
	certWatcher := certwatch.New(store, certwatch.WithLogger(a.Logger))
	a.jobs = append(a.jobs, backgroundJob{name: "pushcert-expiry", interval: cfg.PushCertWarn, run: certWatcher.Run})
	a.handle(mux, "/readyz", health.Ready(health.StorePinger(store),
		health.WithLogger(a.Logger), health.WithDraining(a.draining.Load), health.WithWarnings(certWatcher.Messages)))
	a.handler = observe.Trace(mux, a.Logger)
	// Last, once every job (the re-push sweep's too) is in a.jobs.
	a.startJobs()
	return nil
}

// wireRepush adds the re-push sweep to the background jobs (-repush-*;
// none with -repush-interval 0) and returns the pusher the API pushes
// through: pushSvc, recording every push for the sweep. The sweep pushes
// through pushSvc itself and records its own pushes.
func (a *App) wireRepush(pushSvc push.Pusher, store storage.Store) (push.Pusher, error) {
	cfg := a.Config
	if cfg.RepushInterval < 0 {
		return nil, fmt.Errorf("-repush-interval %v: want 0 (off) or more", cfg.RepushInterval)
	}
	steps, err := repush.ParseBackoff(cfg.RepushBackoff)
	if err != nil {
		return nil, fmt.Errorf("-repush-backoff: %w", err)
	}
	if cfg.RepushMax < 1 {
		return nil, fmt.Errorf("-repush-max %d: want at least 1", cfg.RepushMax)
	}
	if cfg.RepushInterval == 0 {
		return pushSvc, nil
	}
	sweep, err := repush.New(pushSvc, store,
		repush.WithBackoff(steps), repush.WithMax(cfg.RepushMax),
		repush.WithLogger(a.Logger), repush.WithObserver(a.metrics.RegisterRepush()))
	if err != nil {
		return nil, fmt.Errorf("re-push sweep: %w", err)
	}
	a.jobs = append(a.jobs, backgroundJob{name: "repush", interval: cfg.RepushInterval, run: sweep.Run})
	return sweep.Recorder(pushSvc), nil
}

// enrollProfileHandler serves -enroll-profile, signed once at start-up
// when -enroll-sign-cert and -enroll-sign-key are given.
func enrollProfileHandler(cfg *Config) (http.Handler, error) {
	b, err := os.ReadFile(cfg.EnrollProfile)
	if err != nil {
		return nil, fmt.Errorf("reading -enroll-profile: %w", err)
	}
	signer, err := readProfileSigner(cfg)
	if err != nil {
		return nil, err
	}
	if signer != nil {
		if b, err = profile.Sign(b, signer.certs[0], signer.key, signer.certs[1:]...); err != nil {
			return nil, fmt.Errorf("signing enrollment profile: %w", err)
		}
	}
	return profile.NewHandler(b), nil
}

// handle registers h at pattern and remembers the pattern for Routes.
func (a *App) handle(mux *http.ServeMux, pattern string, h http.Handler) {
	a.routes = append(a.routes, pattern)
	mux.Handle(pattern, a.metrics.Instrument(pattern, h))
}

// Routes returns the URL patterns the server registered, in order (what
// docs/openapi.yaml must document).
func (a *App) Routes() []string { return append([]string(nil), a.routes...) }

// Handler returns the server's root HTTP handler.
func (a *App) Handler() http.Handler { return a.handler }

// Serve serves on ln until ctx is done, then shuts down gracefully: it
// stops accepting, waits up to -shutdown-timeout for in-flight requests,
// and lets background work (secondary services) finish.
func (a *App) Serve(ctx context.Context, ln net.Listener) error {
	cfg := a.Config
	srv := &http.Server{
		Handler:           a.handler,
		ReadHeaderTimeout: readHeaderTimeout,
		MaxHeaderBytes:    MaxHeaderBytes,
		ReadTimeout:       cfg.ReadTimeout,
		WriteTimeout:      cfg.WriteTimeout,
		IdleTimeout:       cfg.IdleTimeout,
		ErrorLog:          slog.NewLogLogger(a.Logger.Handler(), slog.LevelWarn),
	}
	if cfg.MaxConns > 0 {
		// Past the cap, connections wait in the kernel's accept queue
		// until one closes, rather than each costing a goroutine and
		// buffers.
		ln = netutil.LimitListener(ln, cfg.MaxConns)
	}
	errc := make(chan error, 2)
	go func() { errc <- srv.Serve(ln) }()
	if cfg.MetricsListen != "" {
		mln, err := net.Listen("tcp", cfg.MetricsListen)
		if err != nil {
			srv.Close()
			return fmt.Errorf("-metrics-listen: %w", err)
		}
		mux := http.NewServeMux()
		mux.Handle("/metrics", a.metrics.Handler())
		if cfg.Pprof {
			mux.HandleFunc("/debug/pprof/", pprof.Index)
			mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
			mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
			mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		}
		msrv := &http.Server{
			Handler:           mux,
			ReadHeaderTimeout: readHeaderTimeout,
			MaxHeaderBytes:    MaxHeaderBytes,
			ErrorLog:          slog.NewLogLogger(a.Logger.Handler(), slog.LevelWarn),
		}
		go func() {
			if err := msrv.Serve(mln); !errors.Is(err, http.ErrServerClosed) {
				errc <- fmt.Errorf("metrics listener: %w", err)
			}
		}()
		defer msrv.Close()
		a.Logger.Info("serving /metrics", "addr", mln.Addr().String())
	}
	a.Logger.Info("picomdm serving", "addr", ln.Addr().String(), "version", Version, "storage", strings.Join(cfg.Storage, ","))
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	a.Logger.Info("shutting down")
	a.draining.Store(true)
	sctx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownWait)
	defer cancel()
	err := srv.Shutdown(sctx)
	if a.multi != nil {
		a.multi.Wait()
	}
	if a.webhook != nil {
		wctx, wcancel := context.WithTimeout(context.Background(), cfg.ShutdownWait)
		if werr := a.webhook.Close(wctx); werr != nil {
			a.Logger.Warn("webhook: deliveries abandoned at shutdown (their events stay in the outbox)", "err", werr)
		}
		wcancel()
	}
	if a.runner != nil {
		rctx, rcancel := context.WithTimeout(context.Background(), cfg.ShutdownWait)
		if rerr := a.runner.Close(rctx); rerr != nil {
			a.Logger.Warn("background jobs cancelled at shutdown", "err", rerr)
		}
		rcancel()
	}
	if err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	return nil
}

// Close releases storage.
func (a *App) Close() error {
	var errs []error
	for _, c := range a.closers {
		errs = append(errs, c())
	}
	return errors.Join(errs...)
}

// Main is the whole command: parse, wire, listen on -listen, serve until
// ctx is done.
func Main(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	a, err := New(args, getenv, stdout, stderr)
	if errors.Is(err, errVersionPrinted) || errors.Is(err, errHealthy) || errors.Is(err, flag.ErrHelp) {
		return nil
	}
	if err != nil {
		return err
	}
	defer a.Close()
	ln, err := net.Listen("tcp", a.Config.Listen)
	if err != nil {
		return err
	}
	return a.Serve(ctx, ln)
}
