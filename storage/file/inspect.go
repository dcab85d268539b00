package file

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"time"

	"github.com/picomdm/picomdm/mdm"
	"github.com/picomdm/picomdm/storage"
	"github.com/picomdm/picomdm/storage/internal/memindex"
)

// The inspection reads (storage.InspectionStore) select and sort in
// memory, from the enrollment index, and read the few files of the
// enrollments of one page: enrollment.json, the device's device.json and
// the seen file's modification time. Command states are the in-memory
// pending queues plus the enrollments' results/ files. The two edits are
// durable like the check-ins: ClearQueue raises the enrollment's
// cleared_seq (as Authenticate does, without disabling it), and
// CancelCommand writes a result file marked cancelled, which the queue
// rebuild at start skips.

var _ storage.InspectionStore = (*Store)(nil)

// lastSeen returns enrollment id's last_seen_at: its seen file's
// modification time (zero if missing).
func (s *Store) lastSeen(id string) (time.Time, error) {
	fi, err := os.Stat(filepath.Join(s.enrollmentDir(id), "seen"))
	if errors.Is(err, fs.ErrNotExist) {
		return time.Time{}, nil
	}
	if err != nil {
		return time.Time{}, fmt.Errorf("last seen of %q: %w", id, err)
	}
	return fi.ModTime(), nil
}

// infoReader builds EnrollmentInfos, reading each device.json once.
type infoReader struct {
	s       *Store
	devices map[string]*deviceRecord
}

func (r *infoReader) device(id string) (*deviceRecord, error) {
	if d, ok := r.devices[id]; ok {
		return d, nil
	}
	d, ok, err := r.s.readDevice(id)
	if err != nil {
		return nil, err
	}
	if !ok {
		d = nil
	}
	if r.devices == nil {
		r.devices = make(map[string]*deviceRecord)
	}
	r.devices[id] = d
	return d, nil
}

// snapshot is the in-memory part of an enrollment's info, copied under
// s.mu.
type snapshot struct {
	memindex.Channel
	pending int
}

// snapshotLocked copies enrollment id's in-memory state. Callers hold s.mu.
func (s *Store) snapshotLocked(id string, e *enrollState) snapshot {
	return snapshot{Channel: e.Channel, pending: len(s.pending[id])}
}

// info reads the files of enrollment sn into an EnrollmentInfo; ok is
// false if it vanished (it never does: enrollments are never deleted).
func (r *infoReader) info(sn snapshot) (storage.EnrollmentInfo, bool, error) {
	rec, ok, err := r.s.readEnrollment(sn.ID)
	if err != nil || !ok {
		return storage.EnrollmentInfo{}, false, err
	}
	i := sn.Info()
	i.EnrolledAt, i.PendingCommands = rec.EnrolledAt, sn.pending
	if i.LastSeenAt, err = r.s.lastSeen(sn.ID); err != nil {
		return i, false, err
	}
	d, err := r.device(sn.DeviceID())
	if err != nil {
		return i, false, err
	}
	if d != nil {
		i.SerialNumber = d.SerialNumber
		i.IdentityCertNotAfter = d.IdentityCertNotAfter
	}
	return i, true, nil
}

// ListEnrollments implements storage.InspectionStore: the filters the
// index answers first, then the files of the candidates in ID order, until
// the page is full.
func (s *Store) ListEnrollments(ctx context.Context, f storage.EnrollmentFilter, p storage.Page) ([]storage.EnrollmentInfo, string, error) {
	after, err := storage.DecodeCursor(p.Cursor)
	if err != nil {
		return nil, "", err
	}
	s.mu.RLock()
	ids := memindex.SortedAfter(memindex.Candidates(s.enrollments, s.children, &f), after, func(id string) bool {
		return s.enrollments[id] != nil && s.enrollments[id].Matches(&f)
	})
	cands := make([]snapshot, 0, len(ids))
	for _, id := range ids {
		cands = append(cands, s.snapshotLocked(id, s.enrollments[id]))
	}
	s.mu.RUnlock()

	r := &infoReader{s: s}
	out, next, err := memindex.Paginate(cands, p.Size(), func(sn snapshot) (storage.EnrollmentInfo, bool, error) {
		if err := ctx.Err(); err != nil {
			return storage.EnrollmentInfo{}, false, err
		}
		i, ok, err := r.info(sn)
		return i, ok && memindex.MatchesInfo(&i, &f), err
	}, func(i *storage.EnrollmentInfo) string { return i.ID })
	if err != nil {
		return nil, "", fmt.Errorf("listing enrollments: %w", err)
	}
	return out, next, nil
}

// RetrieveEnrollment implements storage.InspectionStore.
func (s *Store) RetrieveEnrollment(_ context.Context, id string) (*storage.EnrollmentInfo, error) {
	s.mu.RLock()
	e := s.enrollments[id]
	var sn snapshot
	if e != nil {
		sn = s.snapshotLocked(id, e)
	}
	s.mu.RUnlock()
	if e == nil {
		return nil, fmt.Errorf("enrollment %q: %w", id, storage.ErrNotFound)
	}
	i, ok, err := (&infoReader{s: s}).info(sn)
	if err != nil {
		return nil, fmt.Errorf("enrollment %q: %w", id, err)
	}
	if !ok {
		return nil, fmt.Errorf("enrollment %q: %w", id, storage.ErrNotFound)
	}
	return &i, nil
}

// readCommandFile reads a command file's header and raw plist; ok is
// false if there is none.
func (s *Store) readCommandFile(uuid string) (h *commandHeader, raw []byte, ok bool, err error) {
	data, ok, err := readFile(s.commandPath(uuid))
	if err != nil || !ok {
		return nil, nil, false, err
	}
	line, raw, found := bytes.Cut(data, []byte{'\n'})
	if !found {
		return nil, nil, false, fmt.Errorf("command %s: no header", uuid)
	}
	h = new(commandHeader)
	if err := json.Unmarshal(line, h); err != nil {
		return nil, nil, false, fmt.Errorf("command %s: decoding header: %w", uuid, err)
	}
	return h, raw, true, nil
}

// RetrieveQueue implements storage.InspectionStore.
func (s *Store) RetrieveQueue(_ context.Context, id string) ([]storage.QueuedCommand, error) {
	s.mu.RLock()
	e := s.enrollments[id]
	var pending []memindex.Pending
	for _, p := range s.pending[id] {
		pending = append(pending, *p)
	}
	s.mu.RUnlock()
	if e == nil {
		return nil, fmt.Errorf("queue of %q: %w", id, storage.ErrNotFound)
	}
	out := make([]storage.QueuedCommand, 0, len(pending))
	for _, p := range pending {
		h, _, ok, err := s.readCommandFile(p.CommandUUID)
		if err != nil {
			return nil, fmt.Errorf("queue of %q: %w", id, err)
		}
		if !ok {
			h = &commandHeader{}
		}
		out = append(out, p.Queued(h.RequestType, h.EnqueuedAt))
	}
	return out, nil
}

// ClearQueue implements storage.InspectionStore: every command enqueued
// so far is recorded as cleared for the enrollment (enrollment.json
// cleared_seq), as a re-enrollment does, without disabling it.
func (s *Store) ClearQueue(_ context.Context, id string) (int, error) {
	deviceID, ok := s.deviceIDOf(id)
	if !ok {
		return 0, fmt.Errorf("clearing queue of %q: %w", id, storage.ErrNotFound)
	}
	mu := s.stripe(deviceID)
	mu.Lock()
	defer mu.Unlock()
	rec, ok, err := s.readEnrollment(id)
	if err != nil {
		return 0, fmt.Errorf("clearing queue of %q: %w", id, err)
	}
	if !ok {
		return 0, fmt.Errorf("clearing queue of %q: %w", id, storage.ErrNotFound)
	}
	s.mu.RLock()
	clearedSeq := max(rec.ClearedSeq, s.seq)
	s.mu.RUnlock()
	rec.ClearedSeq = clearedSeq
	if err := s.writeJSON(filepath.Join(s.enrollmentDir(id), "enrollment.json"), rec); err != nil {
		return 0, fmt.Errorf("clearing queue of %q: %w", id, err)
	}
	s.mu.Lock()
	n := 0
	for _, p := range s.pending[id] {
		if p.Seq <= clearedSeq {
			n++
		}
	}
	var done []string
	if e := s.enrollments[id]; e != nil {
		e.clearedSeq = clearedSeq
		done = s.dropPendingLocked(id, clearedSeq)
	}
	s.mu.Unlock()
	s.removeQueued(done)
	return n, nil
}

// CancelCommand implements storage.InspectionStore: a pending command
// gets a result file marked cancelled (so it stays gone after a restart)
// and leaves the in-memory queue.
func (s *Store) CancelCommand(_ context.Context, id, commandUUID string) error {
	deviceID, ok := s.deviceIDOf(id)
	if !ok {
		return fmt.Errorf("cancelling %s for %q: %w", commandUUID, id, storage.ErrNotFound)
	}
	// Under the stripe no report can answer the command meanwhile.
	mu := s.stripe(deviceID)
	mu.Lock()
	defer mu.Unlock()
	s.mu.RLock()
	var p memindex.Pending
	i := memindex.Find(s.pending[id], commandUUID)
	if i >= 0 {
		p = *s.pending[id][i]
	}
	s.mu.RUnlock()
	if i < 0 {
		var res resultRecord
		answered, err := readJSON(s.resultPath(id, commandUUID), &res)
		if err != nil {
			return fmt.Errorf("cancelling %s for %q: %w", commandUUID, id, err)
		}
		if answered && !res.Cancelled && res.Status != mdm.StatusNotNow {
			return fmt.Errorf("cancelling %s for %q: %w", commandUUID, id, storage.ErrAlreadyAnswered)
		}
		return fmt.Errorf("cancelling %s for %q: %w", commandUUID, id, storage.ErrNotFound)
	}
	var status string
	if p.NotNow > 0 {
		status = mdm.StatusNotNow
	}
	rec := newResultRecord(&p, status, time.Now())
	rec.Cancelled = true
	if err := s.writeJSON(s.resultPath(id, commandUUID), rec); err != nil {
		return fmt.Errorf("cancelling %s for %q: %w", commandUUID, id, err)
	}
	var done bool
	s.mu.Lock()
	if i = memindex.Find(s.pending[id], commandUUID); i >= 0 {
		done = s.removePendingLocked(id, i)
	}
	s.mu.Unlock()
	if done {
		s.removeQueued([]string{commandUUID})
	}
	return nil
}

// RetrieveCommand implements storage.InspectionStore.
func (s *Store) RetrieveCommand(_ context.Context, commandUUID string) (*storage.CommandInfo, error) {
	h, raw, ok, err := s.readCommandFile(commandUUID)
	if err != nil {
		return nil, fmt.Errorf("command %s: %w", commandUUID, err)
	}
	if !ok {
		return nil, fmt.Errorf("command %s: %w", commandUUID, storage.ErrNotFound)
	}
	return &storage.CommandInfo{
		CommandUUID: commandUUID,
		RequestType: h.RequestType,
		EnqueuedAt:  h.EnqueuedAt,
		Raw:         raw,
	}, nil
}

// pendingLocked returns a copy of enrollment id's pending entry for
// commandUUID, or nil if it is not pending for it. Callers hold s.mu.
func (s *Store) pendingLocked(id, commandUUID string) *memindex.Pending {
	if i := memindex.Find(s.pending[id], commandUUID); i >= 0 {
		p := *s.pending[id][i]
		return &p
	}
	return nil
}

// commandState returns enrollment id's state for command h: pending's
// state if it is pending (pending non-nil), else its final answer read from
// its results/ file; ok is false if it has none (never queued to it, or
// cleared or cancelled before a final answer).
func (s *Store) commandState(id string, pending *memindex.Pending, h *commandHeader) (st storage.CommandState, ok bool, err error) {
	if pending != nil {
		return pending.State(id, h.EnqueuedAt), true, nil
	}
	var res resultRecord
	answered, err := readJSON(s.resultPath(id, h.CommandUUID), &res)
	if err != nil || !answered || res.Cancelled || res.Status == mdm.StatusNotNow {
		return st, false, err
	}
	result := res.Result
	if result == nil {
		result = []byte{}
	}
	return storage.CommandState{
		EnrollmentID: id,
		State:        res.Status,
		NotNowCount:  res.NotNowCount,
		EnqueuedAt:   h.EnqueuedAt,
		AnsweredAt:   res.ResultAt,
		Result:       result,
	}, true, nil
}

// ListCommandStates implements storage.InspectionStore: pending states
// from memory, final ones from the results/ files of the other known
// enrollments, in ID order.
func (s *Store) ListCommandStates(ctx context.Context, commandUUID string, p storage.Page) ([]storage.CommandState, string, error) {
	after, err := storage.DecodeCursor(p.Cursor)
	if err != nil {
		return nil, "", err
	}
	h, _, ok, err := s.readCommandFile(commandUUID)
	if err != nil {
		return nil, "", fmt.Errorf("states of %s: %w", commandUUID, err)
	}
	if !ok {
		return nil, "", fmt.Errorf("states of %s: %w", commandUUID, storage.ErrNotFound)
	}
	type cand struct {
		id      string
		pending *memindex.Pending
	}
	s.mu.RLock()
	ids := memindex.SortedAfter(maps.Keys(s.enrollments), after, nil)
	cands := make([]cand, 0, len(ids))
	for _, id := range ids {
		cands = append(cands, cand{id: id, pending: s.pendingLocked(id, commandUUID)})
	}
	s.mu.RUnlock()
	out, next, err := memindex.Paginate(cands, p.Size(), func(c cand) (storage.CommandState, bool, error) {
		if err := ctx.Err(); err != nil {
			return storage.CommandState{}, false, err
		}
		return s.commandState(c.id, c.pending, h)
	}, func(st *storage.CommandState) string { return st.EnrollmentID })
	if err != nil {
		return nil, "", fmt.Errorf("states of %s: %w", commandUUID, err)
	}
	return out, next, nil
}

// RetrieveCommandResult implements storage.InspectionStore.
func (s *Store) RetrieveCommandResult(_ context.Context, commandUUID, id string) (*storage.CommandState, error) {
	notFound := fmt.Errorf("result of %s for %q: %w", commandUUID, id, storage.ErrNotFound)
	h, _, ok, err := s.readCommandFile(commandUUID)
	if err != nil {
		return nil, fmt.Errorf("result of %s for %q: %w", commandUUID, id, err)
	}
	if !ok {
		return nil, notFound
	}
	s.mu.RLock()
	known := s.enrollments[id] != nil
	pending := s.pendingLocked(id, commandUUID)
	s.mu.RUnlock()
	if !known {
		return nil, notFound
	}
	st, ok, err := s.commandState(id, pending, h)
	if err != nil {
		return nil, fmt.Errorf("result of %s for %q: %w", commandUUID, id, err)
	}
	if !ok {
		return nil, notFound
	}
	return &st, nil
}
