package file

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/picomdm/picomdm/storage"
	"github.com/picomdm/picomdm/storage/internal/memindex"
	"github.com/picomdm/picomdm/storage/internal/outboxmem"
)

// The webhook outbox, the leases and the re-push records.
//
// Layout (beside the package documentation's):
//
//	outbox/SEQ.json              one event (outboxRecord); SEQ is its store order, 20 digits
//	leases/NAME.json             one held lease (leaseRecord)
//	pushes.log                   the re-push records, a journal (pushlog.go)
//
// The outbox is kept in memory (outboxmem) and rebuilt from outbox/ at
// start; every change of an event is written (crash-safely, as every file
// here) before it is applied. Claims are not written: the directory is
// used by one process, so a restart releases them, which is what a lease
// running out would do.

// The aliases keep the embedded fields unexported while their methods
// implement storage.OutboxStore and storage.LeaseStore.
type (
	outbox = outboxmem.Outbox
	leases = outboxmem.Leases
)

// outboxRecord is an outbox/ file.
type outboxRecord struct {
	Seq           uint64    `json:"seq"`
	ID            string    `json:"id"`
	EnrollmentID  string    `json:"enrollment_id"`
	Topic         string    `json:"topic"`
	Body          []byte    `json:"body"`
	CreatedAt     time.Time `json:"created_at"`
	State         string    `json:"state"`
	Attempts      int       `json:"attempts,omitempty"`
	NextAttemptAt time.Time `json:"next_attempt_at,omitzero"`
	LastError     string    `json:"last_error,omitempty"`
}

// leaseRecord is a leases/ file.
type leaseRecord struct {
	Name  string    `json:"name"`
	Owner string    `json:"owner"`
	Until time.Time `json:"until"`
}

// pushRecord is one re-push record: a journal line's (and the push.json
// of an enrollment, as earlier versions wrote it).
type pushRecord struct {
	PushedAt     time.Time `json:"pushed_at"`
	Repushes     int       `json:"repushes,omitempty"`
	NextRepushAt time.Time `json:"next_repush_at"`
}

func (s *Store) outboxPath(seq uint64) string {
	return filepath.Join(s.dir, "outbox", fmt.Sprintf("%020d.json", seq))
}

func (s *Store) leasePath(name string) string {
	return filepath.Join(s.dir, "leases", fileName(name)+".json")
}

func (s *Store) pushRecordPath(id string) string {
	return filepath.Join(s.enrollmentDir(id), "push.json")
}

// outboxFiles is the outbox's outboxmem.Persister.
type outboxFiles struct{ s *Store }

func (f outboxFiles) Put(e *outboxmem.Entry) error {
	ev := &e.Event
	return f.s.writeJSON(f.s.outboxPath(e.Seq), outboxRecord{
		Seq: e.Seq, ID: ev.ID, EnrollmentID: ev.EnrollmentID, Topic: ev.Topic, Body: ev.Body,
		CreatedAt: ev.CreatedAt, State: ev.State, Attempts: ev.Attempts,
		NextAttemptAt: ev.NextAttemptAt, LastError: ev.LastError,
	})
}

// LoadBody implements outboxmem.BodyLoader: the bodies stay in the
// outbox/ files, so a long outage of the receiver costs disk, not memory.
func (f outboxFiles) LoadBody(e *outboxmem.Entry) ([]byte, error) {
	var rec outboxRecord
	ok, err := readJSON(f.s.outboxPath(e.Seq), &rec)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, fmt.Errorf("event %s: %s is missing", e.Event.ID, f.s.outboxPath(e.Seq))
	}
	return rec.Body, nil
}

func (f outboxFiles) Delete(e *outboxmem.Entry) error {
	return f.s.removeFile(f.s.outboxPath(e.Seq))
}

// removeFile removes path (gone already is fine) durably.
func (s *Store) removeFile(path string) error {
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("removing %s: %w", path, err)
	}
	return s.syncDir(filepath.Dir(path))
}

// persistLease writes or removes a lease's file.
func (s *Store) persistLease(l outboxmem.Lease, release bool) error {
	if release {
		return s.removeFile(s.leasePath(l.Name))
	}
	return s.writeJSON(s.leasePath(l.Name), leaseRecord(l))
}

// loadOutbox reads outbox/ and leases/ into the in-memory indexes.
func (s *Store) loadOutbox() error {
	s.outbox = outboxmem.New(outboxFiles{s})
	dir := filepath.Join(s.dir, "outbox")
	entries, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("listing the outbox: %w", err)
	}
	for _, entry := range entries {
		var rec outboxRecord
		if _, err := readJSON(filepath.Join(dir, entry.Name()), &rec); err != nil {
			return err
		}
		s.outbox.Load(&outboxmem.Entry{Seq: rec.Seq, Event: storage.OutboxEvent{
			ID: rec.ID, EnrollmentID: rec.EnrollmentID, Topic: rec.Topic, // the body stays on disk (LoadBody)
			CreatedAt: rec.CreatedAt, State: rec.State, Attempts: rec.Attempts,
			NextAttemptAt: rec.NextAttemptAt, LastError: rec.LastError,
		}})
	}

	dir = filepath.Join(s.dir, "leases")
	if entries, err = os.ReadDir(dir); err != nil {
		return fmt.Errorf("listing leases: %w", err)
	}
	var loaded []outboxmem.Lease
	for _, entry := range entries {
		var rec leaseRecord
		if _, err := readJSON(filepath.Join(dir, entry.Name()), &rec); err != nil {
			return err
		}
		loaded = append(loaded, outboxmem.Lease(rec))
	}
	s.leases = outboxmem.NewLeases(s.persistLease, loaded...)
	return nil
}

// loadPushRecord reads enrollment id's push.json, if any, into the index.
// A record that does not decode (written without a sync, then a crash) is
// ignored: the enrollment's next push records it again.
func (s *Store) loadPushRecord(id string) error {
	data, ok, err := readFile(s.pushRecordPath(id))
	if err != nil || !ok {
		return err
	}
	var rec pushRecord
	if json.Unmarshal(data, &rec) == nil {
		s.pushRecords[id] = storage.PushRecord{ID: id, PushedAt: rec.PushedAt, Repushes: rec.Repushes, NextRepushAt: rec.NextRepushAt}
	}
	return nil
}

// RecordPushes implements storage.RepushStore: the records of known
// enrollments are appended to the push journal (pushlog.go) with one
// write and one sync, then applied to the index.
func (s *Store) RecordPushes(_ context.Context, records []storage.PushRecord) error {
	s.pushMu.Lock()
	defer s.pushMu.Unlock()
	known := make([]storage.PushRecord, 0, len(records))
	s.mu.RLock()
	for _, r := range records {
		if s.enrollments[r.ID] != nil {
			known = append(known, r)
		}
	}
	s.mu.RUnlock()
	if len(known) == 0 {
		return nil
	}
	for _, r := range known {
		s.pushRecords[r.ID] = r
	}
	if err := s.appendPushLog(known); err != nil {
		return fmt.Errorf("recording pushes: %w", err)
	}
	return nil
}

// DueForRepush implements storage.RepushStore from the in-memory indexes
// and, for the candidates only, their seen files. Every request of a
// device (check-in or command report) touches its seen file at once.
func (s *Store) DueForRepush(_ context.Context, now time.Time, limit int) ([]storage.PushRecord, error) {
	s.pushMu.Lock()
	var candidates []storage.PushRecord
	s.mu.RLock()
	for id, r := range s.pushRecords {
		e := s.enrollments[id]
		if e == nil || !e.Enabled || !e.PushTokenValid() || len(s.pending[id]) == 0 || r.NextRepushAt.After(now) {
			continue
		}
		candidates = append(candidates, r)
	}
	s.mu.RUnlock()
	s.pushMu.Unlock()

	memindex.SortDue(candidates)
	var due []storage.PushRecord
	for _, r := range candidates {
		if len(due) >= limit {
			break
		}
		seen, err := s.lastSeen(r.ID)
		if err != nil {
			return nil, fmt.Errorf("finding enrollments to re-push: %w", err)
		}
		if r.PushedAt.After(seen) {
			due = append(due, r)
		}
	}
	return due, nil
}
