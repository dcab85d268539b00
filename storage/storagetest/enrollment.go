package storagetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/picomdm/picomdm/mdm"
	"github.com/picomdm/picomdm/storage"
)

// testReEnrollClears: Authenticate on an enrolled device starts it clean:
// pending queues of the device and its user channels emptied (NotNow'd
// commands included), bootstrap token gone, every channel disabled until
// its own next TokenUpdate. Other devices are untouched.
func testReEnrollClears(t *testing.T, s storage.Store) {
	d := NewDevice()
	u1, u2 := d.NewUser(), d.NewUser()
	other := NewDevice()
	Enroll(t, s, d, u1, u2, other)
	if err := s.StoreBootstrapToken(d.Request(), d.SetBootstrapToken(RandomBytes(32))); err != nil {
		t.Fatalf("storing bootstrap token: %v", err)
	}
	a, b, c := NewCommand("A"), NewCommand("B"), NewCommand("C")
	mustEnqueue(t, s, a, d.ID(), u1.ID(), other.ID())
	mustEnqueue(t, s, b, u2.ID(), d.ID())
	mustEnqueue(t, s, c, d.ID())
	wantNext(t, s, d, a)
	mustReport(t, s, d, a.CommandUUID, mdm.StatusNotNow)
	wantNext(t, s, u1, a) // handed out, unanswered

	mustAuthenticate(t, s, d)

	all := []*Channel{d, u1, u2, other}
	for _, ch := range []*Channel{d, u1, u2} {
		wantNone(t, s, ch)
	}
	wantBootstrapToken(t, s, d, nil)
	wantBootstrapToken(t, s, u1, nil)
	wantPushable(t, s, all, other)
	wantNext(t, s, other, a)

	// A late answer to a cleared command does not bring it back.
	mustReport(t, s, d, a.CommandUUID, mdm.StatusNotNow)
	mustReport(t, s, u1, a.CommandUUID, mdm.StatusNotNow)
	wantNone(t, s, d)
	wantNone(t, s, u1)

	// Channels come back one TokenUpdate at a time; the disabled ones
	// are still known, so they can be queued to.
	d.RotatePushToken()
	mustTokenUpdate(t, s, d, nil)
	wantPushable(t, s, all, d, other)
	fresh := NewCommand("Fresh")
	mustEnqueue(t, s, fresh, d.ID(), u1.ID())
	wantNext(t, s, d, fresh)
	mustTokenUpdate(t, s, u1, nil)
	wantPushable(t, s, all, d, u1, other)
	wantNext(t, s, u1, fresh)
	wantNone(t, s, u2)
}

// testTokenUpdateTally: the tally counts TokenUpdates (1 on the first) per
// channel, and restarts when the device re-enrolls or checks out — as
// NanoMDM's does, so that webhook consumers that act on the first
// TokenUpdate (tally 1) of an enrollment act again on a re-enrollment.
func testTokenUpdateTally(t *testing.T, s storage.Store) {
	ctx := context.Background()
	if _, err := s.RetrieveTokenUpdateTally(ctx, NewUUID()); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("tally of unknown id: %v, want ErrNotFound", err)
	}
	d := NewDevice()
	u := d.NewUser()
	mustAuthenticate(t, s, d)
	if _, err := s.RetrieveTokenUpdateTally(ctx, d.ID()); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("tally before the first TokenUpdate: %v, want ErrNotFound", err)
	}
	for want := 1; want <= 3; want++ {
		mustTokenUpdate(t, s, d, nil)
		wantTally(t, s, d, want)
	}
	mustTokenUpdate(t, s, u, nil)
	wantTally(t, s, u, 1)
	wantTally(t, s, d, 3)

	mustAuthenticate(t, s, d) // re-enrollment
	if _, err := s.RetrieveTokenUpdateTally(ctx, u.ID()); err != nil {
		t.Fatalf("tally of a disabled (known) enrollment: %v", err)
	}
	mustTokenUpdate(t, s, d, nil)
	wantTally(t, s, d, 1)
	mustTokenUpdate(t, s, u, nil)
	mustTokenUpdate(t, s, u, nil)
	wantTally(t, s, u, 2)

	mustDisable(t, s, d) // CheckOut
	mustTokenUpdate(t, s, d, nil)
	wantTally(t, s, d, 1)
}

// testDisableDevice: CheckOut of a device channel disables it and all its
// user channels; they stay known and come back at their next TokenUpdate.
func testDisableDevice(t *testing.T, s storage.Store) {
	d := NewDevice()
	u1, u2 := d.NewUser(), d.NewUser()
	other := NewDevice()
	all := []*Channel{d, u1, u2, other}
	Enroll(t, s, all...)
	wantPushable(t, s, all, all...)

	mustDisable(t, s, d)
	wantPushable(t, s, all, other)
	mustDisable(t, s, d) // twice is fine
	cmd := NewCommand("DeviceInformation")
	mustEnqueue(t, s, cmd, d.ID(), u1.ID()) // known while disabled

	mustTokenUpdate(t, s, d, nil)
	wantPushable(t, s, all, d, other)
	mustTokenUpdate(t, s, u1, nil)
	wantPushable(t, s, all, d, u1, other)
	wantNext(t, s, d, cmd)
	wantNext(t, s, u1, cmd)
}

// testDisableUserChannel: CheckOut of a user channel disables only it.
func testDisableUserChannel(t *testing.T, s storage.Store) {
	d := NewDevice()
	u1, u2 := d.NewUser(), d.NewUser()
	all := []*Channel{d, u1, u2}
	Enroll(t, s, all...)
	mustDisable(t, s, u1)
	wantPushable(t, s, all, d, u2)
	mustTokenUpdate(t, s, u1, nil)
	wantPushable(t, s, all, all...)
}

// testPushInfo: one call returns the current push info of every enabled
// enrollment asked for, and nothing for disabled or unknown ones.
func testPushInfo(t *testing.T, s storage.Store) {
	info, err := s.RetrievePushInfo(context.Background(), nil)
	if err != nil || len(info) != 0 {
		t.Fatalf("push info of no ids: %v, %v; want empty, nil", info, err)
	}
	var all, enabled []*Channel
	for i := range 40 {
		d := NewDevice()
		chans := []*Channel{d}
		if i%4 == 0 {
			chans = append(chans, d.NewUser())
		}
		if i%7 == 0 {
			all = append(all, NewDevice()) // never enrolled
		}
		Enroll(t, s, chans...)
		all = append(all, chans...)
		switch {
		case i%5 == 0:
			mustDisable(t, s, d)
		case i%3 == 0:
			// A later TokenUpdate's info replaces the first's.
			d.RotatePushToken()
			d.Push.Topic = NewTopic()
			mustTokenUpdate(t, s, d, nil)
			enabled = append(enabled, chans...)
		default:
			enabled = append(enabled, chans...)
		}
	}
	wantPushable(t, s, all, enabled...)
}

// testBootstrapToken: the token belongs to the device channel (a user
// channel reads and writes its device's), is nil when none is stored, and
// is cleared by a re-enrollment.
func testBootstrapToken(t *testing.T, s storage.Store) {
	d := NewDevice()
	u := d.NewUser()
	other := NewDevice()
	Enroll(t, s, d, u, other)
	wantBootstrapToken(t, s, d, nil)
	wantBootstrapToken(t, s, u, nil)

	tok := RandomBytes(64)
	if err := s.StoreBootstrapToken(d.Request(), d.SetBootstrapToken(tok)); err != nil {
		t.Fatalf("storing bootstrap token: %v", err)
	}
	wantBootstrapToken(t, s, d, tok)
	wantBootstrapToken(t, s, u, tok)
	wantBootstrapToken(t, s, other, nil)

	tok2 := RandomBytes(64)
	if err := s.StoreBootstrapToken(u.Request(), u.SetBootstrapToken(tok2)); err != nil {
		t.Fatalf("storing bootstrap token via user channel: %v", err)
	}
	wantBootstrapToken(t, s, d, tok2)

	mustAuthenticate(t, s, d)
	wantBootstrapToken(t, s, d, nil)
	wantBootstrapToken(t, s, u, nil)
}

// testUserAuthenticate: both UserAuthenticate messages store without
// error, and do not by themselves make the user channel a known
// enrollment (its TokenUpdate does).
func testUserAuthenticate(t *testing.T, s storage.Store) {
	d := NewDevice()
	Enroll(t, s, d)
	u := d.NewUser()
	for _, digest := range []string{"", "digest-response-" + NewUUID()} {
		if err := s.StoreUserAuthenticate(u.Request(), u.UserAuthenticate(digest)); err != nil {
			t.Fatalf("storing UserAuthenticate (DigestResponse %q): %v", digest, err)
		}
	}
	errs, err := s.EnqueueCommand(context.Background(), []string{u.ID()}, NewCommand("ProfileList"))
	if err != nil {
		t.Fatalf("enqueue: %v", err)
	}
	errNotFoundFor(t, errs, u.ID())
}

// testMigrationCheckins: every enabled device comes back as Authenticate,
// TokenUpdate (with the UnlockToken of its first TokenUpdate), its enabled
// user channels' TokenUpdates, then SetBootstrapToken; disabled channels do
// not come back; a yield error stops the walk.
func testMigrationCheckins(t *testing.T, s storage.Store) {
	ctx := context.Background()
	d := NewDevice()
	u := d.NewUser()
	uOff := d.NewUser()
	unlock, bootstrap := RandomBytes(48), RandomBytes(64)
	auth := d.Authenticate()
	if err := s.StoreAuthenticate(d.Request(), auth); err != nil {
		t.Fatalf("Authenticate: %v", err)
	}
	mustTokenUpdate(t, s, d, unlock)
	d.RotatePushToken()
	mustTokenUpdate(t, s, d, nil) // devices send the UnlockToken only once
	mustTokenUpdate(t, s, u, nil)
	mustTokenUpdate(t, s, uOff, nil)
	mustDisable(t, s, uOff)
	if err := s.StoreBootstrapToken(d.Request(), d.SetBootstrapToken(bootstrap)); err != nil {
		t.Fatalf("SetBootstrapToken: %v", err)
	}
	gone := NewDevice()
	Enroll(t, s, gone)
	mustDisable(t, s, gone)
	ue := NewUserEnrollmentDevice()
	Enroll(t, s, ue)

	var mine, ueMsgs []mdm.Checkin
	var problems []string
	err := s.RetrieveMigrationCheckins(ctx, func(raw []byte) error {
		msg, err := mdm.DecodeCheckin(raw)
		if err != nil {
			problems = append(problems, fmt.Sprintf("undecodable check-in %q: %v", raw, err))
			return nil
		}
		id, err := msg.EnrollmentKeys().Resolve()
		if err != nil {
			problems = append(problems, fmt.Sprintf("%s without enrollment keys: %v", msg.Type(), err))
			return nil
		}
		switch id.DeviceID() {
		case d.ID():
			mine = append(mine, msg)
		case ue.ID():
			ueMsgs = append(ueMsgs, msg)
		case gone.ID():
			problems = append(problems, fmt.Sprintf("disabled device yielded a %s", msg.Type()))
		}
		return nil
	})
	if err != nil {
		t.Fatalf("RetrieveMigrationCheckins: %v", err)
	}
	for _, p := range problems {
		t.Error(p)
	}
	if len(mine) != 4 {
		for _, m := range mine {
			t.Logf("yielded %s for %v", m.Type(), m.EnrollmentKeys())
		}
		t.Fatalf("device yielded %d messages, want 4 (Authenticate, TokenUpdate, user TokenUpdate, SetBootstrapToken)", len(mine))
	}

	gotAuth, ok := mine[0].(*mdm.Authenticate)
	if !ok || gotAuth.UDID != d.Keys.UDID || gotAuth.SerialNumber != d.SerialNumber || !bytes.Equal(gotAuth.RawBytes(), auth.RawBytes()) {
		t.Fatalf("first message: %s %q, want the stored Authenticate %q", mine[0].Type(), mine[0].RawBytes(), auth.RawBytes())
	}
	tu, ok := mine[1].(*mdm.TokenUpdate)
	if !ok || tu.UDID != d.Keys.UDID || tu.UserID != "" {
		t.Fatalf("second message: %s for %v, want the device's TokenUpdate", mine[1].Type(), mine[1].EnrollmentKeys())
	}
	if !bytes.Equal(tu.UnlockToken, unlock) {
		t.Fatalf("device TokenUpdate UnlockToken = %x, want %x (from the first TokenUpdate)", tu.UnlockToken, unlock)
	}
	if !bytes.Equal(tu.Token, d.Push.Token) || tu.PushMagic != d.Push.PushMagic || tu.Topic != d.Push.Topic {
		t.Fatalf("device TokenUpdate push info = %+v, want the latest %+v", tu.Push, d.Push)
	}
	utu, ok := mine[2].(*mdm.TokenUpdate)
	if !ok || utu.UserID != u.Keys.UserID || !bytes.Equal(utu.Token, u.Push.Token) {
		t.Fatalf("third message: %s for %v, want the TokenUpdate of user %s", mine[2].Type(), mine[2].EnrollmentKeys(), u.ID())
	}
	sbt, ok := mine[3].(*mdm.SetBootstrapToken)
	if !ok || sbt.UDID != d.Keys.UDID || sbt.UserID != "" || !bytes.Equal(sbt.BootstrapToken, bootstrap) {
		t.Fatalf("fourth message: %s %q, want SetBootstrapToken %x for the device", mine[3].Type(), mine[3].RawBytes(), bootstrap)
	}

	if len(ueMsgs) != 2 || ueMsgs[0].Type() != mdm.MessageAuthenticate || ueMsgs[1].Type() != mdm.MessageTokenUpdate {
		t.Fatalf("User Enrollment device yielded %d messages, want Authenticate and TokenUpdate", len(ueMsgs))
	}
	if ueMsgs[1].EnrollmentKeys().EnrollmentID != ue.Keys.EnrollmentID {
		t.Fatalf("User Enrollment TokenUpdate keys %v, want EnrollmentID %s", ueMsgs[1].EnrollmentKeys(), ue.ID())
	}

	stop := errors.New("stop here")
	calls := 0
	err = s.RetrieveMigrationCheckins(ctx, func([]byte) error { calls++; return stop })
	if !errors.Is(err, stop) || calls != 1 {
		t.Fatalf("yield error: got %v after %d calls, want it returned after 1", err, calls)
	}
}
