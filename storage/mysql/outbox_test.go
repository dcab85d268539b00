package mysql

import (
	"testing"

	"github.com/picomdm/picomdm/mdm"
	"github.com/picomdm/picomdm/storage"
	"github.com/picomdm/picomdm/storage/internal/sqlstore/sqlstoretest"
	"github.com/picomdm/picomdm/storage/storagetest"
)

// TestClaimBehindLockedHead: sqlstoretest.ClaimBehindLockedHead.
func TestClaimBehindLockedHead(t *testing.T) {
	s, _ := openTest(t, nil)
	sqlstoretest.ClaimBehindLockedHead(t, s, s.db, "SELECT seq FROM outbox WHERE id = ? FOR UPDATE")
}

// TestLastErrorStored: sqlstoretest.LastErrorStored.
func TestLastErrorStored(t *testing.T) {
	s, _ := openTest(t, nil)
	sqlstoretest.LastErrorStored(t, s)
}

// TestReportTakesEvent: with multi-statement requests MySQL stores a
// report's webhook event in the report's own request (no round trip of
// its own), inside its transaction.
func TestReportTakesEvent(t *testing.T) {
	s, _ := openTest(t, nil)
	if !s.multiStatements {
		t.Fatal("the default DSN should allow multi-statement requests")
	}
	d := storagetest.NewDevice()
	storagetest.Enroll(t, s, d)
	cmd := storagetest.NewCommand("ProfileList")
	if _, err := s.EnqueueCommand(t.Context(), []string{d.ID()}, cmd); err != nil {
		t.Fatal(err)
	}
	for _, report := range []*mdm.CommandResults{d.Idle(), d.Report(cmd.CommandUUID, mdm.StatusAcknowledged)} {
		pending := &storage.PendingEvent{Event: &storage.OutboxEvent{ID: storagetest.NewUUID(), EnrollmentID: d.ID(), Topic: "mdm.Connect", Body: []byte("{}")}}
		r := d.Request()
		r.Context = storage.WithPendingEvent(r.Context, pending)
		if _, err := s.StoreCommandReportAndRetrieveNext(r, report); err != nil {
			t.Fatal(err)
		}
		if !pending.Stored() {
			t.Fatalf("%s: the event was not stored with the report", report.Status)
		}
	}
}
