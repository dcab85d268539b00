package tee

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/picomdm/picomdm/mdm"
	"github.com/picomdm/picomdm/storage"
	"github.com/picomdm/picomdm/storage/inmem"
	"github.com/picomdm/picomdm/storage/storagetest"
)

// The tee passes the whole conformance suite: it answers like its primary.
func TestConformance(t *testing.T) {
	storagetest.Run(t, New(inmem.New(), []storage.Store{inmem.New()}, nil))
}

// Every write reaches the secondary: after a session through the tee, the
// secondary alone answers the same.
func TestSecondaryKeptInStep(t *testing.T) {
	primary, secondary := inmem.New(), inmem.New()
	s := New(primary, []storage.Store{secondary}, nil)
	ctx := context.Background()
	d := storagetest.NewDevice()
	storagetest.Enroll(t, s, d)
	a, b := storagetest.NewCommand("A"), storagetest.NewCommand("B")
	for _, c := range []*mdm.Command{a, b} {
		if _, err := s.EnqueueCommand(ctx, []string{d.ID()}, c); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.StoreCommandReport(d.Request(), d.Report(a.CommandUUID, mdm.StatusAcknowledged)); err != nil {
		t.Fatal(err)
	}
	if err := s.StoreBootstrapToken(d.Request(), d.SetBootstrapToken([]byte("tok"))); err != nil {
		t.Fatal(err)
	}
	if err := s.AssociateCertHash(ctx, d.ID(), "abc", d.Cert.NotAfter); err != nil {
		t.Fatal(err)
	}
	for name, st := range map[string]storage.Store{"primary": primary, "secondary": secondary} {
		next, err := st.RetrieveNextCommand(d.Request())
		if err != nil || next == nil || next.CommandUUID != b.CommandUUID {
			t.Fatalf("%s: next = %v %v, want B", name, next, err)
		}
		tok, err := st.RetrieveBootstrapToken(d.Request(), d.GetBootstrapToken())
		if err != nil || tok == nil || string(tok.BootstrapToken) != "tok" {
			t.Fatalf("%s: bootstrap token %v %v", name, tok, err)
		}
		if ok, _ := st.IsCertHashAssociated(ctx, d.ID(), "abc"); !ok {
			t.Fatalf("%s: cert hash not associated", name)
		}
	}
	if err := s.Disable(d.Request()); err != nil {
		t.Fatal(err)
	}
	if info, _ := secondary.RetrievePushInfo(ctx, []string{d.ID()}); len(info) != 0 {
		t.Fatal("CheckOut not copied to the secondary")
	}
}

// failing fails every enqueue.
type failing struct{ storage.Store }

func (failing) EnqueueCommand(context.Context, []string, *mdm.Command) (map[string]error, error) {
	return nil, errors.New("secondary down")
}

// A failing secondary is logged, never the caller's error; a failing
// primary is the caller's error.
func TestErrors(t *testing.T) {
	var logs bytes.Buffer
	logger := slog.New(slog.NewTextHandler(&logs, nil))
	primary := inmem.New()
	s := New(primary, []storage.Store{failing{inmem.New()}}, logger)
	d := storagetest.NewDevice()
	storagetest.Enroll(t, s, d)
	if _, err := s.EnqueueCommand(context.Background(), []string{d.ID()}, storagetest.NewCommand("A")); err != nil {
		t.Fatalf("secondary failure surfaced: %v", err)
	}
	if !strings.Contains(logs.String(), "secondary down") {
		t.Fatalf("secondary failure not logged: %s", logs.String())
	}

	secondary := inmem.New()
	s = New(failing{primary}, []storage.Store{secondary}, logger)
	if _, err := s.EnqueueCommand(context.Background(), []string{d.ID()}, storagetest.NewCommand("B")); err == nil {
		t.Fatal("primary failure not returned")
	}
}

// twoCalls is a store without storage.CommandReportAndNexter.
type twoCalls struct{ storage.Store }

// failingReport fails every report-and-next call, as a primary whose
// database is down would.
type failingReport struct{ storage.Store }

func (failingReport) StoreCommandReportAndRetrieveNext(*mdm.Request, *mdm.CommandResults) (*mdm.Command, error) {
	return nil, errors.New("primary down")
}

// The tee keeps its primary's report-and-next fast path and still copies
// every report to the others; a primary without one gets the two calls;
// a failed report is returned and not copied.
func TestReportAndNext(t *testing.T) {
	for _, tc := range []struct {
		name    string
		primary func(storage.Store) storage.Store
	}{
		{"FastPath", func(s storage.Store) storage.Store { return s }},
		{"TwoCalls", func(s storage.Store) storage.Store { return twoCalls{s} }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			primary, secondary := inmem.New(), inmem.New()
			s := New(tc.primary(primary), []storage.Store{secondary}, nil)
			if _, ok := any(s).(storage.CommandReportAndNexter); !ok {
				t.Fatal("the tee hides the fast path")
			}
			d := storagetest.NewDevice()
			storagetest.Enroll(t, s, d)
			a, b := storagetest.NewCommand("A"), storagetest.NewCommand("B")
			for _, c := range []*mdm.Command{a, b} {
				if _, err := s.EnqueueCommand(context.Background(), []string{d.ID()}, c); err != nil {
					t.Fatal(err)
				}
			}
			for _, step := range []struct {
				report *mdm.CommandResults
				want   *mdm.Command
			}{
				{d.Idle(), a},
				{d.Report(a.CommandUUID, mdm.StatusNotNow), b},
				{d.Report(b.CommandUUID, mdm.StatusAcknowledged), nil},
			} {
				got, err := storage.StoreReportAndRetrieveNext(s, d.Request(), step.report)
				if err != nil {
					t.Fatal(err)
				}
				if (got == nil) != (step.want == nil) || (got != nil && got.CommandUUID != step.want.CommandUUID) {
					t.Fatalf("after %s: next %v, want %v", step.report.Status, got, step.want)
				}
			}
			// Both backends saw every report: a is NotNow'd, b answered.
			for name, st := range map[string]storage.Store{"primary": primary, "secondary": secondary} {
				if next, err := st.RetrieveNextCommand(d.Request()); err != nil || next != nil {
					t.Fatalf("%s: next before Idle %v, %v; want none", name, next, err)
				}
				if next, err := storage.StoreReportAndRetrieveNext(st, d.Request(), d.Idle()); err != nil || next == nil || next.CommandUUID != a.CommandUUID {
					t.Fatalf("%s: next after Idle %v, %v; want A", name, next, err)
				}
			}
		})
	}
	t.Run("PrimaryFails", func(t *testing.T) {
		primary, secondary := inmem.New(), inmem.New()
		s := New(failingReport{primary}, []storage.Store{secondary}, nil)
		d := storagetest.NewDevice()
		storagetest.Enroll(t, s, d)
		a := storagetest.NewCommand("A")
		if _, err := s.EnqueueCommand(context.Background(), []string{d.ID()}, a); err != nil {
			t.Fatal(err)
		}
		if _, err := storage.StoreReportAndRetrieveNext(s, d.Request(), d.Report(a.CommandUUID, mdm.StatusAcknowledged)); err == nil {
			t.Fatal("primary failure not returned")
		}
		if next, err := secondary.RetrieveNextCommand(d.Request()); err != nil || next == nil || next.CommandUUID != a.CommandUUID {
			t.Fatalf("secondary: next %v, %v; want A (the failed report not copied)", next, err)
		}
	})
}

// The cert-auth association an Authenticate carries is made on every
// backend; one the primary refuses is written nowhere; a removed
// certificate is removed everywhere.
func TestCertAssociation(t *testing.T) {
	ctx := context.Background()
	primary, secondary := inmem.New(), inmem.New()
	s := New(primary, []storage.Store{secondary}, nil)
	authenticate := func(d *storagetest.Channel) error {
		t.Helper()
		r := d.Request()
		r.Context = storage.WithCertAssociation(ctx, storage.CertAssociation{Hash: "hash"})
		return s.StoreAuthenticate(r, d.Authenticate())
	}
	a, b := storagetest.NewDevice(), storagetest.NewDevice()
	if err := authenticate(a); err != nil {
		t.Fatal(err)
	}
	if err := authenticate(b); !errors.Is(err, storage.ErrCertHashInUse) {
		t.Fatalf("second owner: %v, want ErrCertHashInUse", err)
	}
	for name, st := range map[string]storage.Store{"primary": primary, "secondary": secondary} {
		if ok, _ := st.IsCertHashAssociated(ctx, a.ID(), "hash"); !ok {
			t.Errorf("%s: accepted hash not associated", name)
		}
		if ok, _ := st.IsCertHashAssociated(ctx, b.ID(), "hash"); ok {
			t.Errorf("%s: refused hash associated", name)
		}
	}
	if err := s.DeleteCertHash(ctx, a.ID(), "hash"); err != nil {
		t.Fatal(err)
	}
	for name, st := range map[string]storage.Store{"primary": primary, "secondary": secondary} {
		if ok, _ := st.IsCertHashAssociated(ctx, a.ID(), "hash"); ok {
			t.Errorf("%s: deleted hash still associated", name)
		}
	}
}

// TestOutboxPrimaryOnly: outbox, lease and push-record writes reach the
// primary only.
func TestOutboxPrimaryOnly(t *testing.T) {
	ctx := context.Background()
	primary, secondary := inmem.New(), inmem.New()
	s := New(primary, []storage.Store{secondary}, nil)
	ev := &storage.OutboxEvent{ID: storagetest.NewUUID(), EnrollmentID: "a", Topic: "mdm.Connect", Body: []byte("{}"), CreatedAt: time.Now()}
	if err := s.StoreEvent(ctx, ev); err != nil {
		t.Fatal(err)
	}
	if ok, err := s.AcquireLease(ctx, "sweep", "owner-1", time.Now(), time.Now().Add(time.Hour)); err != nil || !ok {
		t.Fatalf("AcquireLease: %v, %v", ok, err)
	}
	d := storagetest.NewDevice()
	storagetest.Enroll(t, s, d)
	errs, err := s.EnqueueCommand(ctx, []string{d.ID()}, storagetest.NewCommand("DeviceInformation"))
	if err != nil || errs[d.ID()] != nil {
		t.Fatalf("enqueue: %v, %v", err, errs)
	}
	now := time.Now()
	if err := s.RecordPushes(ctx, []storage.PushRecord{{ID: d.ID(), PushedAt: now, NextRepushAt: now}}); err != nil {
		t.Fatal(err)
	}

	for name, store := range map[string]storage.Store{"primary": primary, "secondary": secondary} {
		st, err := store.OutboxStats(ctx)
		if err != nil {
			t.Fatal(err)
		}
		due, err := store.DueForRepush(ctx, now.Add(time.Hour), 10)
		if err != nil {
			t.Fatal(err)
		}
		free, err := store.AcquireLease(ctx, "sweep", "owner-2", now, now.Add(time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		want := name == "primary"
		if (st.Pending == 1) != want || (len(due) == 1) != want || free == want {
			t.Errorf("%s: %d pending events, %d due for re-push, lease free %v", name, st.Pending, len(due), free)
		}
	}
}
