// Package runner runs PicoMDM's periodic background jobs (the webhook
// outbox trim, the SQL backends' retention purge, the re-push sweep, …) on
// one replica at a time. Every replica runs a Runner; at each tick of a
// job it tries to take the job's lease in storage (storage.LeaseStore) and
// runs the job only while it holds it. The holder renews its lease at each
// tick, so a job keeps running on one replica; when that replica stops
// (Close releases the lease) or dies (its lease expires), another takes
// the job over at its next tick.
package runner

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"sync"
	"time"

	pmlog "github.com/picomdm/picomdm/log"
	"github.com/picomdm/picomdm/storage"
)

// LeaseFactor is how many intervals a job's lease lasts: long enough that
// the holder renews it before it expires, short enough that a dead
// replica's jobs move on soon.
const LeaseFactor = 3

// Job is one run of a periodic job. ctx ends when the run's lease does or
// when Close gives up waiting; now is when the run started.
type Job func(ctx context.Context, now time.Time) error

// Runner runs periodic jobs under leases. Create it with New, add jobs
// with Every, and stop it with Close.
type Runner struct {
	leases storage.LeaseStore
	owner  string
	logger *slog.Logger

	// base is cancelled when Close gives up waiting for running jobs.
	base   context.Context
	cancel context.CancelFunc

	mu      sync.Mutex
	closed  bool
	closing chan struct{} // closed by Close: loops stop after their run
	wg      sync.WaitGroup
	once    sync.Once
	done    chan struct{}
	err     error
}

// Option configures a Runner.
type Option func(*Runner)

// WithOwner sets the name this process takes leases under (default: a
// random one). Every replica must have its own.
func WithOwner(owner string) Option { return func(r *Runner) { r.owner = owner } }

// WithLogger sets the logger job failures go to.
func WithLogger(logger *slog.Logger) Option { return func(r *Runner) { r.logger = logger } }

// New returns a Runner taking its leases in leases. It panics on a nil
// store (a wiring mistake).
func New(leases storage.LeaseStore, opts ...Option) *Runner {
	if leases == nil {
		panic("runner: nil lease store")
	}
	r := &Runner{leases: leases, closing: make(chan struct{}), done: make(chan struct{})}
	for _, opt := range opts {
		opt(r)
	}
	r.logger = pmlog.Or(r.logger)
	if r.owner == "" {
		var b [6]byte
		_, _ = rand.Read(b[:])
		r.owner = "runner-" + hex.EncodeToString(b[:])
	}
	r.base, r.cancel = context.WithCancel(context.Background())
	return r
}

// Owner returns the name the Runner takes leases under.
func (r *Runner) Owner() string { return r.owner }

// Every runs job now and then every interval, on whichever replica holds
// the lease called name (the same name on every replica; one per job).
// A run that fails is logged; the job runs again at the next tick. It
// panics on an empty name or a non-positive interval (wiring mistakes)
// and does nothing after Close.
func (r *Runner) Every(name string, interval time.Duration, job Job) {
	if name == "" || interval <= 0 || job == nil {
		panic(fmt.Sprintf("runner: job %q with interval %s", name, interval))
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return
	}
	r.wg.Add(1)
	go r.loop(name, interval, job)
}

// loop ticks name until Close, then releases its lease if it holds it.
func (r *Runner) loop(name string, interval time.Duration, job Job) {
	defer r.wg.Done()
	log := r.logger.With("job", name, "owner", r.owner)
	held := false
	defer func() {
		if !held {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := r.leases.ReleaseLease(ctx, name, r.owner); err != nil {
			log.Warn("runner: releasing lease", "err", err)
		}
	}()
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		held = r.tick(log, name, interval, job)
		select {
		case <-r.closing:
			return
		case <-tick.C:
		}
		select { // Close wins over a tick that came at the same time
		case <-r.closing:
			return
		default:
		}
	}
}

// tick takes or renews the lease and, holding it, runs the job once with
// a context that ends with the lease. It reports whether it holds the
// lease.
func (r *Runner) tick(log *slog.Logger, name string, interval time.Duration, job Job) bool {
	now := time.Now()
	until := now.Add(LeaseFactor * interval)
	ok, err := r.leases.AcquireLease(r.base, name, r.owner, now, until)
	if err != nil {
		if r.base.Err() == nil {
			log.Warn("runner: taking lease", "err", err)
		}
		return false
	}
	if !ok {
		return false
	}
	ctx, cancel := context.WithDeadline(r.base, until)
	defer cancel()
	start := time.Now()
	if err := job(ctx, now); err != nil {
		log.Warn("runner: job failed", "err", err, "took", time.Since(start))
	}
	return true
}

// Close stops starting runs, waits for the running ones until ctx ends
// (then cancels their context and waits for them to return), and releases
// the leases this Runner holds, so other replicas take the jobs over at
// their next tick. It returns an error when ctx ended first. Calling it
// again only waits for the first call.
func (r *Runner) Close(ctx context.Context) error {
	r.once.Do(func() {
		defer close(r.done)
		r.mu.Lock()
		r.closed = true
		r.mu.Unlock()
		close(r.closing)
		finished := make(chan struct{})
		go func() {
			r.wg.Wait()
			close(finished)
		}()
		select {
		case <-finished:
		case <-ctx.Done():
			r.cancel()
			<-finished
			r.err = fmt.Errorf("runner: closing: %w: running jobs cancelled", ctx.Err())
		}
		r.cancel()
	})
	<-r.done
	return r.err
}
