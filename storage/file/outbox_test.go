package file

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/picomdm/picomdm/storage"
	"github.com/picomdm/picomdm/storage/storagetest"
)

func claimIDs(t *testing.T, s *Store, owner string, now time.Time) []string {
	t.Helper()
	evs, err := s.ClaimEvents(context.Background(), owner, now, now.Add(time.Hour), 10)
	if err != nil {
		t.Fatalf("ClaimEvents: %v", err)
	}
	var ids []string
	for _, ev := range evs {
		ids = append(ids, ev.ID)
	}
	return ids
}

func listed(t *testing.T, s *Store, state string) []storage.OutboxEvent {
	t.Helper()
	evs, _, err := s.ListEvents(context.Background(), state, storage.Page{Limit: 100})
	if err != nil {
		t.Fatalf("ListEvents(%s): %v", state, err)
	}
	return evs
}

func outboxFileCount(t *testing.T, dir string) int {
	t.Helper()
	entries, err := os.ReadDir(filepath.Join(dir, "outbox"))
	if err != nil {
		t.Fatal(err)
	}
	return len(entries)
}

// TestOutboxSurvivesRestart: events with their attempts, order and state,
// leases and push records are read back by the next Store on the
// directory; claims are not (a restart releases them).
func TestOutboxSurvivesRestart(t *testing.T) {
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "store")
	s, err := New(dir)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	newEvent := func(enrollment string) *storage.OutboxEvent {
		id := storagetest.NewUUID()
		return &storage.OutboxEvent{ID: id, EnrollmentID: enrollment, Topic: "mdm.Connect", Body: []byte(`{"event_id": "` + id + `"}`), CreatedAt: now}
	}
	e1, e2, f1, g1 := newEvent("a"), newEvent("a"), newEvent("b"), newEvent("c")
	for _, ev := range []*storage.OutboxEvent{e1, e2, f1, g1} {
		if err := s.StoreEvent(ctx, ev); err != nil {
			t.Fatal(err)
		}
	}
	if got := claimIDs(t, s, "owner-1", now); !slices.Equal(got, []string{e1.ID, f1.ID, g1.ID}) {
		t.Fatalf("claimed %q", got)
	}
	next := now.Add(time.Minute)
	if err := s.RetryEvent(ctx, e1.ID, "owner-1", 2, next, "timeout"); err != nil {
		t.Fatal(err)
	}
	if err := s.SetAsideEvent(ctx, f1.ID, "owner-1", 3, "HTTP 500"); err != nil {
		t.Fatal(err)
	}
	if ok, err := s.AcquireLease(ctx, "sweep", "owner-1", now, now.Add(time.Hour)); err != nil || !ok {
		t.Fatalf("AcquireLease: %v, %v", ok, err)
	}
	if ok, err := s.AcquireLease(ctx, "purge", "owner-1", now, now.Add(time.Hour)); err != nil || !ok {
		t.Fatalf("AcquireLease: %v, %v", ok, err)
	}
	if err := s.ReleaseLease(ctx, "purge", "owner-1"); err != nil {
		t.Fatal(err)
	}
	d := storagetest.NewDevice()
	storagetest.Enroll(t, s, d)
	mustEnqueue(t, s, storagetest.NewCommand("DeviceInformation"), d.ID())
	rec := storage.PushRecord{ID: d.ID(), PushedAt: time.Now(), Repushes: 2, NextRepushAt: now.Add(time.Minute)}
	if err := s.RecordPushes(ctx, []storage.PushRecord{rec}); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s = open(t, dir)
	pending := listed(t, s, storage.OutboxPending)
	if len(pending) != 3 || pending[0].ID != e1.ID || pending[1].ID != e2.ID || pending[2].ID != g1.ID {
		t.Fatalf("pending after restart: %+v", pending)
	}
	if p := pending[0]; p.Attempts != 2 || p.LastError != "timeout" || !p.NextAttemptAt.Equal(next) || string(p.Body) != string(e1.Body) || !p.CreatedAt.Equal(now) {
		t.Fatalf("retried event after restart: %+v", p)
	}
	failed := listed(t, s, storage.OutboxFailed)
	if len(failed) != 1 || failed[0].ID != f1.ID || failed[0].Attempts != 3 || failed[0].LastError != "HTTP 500" {
		t.Fatalf("failed after restart: %+v", failed)
	}
	// g1's claim died with the process; e1 is not due yet and holds e2.
	if got := claimIDs(t, s, "owner-2", now); !slices.Equal(got, []string{g1.ID}) {
		t.Fatalf("claimed after restart %q, want g1", got)
	}
	h1 := newEvent("a")
	if err := s.StoreEvent(ctx, h1); err != nil {
		t.Fatal(err)
	}
	if got := claimIDs(t, s, "owner-2", next.Add(time.Second)); !slices.Equal(got, []string{e1.ID}) {
		t.Fatalf("claimed %q, want e1", got)
	}
	for _, id := range []string{e1.ID, g1.ID} {
		if err := s.CompleteEvent(ctx, id, "owner-2"); err != nil {
			t.Fatal(err)
		}
	}
	if got := claimIDs(t, s, "owner-2", next.Add(time.Second)); !slices.Equal(got, []string{e2.ID}) {
		t.Fatalf("claimed %q, want e2 (before h1, stored after the restart)", got)
	}
	if n := outboxFileCount(t, dir); n != 3 { // e2, f1, h1
		t.Fatalf("%d files in outbox/, want 3", n)
	}

	if ok, _ := s.AcquireLease(ctx, "sweep", "owner-2", now.Add(time.Minute), now.Add(2*time.Hour)); ok {
		t.Fatal("lease held before the restart was given to another owner")
	}
	if ok, _ := s.AcquireLease(ctx, "purge", "owner-2", now.Add(time.Minute), now.Add(2*time.Hour)); !ok {
		t.Fatal("released lease not free after the restart")
	}
	due, err := s.DueForRepush(ctx, now.Add(time.Hour), 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(due) != 1 || due[0].ID != rec.ID || due[0].Repushes != 2 || !due[0].PushedAt.Equal(rec.PushedAt) || !due[0].NextRepushAt.Equal(rec.NextRepushAt) {
		t.Fatalf("due after restart: %+v, want %+v", due, rec)
	}
}

// TestTornPushRecord: a push record left unreadable by a crash (written
// without a sync) does not stop the store from opening.
func TestTornPushRecord(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "store")
	s, err := New(dir, WithNoSync())
	if err != nil {
		t.Fatal(err)
	}
	d := storagetest.NewDevice()
	storagetest.Enroll(t, s, d)
	if err := os.WriteFile(s.pushRecordPath(d.ID()), []byte(`{"pushed_at":`), 0o600); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s = open(t, dir, WithNoSync())
	if len(s.pushRecords) != 0 {
		t.Fatalf("torn record loaded: %+v", s.pushRecords)
	}
}

// TestTornPushLogLine: a journal whose last line a crash cut short opens;
// the lines before it count, the torn one is skipped.
func TestTornPushLogLine(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "store")
	s, err := New(dir, WithNoSync())
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	a, b := storagetest.NewDevice(), storagetest.NewDevice()
	storagetest.Enroll(t, s, a)
	storagetest.Enroll(t, s, b)
	now := time.Now().UTC().Truncate(time.Millisecond)
	if err := s.RecordPushes(ctx, []storage.PushRecord{{ID: a.ID(), PushedAt: now, NextRepushAt: now.Add(time.Minute)}}); err != nil {
		t.Fatal(err)
	}
	s.Close()
	f, err := os.OpenFile(filepath.Join(dir, pushLogName), os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(f, `{"id":%q,"pushed_at":"20`, b.ID())
	f.Close()
	s = open(t, dir, WithNoSync())
	if len(s.pushRecords) != 1 || !s.pushRecords[a.ID()].PushedAt.Equal(now) {
		t.Fatalf("records after a torn line: %+v", s.pushRecords)
	}
}

// TestPushLogCompaction: the journal is rewritten once it holds many
// more lines than records, keeping the latest record of each enrollment,
// and supersedes a push.json an earlier version wrote.
func TestPushLogCompaction(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "store")
	s, err := New(dir, WithNoSync())
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	d := storagetest.NewDevice()
	storagetest.Enroll(t, s, d)
	old := time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)
	if err := os.WriteFile(s.pushRecordPath(d.ID()), fmt.Appendf(nil, `{"pushed_at":%q,"next_repush_at":%q}`, old.Format(time.RFC3339), old.Format(time.RFC3339)), 0o600); err != nil {
		t.Fatal(err)
	}
	t0 := time.Now().UTC().Truncate(time.Millisecond)
	var last time.Time
	for i := range pushLogMinCompact + 10 {
		last = t0.Add(time.Duration(i) * time.Millisecond)
		if err := s.RecordPushes(ctx, []storage.PushRecord{{ID: d.ID(), PushedAt: last, Repushes: i, NextRepushAt: last}}); err != nil {
			t.Fatal(err)
		}
	}
	if s.pushLogLines > pushLogMinCompact {
		t.Errorf("journal of %d lines for one record: not compacted", s.pushLogLines)
	}
	s.Close()
	data, err := os.ReadFile(filepath.Join(dir, pushLogName))
	if err != nil {
		t.Fatal(err)
	}
	if lines := bytes.Count(data, []byte("\n")); lines > 20 {
		t.Errorf("compacted journal has %d lines", lines)
	}
	s = open(t, dir, WithNoSync())
	r := s.pushRecords[d.ID()]
	if !r.PushedAt.Equal(last) || r.Repushes != pushLogMinCompact+9 {
		t.Fatalf("record after compaction and restart: %+v, want pushed at %v", r, last)
	}
}
