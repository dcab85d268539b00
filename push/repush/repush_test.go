package repush

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/picomdm/picomdm/mdm"
	"github.com/picomdm/picomdm/push"
	"github.com/picomdm/picomdm/push/apns"
	"github.com/picomdm/picomdm/service/runner"
	"github.com/picomdm/picomdm/storage"
	"github.com/picomdm/picomdm/storage/inmem"
	"github.com/picomdm/picomdm/storage/storagetest"
	"github.com/picomdm/picomdm/test/apnsmock"
)

var quiet = slog.New(slog.DiscardHandler)

const topic = "com.apple.mgmt.External.repush-test"

// fixture is one store and one mock APNs; each replica it makes has its
// own push service and sweep over them.
type fixture struct {
	store *inmem.Store
	mock  *apnsmock.Server
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	f := &fixture{store: inmem.New(), mock: apnsmock.New()}
	t.Cleanup(f.mock.Close)
	certPEM, keyPEM := storagetest.NewPushCert(topic)
	if err := f.store.StorePushCert(context.Background(), certPEM, keyPEM); err != nil {
		t.Fatalf("storing push cert: %v", err)
	}
	return f
}

// replica is what one server process has: the push service, the sweep,
// and the recording pusher the API pushes through.
type replica struct {
	pushSvc *apns.Service
	sweep   *Sweep
	api     push.Pusher
}

func (f *fixture) replica(t *testing.T, opts ...Option) *replica {
	t.Helper()
	svc, err := apns.NewService(f.store,
		apns.WithBaseURL(f.mock.URL),
		apns.WithRootCAs(f.mock.RootCAs()),
		apns.WithRetry(0, time.Millisecond),
		apns.WithLogger(quiet))
	if err != nil {
		t.Fatalf("apns.NewService: %v", err)
	}
	t.Cleanup(func() { svc.Close() })
	sweep, err := New(svc, f.store, append([]Option{WithLogger(quiet)}, opts...)...)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return &replica{pushSvc: svc, sweep: sweep, api: sweep.Recorder(svc)}
}

// enroll enrolls n devices on topic, each with one pending command.
func (f *fixture) enroll(t *testing.T, n int) []*storagetest.Channel {
	t.Helper()
	devs := make([]*storagetest.Channel, n)
	for i := range devs {
		d := storagetest.NewDevice()
		d.Push.Topic = topic
		storagetest.Enroll(t, f.store, d)
		f.enqueue(t, d)
		devs[i] = d
	}
	return devs
}

func (f *fixture) enqueue(t *testing.T, d *storagetest.Channel) *mdm.Command {
	t.Helper()
	cmd := storagetest.NewCommand("ProfileList")
	if _, err := f.store.EnqueueCommand(context.Background(), []string{d.ID()}, cmd); err != nil {
		t.Fatalf("enqueue: %v", err)
	}
	return cmd
}

// pushes returns how many pushes the mock answered for d.
func (f *fixture) pushes(d *storagetest.Channel) int { return len(f.mock.RequestsFor(d.Push.Token)) }

func (f *fixture) wantPushes(t *testing.T, when string, want int, devs ...*storagetest.Channel) {
	t.Helper()
	for _, d := range devs {
		if got := f.pushes(d); got != want {
			t.Fatalf("%s: %s pushed %d times, want %d", when, d.ID(), got, want)
		}
	}
}

// apiPush pushes to devs the way the API does.
func (r *replica) apiPush(t *testing.T, devs ...*storagetest.Channel) time.Time {
	t.Helper()
	ids := make([]string, len(devs))
	for i, d := range devs {
		ids[i] = d.ID()
	}
	res, err := r.api.Push(context.Background(), ids)
	if err != nil {
		t.Fatalf("Push: %v", err)
	}
	for _, id := range ids {
		if res[id] == nil || res[id].Err != nil {
			t.Fatalf("push to %s: %+v", id, res[id])
		}
	}
	return time.Now()
}

func (r *replica) run(t *testing.T, now time.Time) {
	t.Helper()
	if err := r.sweep.Run(context.Background(), now); err != nil {
		t.Fatalf("Run(%v): %v", now, err)
	}
}

// A device that ignores pushes is pushed again at 1m, 5m, 30m, then
// hourly after each push; it stops being pushed once it checks in, and an
// API push after that starts the backoff over.
func TestRepushSchedule(t *testing.T) {
	f := newFixture(t)
	r := f.replica(t)
	dev := f.enroll(t, 1)[0]
	now := r.apiPush(t, dev)
	f.wantPushes(t, "API push", 1, dev)

	pushed := 1
	for i, step := range []time.Duration{time.Minute, 5 * time.Minute, 30 * time.Minute, time.Hour, time.Hour, time.Hour} {
		r.run(t, now.Add(step-time.Second))
		f.wantPushes(t, fmt.Sprintf("round %d, a second early", i), pushed, dev)
		now = now.Add(step)
		r.run(t, now)
		pushed++
		f.wantPushes(t, fmt.Sprintf("round %d, on time", i), pushed, dev)
		r.run(t, now)
		f.wantPushes(t, fmt.Sprintf("round %d, again at once", i), pushed, dev)
	}

	// The device checks in (Idle): its command is still pending, but it
	// has seen it is there to fetch.
	if err := f.store.StoreCommandReport(dev.Request(), dev.Idle()); err != nil {
		t.Fatal(err)
	}
	for _, later := range []time.Duration{time.Hour, 24 * time.Hour, 1000 * time.Hour} {
		r.run(t, now.Add(later))
	}
	f.wantPushes(t, "after the check-in", pushed, dev)

	// A new ordinary push resets the backoff to its first step.
	now = r.apiPush(t, dev)
	pushed++
	r.run(t, now.Add(59*time.Second))
	f.wantPushes(t, "second API push, a second early", pushed, dev)
	r.run(t, now.Add(time.Minute))
	f.wantPushes(t, "second API push, one minute on", pushed+1, dev)
}

// Any device request after the push counts as a check-in, and an
// enrollment whose queue is empty is not re-pushed.
func TestRepushStopsWhenSeenOrQueueEmpty(t *testing.T) {
	f := newFixture(t)
	r := f.replica(t)
	devs := f.enroll(t, 3)
	acked, notNow, empty := devs[0], devs[1], devs[2]
	// empty's command is done before the push: nothing pending.
	cmd, err := f.store.RetrieveNextCommand(empty.Request())
	if err != nil || cmd == nil {
		t.Fatalf("RetrieveNextCommand: %v, %v", cmd, err)
	}
	if err := f.store.StoreCommandReport(empty.Request(), empty.Report(cmd.CommandUUID, mdm.StatusAcknowledged)); err != nil {
		t.Fatal(err)
	}
	now := r.apiPush(t, devs...)

	for _, d := range []*storagetest.Channel{acked, notNow} {
		cmd, err := f.store.RetrieveNextCommand(d.Request())
		if err != nil || cmd == nil {
			t.Fatalf("RetrieveNextCommand: %v, %v", cmd, err)
		}
		status := mdm.StatusAcknowledged
		if d == notNow {
			status = mdm.StatusNotNow // still pending, but the device came
		}
		if err := f.store.StoreCommandReport(d.Request(), d.Report(cmd.CommandUUID, status)); err != nil {
			t.Fatal(err)
		}
	}
	for _, later := range []time.Duration{time.Minute, time.Hour, 100 * time.Hour} {
		r.run(t, now.Add(later))
	}
	f.wantPushes(t, "after the rounds", 1, devs...)
}

// Neither a disabled enrollment nor one whose token APNs refused is
// re-pushed.
func TestRepushSkipsDisabledAndInvalid(t *testing.T) {
	f := newFixture(t)
	r := f.replica(t)
	devs := f.enroll(t, 3)
	checkedOut, unregistered, ok := devs[0], devs[1], devs[2]
	now := r.apiPush(t, devs...)
	if err := f.store.Disable(checkedOut.Request()); err != nil {
		t.Fatal(err)
	}
	f.mock.Respond(unregistered.Push.Token, apnsmock.Response{Status: http.StatusGone, Reason: "Unregistered"})

	// The first round's push to unregistered is refused (and its token
	// marked invalid by the push service); no later round tries it.
	r.run(t, now.Add(time.Minute))
	f.wantPushes(t, "first round", 1, checkedOut)
	f.wantPushes(t, "first round", 2, unregistered, ok)
	for _, later := range []time.Duration{time.Hour, 10 * time.Hour, 100 * time.Hour} {
		r.run(t, now.Add(later))
	}
	f.wantPushes(t, "later rounds", 1, checkedOut)
	f.wantPushes(t, "later rounds", 2, unregistered)
	f.wantPushes(t, "later rounds", 5, ok)
}

// A push that fails for a reason that may pass is tried again after the
// next backoff step, not every round, and keeps its PushedAt.
func TestRepushFailedPushBacksOff(t *testing.T) {
	f := newFixture(t)
	r := f.replica(t)
	dev := f.enroll(t, 1)[0]
	now := r.apiPush(t, dev)
	before := dueRecords(t, f.store, now.Add(time.Minute))
	if len(before) != 1 {
		t.Fatalf("due: %+v, want one", before)
	}
	f.mock.Respond(dev.Push.Token, apnsmock.Response{Status: http.StatusInternalServerError, Reason: "InternalServerError"})

	now = now.Add(time.Minute)
	r.run(t, now)
	f.wantPushes(t, "failed round", 2, dev)
	r.run(t, now.Add(5*time.Minute-time.Second))
	f.wantPushes(t, "before the next step", 2, dev)
	after := dueRecords(t, f.store, now.Add(5*time.Minute))
	if len(after) != 1 || after[0].Repushes != 1 || !after[0].PushedAt.Equal(before[0].PushedAt) ||
		!after[0].NextRepushAt.Equal(now.Add(5*time.Minute)) {
		t.Fatalf("after a failed re-push: %+v, want 1 re-push, next at %v, PushedAt kept %v", after, now.Add(5*time.Minute), before[0].PushedAt)
	}
	r.run(t, now.Add(5*time.Minute))
	f.wantPushes(t, "on the next step", 3, dev)
}

func dueRecords(t *testing.T, s storage.RepushStore, now time.Time) []storage.PushRecord {
	t.Helper()
	recs, err := s.DueForRepush(context.Background(), now, 100)
	if err != nil {
		t.Fatalf("DueForRepush: %v", err)
	}
	return recs
}

// -repush-max bounds one round; the rest are pushed by the next rounds,
// each enrollment once.
func TestRepushMaxBoundsRound(t *testing.T) {
	f := newFixture(t)
	r := f.replica(t, WithMax(2))
	devs := f.enroll(t, 5)
	now := r.apiPush(t, devs...).Add(time.Minute)
	for round, want := range []int{2, 4, 5, 5} { // re-pushes in all after each round
		r.run(t, now)
		total := 0
		for _, d := range devs {
			n := f.pushes(d) - 1
			if n > 1 {
				t.Fatalf("round %d: %s re-pushed %d times at one moment", round, d.ID(), n)
			}
			total += n
		}
		if total != want {
			t.Fatalf("round %d: %d re-pushes in all, want %d", round, total, want)
		}
	}
}

// The ordinary push path records APNs-accepted pushes in one
// RecordPushes call per batch, as ordinary pushes due one step later;
// refused pushes are not recorded.
func TestRecorder(t *testing.T) {
	f := newFixture(t)
	counting := &countingStore{RepushStore: f.store}
	svc := f.replica(t).pushSvc
	sweep, err := New(svc, counting, WithBackoff([]time.Duration{2 * time.Minute, time.Hour}), WithLogger(quiet))
	if err != nil {
		t.Fatal(err)
	}
	devs := f.enroll(t, 10)
	f.mock.Respond(devs[0].Push.Token, apnsmock.Response{Status: http.StatusBadRequest, Reason: "BadTopic"})
	ids := make([]string, len(devs))
	for i, d := range devs {
		ids[i] = d.ID()
	}
	before := time.Now()
	if _, err := sweep.Recorder(svc).Push(context.Background(), ids); err != nil {
		t.Fatal(err)
	}
	after := time.Now()
	if len(counting.calls) != 1 {
		t.Fatalf("%d RecordPushes calls, want 1", len(counting.calls))
	}
	recs := counting.calls[0]
	var got []string
	for _, rec := range recs {
		got = append(got, rec.ID)
		if rec.Repushes != 0 || rec.PushedAt.Before(before) || rec.PushedAt.After(after) || !rec.NextRepushAt.Equal(rec.PushedAt.Add(2*time.Minute)) {
			t.Fatalf("record %+v: want no re-pushes, pushed in [%v, %v], next 2m later", rec, before, after)
		}
	}
	slices.Sort(got)
	want := slices.Sorted(slices.Values(ids[1:]))
	if !slices.Equal(got, want) {
		t.Fatalf("recorded %v, want %v (all but the refused one)", got, want)
	}
	// Due after the first step, not before.
	if n := len(dueRecords(t, f.store, before.Add(time.Minute))); n != 0 {
		t.Fatalf("%d due after 1m, want 0", n)
	}
	if n := len(dueRecords(t, f.store, after.Add(2*time.Minute))); n != 9 {
		t.Fatalf("%d due after 2m, want 9", n)
	}
}

type countingStore struct {
	storage.RepushStore
	mu    sync.Mutex
	calls [][]storage.PushRecord
}

func (s *countingStore) RecordPushes(ctx context.Context, recs []storage.PushRecord) error {
	s.mu.Lock()
	s.calls = append(s.calls, append([]storage.PushRecord(nil), recs...))
	s.mu.Unlock()
	return s.RepushStore.RecordPushes(ctx, recs)
}

// A round cut short by its context records none of the pushes it did not
// make: they stay due for the next round.
func TestRunCancelledLeavesDue(t *testing.T) {
	f := newFixture(t)
	r := f.replica(t)
	devs := f.enroll(t, 2)
	now := r.apiPush(t, devs...).Add(time.Minute)

	ctx, cancel := context.WithCancel(context.Background())
	cancelling := pusherFunc(func(ctx context.Context, ids []string) (map[string]*push.Result, error) {
		cancel()
		out := make(map[string]*push.Result, len(ids))
		for _, id := range ids {
			out[id] = &push.Result{Err: fmt.Errorf("not sent: %w", context.Canceled)}
		}
		return out, nil
	})
	sweep, err := New(cancelling, f.store, WithLogger(quiet))
	if err != nil {
		t.Fatal(err)
	}
	if err := sweep.Run(ctx, now); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if n := len(dueRecords(t, f.store, now)); n != 2 {
		t.Fatalf("%d due after a cancelled round, want 2", n)
	}
	r.run(t, now)
	f.wantPushes(t, "next round", 2, devs...)
}

type pusherFunc func(ctx context.Context, ids []string) (map[string]*push.Result, error)

func (f pusherFunc) Push(ctx context.Context, ids []string) (map[string]*push.Result, error) {
	return f(ctx, ids)
}

// A round fails when storage or the push service fails as a whole, and
// the observer hears of every round and push.
func TestRunErrorsAndObserver(t *testing.T) {
	f := newFixture(t)
	r := f.replica(t)
	devs := f.enroll(t, 2)
	now := r.apiPush(t, devs...).Add(time.Minute)
	f.mock.Respond(devs[0].Push.Token, apnsmock.Response{Status: http.StatusBadRequest, Reason: "BadTopic"})

	obs := &recordingObserver{}
	failing := pusherFunc(func(context.Context, []string) (map[string]*push.Result, error) {
		return nil, apns.ErrClosed
	})
	bad, err := New(failing, f.store, WithLogger(quiet), WithObserver(obs))
	if err != nil {
		t.Fatal(err)
	}
	if err := bad.Run(context.Background(), now); !errors.Is(err, apns.ErrClosed) {
		t.Fatalf("Run through a closed push service: %v, want ErrClosed", err)
	}
	good, err := New(r.pushSvc, f.store, WithLogger(quiet), WithObserver(obs))
	if err != nil {
		t.Fatal(err)
	}
	if err := good.Run(context.Background(), now); err != nil {
		t.Fatal(err)
	}
	if err := good.Run(context.Background(), now); err != nil {
		t.Fatal(err)
	}
	obs.mu.Lock()
	defer obs.mu.Unlock()
	if !slices.Equal(obs.dues, []int{2, 2, 0}) || obs.errs[0] == nil || obs.errs[1] != nil || obs.errs[2] != nil {
		t.Fatalf("rounds: due %v, errors %v", obs.dues, obs.errs)
	}
	if obs.accepted != 1 || obs.failed != 1 {
		t.Fatalf("pushes: %d accepted, %d failed; want 1 and 1", obs.accepted, obs.failed)
	}
}

type recordingObserver struct {
	mu               sync.Mutex
	dues             []int
	errs             []error
	accepted, failed int
}

func (o *recordingObserver) ObserveRepushRound(_ time.Duration, due int, err error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.dues = append(o.dues, due)
	o.errs = append(o.errs, err)
}

func (o *recordingObserver) ObserveRepush(err error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if err == nil {
		o.accepted++
	} else {
		o.failed++
	}
}

// Two replicas sharing one store run rounds at the same moments, each
// under the sweep's storage lease: every enrollment is pushed once per
// due step, never twice.
func TestTwoReplicasDoNotDoublePush(t *testing.T) {
	f := newFixture(t)
	replicas := []*replica{f.replica(t), f.replica(t)}
	devs := f.enroll(t, 40)
	now := replicas[0].apiPush(t, devs...)

	steps := []time.Duration{time.Minute, 5 * time.Minute, 30 * time.Minute}
	for round, step := range steps {
		now = now.Add(step)
		var wg sync.WaitGroup
		start := make(chan struct{})
		errs := make(chan error, len(replicas)*4)
		for i, rep := range replicas {
			owner := fmt.Sprintf("replica-%d", i)
			wg.Go(func() {
				<-start
				// Each replica tries a few times in the round, as a
				// runner ticking at the same moment on both would.
				for range 4 {
					if err := leasedRound(f.store, rep.sweep, owner, now); err != nil {
						errs <- err
					}
				}
			})
		}
		close(start)
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		f.wantPushes(t, fmt.Sprintf("round %d", round), round+2, devs...)
	}
}

// The same through the background runner: two replicas' runners tick the
// sweep at the same moment; one takes the lease and pushes, the other
// finds the lease held (or, after it, nothing due).
func TestTwoRunnersDoNotDoublePush(t *testing.T) {
	f := newFixture(t)
	replicas := []*replica{f.replica(t), f.replica(t)}
	devs := f.enroll(t, 20)
	// Pushed (after enrolling) and due at once.
	pushedAt := time.Now()
	var recs []storage.PushRecord
	for _, d := range devs {
		recs = append(recs, storage.PushRecord{ID: d.ID(), PushedAt: pushedAt, NextRepushAt: pushedAt})
	}
	if err := f.store.RecordPushes(context.Background(), recs); err != nil {
		t.Fatal(err)
	}
	var runners []*runner.Runner
	for i, rep := range replicas {
		r := runner.New(f.store, runner.WithOwner(fmt.Sprintf("replica-%d", i)), runner.WithLogger(quiet))
		runners = append(runners, r)
		// Only the first tick runs in the test: each loop makes it
		// before it looks at Close.
		r.Every("repush", time.Hour, rep.sweep.Run)
	}
	for _, r := range runners {
		if err := r.Close(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	f.wantPushes(t, "both runners' first ticks", 1, devs...)
}

// leasedRound runs one round of sweep at now if owner gets the sweep's
// lease, and gives the lease back after.
func leasedRound(leases storage.LeaseStore, sweep *Sweep, owner string, now time.Time) error {
	ctx := context.Background()
	held, err := leases.AcquireLease(ctx, "repush", owner, now, now.Add(time.Minute))
	if err != nil || !held {
		return err
	}
	defer leases.ReleaseLease(ctx, "repush", owner)
	return sweep.Run(ctx, now)
}

func TestParseBackoff(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []time.Duration
	}{
		{DefaultBackoff, []time.Duration{time.Minute, 5 * time.Minute, 30 * time.Minute, time.Hour}},
		{"30s", []time.Duration{30 * time.Second}},
		{" 1m , 2h ", []time.Duration{time.Minute, 2 * time.Hour}},
		{"", nil},
		{"1m,", nil},
		{"1m,0s", nil},
		{"-1m", nil},
		{"soon", nil},
	} {
		got, err := ParseBackoff(tc.in)
		if (err == nil) != (tc.want != nil) || !slices.Equal(got, tc.want) {
			t.Errorf("ParseBackoff(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
		}
	}
}

func TestNewRefuses(t *testing.T) {
	store := inmem.New()
	nop := pusherFunc(func(context.Context, []string) (map[string]*push.Result, error) { return nil, nil })
	for name, build := range map[string]func() (*Sweep, error){
		"nil pusher":   func() (*Sweep, error) { return New(nil, store) },
		"nil store":    func() (*Sweep, error) { return New(nop, nil) },
		"no backoff":   func() (*Sweep, error) { return New(nop, store, WithBackoff(nil)) },
		"zero step":    func() (*Sweep, error) { return New(nop, store, WithBackoff([]time.Duration{time.Minute, 0})) },
		"zero max":     func() (*Sweep, error) { return New(nop, store, WithMax(0)) },
		"negative max": func() (*Sweep, error) { return New(nop, store, WithMax(-1)) },
	} {
		if _, err := build(); err == nil {
			t.Errorf("%s: New succeeded", name)
		}
	}
}
