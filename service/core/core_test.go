package core

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"testing"

	"github.com/micromdm/plist"

	"github.com/picomdm/picomdm/mdm"
	"github.com/picomdm/picomdm/service"
	"github.com/picomdm/picomdm/storage"
	"github.com/picomdm/picomdm/storage/inmem"
	"github.com/picomdm/picomdm/storage/storagetest"
)

// userAuthStore records the UserAuthenticate messages stored.
type userAuthStore struct {
	storage.Store
	stored []string // DigestResponse of each message stored
}

func (s *userAuthStore) StoreUserAuthenticate(r *mdm.Request, msg *mdm.UserAuthenticate) error {
	s.stored = append(s.stored, msg.DigestResponse)
	return s.Store.StoreUserAuthenticate(r, msg)
}

// TestUserAuthenticate: with a DigestResponse the message is stored and
// answered with an empty 200 with or without -ua-zl-dc (as NanoMDM);
// without one it is declined with a 410 (nothing stored) by default, and
// stored and answered with an empty DigestChallenge with -ua-zl-dc.
func TestUserAuthenticate(t *testing.T) {
	emptyChallenge, err := plist.Marshal(struct{ DigestChallenge string }{""})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name           string
		zlDC           bool
		digestResponse string
		wantStatus     int // 0: success
		wantBody       []byte
		wantStored     bool
	}{
		{"first message, default", false, "", http.StatusGone, nil, false},
		{"second message, default", false, "response", 0, nil, true},
		{"first message, -ua-zl-dc", true, "", 0, emptyChallenge, true},
		{"second message, -ua-zl-dc", true, "response", 0, nil, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			store := &userAuthStore{Store: inmem.New()}
			var opts []Option
			if tc.zlDC {
				opts = append(opts, WithUserAuthenticateZeroLengthDigestChallenge())
			}
			user := storagetest.NewDevice().NewUser()
			out, err := New(store, opts...).UserAuthenticate(user.Request(), user.UserAuthenticate(tc.digestResponse))
			if tc.wantStatus != 0 {
				var se *service.StatusError
				if !errors.As(err, &se) || se.Status != tc.wantStatus {
					t.Fatalf("got %q, %v; want a %d StatusError", out, err, tc.wantStatus)
				}
			} else if err != nil {
				t.Fatalf("got %v, want success", err)
			}
			if !bytes.Equal(out, tc.wantBody) {
				t.Errorf("answer %q, want %q", out, tc.wantBody)
			}
			if stored := len(store.stored) == 1 && store.stored[0] == tc.digestResponse; stored != tc.wantStored || len(store.stored) > 1 {
				t.Errorf("stored %q, want stored=%v", store.stored, tc.wantStored)
			}
		})
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
