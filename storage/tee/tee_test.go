package tee

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"

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
