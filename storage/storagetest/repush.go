package storagetest

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/picomdm/picomdm/mdm"
	"github.com/picomdm/picomdm/storage"
)

// RunRepush runs the storage.RepushStore conformance tests against store,
// each behaviour as its own subtest. Like Run, it works on fresh random
// enrollments, reads only theirs out of DueForRepush, and disables them
// when it ends, so it may run more than once against one store.
//
// Semantics it fixes, beyond the interface documentation:
//   - "Seen" is the backend's own record of the enrollment's last request.
//     A check-in (Authenticate, TokenUpdate, CheckOut) is recorded at
//     once, so a TokenUpdate after the push makes the enrollment not due
//     at the next DueForRepush. Command reports count too, but a backend
//     may record them lazily (the SQL backends at most once a minute), so
//     a device that reports right after a push may be pushed once more;
//     the suite does not test that case.
//   - A command answered with a final status is no longer pending; an
//     enrollment whose queue is empty is not due.
//   - The returned records carry PushedAt, Repushes and NextRepushAt as
//     recorded (times to within a millisecond).
func RunRepush(t *testing.T, store storage.Store) {
	tests := []struct {
		name string
		fn   func(*testing.T, storage.Store)
	}{
		{"Conditions", testRepushConditions},
		{"SeenAfterPush", testRepushSeenAfterPush},
		{"Acknowledged", testRepushAcknowledged},
		{"OrderAndLimit", testRepushOrderAndLimit},
		{"UnknownAndReplace", testRepushUnknownAndReplace},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, store) })
	}
}

// repushDevices returns n enrolled devices, each with a pending command,
// disabled again when the test ends so that a later run never sees them
// due.
func repushDevices(t *testing.T, s storage.Store, n int) []*Channel {
	t.Helper()
	devs := make([]*Channel, n)
	for i := range devs {
		devs[i] = NewDevice()
	}
	Enroll(t, s, devs...)
	t.Cleanup(func() {
		for _, d := range devs {
			mustDisable(t, s, d)
		}
	})
	return devs
}

func mustRecordPushes(t testing.TB, s storage.Store, records ...storage.PushRecord) {
	t.Helper()
	if err := s.RecordPushes(context.Background(), records); err != nil {
		t.Fatalf("RecordPushes(%d records): %v", len(records), err)
	}
}

// dueAmong returns the records DueForRepush(now, limit) returns for
// channels, in the order it returns them.
func dueAmong(t testing.TB, s storage.Store, now time.Time, limit int, channels ...*Channel) []storage.PushRecord {
	t.Helper()
	recs, err := s.DueForRepush(context.Background(), now, limit)
	if err != nil {
		t.Fatalf("DueForRepush(%v, %d): %v", now, limit, err)
	}
	if len(recs) > limit {
		t.Fatalf("DueForRepush(limit %d): %d records", limit, len(recs))
	}
	mine := make(map[string]bool)
	for _, c := range channels {
		mine[c.ID()] = true
	}
	var got []storage.PushRecord
	for _, r := range recs {
		if mine[r.ID] {
			got = append(got, r)
		}
	}
	return got
}

func recordIDs(recs []storage.PushRecord) []string {
	ids := make([]string, len(recs))
	for i, r := range recs {
		ids[i] = r.ID
	}
	return ids
}

func channelIDs(channels ...*Channel) []string {
	ids := make([]string, len(channels))
	for i, c := range channels {
		ids[i] = c.ID()
	}
	return ids
}

// wantDue asserts that, of channels, exactly want are due at now, in that
// order.
func wantDue(t testing.TB, s storage.Store, now time.Time, channels []*Channel, want ...*Channel) []storage.PushRecord {
	t.Helper()
	got := dueAmong(t, s, now, storage.MaxPageLimit, channels...)
	if !slices.Equal(recordIDs(got), channelIDs(want...)) {
		t.Fatalf("DueForRepush(%v) = %q, want %q", now, recordIDs(got), channelIDs(want...))
	}
	return got
}

func wantRecord(t testing.TB, got, want storage.PushRecord) {
	t.Helper()
	if got.ID != want.ID || got.Repushes != want.Repushes || !sameTime(got.PushedAt, want.PushedAt) || !sameTime(got.NextRepushAt, want.NextRepushAt) {
		t.Fatalf("push record = %+v, want %+v", got, want)
	}
}

// testRepushConditions: only an enabled enrollment with a valid token and
// a pending command, pushed since it was last seen, is due, and only once
// its NextRepushAt has come.
func testRepushConditions(t *testing.T, s storage.Store) {
	devs := repushDevices(t, s, 5)
	// devs[1] gets no command: its queue is empty.
	due, disabled, invalid, answered := devs[0], devs[2], devs[3], devs[4]
	for _, d := range []*Channel{due, disabled, invalid} {
		mustEnqueue(t, s, NewCommand("DeviceInformation"), d.ID())
	}
	mustDisable(t, s, disabled)
	mustInvalidate(t, s, invalid, "Unregistered")
	cmd := NewCommand("DeviceInformation")
	mustEnqueue(t, s, cmd, answered.ID())
	wantNext(t, s, answered, cmd)
	mustReport(t, s, answered, cmd.CommandUUID, mdm.StatusError) // a final answer
	wantNone(t, s, answered)

	pushedAt := time.Now() // after every request above
	next := pushedAt.Add(time.Minute)
	var records []storage.PushRecord
	for _, d := range devs {
		records = append(records, storage.PushRecord{ID: d.ID(), PushedAt: pushedAt, NextRepushAt: next})
	}
	mustRecordPushes(t, s, records...)

	wantDue(t, s, next.Add(-time.Second), devs)
	got := wantDue(t, s, next, devs, due)
	wantRecord(t, got[0], records[0])
	wantDue(t, s, next.Add(time.Hour), devs, due)

	// The invalid token's next TokenUpdate clears the mark, but it is a
	// request after the push; the next push makes it due.
	mustTokenUpdate(t, s, invalid, nil)
	wantDue(t, s, next, devs, due)
	pushedAt = time.Now()
	mustRecordPushes(t, s, storage.PushRecord{ID: invalid.ID(), PushedAt: pushedAt, Repushes: 1, NextRepushAt: next.Add(-time.Second)})
	got = wantDue(t, s, next, devs, invalid, due)
	wantRecord(t, got[0], storage.PushRecord{ID: invalid.ID(), PushedAt: pushedAt, Repushes: 1, NextRepushAt: next.Add(-time.Second)})
}

// testRepushSeenAfterPush: a device request after the push makes the
// enrollment not due; a new push makes it due again.
func testRepushSeenAfterPush(t *testing.T, s storage.Store) {
	devs := repushDevices(t, s, 2)
	d, other := devs[0], devs[1]
	mustEnqueue(t, s, NewCommand("DeviceInformation"), d.ID(), other.ID())
	pushedAt := time.Now()
	mustRecordPushes(t, s,
		storage.PushRecord{ID: d.ID(), PushedAt: pushedAt, NextRepushAt: pushedAt},
		storage.PushRecord{ID: other.ID(), PushedAt: pushedAt, NextRepushAt: pushedAt.Add(-time.Hour)})
	now := pushedAt.Add(time.Hour)
	wantDue(t, s, now, devs, other, d)

	mustTokenUpdate(t, s, d, nil)
	wantDue(t, s, now, devs, other)

	// A push recorded before the device's last request: not due either.
	mustRecordPushes(t, s, storage.PushRecord{ID: d.ID(), PushedAt: pushedAt, NextRepushAt: pushedAt})
	wantDue(t, s, now, devs, other)

	pushedAt = time.Now()
	mustRecordPushes(t, s, storage.PushRecord{ID: d.ID(), PushedAt: pushedAt, Repushes: 2, NextRepushAt: pushedAt})
	wantDue(t, s, now, devs, other, d)
}

// testRepushAcknowledged: once the device answered its last pending
// command, it is no longer due.
func testRepushAcknowledged(t *testing.T, s storage.Store) {
	devs := repushDevices(t, s, 1)
	d := devs[0]
	cmd := NewCommand("InstallProfile")
	mustEnqueue(t, s, cmd, d.ID())
	pushedAt := time.Now()
	mustRecordPushes(t, s, storage.PushRecord{ID: d.ID(), PushedAt: pushedAt, NextRepushAt: pushedAt})
	now := pushedAt.Add(time.Hour)
	wantDue(t, s, now, devs, d)

	wantNext(t, s, d, cmd)
	mustReport(t, s, d, cmd.CommandUUID, mdm.StatusAcknowledged)
	wantDue(t, s, now, devs)
}

// testRepushOrderAndLimit: DueForRepush returns the earliest NextRepushAt
// first, at most limit records.
func testRepushOrderAndLimit(t *testing.T, s storage.Store) {
	devs := repushDevices(t, s, 3)
	for _, d := range devs {
		mustEnqueue(t, s, NewCommand("DeviceInformation"), d.ID())
	}
	// Long ago, so no other enrollment of a shared store comes first.
	old := time.Date(2001, 2, 3, 4, 5, 6, 0, time.UTC)
	pushedAt := time.Now()
	records := []storage.PushRecord{
		{ID: devs[0].ID(), PushedAt: pushedAt, Repushes: 2, NextRepushAt: old.Add(2 * time.Hour)},
		{ID: devs[1].ID(), PushedAt: pushedAt, Repushes: 0, NextRepushAt: old},
		{ID: devs[2].ID(), PushedAt: pushedAt, Repushes: 1, NextRepushAt: old.Add(time.Hour)},
	}
	mustRecordPushes(t, s, records...)
	now := time.Now().Add(time.Hour)

	got := wantDue(t, s, now, devs, devs[1], devs[2], devs[0])
	for i, r := range []storage.PushRecord{records[1], records[2], records[0]} {
		wantRecord(t, got[i], r)
	}
	for limit, want := range map[int][]*Channel{1: {devs[1]}, 2: {devs[1], devs[2]}} {
		recs, err := s.DueForRepush(context.Background(), now, limit)
		if err != nil {
			t.Fatalf("DueForRepush(limit %d): %v", limit, err)
		}
		if !slices.Equal(recordIDs(recs), channelIDs(want...)) {
			t.Fatalf("DueForRepush(limit %d) = %q, want %q", limit, recordIDs(recs), channelIDs(want...))
		}
	}
	wantDue(t, s, old.Add(90*time.Minute), devs, devs[1], devs[2])
	wantDue(t, s, old.Add(-time.Second), devs)
}

// testRepushUnknownAndReplace: RecordPushes skips unknown enrollments and
// replaces an enrollment's earlier record.
func testRepushUnknownAndReplace(t *testing.T, s storage.Store) {
	devs := repushDevices(t, s, 1)
	d := devs[0]
	unknown := NewDevice()
	mustEnqueue(t, s, NewCommand("DeviceInformation"), d.ID())
	mustRecordPushes(t, s) // none: nothing to do

	pushedAt := time.Now()
	first := storage.PushRecord{ID: d.ID(), PushedAt: pushedAt, NextRepushAt: pushedAt.Add(time.Minute)}
	mustRecordPushes(t, s, storage.PushRecord{ID: unknown.ID(), PushedAt: pushedAt, NextRepushAt: pushedAt}, first)
	channels := []*Channel{d, unknown}
	got := wantDue(t, s, pushedAt.Add(2*time.Minute), channels, d)
	wantRecord(t, got[0], first)

	second := storage.PushRecord{ID: d.ID(), PushedAt: time.Now(), Repushes: 3, NextRepushAt: pushedAt.Add(time.Hour)}
	mustRecordPushes(t, s, second)
	wantDue(t, s, pushedAt.Add(2*time.Minute), channels)
	got = wantDue(t, s, pushedAt.Add(2*time.Hour), channels, d)
	wantRecord(t, got[0], second)
}
