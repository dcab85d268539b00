package storagetest

import (
	"bytes"
	"context"
	"errors"
	"testing"

	"github.com/picomdm/picomdm/storage"
)

// RunPushToken runs the storage.PushTokenStore conformance tests against
// store, each behaviour as its own subtest. Like Run, it works on fresh
// random enrollments and may run more than once against one store.
func RunPushToken(t *testing.T, store storage.Store) {
	tests := []struct {
		name string
		fn   func(*testing.T, pushTokenStore)
	}{
		{"UnknownEnrollment", testPushTokenUnknown},
		{"InvalidateAndTokenUpdate", testPushTokenInvalidate},
		{"PushInfoUnchanged", testPushTokenPushInfoUnchanged},
		{"PerChannel", testPushTokenPerChannel},
		{"DisabledEnrollment", testPushTokenDisabled},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, store) })
	}
}

type pushTokenStore interface {
	storage.Store
	storage.PushTokenStore
}

// wantTokenValid asserts whether c's push token is unmarked.
func wantTokenValid(t testing.TB, s pushTokenStore, c *Channel, want bool) {
	t.Helper()
	got, err := s.PushTokenValid(context.Background(), c.ID())
	if err != nil {
		t.Fatalf("PushTokenValid(%s): %v", c.ID(), err)
	}
	if got != want {
		t.Fatalf("PushTokenValid(%s) = %v, want %v", c.ID(), got, want)
	}
}

// mustInvalidate marks c's push token invalid for reason.
func mustInvalidate(t testing.TB, s pushTokenStore, c *Channel, reason string) {
	t.Helper()
	if err := s.InvalidatePushToken(context.Background(), c.ID(), reason); err != nil {
		t.Fatalf("InvalidatePushToken(%s, %s): %v", c.ID(), reason, err)
	}
}

// testPushTokenUnknown: an enrollment that never sent a TokenUpdate has no
// token to mark or to read.
func testPushTokenUnknown(t *testing.T, s pushTokenStore) {
	ctx := context.Background()
	c := NewDevice()
	if err := s.InvalidatePushToken(ctx, c.ID(), "Unregistered"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("InvalidatePushToken(unknown) = %v, want ErrNotFound", err)
	}
	if _, err := s.PushTokenValid(ctx, c.ID()); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("PushTokenValid(unknown) = %v, want ErrNotFound", err)
	}
	// Authenticate alone does not make an enrollment.
	mustAuthenticate(t, s, c)
	if _, err := s.PushTokenValid(ctx, c.ID()); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("PushTokenValid(authenticated only) = %v, want ErrNotFound", err)
	}
}

// testPushTokenInvalidate: a token is valid after a TokenUpdate, invalid
// once marked (again and again), and valid again after the next
// TokenUpdate, whether it carries a new token or the same one.
func testPushTokenInvalidate(t *testing.T, s pushTokenStore) {
	d := NewDevice()
	Enroll(t, s, d)
	wantTokenValid(t, s, d, true)

	mustInvalidate(t, s, d, "Unregistered")
	wantTokenValid(t, s, d, false)
	mustInvalidate(t, s, d, "BadDeviceToken") // marking again is not an error
	wantTokenValid(t, s, d, false)

	d.RotatePushToken()
	mustTokenUpdate(t, s, d, nil)
	wantTokenValid(t, s, d, true)

	mustInvalidate(t, s, d, "DeviceTokenNotForTopic")
	wantTokenValid(t, s, d, false)
	mustTokenUpdate(t, s, d, nil) // same token, registered anew
	wantTokenValid(t, s, d, true)
}

// testPushTokenPushInfoUnchanged: the mark is information only; push info
// of a marked enrollment is returned exactly as before.
func testPushTokenPushInfoUnchanged(t *testing.T, s pushTokenStore) {
	d, other := NewDevice(), NewDevice()
	Enroll(t, s, d, other)
	mustInvalidate(t, s, d, "Unregistered")
	wantPushable(t, s, []*Channel{d, other}, d, other)
	info := pushInfo(t, s, d)[d.ID()]
	if info == nil || !bytes.Equal(info.Token, d.Push.Token) || info.PushMagic != d.Push.PushMagic || info.Topic != d.Push.Topic {
		t.Fatalf("push info of marked %s = %+v, want %+v", d.ID(), info, d.Push)
	}
	wantTokenValid(t, s, other, true)
}

// testPushTokenPerChannel: each channel has its own token; marking one
// leaves its device's or user channel's alone, and a TokenUpdate clears
// only its own channel's mark.
func testPushTokenPerChannel(t *testing.T, s pushTokenStore) {
	d := NewDevice()
	u := d.NewUser()
	ue := NewUserEnrollmentDevice()
	ueUser := ue.NewUser()
	Enroll(t, s, d, u, ue, ueUser)

	mustInvalidate(t, s, u, "Unregistered")
	wantTokenValid(t, s, u, false)
	wantTokenValid(t, s, d, true)

	mustInvalidate(t, s, d, "BadDeviceToken")
	mustTokenUpdate(t, s, d, nil)
	wantTokenValid(t, s, d, true)
	wantTokenValid(t, s, u, false)
	mustTokenUpdate(t, s, u, nil)
	wantTokenValid(t, s, u, true)

	mustInvalidate(t, s, ueUser, "Unregistered")
	wantTokenValid(t, s, ueUser, false)
	wantTokenValid(t, s, ue, true)
}

// testPushTokenDisabled: a checked-out enrollment can still be marked; its
// re-enrollment (Authenticate, then TokenUpdate) clears the mark.
func testPushTokenDisabled(t *testing.T, s pushTokenStore) {
	d := NewDevice()
	Enroll(t, s, d)
	mustDisable(t, s, d)
	mustInvalidate(t, s, d, "Unregistered")
	wantTokenValid(t, s, d, false)

	mustAuthenticate(t, s, d)
	wantTokenValid(t, s, d, false) // Authenticate carries no token
	d.RotatePushToken()
	mustTokenUpdate(t, s, d, nil)
	wantTokenValid(t, s, d, true)
}
