package pgsql

import (
	"testing"

	"github.com/picomdm/picomdm/storage"
	"github.com/picomdm/picomdm/storage/internal/sqlstore/sqlstoretest"
	"github.com/picomdm/picomdm/storage/storagetest"
)

// TestClaimBehindLockedHead: sqlstoretest.ClaimBehindLockedHead.
func TestClaimBehindLockedHead(t *testing.T) {
	s := openFresh(t, nil)
	sqlstoretest.ClaimBehindLockedHead(t, s, s.db, "SELECT seq FROM outbox WHERE id = $1 FOR UPDATE")
}

// TestLastErrorStored: sqlstoretest.LastErrorStored.
func TestLastErrorStored(t *testing.T) {
	s := openFresh(t, nil)
	sqlstoretest.LastErrorStored(t, s)
}

// TestReportTakesEvent: PostgreSQL stores a report's webhook event in the
// report's own statement (no round trip of its own).
func TestReportTakesEvent(t *testing.T) {
	s := openFresh(t, nil)
	d := storagetest.NewDevice()
	storagetest.Enroll(t, s, d)
	pending := &storage.PendingEvent{Event: &storage.OutboxEvent{ID: storagetest.NewUUID(), EnrollmentID: d.ID(), Topic: "mdm.Connect", Body: []byte("{}")}}
	r := d.Request()
	r.Context = storage.WithPendingEvent(r.Context, pending)
	if _, err := s.StoreCommandReportAndRetrieveNext(r, d.Idle()); err != nil {
		t.Fatal(err)
	}
	if !pending.Stored() {
		t.Fatal("the event was not stored with the report")
	}
}
