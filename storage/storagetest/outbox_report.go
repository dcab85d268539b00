package storagetest

import (
	"context"
	"testing"
	"time"

	"github.com/picomdm/picomdm/mdm"
	"github.com/picomdm/picomdm/storage"
)

// testOutboxReportEvent: a store whose StoreCommandReportAndRetrieveNext
// takes a storage.PendingEvent stores it with the report (marking it
// stored), for every kind of report, behind the events stored before it;
// one that does not leaves it unmarked and unstored, for the webhook to
// store. Either way the event is stored at most once.
func testOutboxReportEvent(t *testing.T, s storage.Store) {
	ctx := context.Background()
	d := NewDevice()
	Enroll(t, s, d)
	cmds := []*mdm.Command{NewCommand("ProfileList"), NewCommand("DeviceInformation")}
	for _, c := range cmds {
		mustEnqueue(t, s, c, d.ID())
	}
	first := &storage.OutboxEvent{ID: NewUUID(), EnrollmentID: d.ID(), Topic: "mdm.TokenUpdate", Body: []byte(`{"n":0}`), CreatedAt: time.Now()}
	if err := s.StoreEvent(ctx, first); err != nil {
		t.Fatal(err)
	}
	want := []string{first.ID}
	// Whether a store takes the event is its choice (file and MySQL
	// without multi-statement requests do not), but it must be the same
	// for every report kind, and a taken event must be stored exactly once.
	var takes *bool
	for i, report := range []*mdm.CommandResults{
		d.Idle(),
		d.Report(cmds[0].CommandUUID, mdm.StatusNotNow),
		d.Report(cmds[0].CommandUUID, mdm.StatusAcknowledged),
		d.Report("unknown-"+NewUUID(), mdm.StatusError),
	} {
		ev := &storage.OutboxEvent{ID: NewUUID(), EnrollmentID: d.ID(), Topic: "mdm.Connect", Body: []byte(`{"n":` + string(rune('1'+i)) + `}`), CreatedAt: time.Now()}
		pending := &storage.PendingEvent{Event: ev}
		r := d.Request()
		r.Context = storage.WithPendingEvent(r.Context, pending)
		if _, err := storage.StoreReportAndRetrieveNext(s, r, report); err != nil {
			t.Fatalf("report %d (%s): %v", i, report.Status, err)
		}
		stored := pending.Stored()
		if takes == nil {
			takes = &stored
		}
		if stored != *takes {
			t.Fatalf("report %d (%s): event stored = %v, unlike the reports before", i, report.Status, stored)
		}
		if stored {
			want = append(want, ev.ID)
		}
	}
	// Delivered one at a time in store order.
	now := time.Now().Add(time.Minute)
	for i, id := range want {
		got, err := s.ClaimEvents(ctx, "o", now, now.Add(time.Minute), 10)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != 1 || got[0].ID != id {
			t.Fatalf("claim %d: %v, want only %s", i, got, id)
		}
		if err := s.CompleteEvent(ctx, id, "o"); err != nil {
			t.Fatal(err)
		}
	}
	if got, err := s.ClaimEvents(ctx, "o", now, now.Add(time.Minute), 10); err != nil || len(got) != 0 {
		t.Fatalf("after the last: %v, %v; want none (each event stored once)", got, err)
	}
}
