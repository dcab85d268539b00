// Package health serves the liveness (/healthz) and readiness (/readyz)
// probes load balancers and orchestrators poll. Both are unauthenticated
// and cheap: liveness touches nothing, readiness pings storage.
package health

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"time"

	pmlog "github.com/picomdm/picomdm/log"
)

// DefaultTimeout is how long Ready waits for its pinger by default.
const DefaultTimeout = 2 * time.Second

// Status is the JSON body of both probes.
type Status struct {
	// Status is "ok" (live), "ready" or "unavailable".
	Status string `json:"status"`
	// Error says why the server is unavailable.
	Error string `json:"error,omitempty"`
	// Warnings, on a ready answer only, are things an operator must act
	// on soon that do not make the server unready (WithWarnings), such as
	// a push certificate about to expire.
	Warnings []string `json:"warnings,omitempty"`
}

// Live returns the /healthz handler: 200 {"status":"ok"} as long as the
// process serves HTTP at all. It checks no dependency, so a storage outage
// does not get every replica restarted.
func Live() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		write(w, http.StatusOK, &Status{Status: "ok"})
	})
}

// Pinger reports whether a dependency is reachable.
type Pinger func(ctx context.Context) error

// Option configures Ready.
type Option func(*config)

type config struct {
	timeout  time.Duration
	logger   *slog.Logger
	draining func() bool
	warnings func(ctx context.Context) []string
}

// WithTimeout sets how long Ready waits for the pinger (default
// DefaultTimeout); a non-positive d keeps the default.
func WithTimeout(d time.Duration) Option {
	return func(c *config) {
		if d > 0 {
			c.timeout = d
		}
	}
}

// WithLogger sets where failed readiness checks are logged (default
// slog.Default()).
func WithLogger(logger *slog.Logger) Option { return func(c *config) { c.logger = logger } }

// WithDraining makes Ready answer 503 while draining reports true, without
// pinging: the server sets it when shutdown starts, so load balancers stop
// sending new requests while in-flight ones finish.
func WithDraining(draining func() bool) Option { return func(c *config) { c.draining = draining } }

// WithWarnings adds what warnings returns to a ready answer as
// "warnings" (nothing when it returns none). The answer stays 200: a
// warning (an expiring push certificate, say) is for the operator, and
// taking every replica out of the load balancer over it would turn it
// into an outage. warnings is called on every ready probe, with the
// probe's timeout, so it should be cheap or cached (certwatch's
// Watcher.Messages is); being unauthenticated, its texts must not reveal
// secrets.
func WithWarnings(warnings func(ctx context.Context) []string) Option {
	return func(c *config) { c.warnings = warnings }
}

// errDraining is what Ready reports while the server shuts down.
var errDraining = errors.New("shutting down")

// errTimeout is what Ready reports when the pinger outlasts its timeout.
var errTimeout = errors.New("storage did not answer in time")

// errUnavailable is what Ready reports when the pinger fails. The probe
// is unauthenticated, so the failure itself (a DSN's host, a database
// user, a file path) goes to the log only.
var errUnavailable = errors.New("storage unavailable")

// Ready returns the /readyz handler: it calls ping with a timeout and
// answers 200 {"status":"ready"} if it succeeds (with "warnings" from
// WithWarnings, if any), else 503
// {"status":"unavailable","error":"..."} (also while WithDraining's func
// reports true). The error is one of a few fixed texts ("storage
// unavailable", "storage did not answer in time", "shutting down"); the
// pinger's own error is logged, never answered. A nil ping panics; use
// StorePinger for a store that may not be pingable.
func Ready(ping Pinger, opts ...Option) http.Handler {
	if ping == nil {
		panic("health: Ready with a nil pinger")
	}
	cfg := config{timeout: DefaultTimeout}
	for _, opt := range opts {
		opt(&cfg)
	}
	logger := pmlog.Or(cfg.logger)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if cfg.draining != nil && cfg.draining() {
			write(w, http.StatusServiceUnavailable, &Status{Status: "unavailable", Error: errDraining.Error()})
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), cfg.timeout)
		defer cancel()
		err := ping(ctx)
		if err != nil {
			answer := errUnavailable
			if ctx.Err() != nil && r.Context().Err() == nil {
				answer = errTimeout
			}
			logger.WarnContext(r.Context(), "readiness check failed", "answer", answer.Error(), "err", err)
			write(w, http.StatusServiceUnavailable, &Status{Status: "unavailable", Error: answer.Error()})
			return
		}
		status := &Status{Status: "ready"}
		if cfg.warnings != nil {
			status.Warnings = cfg.warnings(ctx)
		}
		write(w, http.StatusOK, status)
	})
}

// StorePinger returns a pinger for store: its Ping method if it has one
// (the mysql and pgsql backends), else one that always succeeds (file and
// inmem have no connection to lose).
func StorePinger(store any) Pinger {
	if p, ok := store.(interface{ Ping(context.Context) error }); ok {
		return p.Ping
	}
	return func(context.Context) error { return nil }
}

func write(w http.ResponseWriter, status int, body *Status) {
	w.Header().Set("Content-Type", "application/json")
	// Probes must see the current state, never a cached one.
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(body)
}
