package file

import (
	"context"
	"errors"
	"path/filepath"
	"testing"

	"github.com/picomdm/picomdm/mdm"
	"github.com/picomdm/picomdm/storage"
	"github.com/picomdm/picomdm/storage/storagetest"
)

// TestInspectionAfterReopen: the suite against a store reopened from a
// directory another store filled, with the queue edits (cleared and
// cancelled commands) it made.
func TestInspectionAfterReopen(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "store")
	first, err := New(dir, WithNoSync())
	if err != nil {
		t.Fatal(err)
	}
	storagetest.RunInspection(t, first)
	if err := first.Close(); err != nil {
		t.Fatal(err)
	}
	storagetest.RunInspection(t, open(t, dir))
}

// TestInspectionEditsSurviveReopen: a cancelled command and a cleared
// queue stay so after Close and New, NotNow'd ones included.
func TestInspectionEditsSurviveReopen(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s, err := New(dir, WithNoSync())
	if err != nil {
		t.Fatal(err)
	}
	d, cleared := storagetest.NewDevice(), storagetest.NewDevice()
	storagetest.Enroll(t, s, d, cleared)
	a, b, c := storagetest.NewCommand("A"), storagetest.NewCommand("B"), storagetest.NewCommand("C")
	for _, cmd := range []*mdm.Command{a, b, c} {
		if _, err := s.EnqueueCommand(ctx, []string{d.ID(), cleared.ID()}, cmd); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.StoreCommandReport(d.Request(), d.Report(a.CommandUUID, mdm.StatusNotNow)); err != nil {
		t.Fatal(err)
	}
	for _, uuid := range []string{a.CommandUUID, b.CommandUUID} {
		if err := s.CancelCommand(ctx, d.ID(), uuid); err != nil {
			t.Fatalf("CancelCommand(%s): %v", uuid, err)
		}
	}
	if n, err := s.ClearQueue(ctx, cleared.ID()); err != nil || n != 3 {
		t.Fatalf("ClearQueue: %d, %v; want 3", n, err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = open(t, dir)
	q, err := s.RetrieveQueue(ctx, d.ID())
	if err != nil || len(q) != 1 || q[0].CommandUUID != c.CommandUUID {
		t.Fatalf("queue after reopen: %+v, %v; want only %s", q, err, c.CommandUUID)
	}
	if q, err := s.RetrieveQueue(ctx, cleared.ID()); err != nil || len(q) != 0 {
		t.Fatalf("cleared queue after reopen: %+v, %v", q, err)
	}
	if err := s.CancelCommand(ctx, d.ID(), b.CommandUUID); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("CancelCommand(cancelled) after reopen: %v, want ErrNotFound", err)
	}
	if cmd, err := s.RetrieveNextCommand(d.Request()); err != nil || cmd == nil || cmd.CommandUUID != c.CommandUUID {
		t.Fatalf("next after reopen: %v, %v; want %s", cmd, err, c.CommandUUID)
	}
}

func TestInspectFresh(t *testing.T) {
	storagetest.InspectFresh(t, open(t, filepath.Join(t.TempDir(), "store"), WithNoSync()))
}
