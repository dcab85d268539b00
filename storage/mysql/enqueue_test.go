package mysql

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/picomdm/picomdm/storage"
	"github.com/picomdm/picomdm/storage/internal/sqlstore/sqlstoretest"
	"github.com/picomdm/picomdm/storage/storagetest"
)

// TestEnqueueLarge: one enqueue to 100,000 enrollments (and a few unknown
// IDs and duplicates among them) is quick, queues each known ID once in
// the order given, and reports only the unknown IDs.
func TestEnqueueLarge(t *testing.T) {
	if testing.Short() {
		t.Skip("large enqueue: skipped in -short mode")
	}
	s, _ := openTest(t, nil)
	const targets = 100000
	ids := bulkEnroll(t, s, targets)
	// Given order: not the order of the IDs in any index.
	slices.Reverse(ids)
	unknown := []string{storagetest.NewUUID(), "", "x:" + storagetest.NewUUID()}
	given := slices.Concat(ids[:10], unknown[:1], ids[10:50000], unknown[1:], ids[3:7], ids[50000:])

	cmd := storagetest.NewCommand("InstallProfile")
	start := time.Now()
	errs, err := s.EnqueueCommand(context.Background(), given, cmd)
	elapsed := time.Since(start)
	if err != nil {
		t.Fatalf("enqueue: %v", err)
	}
	t.Logf("enqueue to %d IDs took %v", len(given), elapsed)
	if elapsed > 10*time.Second {
		t.Errorf("enqueue to %d IDs took %v, want well under 10 s", len(given), elapsed)
	}
	if len(errs) != len(unknown) {
		t.Errorf("%d per-ID errors, want %d (the unknown IDs): %v", len(errs), len(unknown), errs)
	}
	for _, id := range unknown {
		if !errors.Is(errs[id], storage.ErrNotFound) {
			t.Errorf("unknown ID %q: %v, want ErrNotFound", id, errs[id])
		}
	}
	queued := sqlstoretest.Column(t, s.db, "SELECT id FROM queue WHERE command_uuid = ? ORDER BY seq", cmd.CommandUUID)
	if !slices.Equal(queued, ids) {
		t.Fatalf("queue rows in seq order: %d rows, not the %d IDs in the order given", len(queued), len(ids))
	}
}

// TestEnqueueAllUnknown: a command queued to no known ID is not stored,
// so the CommandUUID stays free; one that exists is still reported so.
func TestEnqueueAllUnknown(t *testing.T) {
	s, _ := openTest(t, nil)
	ctx := context.Background()
	cmd := storagetest.NewCommand("ProfileList")
	errs, err := s.EnqueueCommand(ctx, []string{storagetest.NewUUID()}, cmd)
	if err != nil || len(errs) != 1 {
		t.Fatalf("enqueue to an unknown ID: %v, %v", errs, err)
	}
	if n := count(t, s, "SELECT COUNT(*) FROM commands WHERE command_uuid = ?", cmd.CommandUUID); n != 0 {
		t.Fatalf("command queued to nobody was stored")
	}
	d := storagetest.NewDevice()
	storagetest.Enroll(t, s, d)
	if _, err := s.EnqueueCommand(ctx, []string{d.ID()}, cmd); err != nil {
		t.Fatalf("enqueue with the same CommandUUID: %v", err)
	}
	if _, err := s.EnqueueCommand(ctx, []string{storagetest.NewUUID()}, cmd); !errors.Is(err, storage.ErrCommandExists) {
		t.Fatalf("enqueue of a taken CommandUUID to unknown IDs: %v, want ErrCommandExists", err)
	}
	if _, err := s.EnqueueCommand(ctx, []string{d.ID()}, nil); err == nil {
		t.Fatal("enqueue of a nil command: no error")
	}
}
