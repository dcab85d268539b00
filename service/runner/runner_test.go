package runner

import (
	"context"
	"errors"
	"github.com/picomdm/picomdm/test/wait"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/picomdm/picomdm/storage/inmem"
)

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	wait.Until(t, 15*time.Second, what, cond)
}

// counter is a job that counts its runs per runner and checks that no two
// runs ever overlap, whichever runner they are on.
type counter struct {
	active  atomic.Int32
	overlap atomic.Bool
	mu      sync.Mutex
	runs    map[string]int
}

func (c *counter) job(owner string) Job {
	return func(ctx context.Context, now time.Time) error {
		if c.active.Add(1) > 1 {
			c.overlap.Store(true)
		}
		defer c.active.Add(-1)
		c.mu.Lock()
		defer c.mu.Unlock()
		if c.runs == nil {
			c.runs = map[string]int{}
		}
		c.runs[owner]++
		return nil
	}
}

func (c *counter) of(owner string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.runs[owner]
}

func closeNow(t *testing.T, r *Runner) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := r.Close(ctx); err != nil {
		t.Fatalf("Close: %v", err)
	}
}

// TestOneReplicaAtATime: two runners with the same job on one lease store
// ("two replicas"): the job runs on one of them only, tick after tick,
// never on both at once; when that one stops, the other takes over.
func TestOneReplicaAtATime(t *testing.T) {
	store := inmem.New()
	var c counter
	a := New(store, WithOwner("a"))
	b := New(store, WithOwner("b"))
	t.Cleanup(func() { closeNow(t, a); closeNow(t, b) })
	const interval = 50 * time.Millisecond
	a.Every("job", interval, c.job("a"))
	waitFor(t, "a first run on a", func() bool { return c.of("a") >= 1 })
	b.Every("job", interval, c.job("b"))
	waitFor(t, "several runs", func() bool { return c.of("a") >= 5 })
	if n := c.of("b"); n != 0 {
		t.Fatalf("b ran the job %d times while a held the lease", n)
	}
	closeNow(t, a)
	ranOnA := c.of("a")
	waitFor(t, "b to take over", func() bool { return c.of("b") >= 3 })
	if c.of("a") != ranOnA {
		t.Error("a ran the job after Close")
	}
	if c.overlap.Load() {
		t.Error("two runs overlapped")
	}
}

// TestCloseReleasesLease: Close gives the lease up at once, so another
// replica can take it before it would have expired.
func TestCloseReleasesLease(t *testing.T) {
	store := inmem.New()
	r := New(store, WithOwner("a"))
	ran := make(chan struct{}, 1)
	r.Every("job", time.Hour, func(context.Context, time.Time) error {
		select {
		case ran <- struct{}{}:
		default:
		}
		return nil
	})
	<-ran
	now := time.Now()
	if ok, err := store.AcquireLease(context.Background(), "job", "other", now, now.Add(time.Minute)); err != nil || ok {
		t.Fatalf("lease taken from a running holder: %v, %v", ok, err)
	}
	closeNow(t, r)
	if ok, err := store.AcquireLease(context.Background(), "job", "other", now, now.Add(time.Minute)); err != nil || !ok {
		t.Fatalf("lease not free after Close: %v, %v", ok, err)
	}
}

// TestCloseWaitsForJob: Close waits for a running job to finish.
func TestCloseWaitsForJob(t *testing.T) {
	r := New(inmem.New())
	started, release := make(chan struct{}), make(chan struct{})
	var finished atomic.Bool
	r.Every("job", time.Hour, func(ctx context.Context, now time.Time) error {
		close(started)
		<-release
		finished.Store(true)
		return nil
	})
	<-started
	closed := make(chan error, 1)
	go func() { closed <- r.Close(context.Background()) }()
	select {
	case err := <-closed:
		t.Fatalf("Close returned (%v) while the job ran", err)
	default:
	}
	close(release)
	if err := <-closed; err != nil {
		t.Fatalf("Close: %v", err)
	}
	if !finished.Load() {
		t.Fatal("Close returned before the job finished")
	}
}

// TestCloseCancelsJobAtDeadline: a job still running when Close's context
// ends has its context cancelled, and Close returns once it has returned.
func TestCloseCancelsJobAtDeadline(t *testing.T) {
	r := New(inmem.New())
	started := make(chan struct{})
	var finished atomic.Bool
	r.Every("job", time.Hour, func(ctx context.Context, now time.Time) error {
		close(started)
		<-ctx.Done()
		finished.Store(true)
		return ctx.Err()
	})
	<-started
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if err := r.Close(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Close: %v, want the deadline", err)
	}
	if !finished.Load() {
		t.Fatal("Close returned before the cancelled job did")
	}
	// Every after Close does nothing; a second Close returns the first's
	// result.
	r.Every("late", time.Millisecond, func(context.Context, time.Time) error {
		t.Error("a job added after Close ran")
		return nil
	})
	if err := r.Close(context.Background()); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("second Close: %v", err)
	}
}

// TestJobErrorKeepsTicking: a failing run is logged and the job runs again.
func TestJobErrorKeepsTicking(t *testing.T) {
	r := New(inmem.New())
	t.Cleanup(func() { closeNow(t, r) })
	var runs atomic.Int32
	r.Every("job", time.Millisecond, func(context.Context, time.Time) error {
		runs.Add(1)
		return errors.New("boom")
	})
	waitFor(t, "runs after a failure", func() bool { return runs.Load() >= 3 })
}

// TestJobContextEndsWithLease: a run's context ends when its lease does,
// so a run never outlives its lease.
func TestJobContextEndsWithLease(t *testing.T) {
	r := New(inmem.New())
	t.Cleanup(func() { closeNow(t, r) })
	const interval = 5 * time.Millisecond
	got := make(chan time.Duration, 1)
	r.Every("job", interval, func(ctx context.Context, now time.Time) error {
		deadline, ok := ctx.Deadline()
		if !ok {
			deadline = now
		}
		select {
		case got <- deadline.Sub(now):
		default:
		}
		return nil
	})
	if d := <-got; d <= 0 || d > LeaseFactor*interval+time.Millisecond {
		t.Fatalf("run context deadline %v after its start, want the lease (%v)", d, LeaseFactor*interval)
	}
}

func TestEveryRefusesWiringMistakes(t *testing.T) {
	r := New(inmem.New())
	t.Cleanup(func() { closeNow(t, r) })
	for name, f := range map[string]func(){
		"no name":     func() { r.Every("", time.Second, func(context.Context, time.Time) error { return nil }) },
		"no interval": func() { r.Every("x", 0, func(context.Context, time.Time) error { return nil }) },
		"no job":      func() { r.Every("x", time.Second, nil) },
		"no store":    func() { New(nil) },
	} {
		t.Run(name, func(t *testing.T) {
			defer func() {
				if recover() == nil {
					t.Fatal("no panic")
				}
			}()
			f()
		})
	}
}
