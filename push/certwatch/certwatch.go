// Package certwatch warns before APNs push certificates expire. An MDM
// push certificate lasts a year; once it expires, APNs refuses every push
// on its topic, and the only remedy that keeps the enrolled devices is
// renewing the same certificate in Apple's Push Certificates Portal
// (Renew, which keeps the topic). Creating a new certificate instead gives
// a new topic, and every device enrolled on the old one has to enroll
// again. So the warnings come early, get louder, and say which to do:
//
//   - Watcher.Run is a periodic job (the background runner's, one replica
//     at a time under its lease) that logs every certificate expiring
//     within Window: at Warn level, at Error level within Urgent (and in
//     hours within the last day), and at Error level once expired.
//   - Watcher.Messages answers the same warnings for /readyz, cached.
//   - UploadWarnings checks a push certificate upload: a new topic that no
//     enrollment uses, while another topic's certificate is about to
//     expire with devices on it, looks like Create instead of Renew.
package certwatch

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	pmlog "github.com/picomdm/picomdm/log"
	"github.com/picomdm/picomdm/storage"
)

// Thresholds and defaults.
const (
	// Window is how long before its expiry a push certificate is warned
	// about.
	Window = 30 * 24 * time.Hour
	// Urgent is how long before its expiry the warning turns into an
	// error.
	Urgent = 7 * 24 * time.Hour
	// DefaultInterval is how often the job should run: often enough that
	// the last day gets a few lines, rarely enough not to flood the log.
	DefaultInterval = 6 * time.Hour
	// DefaultCacheTTL is how long Messages reuses what it read: /readyz
	// is polled every few seconds by every load balancer, and a
	// certificate's days left do not change that fast.
	DefaultCacheTTL = time.Minute
)

// renewAdvice ends every warning: what to do about it.
const renewAdvice = "renew it in Apple's Push Certificates Portal (Renew, not Create: a new certificate has a new topic and strands the enrolled devices) and upload it with PUT /v1/pushcert"

// Warning is one push certificate that expires within Window or has
// expired.
type Warning struct {
	// Topic is the certificate's APNs topic.
	Topic string
	// NotAfter is when the certificate expires.
	NotAfter time.Time
	// DaysLeft is the whole days left until NotAfter, rounded down: 0 in
	// the last day, negative once expired.
	DaysLeft int
	// Level is how loud the warning is: slog.LevelWarn within Window,
	// slog.LevelError within Urgent and once expired.
	Level slog.Level
	// Message says, for an operator, what expires when and what to do.
	Message string

	// left is NotAfter minus the time the warning was made for.
	left time.Duration
}

// Expired reports whether the certificate had expired when the warning
// was made.
func (w *Warning) Expired() bool { return w.left <= 0 }

// ExpiryWarnings returns the warnings for infos at now: one per
// certificate that expires within Window or has expired, the soonest
// first (ties by topic). Certificates with an unknown (zero) expiry are
// skipped.
func ExpiryWarnings(infos []storage.PushCertInfo, now time.Time) []Warning {
	var out []Warning
	for _, info := range infos {
		if info.NotAfter.IsZero() {
			continue
		}
		left := info.NotAfter.Sub(now)
		if left > Window {
			continue
		}
		out = append(out, newWarning(info, left))
	}
	slices.SortFunc(out, func(a, b Warning) int {
		if c := a.NotAfter.Compare(b.NotAfter); c != 0 {
			return c
		}
		return cmp.Compare(a.Topic, b.Topic)
	})
	return out
}

func newWarning(info storage.PushCertInfo, left time.Duration) Warning {
	w := Warning{
		Topic:    info.Topic,
		NotAfter: info.NotAfter,
		DaysLeft: daysLeft(left),
		Level:    slog.LevelWarn,
		left:     left,
	}
	if left <= Urgent {
		w.Level = slog.LevelError
	}
	when := formatTime(info.NotAfter)
	if left <= 0 {
		w.Message = fmt.Sprintf("push certificate for topic %s expired on %s: devices on %s cannot be pushed until it is renewed; %s",
			info.Topic, when, info.Topic, renewAdvice)
	} else {
		w.Message = fmt.Sprintf("push certificate for topic %s expires on %s (in %s): %s",
			info.Topic, when, formatLeft(left), renewAdvice)
	}
	return w
}

// daysLeft is left in whole days, rounded down (towards the past).
func daysLeft(left time.Duration) int {
	const day = 24 * time.Hour
	d := int(left / day)
	if left < 0 && left%day != 0 {
		d--
	}
	return d
}

// formatTime is how warnings show a time: to the minute, in UTC.
func formatTime(t time.Time) string { return t.UTC().Format("2006-01-02 15:04 UTC") }

// formatLeft says how long is left: in days, or in hours within the last
// day.
func formatLeft(left time.Duration) string {
	switch {
	case left > 24*time.Hour:
		return plural(daysLeft(left), "day")
	case left >= time.Hour:
		return plural(int(left/time.Hour), "hour")
	}
	return "less than an hour"
}

func plural(n int, unit string) string {
	if n == 1 {
		return "1 " + unit
	}
	return fmt.Sprintf("%d %ss", n, unit)
}

// Option configures New.
type Option func(*Watcher)

// WithLogger sets where Run logs (default slog.Default()).
func WithLogger(logger *slog.Logger) Option { return func(w *Watcher) { w.logger = logger } }

// WithClock sets the clock Messages reads (default time.Now); Run and
// Warnings take their time as an argument.
func WithClock(now func() time.Time) Option { return func(w *Watcher) { w.clock = now } }

// WithCacheTTL sets how long Messages reuses what it read (default
// DefaultCacheTTL); 0 or less reads storage every time.
func WithCacheTTL(d time.Duration) Option { return func(w *Watcher) { w.ttl = d } }

// Watcher reads push certificate expiries from storage and warns about
// those expiring soon. Build it with New. It is safe for concurrent use.
type Watcher struct {
	certs  storage.PushCertStore
	logger *slog.Logger
	clock  func() time.Time
	ttl    time.Duration

	mu        sync.Mutex
	fetchedAt time.Time // when messages was read; zero before the first read
	messages  []string
}

// New returns a Watcher reading certs. It panics on a nil store (a wiring
// mistake).
func New(certs storage.PushCertStore, opts ...Option) *Watcher {
	if certs == nil {
		panic("certwatch: nil PushCertStore")
	}
	w := &Watcher{certs: certs, clock: time.Now, ttl: DefaultCacheTTL}
	for _, opt := range opts {
		opt(w)
	}
	w.logger = pmlog.Or(w.logger)
	if w.clock == nil {
		w.clock = time.Now
	}
	return w
}

// Warnings returns the warnings for every stored push certificate at now
// (see ExpiryWarnings).
func (w *Watcher) Warnings(ctx context.Context, now time.Time) ([]Warning, error) {
	infos, err := w.certs.RetrievePushCertInfos(ctx)
	if err != nil {
		return nil, fmt.Errorf("retrieving push certificate expiries: %w", err)
	}
	return ExpiryWarnings(infos, now), nil
}

// Run is one round of the periodic job (a runner.Job): it logs one line
// per warning at its Level, with the topic, the expiry and the days left
// as attributes. The line's message says how long is left, in hours within
// the last day, or that the certificate expired.
func (w *Watcher) Run(ctx context.Context, now time.Time) error {
	warnings, err := w.Warnings(ctx, now)
	if err != nil {
		return err
	}
	for _, warn := range warnings {
		attrs := []any{
			"topic", warn.Topic,
			"not_after", warn.NotAfter.UTC(),
			"days_left", warn.DaysLeft,
			"action", renewAdvice,
		}
		msg := "push certificate expired"
		if !warn.Expired() {
			msg = "push certificate expires in " + formatLeft(warn.left)
			if warn.left <= 24*time.Hour {
				attrs = append(attrs, "hours_left", int(warn.left/time.Hour))
			}
		}
		w.logger.Log(ctx, warn.Level, msg, attrs...)
	}
	return nil
}

// Messages returns the Message of every current warning, for /readyz
// (health.WithWarnings): nil when no certificate expires within Window.
// It reads storage at most once per cache TTL; when the read fails it
// logs the failure and answers what it read last.
func (w *Watcher) Messages(ctx context.Context) []string {
	now := w.clock()
	w.mu.Lock()
	if !w.fetchedAt.IsZero() && !now.Before(w.fetchedAt) && now.Sub(w.fetchedAt) < w.ttl {
		msgs := slices.Clone(w.messages)
		w.mu.Unlock()
		return msgs
	}
	w.mu.Unlock()

	warnings, err := w.Warnings(ctx, now)
	w.mu.Lock()
	defer w.mu.Unlock()
	w.fetchedAt = now // a failed read is not retried before the TTL either
	if err != nil {
		if !errors.Is(err, context.Canceled) {
			w.logger.WarnContext(ctx, "push certificate expiry check failed", "err", err)
		}
		return slices.Clone(w.messages)
	}
	w.messages = nil
	for _, warn := range warnings {
		w.messages = append(w.messages, warn.Message)
	}
	return slices.Clone(w.messages)
}
