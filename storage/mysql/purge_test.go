package mysql

import (
	"context"
	"testing"
	"time"

	"github.com/picomdm/picomdm/mdm"
	"github.com/picomdm/picomdm/storage/storagetest"
)

// TestPurge: results answered longer than the retention ago go, in
// batches; then the commands nothing names any more. Recent results, the
// NotNow result of a command still pending, and pending commands stay.
func TestPurge(t *testing.T) {
	s, _ := openTest(t, map[string]string{"retention": "24h"})
	ctx := context.Background()
	const old = 2*purgeBatch + 17 // more than one batch
	ids := bulkEnroll(t, s, old)
	fresh := storagetest.NewDevice()
	storagetest.Enroll(t, s, fresh)

	// An old command answered everywhere: its results and itself go.
	gone := storagetest.NewCommand("Gone")
	if _, err := s.EnqueueCommand(ctx, ids, gone); err != nil {
		t.Fatal(err)
	}
	for _, id := range ids {
		c := channelOf(id)
		if err := s.StoreCommandReport(c.Request(), c.Report(gone.CommandUUID, mdm.StatusAcknowledged)); err != nil {
			t.Fatal(err)
		}
	}
	// An old command answered by one, NotNow'd by another: it stays,
	// and so does the NotNow result; the final one goes.
	pending := storagetest.NewCommand("Pending")
	if _, err := s.EnqueueCommand(ctx, ids[:2], pending); err != nil {
		t.Fatal(err)
	}
	a, b := channelOf(ids[0]), channelOf(ids[1])
	if err := s.StoreCommandReport(a.Request(), a.Report(pending.CommandUUID, mdm.StatusAcknowledged)); err != nil {
		t.Fatal(err)
	}
	if err := s.StoreCommandReport(b.Request(), b.Report(pending.CommandUUID, mdm.StatusNotNow)); err != nil {
		t.Fatal(err)
	}
	// Make all that two days old.
	for _, q := range []string{
		"UPDATE results SET answered_at = answered_at - INTERVAL 2 DAY",
		"UPDATE commands SET created_at = created_at - INTERVAL 2 DAY",
	} {
		if _, err := s.db.Exec(q); err != nil {
			t.Fatal(err)
		}
	}
	// A recent command, answered: it stays.
	recent := storagetest.NewCommand("Recent")
	if _, err := s.EnqueueCommand(ctx, []string{fresh.ID()}, recent); err != nil {
		t.Fatal(err)
	}
	if err := s.StoreCommandReport(fresh.Request(), fresh.Report(recent.CommandUUID, mdm.StatusAcknowledged)); err != nil {
		t.Fatal(err)
	}

	results, commands, err := s.purge(ctx, time.Now())
	if err != nil {
		t.Fatalf("purge: %v", err)
	}
	if results != old+1 || commands != 1 {
		t.Errorf("purge deleted %d results and %d commands, want %d and 1", results, commands, old+1)
	}
	for _, c := range []struct {
		what string
		n    int
		want int
	}{
		{"results of the purged command", count(t, s, "SELECT COUNT(*) FROM results WHERE command_uuid = ?", gone.CommandUUID), 0},
		{"purged command", count(t, s, "SELECT COUNT(*) FROM commands WHERE command_uuid = ?", gone.CommandUUID), 0},
		{"pending command", count(t, s, "SELECT COUNT(*) FROM commands WHERE command_uuid = ?", pending.CommandUUID), 1},
		{"NotNow result of the pending command", count(t, s, "SELECT COUNT(*) FROM results WHERE command_uuid = ? AND status = 'NotNow'", pending.CommandUUID), 1},
		{"final result of the pending command", count(t, s, "SELECT COUNT(*) FROM results WHERE command_uuid = ? AND status = 'Acknowledged'", pending.CommandUUID), 0},
		{"recent command", count(t, s, "SELECT COUNT(*) FROM commands WHERE command_uuid = ?", recent.CommandUUID), 1},
		{"recent result", count(t, s, "SELECT COUNT(*) FROM results WHERE command_uuid = ?", recent.CommandUUID), 1},
	} {
		if c.n != c.want {
			t.Errorf("%s: %d rows, want %d", c.what, c.n, c.want)
		}
	}
	// The queue is unharmed.
	got, err := s.RetrieveNextCommand(b.Request())
	if err != nil || got != nil {
		t.Fatalf("next of the NotNow'd enrollment before Idle: %v, %v; want none", got, err)
	}
	if err := s.StoreCommandReport(b.Request(), b.Idle()); err != nil {
		t.Fatal(err)
	}
	if got, err := s.RetrieveNextCommand(b.Request()); err != nil || got == nil || got.CommandUUID != pending.CommandUUID {
		t.Fatalf("next after Idle: %v, %v; want %s", got, err, pending.CommandUUID)
	}

	// Idempotent: again, nothing to do.
	if n, err := s.Purge(ctx, time.Now()); err != nil || n != 0 {
		t.Fatalf("second purge: %d, %v; want nothing", n, err)
	}
	// Purge goes by the now it is given: two days on, the recent result
	// is past the retention too.
	if n, err := s.Purge(ctx, time.Now().Add(48*time.Hour)); err != nil || n != 1 {
		t.Fatalf("purge two days on: %d, %v; want the recent result", n, err)
	}
	if n := count(t, s, "SELECT COUNT(*) FROM commands WHERE command_uuid = ?", recent.CommandUUID); n != 0 {
		t.Errorf("recent command: %d rows two days on, want 0", n)
	}
}

// TestPurgeOneReplica: while another replica holds the purge lock, purge
// skips its turn.
func TestPurgeOneReplica(t *testing.T) {
	s, _ := openTest(t, nil)
	ctx := context.Background()
	conn, err := s.db.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	var got int
	if err := conn.QueryRowContext(ctx, "SELECT GET_LOCK(?, 0)", s.lockName("purge")).Scan(&got); err != nil || got != 1 {
		t.Fatalf("taking the purge lock: %d, %v", got, err)
	}
	answerOne(t, s)
	if _, err := s.db.Exec("UPDATE results SET answered_at = answered_at - INTERVAL 1000 DAY"); err != nil {
		t.Fatal(err)
	}
	if n, err := s.Purge(ctx, time.Now()); err != nil || n != 0 {
		t.Fatalf("purge while another holds the lock: %d, %v; want a skipped turn", n, err)
	}
	conn.QueryRowContext(ctx, "SELECT RELEASE_LOCK(?)", s.lockName("purge")).Scan(&got)
	if n, err := s.Purge(ctx, time.Now()); err != nil || n != 1 {
		t.Fatalf("purge after the lock is free: %d, %v; want 1", n, err)
	}
}

// TestPurgeNoRetention: with retention=0 results are kept forever, so
// Purge deletes nothing, however old they are; and opening a store starts
// no purge of its own (the app's background runner calls Purge, every
// PurgeInterval).
func TestPurgeNoRetention(t *testing.T) {
	s, _ := openTest(t, map[string]string{"retention": "0", "purge_interval": "3m"})
	ctx := context.Background()
	if got := s.PurgeInterval(); got != 3*time.Minute {
		t.Errorf("PurgeInterval() = %v, want the purge_interval option, 3m", got)
	}
	cmd := answerOne(t, s)
	if n, err := s.Purge(ctx, time.Now().AddDate(10, 0, 0)); err != nil || n != 0 {
		t.Fatalf("Purge with retention=0: %d, %v; want nothing", n, err)
	}
	if n := count(t, s, "SELECT COUNT(*) FROM results WHERE command_uuid = ?", cmd.CommandUUID); n != 1 {
		t.Fatalf("result of %s: %d rows, want 1", cmd.CommandUUID, n)
	}
}

// answerOne enrolls a device, enqueues a command for it and stores its
// Acknowledged answer: one result for the purge. It returns the command.
func answerOne(t *testing.T, s *Store) *mdm.Command {
	t.Helper()
	d := storagetest.NewDevice()
	storagetest.Enroll(t, s, d)
	cmd := storagetest.NewCommand("A")
	if _, err := s.EnqueueCommand(context.Background(), []string{d.ID()}, cmd); err != nil {
		t.Fatal(err)
	}
	if err := s.StoreCommandReport(d.Request(), d.Report(cmd.CommandUUID, mdm.StatusAcknowledged)); err != nil {
		t.Fatal(err)
	}
	return cmd
}
