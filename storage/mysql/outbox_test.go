package mysql

import (
	"context"
	"github.com/picomdm/picomdm/storage/internal/sqlstore"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/picomdm/picomdm/mdm"
	"github.com/picomdm/picomdm/storage"
	"github.com/picomdm/picomdm/storage/storagetest"
)

// outboxEvent returns a new event of enrollment.
func outboxEvent(enrollment string, created time.Time) *storage.OutboxEvent {
	return &storage.OutboxEvent{
		ID:           storagetest.NewUUID(),
		EnrollmentID: enrollment,
		Topic:        "mdm.Connect",
		Body:         []byte(`{"topic":"mdm.Connect"}`),
		CreatedAt:    created,
	}
}

// claimIDs claims for owner at now and returns the claimed event IDs.
func claimIDs(t *testing.T, ctx context.Context, s *Store, owner string, now time.Time) []string {
	t.Helper()
	evs, err := s.ClaimEvents(ctx, owner, now, now.Add(time.Minute), 10)
	if err != nil {
		t.Fatalf("ClaimEvents(%s): %v", owner, err)
	}
	var ids []string
	for _, ev := range evs {
		ids = append(ids, ev.ID)
	}
	return ids
}

// TestClaimBehindLockedHead: while another transaction holds an
// enrollment's oldest pending event locked (another replica claiming it
// at this moment), a claim neither waits for it nor takes the event behind
// it; other enrollments' events are claimed as usual.
func TestClaimBehindLockedHead(t *testing.T) {
	s, _ := openTest(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	now := time.Now().UTC()
	e, f := storagetest.NewUUID(), storagetest.NewUUID()
	head, behind, other := outboxEvent(e, now), outboxEvent(e, now), outboxEvent(f, now)
	for _, ev := range []*storage.OutboxEvent{head, behind, other} {
		if err := s.StoreEvent(ctx, ev); err != nil {
			t.Fatal(err)
		}
	}
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	var seq int64
	if err := tx.QueryRowContext(ctx, "SELECT seq FROM outbox WHERE id = ? FOR UPDATE", head.ID).Scan(&seq); err != nil {
		t.Fatal(err)
	}
	if got := claimIDs(t, ctx, s, "b", now); len(got) != 1 || got[0] != other.ID {
		t.Fatalf("claim while %s's head is locked: %v; want only %s", e, got, other.ID)
	}
	if err := tx.Rollback(); err != nil {
		t.Fatal(err)
	}
	if got := claimIDs(t, ctx, s, "c", now); len(got) != 1 || got[0] != head.ID {
		t.Fatalf("claim once the head is free: %v; want %s", got, head.ID)
	}
}

// TestLastErrorStored: a long last error with bytes utf8mb4 refuses is
// stored cut to sqlstore.MaxLastError bytes of valid UTF-8, not refused (which
// would leave the outcome unrecorded and the event retried forever).
func TestLastErrorStored(t *testing.T) {
	s, _ := openTest(t, nil)
	ctx := context.Background()
	now := time.Now().UTC()
	ev := outboxEvent(storagetest.NewUUID(), now)
	if err := s.StoreEvent(ctx, ev); err != nil {
		t.Fatal(err)
	}
	if got := claimIDs(t, ctx, s, "a", now); len(got) != 1 {
		t.Fatalf("claimed %v, want %s", got, ev.ID)
	}
	lastErr := "bad\xff" + strings.Repeat("é", sqlstore.MaxLastError)
	if err := s.RetryEvent(ctx, ev.ID, "a", 1, now, lastErr); err != nil {
		t.Fatalf("RetryEvent: %v", err)
	}
	evs, _, err := s.ListEvents(ctx, storage.OutboxPending, storage.Page{Limit: 10})
	if err != nil || len(evs) != 1 {
		t.Fatalf("ListEvents: %v, %v", evs, err)
	}
	got := evs[0].LastError
	if len(got) > sqlstore.MaxLastError || len(got) < sqlstore.MaxLastError-1 || !utf8.ValidString(got) || !strings.HasPrefix(got, "bad\uFFFDéé") {
		t.Fatalf("last error stored as %d bytes (valid UTF-8: %v), prefix %q", len(got), utf8.ValidString(got), got[:min(len(got), 12)])
	}
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
