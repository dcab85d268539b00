package storagetest

import (
	"bytes"
	"context"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/picomdm/picomdm/mdm"
	"github.com/picomdm/picomdm/storage"
)

// wantAnswer hands c its next command, which must be want, and stores c's
// report of it with status: one turn of the protocol's exchange.
func wantAnswer(t testing.TB, s storage.Store, c *Channel, want *mdm.Command, status string) {
	t.Helper()
	wantNext(t, s, c, want)
	mustReport(t, s, c, want.CommandUUID, status)
}

// enrolledWithQueue enrolls a new device and queues it one new command
// per request type, in order.
func enrolledWithQueue(t testing.TB, s storage.Store, requestTypes ...string) (*Channel, []*mdm.Command) {
	t.Helper()
	d := NewDevice()
	Enroll(t, s, d)
	cmds := make([]*mdm.Command, len(requestTypes))
	for i, rt := range requestTypes {
		cmds[i] = NewCommand(rt)
		mustEnqueue(t, s, cmds[i], d.ID())
	}
	return d, cmds
}

// testQueueFIFO: commands come back in strict enqueue order, even when
// enqueued back to back (same timestamp at any clock resolution) and when
// their CommandUUIDs sort the other way round.
func testQueueFIFO(t *testing.T, s storage.Store) {
	d := NewDevice()
	wantNone(t, s, d) // an enrollment the store has never seen
	Enroll(t, s, d)
	wantNone(t, s, d)

	cmds := make([]*mdm.Command, 40)
	for i := range cmds {
		cmds[i] = NewCommand("ProfileList")
	}
	// Enqueue in descending CommandUUID order, so a backend that breaks
	// timestamp ties by UUID returns them in the wrong order.
	slices.SortFunc(cmds, func(a, b *mdm.Command) int { return strings.Compare(b.CommandUUID, a.CommandUUID) })
	for _, c := range cmds {
		mustEnqueue(t, s, c, d.ID())
	}
	for _, c := range cmds {
		wantNext(t, s, d, c)
		// With nothing NotNow'd, skipNotNow changes nothing.
		wantAnswer(t, s, d, c, mdm.StatusAcknowledged)
	}
	wantNone(t, s, d)
	wantNone(t, s, d)
}

// testQueueFIFOInterleaved: per-enrollment FIFO holds when single- and
// multi-target enqueues to several enrollments interleave.
func testQueueFIFOInterleaved(t *testing.T, s storage.Store) {
	d1, d2 := NewDevice(), NewDevice()
	Enroll(t, s, d1, d2)
	a, b, c, d := NewCommand("A"), NewCommand("B"), NewCommand("C"), NewCommand("D")
	mustEnqueue(t, s, a, d1.ID(), d2.ID())
	mustEnqueue(t, s, b, d2.ID())
	mustEnqueue(t, s, c, d1.ID())
	mustEnqueue(t, s, d, d2.ID(), d1.ID())
	for _, step := range []struct {
		ch   *Channel
		want []*mdm.Command
	}{{d1, []*mdm.Command{a, c, d}}, {d2, []*mdm.Command{a, b, d}}} {
		for _, cmd := range step.want {
			wantAnswer(t, s, step.ch, cmd, mdm.StatusAcknowledged)
		}
		wantNone(t, s, step.ch)
	}
}

// testQueueByteExact: the bytes delivered are the bytes enqueued, and the
// store keeps its own copy (callers may reuse their buffers).
func testQueueByteExact(t *testing.T, s storage.Store) {
	d := NewDevice()
	Enroll(t, s, d)
	cmd := NewCommand("InstallProfile")
	want := &mdm.Command{CommandUUID: cmd.CommandUUID, Command: cmd.Command, Raw: bytes.Clone(cmd.Raw)}
	mustEnqueue(t, s, cmd, d.ID())
	clear(cmd.Raw) // the API handler's buffer, reused after the call
	wantNext(t, s, d, want)

	got, err := s.RetrieveNextCommand(d.Request())
	if err != nil || got == nil {
		t.Fatalf("next command: %v, %v", got, err)
	}
	clear(got.Raw) // a caller scribbling on what it was handed
	wantNext(t, s, d, want)
}

// testQueueAtLeastOnce: a command handed out but not answered is handed
// out again.
func testQueueAtLeastOnce(t *testing.T, s storage.Store) {
	d, cmds := enrolledWithQueue(t, s, "A", "B")
	a, b := cmds[0], cmds[1]
	wantNext(t, s, d, a)
	wantNext(t, s, d, a) // the device never answered: again
	mustIdle(t, s, d)
	wantAnswer(t, s, d, a, mdm.StatusAcknowledged)
	wantNext(t, s, d, b)
}

// testQueueFinalStatuses: every Status but Idle and NotNow is final.
func testQueueFinalStatuses(t *testing.T, s storage.Store) {
	for _, status := range []string{
		mdm.StatusAcknowledged,
		mdm.StatusError,
		mdm.StatusCommandFormatError,
		"SomeFutureStatus", // unknown to us, but not empty, Idle or NotNow
	} {
		t.Run(status, func(t *testing.T) {
			d, cmds := enrolledWithQueue(t, s, "A", "B")
			a, b := cmds[0], cmds[1]
			wantAnswer(t, s, d, a, status)
			wantNext(t, s, d, b)
			wantNext(t, s, d, b)
			mustIdle(t, s, d)
			wantNext(t, s, d, b) // a never comes back
			mustReport(t, s, d, b.CommandUUID, status)
			wantNone(t, s, d)
		})
	}
}

// testQueueNotNow: right after a NotNow, NotNow'd commands are skipped
// for the rest of the exchange (even after other commands are answered);
// the next Idle makes them eligible again in their original place; a later
// final status is final.
func testQueueNotNow(t *testing.T, s storage.Store) {
	t.Run("SkipThenIdle", func(t *testing.T) {
		d, cmds := enrolledWithQueue(t, s, "A", "B", "C")
		a, b, c := cmds[0], cmds[1], cmds[2]
		wantAnswer(t, s, d, a, mdm.StatusNotNow)
		wantAnswer(t, s, d, b, mdm.StatusNotNow)
		wantAnswer(t, s, d, c, mdm.StatusNotNow)
		wantNone(t, s, d) // everything left is NotNow'd
		// The next Idle: NotNow'd commands are eligible again, in order.
		mustIdle(t, s, d)
		wantAnswer(t, s, d, a, mdm.StatusAcknowledged)
		wantAnswer(t, s, d, b, mdm.StatusAcknowledged)
		wantNext(t, s, d, c)
		// NotNow again, then final.
		mustReport(t, s, d, c.CommandUUID, mdm.StatusNotNow)
		wantNone(t, s, d)
		mustIdle(t, s, d)
		wantAnswer(t, s, d, c, mdm.StatusError)
		wantNone(t, s, d)
		mustIdle(t, s, d)
		wantNone(t, s, d)
	})
	t.Run("RestOfExchange", func(t *testing.T) {
		d, cmds := enrolledWithQueue(t, s, "A", "B", "C")
		a, b, c := cmds[0], cmds[1], cmds[2]
		wantAnswer(t, s, d, a, mdm.StatusNotNow)
		wantNext(t, s, d, b)
		// Answering b does not bring a back within the same exchange.
		mustReport(t, s, d, b.CommandUUID, mdm.StatusAcknowledged)
		wantAnswer(t, s, d, c, mdm.StatusAcknowledged)
		wantNone(t, s, d)
		mustIdle(t, s, d)
		wantAnswer(t, s, d, a, mdm.StatusAcknowledged)
		wantNone(t, s, d)
	})
	t.Run("OriginalPosition", func(t *testing.T) {
		d, cmds := enrolledWithQueue(t, s, "A", "B")
		a, b := cmds[0], cmds[1]
		wantAnswer(t, s, d, a, mdm.StatusNotNow)
		wantNext(t, s, d, b) // handed out, not answered
		// A command enqueued after the NotNow is not NotNow'd.
		c := NewCommand("C")
		mustEnqueue(t, s, c, d.ID())
		wantNext(t, s, d, b)
		mustIdle(t, s, d)
		wantNext(t, s, d, a) // a before b: its original place
		mustReport(t, s, d, a.CommandUUID, mdm.StatusNotNow)
		mustReport(t, s, d, a.CommandUUID, mdm.StatusNotNow) // twice is fine
		wantAnswer(t, s, d, b, mdm.StatusAcknowledged)
		wantAnswer(t, s, d, c, mdm.StatusAcknowledged)
		wantNone(t, s, d)
		mustIdle(t, s, d)
		wantAnswer(t, s, d, a, mdm.StatusAcknowledged)
		wantNone(t, s, d)
	})
	t.Run("PerEnrollment", func(t *testing.T) {
		d := NewDevice()
		Enroll(t, s, d)
		u := d.NewUser()
		Enroll(t, s, u)
		cmd := NewCommand("A")
		mustEnqueue(t, s, cmd, d.ID(), u.ID())
		wantAnswer(t, s, d, cmd, mdm.StatusNotNow)
		wantNone(t, s, d)
		// The user channel's copy is not deferred by the device's NotNow.
		wantNext(t, s, u, cmd)
		// Nor does the user channel's Idle end the device's deferral.
		mustIdle(t, s, u)
		wantNone(t, s, d)
	})
}

// testQueueIdle: an Idle report records no result, even one that (wrongly)
// names a pending command; it only ends a NotNow deferral.
func testQueueIdle(t *testing.T, s storage.Store) {
	d := NewDevice()
	Enroll(t, s, d)
	mustIdle(t, s, d) // empty queue
	wantNone(t, s, d)
	a, b := NewCommand("A"), NewCommand("B")
	mustEnqueue(t, s, a, d.ID())
	mustEnqueue(t, s, b, d.ID())
	mustIdle(t, s, d)
	wantAnswer(t, s, d, a, mdm.StatusIdle) // Idle with a UUID
	wantAnswer(t, s, d, a, mdm.StatusNotNow)
	wantNext(t, s, d, b) // a deferred
	mustIdle(t, s, d)
	// The NotNow was not final: a is pending again, ahead of b.
	wantNext(t, s, d, a)
}

// testQueueUnknownAndDuplicateReports: reports for unknown commands, for
// already-final ones and for commands queued to someone else are harmless.
func testQueueUnknownAndDuplicateReports(t *testing.T, s storage.Store) {
	d, other := NewDevice(), NewDevice()
	Enroll(t, s, d, other)
	a, b, theirs := NewCommand("A"), NewCommand("B"), NewCommand("Theirs")
	mustEnqueue(t, s, a, d.ID())
	mustEnqueue(t, s, b, d.ID())
	mustEnqueue(t, s, theirs, other.ID())

	for _, status := range []string{mdm.StatusAcknowledged, mdm.StatusNotNow, mdm.StatusError} {
		mustReport(t, s, d, NewUUID(), status) // unknown CommandUUID
	}
	wantNext(t, s, d, a)
	wantNext(t, s, d, a)

	mustReport(t, s, d, a.CommandUUID, mdm.StatusAcknowledged)
	// Duplicates of a final command, including a late NotNow, change
	// nothing: the first final result wins and a stays out of the queue.
	mustReport(t, s, d, a.CommandUUID, mdm.StatusAcknowledged)
	mustReport(t, s, d, a.CommandUUID, mdm.StatusError)
	mustReport(t, s, d, a.CommandUUID, mdm.StatusNotNow)
	wantNext(t, s, d, b)
	wantNext(t, s, d, b)
	mustIdle(t, s, d)
	wantNext(t, s, d, b)

	// A command of another enrollment reported by d: no effect on either.
	mustReport(t, s, d, theirs.CommandUUID, mdm.StatusAcknowledged)
	mustReport(t, s, d, theirs.CommandUUID, mdm.StatusNotNow)
	wantNext(t, s, other, theirs)
	wantNext(t, s, other, theirs)
	wantNext(t, s, d, b)

	// A report from an enrollment the store has never seen.
	stranger := NewDevice()
	mustReport(t, s, stranger, b.CommandUUID, mdm.StatusAcknowledged)
	mustIdle(t, s, stranger)
	wantNone(t, s, stranger)
	wantNext(t, s, d, b)
}

// testQueuePerChannel: every channel kind has its own queue; a device
// channel's queue and its user channels' queues never mix.
func testQueuePerChannel(t *testing.T, s storage.Store) {
	dev := NewDevice()
	user := dev.NewUser()
	ipad := NewDevice()
	shared := ipad.NewSharedIPadUser("shared-" + strings.ToLower(NewUUID()[:8]))
	ue := NewUserEnrollmentDevice()
	ueUser := ue.NewUser()
	all := []*Channel{dev, user, ipad, shared, ue, ueUser}
	Enroll(t, s, all...)

	wantTypes := []mdm.EnrollType{mdm.Device, mdm.User, mdm.Device, mdm.SharedIPad, mdm.UserEnrollmentDevice, mdm.UserEnrollment}
	for i, c := range all {
		if c.EnrollID.Type != wantTypes[i] {
			t.Fatalf("helper built %s as %s, want %s", c.ID(), c.EnrollID.Type, wantTypes[i])
		}
	}
	wantPushable(t, s, all, all...)

	cmds := make(map[string]*mdm.Command)
	for _, c := range all {
		cmds[c.ID()] = NewCommand("For" + string(c.EnrollID.Type))
		mustEnqueue(t, s, cmds[c.ID()], c.ID())
	}
	shared2 := NewCommand("Both")
	mustEnqueue(t, s, shared2, ue.ID(), ueUser.ID())
	for _, c := range all {
		wantAnswer(t, s, c, cmds[c.ID()], mdm.StatusAcknowledged)
	}
	wantNext(t, s, ue, shared2)
	wantNext(t, s, ueUser, shared2)
	mustReport(t, s, ue, shared2.CommandUUID, mdm.StatusAcknowledged)
	wantNone(t, s, ue)
	wantNext(t, s, ueUser, shared2) // the user channel has not answered
	mustReport(t, s, ueUser, shared2.CommandUUID, mdm.StatusAcknowledged)
	for _, c := range all {
		wantNone(t, s, c)
	}
}

// testEnqueueMultiTarget: one call queues to each ID, disabled-but-known
// enrollments included, and duplicate IDs in a call queue once.
func testEnqueueMultiTarget(t *testing.T, s storage.Store) {
	d1, d2 := NewDevice(), NewDevice()
	u1 := d1.NewUser()
	off := NewDevice()
	Enroll(t, s, d1, d2, u1, off)
	mustDisable(t, s, off)

	cmd := NewCommand("DeviceInformation")
	ids := []string{d1.ID(), d2.ID(), u1.ID(), off.ID(), d1.ID()}
	errs, err := s.EnqueueCommand(context.Background(), ids, cmd)
	if err != nil {
		t.Fatalf("enqueue: %v", err)
	}
	for _, id := range ids {
		if errs[id] != nil {
			t.Fatalf("enqueue to known %s: %v", id, errs[id])
		}
	}
	for _, c := range []*Channel{d1, d2, u1} {
		wantAnswer(t, s, c, cmd, mdm.StatusAcknowledged)
		wantNone(t, s, c) // queued once, though d1 was named twice
	}
	// The disabled enrollment got it too; it sees it once re-enabled.
	mustTokenUpdate(t, s, off, nil)
	wantNext(t, s, off, cmd)
}

// testEnqueueUnknownIDs: IDs that are not known enrollments (never sent a
// TokenUpdate) get a per-ID ErrNotFound; the others are queued.
func testEnqueueUnknownIDs(t *testing.T, s storage.Store) {
	known := NewDevice()
	Enroll(t, s, known)
	authOnly := NewDevice() // Authenticate but no TokenUpdate yet
	mustAuthenticate(t, s, authOnly)
	unknown := []string{
		NewUUID(),
		authOnly.ID(),
		known.ID() + ":" + NewUUID(), // a user channel never seen
		"../" + NewUUID(),
		"",
	}
	cmd := NewCommand("DeviceInformation")
	errs, err := s.EnqueueCommand(context.Background(), append([]string{known.ID()}, unknown...), cmd)
	if err != nil {
		t.Fatalf("enqueue: %v", err)
	}
	if errs[known.ID()] != nil {
		t.Fatalf("enqueue to known %s: %v", known.ID(), errs[known.ID()])
	}
	for _, id := range unknown {
		errNotFoundFor(t, errs, id)
	}
	wantNext(t, s, known, cmd)
	// authOnly becomes known at its TokenUpdate, but was not queued to.
	mustTokenUpdate(t, s, authOnly, nil)
	wantNone(t, s, authOnly)
}

// testEnqueueExistingCommandUUID: a CommandUUID can be enqueued once;
// again is ErrCommandExists and changes nothing.
func testEnqueueExistingCommandUUID(t *testing.T, s storage.Store) {
	d1, d2 := NewDevice(), NewDevice()
	Enroll(t, s, d1, d2)
	cmd := NewCommand("ProfileList")
	mustEnqueue(t, s, cmd, d1.ID())
	for _, again := range []*mdm.Command{cmd, NewCommandWithUUID(cmd.CommandUUID, "EraseDevice")} {
		_, err := s.EnqueueCommand(context.Background(), []string{d1.ID(), d2.ID()}, again)
		if !errors.Is(err, storage.ErrCommandExists) {
			t.Fatalf("enqueue of existing %s: %v, want ErrCommandExists", cmd.CommandUUID, err)
		}
	}
	wantNone(t, s, d2)
	wantNext(t, s, d1, cmd) // the original bytes
	mustReport(t, s, d1, cmd.CommandUUID, mdm.StatusAcknowledged)
	wantNone(t, s, d1) // queued once

	// Still taken once answered everywhere.
	_, err := s.EnqueueCommand(context.Background(), []string{d2.ID()}, cmd)
	if !errors.Is(err, storage.ErrCommandExists) {
		t.Fatalf("enqueue of answered %s: %v, want ErrCommandExists", cmd.CommandUUID, err)
	}
	wantNone(t, s, d2)
}

// testUnusualEnrollmentIDs: enrollment IDs are opaque strings; path
// separators, dots, colons, spaces, non-ASCII and case differences must
// neither break a backend nor make two IDs collide.
func testUnusualEnrollmentIDs(t *testing.T, s storage.Store) {
	u := NewUUID()
	udids := []string{
		"../" + u,
		"../../" + u + "/x",
		"./" + u,
		u + "/..",
		`a\b` + u,
		"with space " + u,
		"Grüße ✓ " + u,
		"%2e%2e" + u,
		"UPPER-" + u,
		"upper-" + u, // differs from the one above only in case
		// Long, but within the 255 bytes SQL schemas commonly allow an
		// ID; long enough to overflow a file name once escaped.
		strings.Repeat("long", 30) + u,
	}
	var devices []*Channel
	for _, udid := range udids {
		d := NewDeviceWithUDID(udid)
		devices = append(devices, d, d.NewUserWithID("user/../:"+NewUUID()))
	}
	Enroll(t, s, devices...)
	wantPushable(t, s, devices, devices...)
	cmds := make([]*mdm.Command, len(devices))
	for i, d := range devices {
		cmds[i] = NewCommand("DeviceInformation")
		mustEnqueue(t, s, cmds[i], d.ID())
	}
	for i, d := range devices {
		wantNext(t, s, d, cmds[i])
		wantTally(t, s, d, 1)
		mustReport(t, s, d, cmds[i].CommandUUID, mdm.StatusAcknowledged)
		wantNone(t, s, d)
	}
}
