package outboxmem

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/picomdm/picomdm/storage"
)

// diskish is a Persister that keeps the bodies, as the file backend does.
type diskish struct{ bodies map[uint64][]byte }

func (d *diskish) Put(e *Entry) error {
	if e.Event.Body == nil {
		panic("Put without the body: it would be lost")
	}
	d.bodies[e.Seq] = bytes.Clone(e.Event.Body)
	return nil
}
func (d *diskish) Delete(e *Entry) error             { delete(d.bodies, e.Seq); return nil }
func (d *diskish) LoadBody(e *Entry) ([]byte, error) { return bytes.Clone(d.bodies[e.Seq]), nil }

// TestBodiesStayOnDisk: with a BodyLoader the outbox holds no bodies in
// memory (a long receiver outage costs disk, not memory), hands them out
// on claim and listing, and keeps them through a retry.
func TestBodiesStayOnDisk(t *testing.T) {
	ctx := context.Background()
	d := &diskish{bodies: map[uint64][]byte{}}
	o := New(d)
	body := bytes.Repeat([]byte("x"), 1<<20)
	if err := o.StoreEvent(ctx, &storage.OutboxEvent{ID: "e1", EnrollmentID: "A", Topic: "mdm.Connect", Body: body}); err != nil {
		t.Fatal(err)
	}
	if b := o.byID["e1"].Event.Body; b != nil {
		t.Fatalf("the outbox holds %d body bytes in memory", len(b))
	}
	now := time.Now()
	got, err := o.ClaimEvents(ctx, "w", now, now.Add(time.Minute), 1)
	if err != nil || len(got) != 1 || !bytes.Equal(got[0].Body, body) {
		t.Fatalf("claim: %d events, %v; want e1 with its body", len(got), err)
	}
	if err := o.RetryEvent(ctx, "e1", "w", 1, now, "503"); err != nil {
		t.Fatal(err)
	}
	if b := o.byID["e1"].Event.Body; b != nil {
		t.Fatal("a retry put the body back in memory")
	}
	evs, _, err := o.ListEvents(ctx, storage.OutboxPending, storage.Page{Limit: 10})
	if err != nil || len(evs) != 1 || !bytes.Equal(evs[0].Body, body) || evs[0].Attempts != 1 {
		t.Fatalf("list after retry: %v, %v", len(evs), err)
	}
}
