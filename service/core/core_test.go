package core

import (
	"context"
	"errors"
	"net/http"
	"testing"

	"github.com/picomdm/picomdm/mdm"
	"github.com/picomdm/picomdm/service"
	"github.com/picomdm/picomdm/storage/inmem"
	"github.com/picomdm/picomdm/storage/storagetest"
)

func TestUserAuthenticate(t *testing.T) {
	dev := storagetest.NewDevice()
	user := dev.NewUser()
	r := user.Request()

	declining := New(inmem.New())
	_, err := declining.UserAuthenticate(r, user.UserAuthenticate(""))
	var se *service.StatusError
	if !errors.As(err, &se) || se.Status != http.StatusGone {
		t.Fatalf("default UserAuthenticate: got %v, want a 410 StatusError", err)
	}

	zl := New(inmem.New(), WithUserAuthenticateZeroLengthDigestChallenge())
	out, err := zl.UserAuthenticate(r, user.UserAuthenticate(""))
	if err != nil || string(out) == "" {
		t.Fatalf("first UserAuthenticate: %q %v", out, err)
	}
	out, err = zl.UserAuthenticate(r, user.UserAuthenticate("response"))
	if err != nil || out != nil {
		t.Fatalf("second UserAuthenticate: %q %v, want empty 200", out, err)
	}
}

func TestAuthenticateOnlyOnDeviceChannels(t *testing.T) {
	s := New(inmem.New())
	dev := storagetest.NewDevice()
	user := dev.NewUser()
	if err := s.Authenticate(user.Request(), dev.Authenticate()); err == nil {
		t.Fatal("Authenticate on a user channel must fail")
	}
	if err := s.Authenticate(dev.Request(), dev.Authenticate()); err != nil {
		t.Fatal(err)
	}
}

// fakeDM answers DeclarativeManagement with a fixed body.
type fakeDM struct{}

func (fakeDM) DeclarativeManagement(*mdm.Request, *mdm.DeclarativeManagement) ([]byte, error) {
	return []byte(`{"ok":true}`), nil
}

func TestUnconfiguredHandlers(t *testing.T) {
	dev := storagetest.NewDevice()
	s := New(inmem.New())
	if _, err := s.DeclarativeManagement(dev.Request(), &mdm.DeclarativeManagement{}); !errors.Is(err, ErrNoDeclarativeManagement) {
		t.Fatalf("DM without handler: %v", err)
	}
	if _, err := s.GetToken(dev.Request(), &mdm.GetToken{}); !errors.Is(err, ErrNoGetToken) {
		t.Fatalf("GetToken without handler: %v", err)
	}
	s = New(inmem.New(), WithDeclarativeManagement(fakeDM{}))
	if out, err := s.DeclarativeManagement(dev.Request(), &mdm.DeclarativeManagement{}); err != nil || string(out) != `{"ok":true}` {
		t.Fatalf("DM with handler: %q %v", out, err)
	}
}

// TestCommandExchange drives the core over inmem through a whole exchange,
// NotNow included.
func TestCommandExchange(t *testing.T) {
	store := inmem.New()
	s := New(store)
	dev := storagetest.NewDevice()
	storagetest.Enroll(t, store, dev)
	a, b := storagetest.NewCommand("A"), storagetest.NewCommand("B")
	for _, c := range []*mdm.Command{a, b} {
		if _, err := store.EnqueueCommand(context.Background(), []string{dev.ID()}, c); err != nil {
			t.Fatal(err)
		}
	}
	step := func(report *mdm.CommandResults, want *mdm.Command) {
		t.Helper()
		got, err := s.CommandAndReportResults(dev.Request(), report)
		if err != nil {
			t.Fatal(err)
		}
		if (got == nil) != (want == nil) || (got != nil && got.CommandUUID != want.CommandUUID) {
			t.Fatalf("after %s: got %v, want %v", report.Status, got, want)
		}
	}
	step(dev.Idle(), a)
	step(dev.Report(a.CommandUUID, mdm.StatusNotNow), b)
	step(dev.Report(b.CommandUUID, mdm.StatusAcknowledged), nil)
	step(dev.Idle(), a)
	step(dev.Report(a.CommandUUID, mdm.StatusAcknowledged), nil)
}
