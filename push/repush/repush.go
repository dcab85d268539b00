// Package repush pushes again to enrollments that were pushed, still have
// pending commands and have not checked in since: APNs drops and
// coalesces pushes (Apple, "Sending notification requests to APNs": only
// the last push to a device is kept while it is offline, and none is
// guaranteed), so a push can be lost and its commands wait until the
// device happens to check in.
//
// Two pieces share one schedule kept in storage (storage.RepushStore):
//
//   - Recorder wraps the push.Pusher the API pushes through and records
//     every push APNs accepted, in one RecordPushes call per batch: the
//     enrollment becomes due for a re-push one backoff step later.
//   - Sweep is the periodic job: each round (Run) asks storage for the
//     enrollments due (enabled, valid token, pending commands, not seen
//     since the last push, NextRepushAt reached), at most -repush-max of
//     them, pushes them through the same push service, and records the
//     next step of each one's backoff.
//
// A round runs on one replica at a time, under the background runner's
// storage lease, so no two replicas push the same enrollment in the same
// round; within a round each enrollment is pushed once, and its next
// re-push is at least one backoff step later, so no enrollment ever has
// two sweep pushes in flight.
package repush

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	pmlog "github.com/picomdm/picomdm/log"
	"github.com/picomdm/picomdm/push"
	"github.com/picomdm/picomdm/storage"
)

// Defaults of the flags and options.
const (
	// DefaultInterval is how often a sweep round runs (-repush-interval).
	DefaultInterval = time.Minute
	// DefaultBackoff is -repush-backoff's default: the wait after the
	// first, second, third push, then every later one.
	DefaultBackoff = "1m,5m,30m,1h"
	// DefaultMax is how many enrollments one round pushes at most
	// (-repush-max): with DefaultInterval, the global rate bound.
	DefaultMax = 1000
)

// recordTimeout bounds the RecordPushes call that follows a batch of
// pushes; it runs even if the caller's context ended, because pushes APNs
// accepted must be recorded or they would be pushed again at once.
const recordTimeout = 10 * time.Second

// ParseBackoff parses a comma-separated list of positive durations, such
// as DefaultBackoff: the wait after the first push, the second, and so
// on; the last one repeats.
func ParseBackoff(s string) ([]time.Duration, error) {
	var steps []time.Duration
	for _, field := range strings.Split(s, ",") {
		field = strings.TrimSpace(field)
		d, err := time.ParseDuration(field)
		if err != nil {
			return nil, fmt.Errorf("repush backoff %q: %w", s, err)
		}
		if d <= 0 {
			return nil, fmt.Errorf("repush backoff %q: step %s is not positive", s, field)
		}
		steps = append(steps, d)
	}
	return steps, nil
}

// Option configures New.
type Option func(*Sweep)

// WithBackoff sets the backoff steps (see ParseBackoff); the default is
// DefaultBackoff's.
func WithBackoff(steps []time.Duration) Option {
	return func(s *Sweep) { s.backoff = append([]time.Duration(nil), steps...) }
}

// WithMax sets how many enrollments one round pushes at most (default
// DefaultMax).
func WithMax(n int) Option { return func(s *Sweep) { s.max = n } }

// WithLogger sets the logger; nil means slog.Default().
func WithLogger(logger *slog.Logger) Option { return func(s *Sweep) { s.logger = logger } }

// WithClock sets the wall clock that stamps PushedAt, when APNs accepted a
// push (default time.Now). It must agree with the clock storage stamps
// device check-ins with, since a device is due only if it was pushed
// after it was last seen; the round's own now (Run) only schedules.
func WithClock(now func() time.Time) Option { return func(s *Sweep) { s.clock = now } }

// WithObserver has every round's outcome and every push the sweep made
// reported to o: the metrics hook.
func WithObserver(o Observer) Option { return func(s *Sweep) { s.observer = o } }

// Observer is told what the sweep does.
type Observer interface {
	// ObserveRepushRound reports a round: how long it took, how many
	// enrollments were due, and its error (nil for a round that
	// completed, whatever its pushes' outcomes).
	ObserveRepushRound(took time.Duration, due int, err error)
	// ObserveRepush reports one re-push and its error (nil: APNs
	// accepted it).
	ObserveRepush(err error)
}

// Sweep re-pushes to enrollments whose push went unanswered. Build it with
// New; Run is one round. It is safe for concurrent use, but rounds are
// meant to run one at a time across all replicas (the runner's lease).
type Sweep struct {
	pusher   push.Pusher
	store    storage.RepushStore
	backoff  []time.Duration
	max      int
	clock    func() time.Time
	logger   *slog.Logger
	observer Observer
}

// New returns a sweep that pushes through pusher (the push service the
// API uses, not a Recorder: the sweep records its own pushes) and keeps
// its schedule in store. It fails on a nil pusher or store, an empty or
// non-positive backoff, or a max below 1.
func New(pusher push.Pusher, store storage.RepushStore, opts ...Option) (*Sweep, error) {
	if pusher == nil || store == nil {
		return nil, errors.New("repush: nil pusher or store")
	}
	def, err := ParseBackoff(DefaultBackoff)
	if err != nil {
		panic(err) // a constant
	}
	s := &Sweep{pusher: pusher, store: store, backoff: def, max: DefaultMax, clock: time.Now}
	for _, opt := range opts {
		opt(s)
	}
	if len(s.backoff) == 0 {
		return nil, errors.New("repush: no backoff steps")
	}
	for _, d := range s.backoff {
		if d <= 0 {
			return nil, fmt.Errorf("repush: backoff step %v is not positive", d)
		}
	}
	if s.max < 1 {
		return nil, fmt.Errorf("repush: max %d: want at least 1", s.max)
	}
	if s.clock == nil {
		s.clock = time.Now
	}
	s.logger = pmlog.Or(s.logger)
	return s, nil
}

// step returns the wait after an enrollment's re-push n (0: after its
// ordinary push): the n-th step, the last one repeating.
func (s *Sweep) step(n int) time.Duration {
	return s.backoff[min(max(n, 0), len(s.backoff)-1)]
}

// Run is one sweep round at now: it pushes to up to max enrollments due
// at now, earliest first, and records each one's next re-push. An
// enrollment APNs accepted gets PushedAt (the wall clock), one more
// re-push counted and NextRepushAt = now + the next backoff step. One
// whose push failed (APNs refused it, no certificate for its topic, a
// network error after the push service's own retries) gets the same
// backoff step but keeps its PushedAt: it is not tried again every round,
// and a token APNs refused for good is marked invalid by the push service,
// so it is not due again at all. A push not sent because ctx ended is not
// recorded: the enrollment stays due for the next round, on any replica.
// Run fails only if storage fails or the push service cannot push at all.
func (s *Sweep) Run(ctx context.Context, now time.Time) (err error) {
	start := s.clock()
	due := 0
	defer func() {
		if s.observer != nil {
			s.observer.ObserveRepushRound(s.clock().Sub(start), due, err)
		}
	}()
	records, err := s.store.DueForRepush(ctx, now, s.max)
	if err != nil {
		return fmt.Errorf("repush: finding enrollments due: %w", err)
	}
	due = len(records)
	if due == 0 {
		return nil
	}
	// Storage returns each enrollment once; the map guards against a
	// backend that would not, so none is pushed twice in a round.
	byID := make(map[string]storage.PushRecord, len(records))
	ids := make([]string, 0, len(records))
	for _, rec := range records {
		if _, dup := byID[rec.ID]; !dup {
			byID[rec.ID] = rec
			ids = append(ids, rec.ID)
		}
	}
	results, err := s.pusher.Push(ctx, ids)
	if err != nil {
		return fmt.Errorf("repush: pushing %d enrollments: %w", len(ids), err)
	}
	pushedAt := s.clock()
	next := make([]storage.PushRecord, 0, len(ids))
	accepted, failed := 0, 0
	for _, id := range ids {
		res := results[id]
		if res == nil || (res.Err != nil && ctx.Err() != nil) {
			continue // not sent (or cut short) as the round ends: still due
		}
		if s.observer != nil {
			s.observer.ObserveRepush(res.Err)
		}
		rec := byID[id]
		// The ordinary push waited step 0; re-push n waits step n.
		rec.Repushes++
		rec.NextRepushAt = now.Add(s.step(rec.Repushes))
		if res.Err == nil {
			rec.PushedAt = pushedAt
			accepted++
		} else {
			failed++
			s.logger.DebugContext(ctx, "repush: push failed", "id", id, "err", res.Err)
		}
		next = append(next, rec)
	}
	if len(next) > 0 {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), recordTimeout)
		defer cancel()
		if err := s.store.RecordPushes(rctx, next); err != nil {
			return fmt.Errorf("repush: recording %d pushes: %w", len(next), err)
		}
	}
	s.logger.DebugContext(ctx, "repush: round", "due", due, "accepted", accepted, "failed", failed, "not_sent", len(ids)-len(next))
	return nil
}

// Recorder returns a push.Pusher that pushes through next and records, in
// one RecordPushes call per Push, every push APNs accepted as an ordinary
// push: PushedAt the wall clock, no re-pushes, NextRepushAt one backoff
// step later. Wrap the pusher the API and the command paths push
// through with it; the sweep itself pushes through next.
func (s *Sweep) Recorder(next push.Pusher) push.Pusher {
	return &recorder{next: next, sweep: s}
}

type recorder struct {
	next  push.Pusher
	sweep *Sweep
}

// Push implements push.Pusher. A failure to record is logged, not
// returned: the pushes were made, and the worst outcome of a lost record
// is a re-push not made.
func (r *recorder) Push(ctx context.Context, ids []string) (map[string]*push.Result, error) {
	results, err := r.next.Push(ctx, ids)
	if err != nil {
		return results, err
	}
	pushedAt := r.sweep.clock()
	nextAt := pushedAt.Add(r.sweep.step(0))
	var records []storage.PushRecord
	for id, res := range results {
		if res != nil && res.Err == nil {
			records = append(records, storage.PushRecord{ID: id, PushedAt: pushedAt, NextRepushAt: nextAt})
		}
	}
	if len(records) == 0 {
		return results, nil
	}
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), recordTimeout)
	defer cancel()
	if err := r.sweep.store.RecordPushes(rctx, records); err != nil {
		r.sweep.logger.WarnContext(ctx, "repush: recording pushes", "pushes", len(records), "err", err)
	}
	return results, nil
}
