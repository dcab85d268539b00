// Package enroll serves the generated enrollment profile to devices at
// /mdm/enroll: opening that URL on an iPhone, iPad or Mac downloads the
// .mobileconfig that enrolls it (service/enroll builds it).
package enroll

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"time"

	picohttp "github.com/picomdm/picomdm/http"
	pmlog "github.com/picomdm/picomdm/log"
	"github.com/picomdm/picomdm/mdm/profile"
	"github.com/picomdm/picomdm/service"
	"github.com/picomdm/picomdm/service/enroll"
	"github.com/picomdm/picomdm/service/scepca"
)

// ProfileBuilder builds enrollment profiles (an *enroll.Builder).
type ProfileBuilder interface {
	Profile(ctx context.Context, req enroll.Request) (*enroll.Profile, error)
}

// StatusFor gives the errors of a ProfileBuilder their HTTP status: 503
// while the server cannot make a profile yet (no push certificate, or no
// topic chosen among several), 400 for a bad request.
func StatusFor(err error) error {
	switch {
	case errors.Is(err, enroll.ErrNoTopic), errors.Is(err, enroll.ErrManyTopics):
		return service.NewStatusError(http.StatusServiceUnavailable, err)
	case errors.Is(err, enroll.ErrBadParams), errors.Is(err, scepca.ErrBadChallengeRequest):
		return service.NewStatusError(http.StatusBadRequest, err)
	}
	return err
}

// WriteProfile answers with p as a configuration profile download. It is
// never cached: a profile may carry a one-time challenge.
func WriteProfile(w http.ResponseWriter, r *http.Request, p *enroll.Profile) {
	w.Header().Set("Content-Type", profile.ContentType)
	w.Header().Set("Content-Disposition", `attachment; filename="enroll.mobileconfig"`)
	w.Header().Set("Cache-Control", "no-store")
	http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(p.Body))
}

// Handler serves a fresh profile to every GET of /mdm/enroll; HEAD
// answers the headers without building one (so without minting a
// challenge); other methods get 405. /mdm/enroll is unauthenticated and a
// download may store a one-time challenge, so downloads are rate-limited
// (limiter; nil: none): past it a client gets 429 with Retry-After.
func Handler(b ProfileBuilder, limiter *Limiter, logger *slog.Logger) http.Handler {
	logger = pmlog.Or(logger)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.Method {
		case http.MethodGet:
			if wait, ok := limiter.Allow(); !ok {
				w.Header().Set("Retry-After", fmt.Sprint(int(wait/time.Second)+1))
				logger.WarnContext(r.Context(), "enrollment profile downloads over the rate limit", "remote", r.RemoteAddr)
				http.Error(w, http.StatusText(http.StatusTooManyRequests), http.StatusTooManyRequests)
				return
			}
		case http.MethodHead:
			w.Header().Set("Content-Type", profile.ContentType)
			w.Header().Set("Cache-Control", "no-store")
			return
		default:
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, http.StatusText(http.StatusMethodNotAllowed), http.StatusMethodNotAllowed)
			return
		}
		p, err := b.Profile(r.Context(), enroll.Request{Note: "downloaded from /mdm/enroll"})
		if err != nil {
			err = StatusFor(err)
			status := picohttp.StatusFor(err)
			logger.ErrorContext(r.Context(), "enrollment profile", "status", status, "err", err)
			http.Error(w, fmt.Sprintf("%d %s", status, http.StatusText(status)), status)
			return
		}
		if p.Challenge != nil {
			logger.InfoContext(r.Context(), "enrollment profile served", "challenge_id", p.Challenge.ID, "remote", r.RemoteAddr)
		}
		WriteProfile(w, r, p)
	})
}

// Limiter is a token bucket: up to Burst downloads at once, refilled at
// Rate a second. It bounds what unauthenticated clients can make one
// replica write; the zero of a nil *Limiter allows everything.
type Limiter struct {
	mu     sync.Mutex
	rate   float64
	burst  float64
	tokens float64
	last   time.Time
	now    func() time.Time
}

// NewLimiter returns a Limiter allowing rate a second with bursts of
// burst; rate 0 or less returns nil (no limit).
func NewLimiter(rate float64, burst int, now func() time.Time) *Limiter {
	if rate <= 0 {
		return nil
	}
	if burst < 1 {
		burst = 1
	}
	if now == nil {
		now = time.Now
	}
	return &Limiter{rate: rate, burst: float64(burst), tokens: float64(burst), last: now(), now: now}
}

// Allow takes a token, or reports how long until one is there.
func (l *Limiter) Allow() (time.Duration, bool) {
	if l == nil {
		return 0, true
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	l.tokens = min(l.burst, l.tokens+now.Sub(l.last).Seconds()*l.rate)
	l.last = now
	if l.tokens >= 1 {
		l.tokens--
		return 0, true
	}
	return time.Duration((1 - l.tokens) / l.rate * float64(time.Second)), false
}
