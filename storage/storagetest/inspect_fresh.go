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

// inspector is a store with the inspection reads.
type inspector = storage.Store

func freshIDs(es []storage.EnrollmentInfo) []string {
	out := make([]string, len(es))
	for i, e := range es {
		out[i] = e.ID
	}
	return out
}

func freshListAll(t *testing.T, s inspector, f storage.EnrollmentFilter, limit int) []string {
	t.Helper()
	var all []string
	cursor := ""
	for range 100 {
		page, next, err := s.ListEnrollments(context.Background(), f, storage.Page{Cursor: cursor, Limit: limit})
		if err != nil {
			t.Fatalf("ListEnrollments(%+v): %v", f, err)
		}
		if len(page) > limit {
			t.Fatalf("page of %d, limit %d", len(page), limit)
		}
		all = append(all, freshIDs(page)...)
		if next == "" {
			return all
		}
		cursor = next
	}
	t.Fatal("ListEnrollments never ends")
	return nil
}

// InspectFresh checks the inspection reads against a store that holds
// nothing else (unfiltered listings must be exactly what it enrolls), as
// a backend's own end-to-end pass; Run's inspection tests work on shared
// stores instead.
func InspectFresh(t *testing.T, s storage.Store) {
	ctx := context.Background()
	d1, d2 := NewDevice(), NewDevice()
	u1 := d1.NewUser()
	Enroll(t, s, d1, u1, d2)
	all := []string{d1.ID(), u1.ID(), d2.ID()}
	slices.Sort(all)
	for _, limit := range []int{1, 2, 3, 1000} {
		if got := freshListAll(t, s, storage.EnrollmentFilter{}, limit); !slices.Equal(got, all) {
			t.Errorf("limit %d: listed %q, want %q", limit, got, all)
		}
	}
	dev := []string{d1.ID(), u1.ID()}
	slices.Sort(dev)
	yes, no := true, false
	for _, tc := range []struct {
		f    storage.EnrollmentFilter
		want []string
	}{
		{storage.EnrollmentFilter{DeviceID: d1.ID()}, dev},
		{storage.EnrollmentFilter{Serial: d1.SerialNumber}, dev},
		{storage.EnrollmentFilter{Type: mdm.User}, []string{u1.ID()}},
		{storage.EnrollmentFilter{Type: mdm.Device, DeviceID: d1.ID()}, []string{d1.ID()}},
		{storage.EnrollmentFilter{Topic: d2.Push.Topic, DeviceID: d2.ID()}, []string{d2.ID()}},
		{storage.EnrollmentFilter{Topic: "nope"}, nil},
		{storage.EnrollmentFilter{Enabled: &yes}, all},
		{storage.EnrollmentFilter{Enabled: &no}, nil},
		{storage.EnrollmentFilter{SeenAfter: time.Now().Add(-time.Hour)}, all},
		{storage.EnrollmentFilter{SeenAfter: time.Now().Add(time.Hour)}, nil},
		{storage.EnrollmentFilter{SeenBefore: time.Now().Add(time.Hour)}, all},
		{storage.EnrollmentFilter{SeenBefore: time.Now().Add(-time.Hour)}, nil},
	} {
		if got := freshListAll(t, s, tc.f, 1); !slices.Equal(got, tc.want) {
			t.Errorf("filter %+v: listed %q, want %q", tc.f, got, tc.want)
		}
	}
	if _, _, err := s.ListEnrollments(ctx, storage.EnrollmentFilter{}, storage.Page{Cursor: "!!", Limit: 1}); !errors.Is(err, storage.ErrBadCursor) {
		t.Errorf("bad cursor: %v, want ErrBadCursor", err)
	}
	if _, err := s.RetrieveEnrollment(ctx, "unknown"); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("RetrieveEnrollment(unknown): %v, want ErrNotFound", err)
	}
	e, err := s.RetrieveEnrollment(ctx, u1.ID())
	if err != nil {
		t.Fatal(err)
	}
	if e.Type != mdm.User || e.ParentID != d1.ID() || e.SerialNumber != d1.SerialNumber || !e.Enabled ||
		e.TokenUpdateTally != 1 || !e.PushTokenValid || e.Topic != u1.Push.Topic || e.PendingCommands != 0 ||
		time.Since(e.EnrolledAt) > time.Hour || time.Since(e.LastSeenAt) > time.Hour {
		t.Errorf("RetrieveEnrollment(user) = %+v", e)
	}
	if err := s.Disable(d2.Request()); err != nil {
		t.Fatal(err)
	}
	if got := freshListAll(t, s, storage.EnrollmentFilter{Enabled: &no}, 5); !slices.Equal(got, []string{d2.ID()}) {
		t.Errorf("disabled: %q", got)
	}

	// Queues.
	cmd1, cmd2 := NewCommand("ProfileList"), NewCommand("DeviceInformation")
	for _, c := range []*mdm.Command{cmd1, cmd2} {
		if _, err := s.EnqueueCommand(ctx, []string{d1.ID(), d2.ID()}, c); err != nil {
			t.Fatal(err)
		}
	}
	if e, err := s.RetrieveEnrollment(ctx, d1.ID()); err != nil || e.PendingCommands != 2 {
		t.Errorf("pending commands: %+v, %v", e, err)
	}
	if err := s.StoreCommandReport(d1.Request(), d1.Report(cmd1.CommandUUID, mdm.StatusNotNow)); err != nil {
		t.Fatal(err)
	}
	q, err := s.RetrieveQueue(ctx, d1.ID())
	if err != nil {
		t.Fatal(err)
	}
	if len(q) != 2 || q[0].CommandUUID != cmd1.CommandUUID || q[1].CommandUUID != cmd2.CommandUUID ||
		q[0].Status != "NotNow" || q[0].NotNowCount != 1 || q[0].LastNotNowAt.IsZero() || q[0].RequestType != "ProfileList" ||
		q[1].Status != "" || !q[1].LastNotNowAt.IsZero() || time.Since(q[1].EnqueuedAt) > time.Hour {
		t.Errorf("RetrieveQueue = %+v", q)
	}
	if _, err := s.RetrieveQueue(ctx, "unknown"); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("RetrieveQueue(unknown): %v", err)
	}
	if q, err := s.RetrieveQueue(ctx, u1.ID()); err != nil || len(q) != 0 {
		t.Errorf("RetrieveQueue(empty) = %v, %v", q, err)
	}

	// Commands.
	if c, err := s.RetrieveCommand(ctx, cmd1.CommandUUID); err != nil || c.RequestType != "ProfileList" ||
		!bytes.Equal(c.Raw, cmd1.Raw) || c.EnqueuedAt.IsZero() {
		t.Errorf("RetrieveCommand = %+v, %v", c, err)
	}
	if _, err := s.RetrieveCommand(ctx, "unknown"); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("RetrieveCommand(unknown): %v", err)
	}
	if err := s.StoreCommandReport(d2.Request(), d2.Report(cmd1.CommandUUID, mdm.StatusAcknowledged)); err != nil {
		t.Fatal(err)
	}
	states := map[string]string{d1.ID(): "NotNow", d2.ID(): "Acknowledged"}
	var listed []string
	cursor := ""
	for {
		page, next, err := s.ListCommandStates(ctx, cmd1.CommandUUID, storage.Page{Cursor: cursor, Limit: 1})
		if err != nil {
			t.Fatal(err)
		}
		for _, st := range page {
			listed = append(listed, st.EnrollmentID)
			if st.State != states[st.EnrollmentID] || st.EnqueuedAt.IsZero() ||
				(st.State == "Acknowledged") != (st.Result != nil && !st.AnsweredAt.IsZero()) {
				t.Errorf("state %+v", st)
			}
		}
		if next == "" {
			break
		}
		cursor = next
	}
	want := []string{d1.ID(), d2.ID()}
	slices.Sort(want)
	if !slices.Equal(listed, want) {
		t.Errorf("ListCommandStates listed %q, want %q", listed, want)
	}
	if _, _, err := s.ListCommandStates(ctx, "unknown", storage.Page{Limit: 10}); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("ListCommandStates(unknown): %v", err)
	}
	if _, _, err := s.ListCommandStates(ctx, cmd1.CommandUUID, storage.Page{Cursor: "%%", Limit: 10}); !errors.Is(err, storage.ErrBadCursor) {
		t.Errorf("ListCommandStates(bad cursor): %v", err)
	}
	if st, err := s.RetrieveCommandResult(ctx, cmd1.CommandUUID, d2.ID()); err != nil || st.State != "Acknowledged" ||
		!bytes.Contains(st.Result, []byte("Acknowledged")) {
		t.Errorf("RetrieveCommandResult(answered) = %+v, %v", st, err)
	}
	if st, err := s.RetrieveCommandResult(ctx, cmd2.CommandUUID, d1.ID()); err != nil || st.State != "pending" || st.Result != nil {
		t.Errorf("RetrieveCommandResult(pending) = %+v, %v", st, err)
	}
	if _, err := s.RetrieveCommandResult(ctx, cmd1.CommandUUID, u1.ID()); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("RetrieveCommandResult(never queued): %v", err)
	}

	// Edits.
	if err := s.CancelCommand(ctx, d2.ID(), cmd1.CommandUUID); !errors.Is(err, storage.ErrAlreadyAnswered) {
		t.Errorf("CancelCommand(answered): %v", err)
	}
	if err := s.CancelCommand(ctx, u1.ID(), cmd1.CommandUUID); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("CancelCommand(never queued): %v", err)
	}
	if err := s.CancelCommand(ctx, d1.ID(), cmd1.CommandUUID); err != nil {
		t.Errorf("CancelCommand(NotNow'd): %v", err)
	}
	if err := s.CancelCommand(ctx, d1.ID(), cmd1.CommandUUID); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("CancelCommand twice: %v", err)
	}
	if err := s.StoreCommandReport(d1.Request(), d1.Idle()); err != nil {
		t.Fatal(err)
	}
	if next, err := s.RetrieveNextCommand(d1.Request()); err != nil || next == nil || next.CommandUUID != cmd2.CommandUUID {
		t.Errorf("next command after cancel = %+v, %v", next, err)
	}
	if page, _, err := s.ListCommandStates(ctx, cmd1.CommandUUID, storage.Page{Limit: 10}); err != nil || len(page) != 1 || page[0].EnrollmentID != d2.ID() {
		t.Errorf("states after cancel = %+v, %v", page, err)
	}
	if n, err := s.ClearQueue(ctx, d2.ID()); err != nil || n != 1 {
		t.Errorf("ClearQueue = %d, %v; want 1", n, err)
	}
	if n, err := s.ClearQueue(ctx, d2.ID()); err != nil || n != 0 {
		t.Errorf("ClearQueue again = %d, %v; want 0", n, err)
	}
	if _, err := s.ClearQueue(ctx, "unknown"); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("ClearQueue(unknown): %v", err)
	}
}

// BenchmarkInspectionPages times a first and a deep page (deepCursor) of
// ListEnrollments and ListCommandStates for commandUUID; the backend sets
// up a large table first (its cost must not depend on where the page is).
func BenchmarkInspectionPages(b *testing.B, s storage.Store, commandUUID, deepCursor string) {
	ctx := context.Background()
	deep := deepCursor
	for _, c := range []struct{ name, cursor string }{{"first", ""}, {"deep", deep}} {
		b.Run("ListEnrollments/"+c.name, func(b *testing.B) {
			for range b.N {
				page, _, err := s.ListEnrollments(ctx, storage.EnrollmentFilter{}, storage.Page{Cursor: c.cursor, Limit: 100})
				if err != nil || len(page) != 100 {
					b.Fatalf("%d, %v", len(page), err)
				}
			}
		})
		b.Run("ListCommandStates/"+c.name, func(b *testing.B) {
			for range b.N {
				page, _, err := s.ListCommandStates(ctx, commandUUID, storage.Page{Cursor: c.cursor, Limit: 100})
				if err != nil || len(page) != 100 {
					b.Fatalf("%d, %v", len(page), err)
				}
			}
		})
	}
}
