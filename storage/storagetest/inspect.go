package storagetest

import (
	"bytes"
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/picomdm/picomdm/mdm"
	"github.com/picomdm/picomdm/storage"
)

// inspectionStore is what RunInspection drives.
type inspectionStore interface {
	storage.Store
	storage.InspectionStore
}

// RunInspection runs the storage.InspectionStore conformance tests against
// store, each behaviour as its own subtest. Like Run, it works on fresh
// random enrollments, topics and CommandUUIDs, filters every listing by
// them, and may run more than once against one store.
//
// Semantics it fixes, beyond the interface documentation:
//   - ListEnrollments lists channels that sent a TokenUpdate, enabled or
//     not. A user channel's SerialNumber and IdentityCertNotAfter are its
//     device's; the Serial filter matches a device and its user channels.
//   - Page.Limit bounds a page; the next cursor is "" exactly when no
//     further item exists (a page that ends the listing never comes with
//     a cursor to an empty page). A cursor the backend did not issue fails
//     with ErrBadCursor.
//   - QueuedCommand.Status is "NotNow" once the enrollment answered the
//     command NotNow (it stays so after an Idle), NotNowCount counts them.
//   - CommandState: "pending" and "NotNow" states have a zero AnsweredAt
//     and a nil Result; final states have both. An enrollment whose queue
//     entry was cleared or cancelled before a final answer has no state.
//   - RetrieveCommandResult returns pending states too (State "pending",
//     nil Result); ErrNotFound when the command was never queued to the
//     enrollment, or was cancelled or cleared for it.
//   - CancelCommand of a command already cancelled for the enrollment
//     fails with ErrNotFound.
func RunInspection(t *testing.T, store inspectionStore) {
	tests := []struct {
		name string
		fn   func(*testing.T, inspectionStore)
	}{
		{"EnrollmentFields", testInspectEnrollmentFields},
		{"EnrollmentUnknown", testInspectEnrollmentUnknown},
		{"ListFilters", testInspectListFilters},
		{"ListPagination", testInspectListPagination},
		{"Queue", testInspectQueue},
		{"ClearQueue", testInspectClearQueue},
		{"CancelCommand", testInspectCancelCommand},
		{"RetrieveCommand", testInspectRetrieveCommand},
		{"CommandStates", testInspectCommandStates},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, store) })
	}
}

func retrieveEnrollment(t testing.TB, s inspectionStore, c *Channel) *storage.EnrollmentInfo {
	t.Helper()
	info, err := s.RetrieveEnrollment(context.Background(), c.ID())
	if err != nil {
		t.Fatalf("RetrieveEnrollment(%s): %v", c.ID(), err)
	}
	if info == nil {
		t.Fatalf("RetrieveEnrollment(%s): nil", c.ID())
	}
	return info
}

// listAll lists every enrollment matching f, page by page with limit, and
// checks the pagination contract: no page larger than limit, the last
// cursor "", no duplicates.
func listAll(t testing.TB, s inspectionStore, f storage.EnrollmentFilter, limit int) (ids []string, pages int) {
	t.Helper()
	cursor := ""
	seen := make(map[string]bool)
	for {
		items, next, err := s.ListEnrollments(context.Background(), f, storage.Page{Cursor: cursor, Limit: limit})
		if err != nil {
			t.Fatalf("ListEnrollments(%+v, cursor %q, limit %d): %v", f, cursor, limit, err)
		}
		pages++
		if len(items) > limit {
			t.Fatalf("ListEnrollments: %d items, limit %d", len(items), limit)
		}
		for _, it := range items {
			if seen[it.ID] {
				t.Fatalf("ListEnrollments: %s listed twice", it.ID)
			}
			seen[it.ID] = true
			ids = append(ids, it.ID)
		}
		if next == "" {
			return ids, pages
		}
		if len(items) == 0 {
			t.Fatalf("ListEnrollments: empty page with next cursor %q", next)
		}
		if pages > 100 {
			t.Fatal("ListEnrollments: more than 100 pages")
		}
		cursor = next
	}
}

func wantIDs(t testing.TB, what string, got []string, want ...*Channel) {
	t.Helper()
	w := make([]string, len(want))
	for i, c := range want {
		w[i] = c.ID()
	}
	g := slices.Clone(got)
	slices.Sort(g)
	slices.Sort(w)
	if !slices.Equal(g, w) {
		t.Fatalf("%s: got %q, want %q", what, g, w)
	}
}

// testInspectEnrollmentFields: every field of EnrollmentInfo, for a
// device channel and a user channel.
func testInspectEnrollmentFields(t *testing.T, s inspectionStore) {
	ctx := context.Background()
	d := NewDevice()
	u := d.NewUser()
	topic := NewTopic()
	d.Push.Topic, u.Push.Topic = topic, topic
	before := time.Now().Add(-time.Minute)
	Enroll(t, s, d, u)
	mustTokenUpdate(t, s, d, nil) // tally 2
	if err := s.InvalidatePushToken(ctx, u.ID(), "Unregistered"); err != nil {
		t.Fatalf("InvalidatePushToken: %v", err)
	}
	a, b := NewCommand("ProfileList"), NewCommand("DeviceInformation")
	mustEnqueue(t, s, a, d.ID())
	mustEnqueue(t, s, b, d.ID(), u.ID())
	wantNext(t, s, d, a)
	mustReport(t, s, d, a.CommandUUID, mdm.StatusNotNow) // still pending

	di := retrieveEnrollment(t, s, d)
	if di.ID != d.ID() || di.Type != mdm.Device || di.ParentID != "" {
		t.Errorf("device: ID %q Type %q ParentID %q", di.ID, di.Type, di.ParentID)
	}
	if di.SerialNumber != d.SerialNumber {
		t.Errorf("device: SerialNumber %q, want %q", di.SerialNumber, d.SerialNumber)
	}
	if di.Topic != topic {
		t.Errorf("device: Topic %q, want %q", di.Topic, topic)
	}
	if !di.Enabled {
		t.Error("device: not enabled")
	}
	if di.TokenUpdateTally != 2 {
		t.Errorf("device: TokenUpdateTally %d, want 2", di.TokenUpdateTally)
	}
	if di.EnrolledAt.IsZero() || di.EnrolledAt.Before(before) {
		t.Errorf("device: EnrolledAt %v", di.EnrolledAt)
	}
	if di.LastSeenAt.IsZero() || di.LastSeenAt.Before(before) {
		t.Errorf("device: LastSeenAt %v", di.LastSeenAt)
	}
	if !di.PushTokenValid {
		t.Error("device: PushTokenValid false")
	}
	if !di.IdentityCertNotAfter.Equal(d.Cert.NotAfter) {
		t.Errorf("device: IdentityCertNotAfter %v, want %v", di.IdentityCertNotAfter, d.Cert.NotAfter)
	}
	if di.PendingCommands != 2 {
		t.Errorf("device: PendingCommands %d, want 2", di.PendingCommands)
	}

	ui := retrieveEnrollment(t, s, u)
	if ui.ID != u.ID() || ui.Type != mdm.User || ui.ParentID != d.ID() {
		t.Errorf("user: ID %q Type %q ParentID %q", ui.ID, ui.Type, ui.ParentID)
	}
	if ui.SerialNumber != d.SerialNumber {
		t.Errorf("user: SerialNumber %q, want the device's %q", ui.SerialNumber, d.SerialNumber)
	}
	if ui.Topic != topic || !ui.Enabled || ui.TokenUpdateTally != 1 {
		t.Errorf("user: Topic %q Enabled %v TokenUpdateTally %d", ui.Topic, ui.Enabled, ui.TokenUpdateTally)
	}
	if ui.PushTokenValid {
		t.Error("user: PushTokenValid true after InvalidatePushToken")
	}
	if !ui.IdentityCertNotAfter.Equal(d.Cert.NotAfter) {
		t.Errorf("user: IdentityCertNotAfter %v, want the device's %v", ui.IdentityCertNotAfter, d.Cert.NotAfter)
	}
	if ui.PendingCommands != 1 {
		t.Errorf("user: PendingCommands %d, want 1", ui.PendingCommands)
	}
	if ui.EnrolledAt.IsZero() || ui.LastSeenAt.IsZero() {
		t.Errorf("user: EnrolledAt %v LastSeenAt %v", ui.EnrolledAt, ui.LastSeenAt)
	}

	// The listing shows the same.
	items, _, err := s.ListEnrollments(ctx, storage.EnrollmentFilter{DeviceID: d.ID()}, storage.Page{Limit: 10})
	if err != nil {
		t.Fatalf("ListEnrollments: %v", err)
	}
	if len(items) != 2 {
		t.Fatalf("ListEnrollments: %d items, want 2", len(items))
	}
	for _, it := range items {
		want := di
		if it.ID == u.ID() {
			want = ui
		}
		if it.Type != want.Type || it.SerialNumber != want.SerialNumber || it.PendingCommands != want.PendingCommands ||
			it.PushTokenValid != want.PushTokenValid || !it.IdentityCertNotAfter.Equal(want.IdentityCertNotAfter) ||
			it.TokenUpdateTally != want.TokenUpdateTally || it.Topic != want.Topic {
			t.Errorf("listed %+v, retrieved %+v", it, *want)
		}
	}

	// CheckOut disables and restarts the tally.
	mustDisable(t, s, d)
	if di := retrieveEnrollment(t, s, d); di.Enabled || di.TokenUpdateTally != 0 {
		t.Errorf("after Disable: Enabled %v TokenUpdateTally %d", di.Enabled, di.TokenUpdateTally)
	}
	if ui := retrieveEnrollment(t, s, u); ui.Enabled {
		t.Error("user after device Disable: still enabled")
	}
}

// testInspectEnrollmentUnknown: every read and edit of an unknown
// enrollment fails with ErrNotFound.
func testInspectEnrollmentUnknown(t *testing.T, s inspectionStore) {
	ctx := context.Background()
	id := NewUUID()
	if _, err := s.RetrieveEnrollment(ctx, id); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("RetrieveEnrollment(unknown): %v, want ErrNotFound", err)
	}
	if _, err := s.RetrieveQueue(ctx, id); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("RetrieveQueue(unknown): %v, want ErrNotFound", err)
	}
	if _, err := s.ClearQueue(ctx, id); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("ClearQueue(unknown): %v, want ErrNotFound", err)
	}
	if err := s.CancelCommand(ctx, id, NewUUID()); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("CancelCommand(unknown): %v, want ErrNotFound", err)
	}
	// A device that authenticated but never sent a TokenUpdate is not
	// an enrollment yet.
	d := NewDevice()
	mustAuthenticate(t, s, d)
	if _, err := s.RetrieveEnrollment(ctx, d.ID()); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("RetrieveEnrollment(authenticated only): %v, want ErrNotFound", err)
	}
	if ids, _ := listAll(t, s, storage.EnrollmentFilter{DeviceID: d.ID()}, 10); len(ids) != 0 {
		t.Errorf("ListEnrollments(authenticated only): %q, want none", ids)
	}
}

// testInspectListFilters: each filter alone and combined with DeviceID.
func testInspectListFilters(t *testing.T, s inspectionStore) {
	d, d2 := NewDevice(), NewDevice()
	u1, u2 := d.NewUser(), d.NewUser()
	ue := NewUserEnrollmentDevice()
	topic := NewTopic()
	for _, c := range []*Channel{d, d2, u1, u2, ue} {
		c.Push.Topic = topic
	}
	Enroll(t, s, d, u1, u2, d2, ue)
	mustDisable(t, s, u2)

	byTopic := func(f storage.EnrollmentFilter) storage.EnrollmentFilter { f.Topic = topic; return f }
	byDevice := func(f storage.EnrollmentFilter) storage.EnrollmentFilter { f.DeviceID = d.ID(); return f }
	yes, no := true, false
	now := time.Now()
	for _, tc := range []struct {
		name string
		f    storage.EnrollmentFilter
		want []*Channel
	}{
		{"topic", byTopic(storage.EnrollmentFilter{}), []*Channel{d, d2, u1, u2, ue}},
		{"device_id", byDevice(storage.EnrollmentFilter{}), []*Channel{d, u1, u2}},
		{"device_id of other", storage.EnrollmentFilter{DeviceID: d2.ID()}, []*Channel{d2}},
		{"device_id of user enrollment", storage.EnrollmentFilter{DeviceID: ue.ID()}, []*Channel{ue}},
		{"type Device", byTopic(storage.EnrollmentFilter{Type: mdm.Device}), []*Channel{d, d2}},
		{"type User", byTopic(storage.EnrollmentFilter{Type: mdm.User}), []*Channel{u1, u2}},
		{"type User Enrollment (Device)", byTopic(storage.EnrollmentFilter{Type: mdm.UserEnrollmentDevice}), []*Channel{ue}},
		{"type User and device_id", byDevice(storage.EnrollmentFilter{Type: mdm.User}), []*Channel{u1, u2}},
		{"enabled", byTopic(storage.EnrollmentFilter{Enabled: &yes}), []*Channel{d, d2, u1, ue}},
		{"disabled", byTopic(storage.EnrollmentFilter{Enabled: &no}), []*Channel{u2}},
		{"disabled and device_id", byDevice(storage.EnrollmentFilter{Enabled: &no}), []*Channel{u2}},
		{"serial", storage.EnrollmentFilter{Serial: d.SerialNumber}, []*Channel{d, u1, u2}},
		{"serial of other", storage.EnrollmentFilter{Serial: d2.SerialNumber}, []*Channel{d2}},
		{"serial and type", storage.EnrollmentFilter{Serial: d.SerialNumber, Type: mdm.Device}, []*Channel{d}},
		{"serial unknown", storage.EnrollmentFilter{Serial: NewUUID()}, nil},
		{"topic unknown", storage.EnrollmentFilter{Topic: NewTopic()}, nil},
		{"device_id unknown", storage.EnrollmentFilter{DeviceID: NewUUID()}, nil},
		{"seen_after past", byTopic(storage.EnrollmentFilter{SeenAfter: now.Add(-time.Hour)}), []*Channel{d, d2, u1, u2, ue}},
		{"seen_after future", byTopic(storage.EnrollmentFilter{SeenAfter: now.Add(time.Hour)}), nil},
		{"seen_before future", byTopic(storage.EnrollmentFilter{SeenBefore: now.Add(time.Hour)}), []*Channel{d, d2, u1, u2, ue}},
		{"seen_before past", byTopic(storage.EnrollmentFilter{SeenBefore: now.Add(-time.Hour)}), nil},
		{"seen window", byDevice(storage.EnrollmentFilter{SeenAfter: now.Add(-time.Hour), SeenBefore: now.Add(time.Hour)}), []*Channel{d, u1, u2}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ids, _ := listAll(t, s, tc.f, 1000)
			wantIDs(t, tc.name, ids, tc.want...)
		})
	}
}

// testInspectListPagination: five enrollments of one device, two per
// page: three pages, in one stable order, none lost or repeated.
func testInspectListPagination(t *testing.T, s inspectionStore) {
	ctx := context.Background()
	d := NewDevice()
	channels := []*Channel{d}
	for range 4 {
		channels = append(channels, d.NewUser())
	}
	Enroll(t, s, channels...)
	f := storage.EnrollmentFilter{DeviceID: d.ID()}

	all, next, err := s.ListEnrollments(ctx, f, storage.Page{Limit: 5})
	if err != nil {
		t.Fatalf("ListEnrollments(limit 5): %v", err)
	}
	if len(all) != 5 || next != "" {
		t.Fatalf("ListEnrollments(limit 5): %d items, next %q; want 5 and no next page", len(all), next)
	}
	var order []string
	for _, it := range all {
		order = append(order, it.ID)
	}
	ids, pages := listAll(t, s, f, 2)
	if pages != 3 {
		t.Errorf("limit 2 over 5: %d pages, want 3", pages)
	}
	if !slices.Equal(ids, order) {
		t.Errorf("paged order %q, single page order %q", ids, order)
	}
	wantIDs(t, "paged", ids, channels...)
	if ids, pages := listAll(t, s, f, 1); pages != 5 || !slices.Equal(ids, order) {
		t.Errorf("limit 1: %d pages, order %q; want 5 pages, %q", pages, ids, order)
	}

	for _, cursor := range []string{"!!not a cursor!!", "%%%"} {
		if _, _, err := s.ListEnrollments(ctx, f, storage.Page{Cursor: cursor, Limit: 2}); !errors.Is(err, storage.ErrBadCursor) {
			t.Errorf("ListEnrollments(cursor %q): %v, want ErrBadCursor", cursor, err)
		}
	}
}

func retrieveQueue(t testing.TB, s inspectionStore, c *Channel) []storage.QueuedCommand {
	t.Helper()
	q, err := s.RetrieveQueue(context.Background(), c.ID())
	if err != nil {
		t.Fatalf("RetrieveQueue(%s): %v", c.ID(), err)
	}
	return q
}

func wantQueue(t testing.TB, q []storage.QueuedCommand, want ...*mdm.Command) {
	t.Helper()
	var got, w []string
	for _, c := range q {
		got = append(got, c.CommandUUID)
	}
	for _, c := range want {
		w = append(w, c.CommandUUID)
	}
	if !slices.Equal(got, w) {
		t.Fatalf("queue %q, want %q", got, w)
	}
}

// testInspectQueue: the pending commands in delivery order, with their
// NotNow state.
func testInspectQueue(t *testing.T, s inspectionStore) {
	d, other := NewDevice(), NewDevice()
	Enroll(t, s, d, other)
	if q := retrieveQueue(t, s, d); len(q) != 0 {
		t.Fatalf("fresh queue: %d commands", len(q))
	}
	a, b, c := NewCommand("ProfileList"), NewCommand("InstalledApplicationList"), NewCommand("DeviceInformation")
	mustEnqueue(t, s, a, d.ID())
	mustEnqueue(t, s, b, d.ID(), other.ID())
	mustEnqueue(t, s, c, d.ID())
	wantQueue(t, retrieveQueue(t, s, other), b)

	q := retrieveQueue(t, s, d)
	wantQueue(t, q, a, b, c)
	for i, cmd := range []*mdm.Command{a, b, c} {
		if q[i].RequestType != cmd.RequestType() {
			t.Errorf("%s: RequestType %q, want %q", cmd.CommandUUID, q[i].RequestType, cmd.RequestType())
		}
		if q[i].EnqueuedAt.IsZero() || q[i].Status != "" || q[i].NotNowCount != 0 || !q[i].LastNotNowAt.IsZero() {
			t.Errorf("%s: %+v, want EnqueuedAt set and no NotNow", cmd.CommandUUID, q[i])
		}
	}

	wantNext(t, s, d, a)
	mustReport(t, s, d, a.CommandUUID, mdm.StatusNotNow)
	wantNext(t, s, d, b)
	mustReport(t, s, d, b.CommandUUID, mdm.StatusAcknowledged)
	q = retrieveQueue(t, s, d)
	wantQueue(t, q, a, c)
	if q[0].Status != mdm.StatusNotNow || q[0].NotNowCount != 1 || q[0].LastNotNowAt.IsZero() {
		t.Errorf("after NotNow: %+v, want Status NotNow, count 1, LastNotNowAt set", q[0])
	}
	if q[1].Status != "" || q[1].NotNowCount != 0 {
		t.Errorf("untouched command: %+v", q[1])
	}
	first := q[0].LastNotNowAt

	mustIdle(t, s, d)
	wantNext(t, s, d, a)
	time.Sleep(10 * time.Millisecond)
	mustReport(t, s, d, a.CommandUUID, mdm.StatusNotNow)
	q = retrieveQueue(t, s, d)
	wantQueue(t, q, a, c)
	if q[0].Status != mdm.StatusNotNow || q[0].NotNowCount != 2 || q[0].LastNotNowAt.Before(first) {
		t.Errorf("after second NotNow: %+v (first at %v)", q[0], first)
	}
	if info := retrieveEnrollment(t, s, d); info.PendingCommands != 2 {
		t.Errorf("PendingCommands %d, want 2", info.PendingCommands)
	}
	// The other enrollment's queue is its own.
	wantQueue(t, retrieveQueue(t, s, other), b)
}

// testInspectClearQueue: ClearQueue drops every pending command, NotNow'd
// ones included, and nothing is delivered after.
func testInspectClearQueue(t *testing.T, s inspectionStore) {
	ctx := context.Background()
	d, other := NewDevice(), NewDevice()
	Enroll(t, s, d, other)
	a, b, c := NewCommand("A"), NewCommand("B"), NewCommand("C")
	mustEnqueue(t, s, a, d.ID(), other.ID())
	mustEnqueue(t, s, b, d.ID())
	mustEnqueue(t, s, c, d.ID())
	wantNext(t, s, d, a)
	mustReport(t, s, d, a.CommandUUID, mdm.StatusNotNow)

	n, err := s.ClearQueue(ctx, d.ID())
	if err != nil {
		t.Fatalf("ClearQueue: %v", err)
	}
	if n != 3 {
		t.Errorf("ClearQueue: %d, want 3", n)
	}
	wantQueue(t, retrieveQueue(t, s, d))
	wantNone(t, s, d)
	mustIdle(t, s, d)
	wantNone(t, s, d)
	if info := retrieveEnrollment(t, s, d); info.PendingCommands != 0 || !info.Enabled {
		t.Errorf("after ClearQueue: PendingCommands %d Enabled %v", info.PendingCommands, info.Enabled)
	}
	if n, err := s.ClearQueue(ctx, d.ID()); err != nil || n != 0 {
		t.Errorf("ClearQueue again: %d, %v; want 0", n, err)
	}
	// Other enrollments keep theirs, and new commands still come.
	wantNext(t, s, other, a)
	e := NewCommand("E")
	mustEnqueue(t, s, e, d.ID())
	wantNext(t, s, d, e)
	if _, err := s.RetrieveCommandResult(ctx, b.CommandUUID, d.ID()); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("RetrieveCommandResult of a cleared command: %v, want ErrNotFound", err)
	}
}

// testInspectCancelCommand: a cancelled command is gone for that
// enrollment only; answered and never-queued ones cannot be cancelled.
func testInspectCancelCommand(t *testing.T, s inspectionStore) {
	ctx := context.Background()
	d, other := NewDevice(), NewDevice()
	Enroll(t, s, d, other)
	a, b, c, n := NewCommand("A"), NewCommand("B"), NewCommand("C"), NewCommand("N")
	mustEnqueue(t, s, a, d.ID())
	mustEnqueue(t, s, b, d.ID(), other.ID())
	mustEnqueue(t, s, n, d.ID())
	mustEnqueue(t, s, c, d.ID())

	if err := s.CancelCommand(ctx, d.ID(), b.CommandUUID); err != nil {
		t.Fatalf("CancelCommand(pending): %v", err)
	}
	wantQueue(t, retrieveQueue(t, s, d), a, n, c)
	wantQueue(t, retrieveQueue(t, s, other), b)

	wantNext(t, s, d, a)
	mustReport(t, s, d, a.CommandUUID, mdm.StatusAcknowledged)
	wantNext(t, s, d, n)
	mustReport(t, s, d, n.CommandUUID, mdm.StatusNotNow)
	// A NotNow'd command can be cancelled; the next Idle does not bring
	// it back.
	if err := s.CancelCommand(ctx, d.ID(), n.CommandUUID); err != nil {
		t.Fatalf("CancelCommand(NotNow): %v", err)
	}
	mustIdle(t, s, d)
	wantNext(t, s, d, c)
	mustReport(t, s, d, c.CommandUUID, mdm.StatusAcknowledged)
	wantNone(t, s, d)
	// A late report for a cancelled command changes nothing.
	mustReport(t, s, d, b.CommandUUID, mdm.StatusAcknowledged)
	wantNone(t, s, d)

	if err := s.CancelCommand(ctx, d.ID(), a.CommandUUID); !errors.Is(err, storage.ErrAlreadyAnswered) {
		t.Errorf("CancelCommand(answered): %v, want ErrAlreadyAnswered", err)
	}
	if err := s.CancelCommand(ctx, d.ID(), b.CommandUUID); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("CancelCommand(cancelled): %v, want ErrNotFound", err)
	}
	x := NewCommand("X")
	mustEnqueue(t, s, x, other.ID())
	if err := s.CancelCommand(ctx, d.ID(), x.CommandUUID); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("CancelCommand(queued to another): %v, want ErrNotFound", err)
	}
	if err := s.CancelCommand(ctx, d.ID(), NewUUID()); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("CancelCommand(unknown command): %v, want ErrNotFound", err)
	}
	// The other enrollment still gets b.
	wantNext(t, s, other, b)
	if _, err := s.RetrieveCommandResult(ctx, b.CommandUUID, d.ID()); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("RetrieveCommandResult of a cancelled command: %v, want ErrNotFound", err)
	}
	if info := retrieveEnrollment(t, s, d); info.PendingCommands != 0 {
		t.Errorf("PendingCommands %d, want 0", info.PendingCommands)
	}
}

// testInspectRetrieveCommand: the stored command, byte-exact.
func testInspectRetrieveCommand(t *testing.T, s inspectionStore) {
	ctx := context.Background()
	d := NewDevice()
	Enroll(t, s, d)
	cmd := NewCommand("ProfileList")
	mustEnqueue(t, s, cmd, d.ID())
	for _, answered := range []bool{false, true} {
		got, err := s.RetrieveCommand(ctx, cmd.CommandUUID)
		if err != nil {
			t.Fatalf("RetrieveCommand: %v", err)
		}
		if got.CommandUUID != cmd.CommandUUID || got.RequestType != "ProfileList" || got.EnqueuedAt.IsZero() {
			t.Errorf("RetrieveCommand: %s %q %v", got.CommandUUID, got.RequestType, got.EnqueuedAt)
		}
		if !bytes.Equal(got.Raw, cmd.Raw) {
			t.Errorf("RetrieveCommand: Raw %q, want %q", got.Raw, cmd.Raw)
		}
		if !answered {
			mustReport(t, s, d, cmd.CommandUUID, mdm.StatusAcknowledged)
		}
	}
	if _, err := s.RetrieveCommand(ctx, NewUUID()); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("RetrieveCommand(unknown): %v, want ErrNotFound", err)
	}
}

// testInspectCommandStates: one command over several enrollments, each in
// another state, listed and paged in enrollment ID order.
func testInspectCommandStates(t *testing.T, s inspectionStore) {
	ctx := context.Background()
	pending, notNow, acked, failed, untargeted := NewDevice(), NewDevice(), NewDevice(), NewDevice(), NewDevice()
	user := acked.NewUser()
	Enroll(t, s, pending, notNow, acked, failed, untargeted, user)
	cmd := NewCommand("InstalledApplicationList")
	mustEnqueue(t, s, cmd, pending.ID(), notNow.ID(), acked.ID(), failed.ID(), user.ID())

	report := func(c *Channel, status string) []byte {
		t.Helper()
		rep := c.Report(cmd.CommandUUID, status)
		if err := s.StoreCommandReport(c.Request(), rep); err != nil {
			t.Fatalf("report %s from %s: %v", status, c.ID(), err)
		}
		return rep.Raw
	}
	report(notNow, mdm.StatusNotNow)
	report(acked, mdm.StatusNotNow)
	mustIdle(t, s, acked)
	ackRaw := report(acked, mdm.StatusAcknowledged)
	errRaw := report(failed, mdm.StatusError)
	userRaw := report(user, mdm.StatusAcknowledged)

	type want struct {
		state  string
		notNow int
		result []byte
	}
	wants := map[string]want{
		pending.ID(): {"pending", 0, nil},
		notNow.ID():  {mdm.StatusNotNow, 1, nil},
		acked.ID():   {mdm.StatusAcknowledged, 1, ackRaw},
		failed.ID():  {mdm.StatusError, 0, errRaw},
		user.ID():    {mdm.StatusAcknowledged, 0, userRaw},
	}
	check := func(st storage.CommandState) {
		t.Helper()
		w, ok := wants[st.EnrollmentID]
		if !ok {
			t.Errorf("state for %s, which the command was not queued to", st.EnrollmentID)
			return
		}
		if st.State != w.state || st.NotNowCount != w.notNow {
			t.Errorf("%s: State %q NotNowCount %d, want %q %d", st.EnrollmentID, st.State, st.NotNowCount, w.state, w.notNow)
		}
		if st.EnqueuedAt.IsZero() {
			t.Errorf("%s: EnqueuedAt zero", st.EnrollmentID)
		}
		if w.result == nil {
			if !st.AnsweredAt.IsZero() || st.Result != nil {
				t.Errorf("%s (%s): AnsweredAt %v, Result %q; want zero and nil", st.EnrollmentID, st.State, st.AnsweredAt, st.Result)
			}
		} else {
			if st.AnsweredAt.IsZero() {
				t.Errorf("%s (%s): AnsweredAt zero", st.EnrollmentID, st.State)
			}
			if !bytes.Equal(st.Result, w.result) {
				t.Errorf("%s (%s): Result %q, want the report's raw %q", st.EnrollmentID, st.State, st.Result, w.result)
			}
		}
	}

	all, next, err := s.ListCommandStates(ctx, cmd.CommandUUID, storage.Page{Limit: 100})
	if err != nil {
		t.Fatalf("ListCommandStates: %v", err)
	}
	if next != "" || len(all) != len(wants) {
		t.Fatalf("ListCommandStates: %d states, next %q; want %d and no next page", len(all), next, len(wants))
	}
	var order []string
	for _, st := range all {
		check(st)
		order = append(order, st.EnrollmentID)
	}

	// Two per page: 2, 2, 1, in the same order.
	var paged []string
	cursor, pages := "", 0
	for {
		page, next, err := s.ListCommandStates(ctx, cmd.CommandUUID, storage.Page{Cursor: cursor, Limit: 2})
		if err != nil {
			t.Fatalf("ListCommandStates(cursor %q): %v", cursor, err)
		}
		pages++
		if len(page) > 2 {
			t.Fatalf("ListCommandStates: %d states, limit 2", len(page))
		}
		for _, st := range page {
			check(st)
			paged = append(paged, st.EnrollmentID)
		}
		if next == "" {
			break
		}
		if pages > 10 {
			t.Fatal("ListCommandStates: more than 10 pages")
		}
		cursor = next
	}
	if pages != 3 || !slices.Equal(paged, order) {
		t.Errorf("paged: %d pages, order %q; want 3 pages, %q", pages, paged, order)
	}
	if _, _, err := s.ListCommandStates(ctx, cmd.CommandUUID, storage.Page{Cursor: "!!not a cursor!!", Limit: 2}); !errors.Is(err, storage.ErrBadCursor) {
		t.Errorf("ListCommandStates(bad cursor): %v, want ErrBadCursor", err)
	}
	if _, _, err := s.ListCommandStates(ctx, NewUUID(), storage.Page{Limit: 2}); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("ListCommandStates(unknown command): %v, want ErrNotFound", err)
	}

	for id := range wants {
		st, err := s.RetrieveCommandResult(ctx, cmd.CommandUUID, id)
		if err != nil {
			t.Errorf("RetrieveCommandResult(%s): %v", id, err)
			continue
		}
		if st.EnrollmentID != id {
			t.Errorf("RetrieveCommandResult(%s): EnrollmentID %q", id, st.EnrollmentID)
		}
		check(*st)
	}
	if _, err := s.RetrieveCommandResult(ctx, cmd.CommandUUID, untargeted.ID()); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("RetrieveCommandResult(not queued to it): %v, want ErrNotFound", err)
	}
	if _, err := s.RetrieveCommandResult(ctx, NewUUID(), acked.ID()); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("RetrieveCommandResult(unknown command): %v, want ErrNotFound", err)
	}
	if _, err := s.RetrieveCommandResult(ctx, cmd.CommandUUID, NewUUID()); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("RetrieveCommandResult(unknown enrollment): %v, want ErrNotFound", err)
	}
}
