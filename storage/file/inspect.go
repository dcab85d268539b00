package file

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/picomdm/picomdm/mdm"
	"github.com/picomdm/picomdm/storage"
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

// The cursor helpers every backend shares.
var (
	encodeCursor = storage.EncodeCursor
	decodeCursor = storage.DecodeCursor
)

// pageLimit clamps a page size to 1…MaxPageLimit (0 or less is the most).
func pageLimit(p storage.Page) int {
	if p.Limit <= 0 || p.Limit > storage.MaxPageLimit {
		return storage.MaxPageLimit
	}
	return p.Limit
}

// deviceIDOf returns the device channel of an enrollment.
func deviceIDOf(id string, e *enrollState) string {
	if e.parentID != "" {
		return e.parentID
	}
	return id
}

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
	id       string
	state    enrollState
	pending  int
	deviceID string
}

// snapshotLocked copies enrollment id's in-memory state. Callers hold s.mu.
func (s *Store) snapshotLocked(id string, e *enrollState) snapshot {
	return snapshot{id: id, state: *e, pending: len(s.pending[id]), deviceID: deviceIDOf(id, e)}
}

// info reads the files of enrollment sn into an EnrollmentInfo; ok is
// false if it vanished (it never does: enrollments are never deleted).
func (r *infoReader) info(sn snapshot) (storage.EnrollmentInfo, bool, error) {
	rec, ok, err := r.s.readEnrollment(sn.id)
	if err != nil || !ok {
		return storage.EnrollmentInfo{}, false, err
	}
	i := storage.EnrollmentInfo{
		ID:               sn.id,
		Type:             sn.state.typ,
		ParentID:         sn.state.parentID,
		Topic:            sn.state.push.Topic,
		Enabled:          sn.state.enabled,
		TokenUpdateTally: sn.state.tally,
		EnrolledAt:       rec.EnrolledAt,
		PushTokenValid:   !sn.state.pushTokenInvalid,
		PendingCommands:  sn.pending,
	}
	if i.LastSeenAt, err = r.s.lastSeen(sn.id); err != nil {
		return i, false, err
	}
	d, err := r.device(sn.deviceID)
	if err != nil {
		return i, false, err
	}
	if d != nil {
		i.SerialNumber = d.SerialNumber
		i.IdentityCertNotAfter = d.IdentityCertNotAfter
	}
	return i, true, nil
}

// cheapMatch applies the filters the in-memory index answers.
func cheapMatch(id string, e *enrollState, f *storage.EnrollmentFilter) bool {
	if f.Type != "" && e.typ != f.Type {
		return false
	}
	if f.Enabled != nil && e.enabled != *f.Enabled {
		return false
	}
	if f.Topic != "" && e.push.Topic != f.Topic {
		return false
	}
	if f.DeviceID != "" && id != f.DeviceID && e.parentID != f.DeviceID {
		return false
	}
	return true
}

// fileMatch applies the filters that need the enrollment's files.
func fileMatch(i *storage.EnrollmentInfo, f *storage.EnrollmentFilter) bool {
	if f.Serial != "" && i.SerialNumber != f.Serial {
		return false
	}
	if !f.SeenBefore.IsZero() && !i.LastSeenAt.Before(f.SeenBefore) {
		return false
	}
	if !f.SeenAfter.IsZero() && !i.LastSeenAt.After(f.SeenAfter) {
		return false
	}
	return true
}

// ListEnrollments implements storage.InspectionStore.
func (s *Store) ListEnrollments(ctx context.Context, f storage.EnrollmentFilter, p storage.Page) ([]storage.EnrollmentInfo, string, error) {
	after, err := decodeCursor(p.Cursor)
	if err != nil {
		return nil, "", err
	}
	limit := pageLimit(p)
	var cands []snapshot
	s.mu.RLock()
	consider := func(id string) {
		e := s.enrollments[id]
		if e == nil || (after != "" && id <= after) || !cheapMatch(id, e, &f) {
			return
		}
		cands = append(cands, s.snapshotLocked(id, e))
	}
	if f.DeviceID != "" {
		consider(f.DeviceID)
		for id := range s.children[f.DeviceID] {
			consider(id)
		}
	} else {
		for id := range s.enrollments {
			consider(id)
		}
	}
	s.mu.RUnlock()
	slices.SortFunc(cands, func(a, b snapshot) int {
		switch {
		case a.id < b.id:
			return -1
		case a.id > b.id:
			return 1
		}
		return 0
	})

	r := &infoReader{s: s}
	out := []storage.EnrollmentInfo{}
	for _, sn := range cands {
		if err := ctx.Err(); err != nil {
			return nil, "", fmt.Errorf("listing enrollments: %w", err)
		}
		i, ok, err := r.info(sn)
		if err != nil {
			return nil, "", fmt.Errorf("listing enrollments: %w", err)
		}
		if !ok || !fileMatch(&i, &f) {
			continue
		}
		if len(out) == limit {
			return out, encodeCursor(out[len(out)-1].ID), nil
		}
		out = append(out, i)
	}
	return out, "", nil
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
	var pending []pendingCommand
	for _, p := range s.pending[id] {
		pending = append(pending, *p)
	}
	s.mu.RUnlock()
	if e == nil {
		return nil, fmt.Errorf("queue of %q: %w", id, storage.ErrNotFound)
	}
	out := make([]storage.QueuedCommand, 0, len(pending))
	for _, p := range pending {
		h, _, ok, err := s.readCommandFile(p.commandUUID)
		if err != nil {
			return nil, fmt.Errorf("queue of %q: %w", id, err)
		}
		qc := storage.QueuedCommand{CommandUUID: p.commandUUID, NotNowCount: p.notNow, LastNotNowAt: p.lastNotNow}
		if p.notNow > 0 {
			qc.Status = mdm.StatusNotNow
		}
		if ok {
			qc.RequestType, qc.EnqueuedAt = h.RequestType, h.EnqueuedAt
		}
		out = append(out, qc)
	}
	return out, nil
}

// ClearQueue implements storage.InspectionStore: every command enqueued
// so far is recorded as cleared for the enrollment (enrollment.json
// cleared_seq), as a re-enrollment does, without disabling it.
func (s *Store) ClearQueue(_ context.Context, id string) (int, error) {
	s.mu.RLock()
	e := s.enrollments[id]
	var deviceID string
	if e != nil {
		deviceID = deviceIDOf(id, e)
	}
	s.mu.RUnlock()
	if e == nil {
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
		if p.seq <= clearedSeq {
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
	s.mu.RLock()
	e := s.enrollments[id]
	var deviceID string
	if e != nil {
		deviceID = deviceIDOf(id, e)
	}
	s.mu.RUnlock()
	if e == nil {
		return fmt.Errorf("cancelling %s for %q: %w", commandUUID, id, storage.ErrNotFound)
	}
	// Under the stripe no report can answer the command meanwhile.
	mu := s.stripe(deviceID)
	mu.Lock()
	defer mu.Unlock()
	s.mu.RLock()
	var p pendingCommand
	i := findPending(s.pending[id], commandUUID)
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
	rec := &resultRecord{
		CommandUUID:   commandUUID,
		ResultAt:      time.Now(),
		NotNowCount:   p.notNow,
		FirstNotNowAt: p.firstNotNow,
		LastNotNowAt:  p.lastNotNow,
		Cancelled:     true,
	}
	if p.notNow > 0 {
		rec.Status = mdm.StatusNotNow
	}
	if err := s.writeJSON(s.resultPath(id, commandUUID), rec); err != nil {
		return fmt.Errorf("cancelling %s for %q: %w", commandUUID, id, err)
	}
	var done bool
	s.mu.Lock()
	q := s.pending[id]
	if i = findPending(q, commandUUID); i >= 0 {
		q = slices.Delete(q, i, i+1)
		if len(q) == 0 {
			delete(s.pending, id)
		} else {
			s.pending[id] = q
		}
		done = s.doneLocked(commandUUID)
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

// pendingState returns the state of a pending command.
func pendingState(id string, p *pendingCommand, h *commandHeader) storage.CommandState {
	st := storage.CommandState{EnrollmentID: id, State: "pending", NotNowCount: p.notNow, EnqueuedAt: h.EnqueuedAt}
	if p.notNow > 0 {
		st.State = mdm.StatusNotNow
	}
	return st
}

// answeredState reads enrollment id's final answer to a command; ok is
// false if it has none (never queued to it, or cleared or cancelled
// before a final answer).
func (s *Store) answeredState(id string, h *commandHeader) (st storage.CommandState, ok bool, err error) {
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
	after, err := decodeCursor(p.Cursor)
	if err != nil {
		return nil, "", err
	}
	limit := pageLimit(p)
	h, _, ok, err := s.readCommandFile(commandUUID)
	if err != nil {
		return nil, "", fmt.Errorf("states of %s: %w", commandUUID, err)
	}
	if !ok {
		return nil, "", fmt.Errorf("states of %s: %w", commandUUID, storage.ErrNotFound)
	}
	type cand struct {
		id      string
		pending *pendingCommand
	}
	var cands []cand
	s.mu.RLock()
	for id := range s.enrollments {
		if after != "" && id <= after {
			continue
		}
		c := cand{id: id}
		if i := findPending(s.pending[id], commandUUID); i >= 0 {
			pc := *s.pending[id][i]
			c.pending = &pc
		}
		cands = append(cands, c)
	}
	s.mu.RUnlock()
	slices.SortFunc(cands, func(a, b cand) int {
		switch {
		case a.id < b.id:
			return -1
		case a.id > b.id:
			return 1
		}
		return 0
	})
	out := []storage.CommandState{}
	for _, c := range cands {
		if err := ctx.Err(); err != nil {
			return nil, "", fmt.Errorf("states of %s: %w", commandUUID, err)
		}
		var st storage.CommandState
		if c.pending != nil {
			st = pendingState(c.id, c.pending, h)
		} else {
			var ok bool
			if st, ok, err = s.answeredState(c.id, h); err != nil {
				return nil, "", fmt.Errorf("states of %s: %w", commandUUID, err)
			} else if !ok {
				continue
			}
		}
		if len(out) == limit {
			return out, encodeCursor(out[len(out)-1].EnrollmentID), nil
		}
		out = append(out, st)
	}
	return out, "", nil
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
	e := s.enrollments[id]
	var pending *pendingCommand
	if i := findPending(s.pending[id], commandUUID); i >= 0 {
		pc := *s.pending[id][i]
		pending = &pc
	}
	s.mu.RUnlock()
	if e == nil {
		return nil, notFound
	}
	if pending != nil {
		st := pendingState(id, pending, h)
		return &st, nil
	}
	st, ok, err := s.answeredState(id, h)
	if err != nil {
		return nil, fmt.Errorf("result of %s for %q: %w", commandUUID, id, err)
	}
	if !ok {
		return nil, notFound
	}
	return &st, nil
}
