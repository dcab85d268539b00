package file

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/picomdm/picomdm/storage/storagetest"
)

func TestPushTokenReopen(t *testing.T) {
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "store")
	s, err := New(dir)
	if err != nil {
		t.Fatal(err)
	}
	marked, cleared := storagetest.NewDevice(), storagetest.NewDevice()
	storagetest.Enroll(t, s, marked, cleared)
	for _, c := range []*storagetest.Channel{marked, cleared} {
		if err := s.InvalidatePushToken(ctx, c.ID(), "Unregistered"); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.StoreTokenUpdate(cleared.Request(), cleared.TokenUpdate(nil)); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s = open(t, dir)
	for _, tc := range []struct {
		c    *storagetest.Channel
		want bool
	}{{marked, false}, {cleared, true}} {
		if got, err := s.PushTokenValid(ctx, tc.c.ID()); err != nil || got != tc.want {
			t.Fatalf("after reopen, PushTokenValid(%s) = %v, %v; want %v", tc.c.ID(), got, err, tc.want)
		}
	}
	rec, ok, err := s.readEnrollment(marked.ID())
	if err != nil || !ok {
		t.Fatalf("reading enrollment: %v, %v", ok, err)
	}
	if rec.PushTokenInvalidReason != "Unregistered" || rec.PushTokenInvalidAt.IsZero() {
		t.Fatalf("stored mark: reason %q at %v", rec.PushTokenInvalidReason, rec.PushTokenInvalidAt)
	}
	rec, _, _ = s.readEnrollment(cleared.ID())
	if rec.PushTokenInvalidReason != "" || !rec.PushTokenInvalidAt.IsZero() {
		t.Fatalf("cleared mark still stored: reason %q at %v", rec.PushTokenInvalidReason, rec.PushTokenInvalidAt)
	}
}
