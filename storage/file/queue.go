package file

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/picomdm/picomdm/mdm"
	"github.com/picomdm/picomdm/storage"
	"github.com/picomdm/picomdm/storage/internal/memindex"
)

// dropPendingLocked removes from id's queue every command enqueued up to
// seq upTo (a re-enrollment) and returns the CommandUUIDs no enrollment is
// waiting for any more. Callers hold s.mu for writing.
func (s *Store) dropPendingLocked(id string, upTo uint64) (done []string) {
	q := s.pending[id]
	kept := q[:0]
	for _, p := range q {
		if p.Seq > upTo {
			kept = append(kept, p)
			continue
		}
		if s.doneLocked(p.CommandUUID) {
			done = append(done, p.CommandUUID)
		}
	}
	clear(q[len(kept):]) // let the dropped entries be collected
	if len(kept) == 0 {
		delete(s.pending, id)
	} else {
		s.pending[id] = kept
	}
	return done
}

// doneLocked counts one enrollment less waiting for commandUUID and
// reports whether that was the last. Callers hold s.mu for writing.
func (s *Store) doneLocked(commandUUID string) bool {
	s.remaining[commandUUID]--
	if s.remaining[commandUUID] > 0 {
		return false
	}
	delete(s.remaining, commandUUID)
	return true
}

// removePendingLocked removes the command at index i of id's queue and
// reports whether no enrollment is waiting for it any more. Callers hold
// s.mu for writing.
func (s *Store) removePendingLocked(id string, i int) (done bool) {
	q := s.pending[id]
	commandUUID := q[i].CommandUUID
	if q = slices.Delete(q, i, i+1); len(q) == 0 {
		delete(s.pending, id)
	} else {
		s.pending[id] = q
	}
	return s.doneLocked(commandUUID)
}

// EnqueueCommand implements storage.CommandEnqueuer: the targets file,
// then the command file (the commit point), then the in-memory queues —
// four syncs however many targets. The command is stored only if at least
// one ID is queued to, so a call naming only unknown IDs can be retried
// with the same CommandUUID. IDs that are queued to are absent from the
// returned map.
func (s *Store) EnqueueCommand(ctx context.Context, ids []string, cmd *mdm.Command) (map[string]error, error) {
	if cmd == nil || cmd.CommandUUID == "" {
		return nil, errors.New("enqueue: command has no CommandUUID")
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("enqueue %s: %w", cmd.CommandUUID, err)
	}
	uuid := cmd.CommandUUID

	// Reserve the CommandUUID against concurrent enqueues of it; the
	// command file guards it against later ones.
	s.mu.Lock()
	_, busy := s.enqueuing[uuid]
	s.enqueuing[uuid] = struct{}{}
	s.mu.Unlock()
	if busy {
		return nil, fmt.Errorf("enqueue %s: %w", uuid, storage.ErrCommandExists)
	}
	release := func() {
		s.mu.Lock()
		delete(s.enqueuing, uuid)
		s.mu.Unlock()
	}
	if taken, err := exists(s.commandPath(uuid)); err != nil || taken {
		release()
		if err == nil {
			err = storage.ErrCommandExists
		}
		return nil, fmt.Errorf("enqueue %s: %w", uuid, err)
	}

	errs := make(map[string]error)
	targets := make([]string, 0, len(ids))
	named := make(map[string]struct{}, len(ids))
	s.mu.RLock()
	for _, id := range ids {
		if _, dup := named[id]; dup {
			continue
		}
		named[id] = struct{}{}
		if s.enrollments[id] == nil {
			errs[id] = fmt.Errorf("enqueue %s to %q: %w", uuid, id, storage.ErrNotFound)
			continue
		}
		targets = append(targets, id)
	}
	s.mu.RUnlock()
	if len(targets) == 0 {
		release()
		return errs, nil
	}
	s.mu.Lock()
	s.seq++
	seq := s.seq
	s.mu.Unlock()

	now := time.Now()
	if err := s.writeCommand(cmd, seq, now, targets); err != nil {
		release()
		return nil, fmt.Errorf("enqueue %s: %w", uuid, err)
	}

	// Committed: make it visible. A target re-enrolled since seq was
	// handed out has cleared it, as it will be cleared at the next start.
	s.mu.Lock()
	n := 0
	for _, id := range targets {
		if e := s.enrollments[id]; e == nil || seq <= e.clearedSeq {
			continue
		}
		s.pending[id] = memindex.Insert(s.pending[id], &memindex.Pending{Seq: seq, CommandUUID: uuid})
		n++
	}
	if n > 0 {
		s.remaining[uuid] = n
	}
	delete(s.enqueuing, uuid)
	s.mu.Unlock()
	if n == 0 {
		s.removeQueued([]string{uuid})
	}
	return errs, nil
}

// writeCommand writes the targets file and then the command file.
func (s *Store) writeCommand(cmd *mdm.Command, seq uint64, now time.Time, targets []string) error {
	targetsJSON, err := json.Marshal(&targetsRecord{CommandUUID: cmd.CommandUUID, Seq: seq, EnqueuedAt: now, IDs: targets})
	if err != nil {
		return fmt.Errorf("encoding targets: %w", err)
	}
	if err := s.writeFile(s.queuedPath(cmd.CommandUUID), targetsJSON); err != nil {
		return err
	}
	header, err := json.Marshal(&commandHeader{CommandUUID: cmd.CommandUUID, RequestType: cmd.RequestType(), Seq: seq, EnqueuedAt: now})
	if err != nil {
		return fmt.Errorf("encoding command header: %w", err)
	}
	body := make([]byte, 0, len(header)+1+len(cmd.Raw))
	body = append(append(append(body, header...), '\n'), cmd.Raw...)
	if err := s.writeFile(s.commandPath(cmd.CommandUUID), body); err != nil {
		s.removeQueued([]string{cmd.CommandUUID})
		return err
	}
	return nil
}

// readCommand reads a command file back.
func (s *Store) readCommand(uuid string) (*mdm.Command, error) {
	data, ok, err := readFile(s.commandPath(uuid))
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, fmt.Errorf("command %s: body missing", uuid)
	}
	line, raw, found := bytes.Cut(data, []byte{'\n'})
	if !found {
		return nil, fmt.Errorf("command %s: no header", uuid)
	}
	var h commandHeader
	if err := json.Unmarshal(line, &h); err != nil {
		return nil, fmt.Errorf("command %s: decoding header: %w", uuid, err)
	}
	cmd := &mdm.Command{CommandUUID: h.CommandUUID, Raw: raw}
	cmd.Command.RequestType = h.RequestType
	return cmd, nil
}

// RetrieveNextCommand implements storage.CommandQueueStore: an in-memory
// look-up, then one read of the command's file.
func (s *Store) RetrieveNextCommand(r *mdm.Request) (*mdm.Command, error) {
	var uuid string
	s.mu.RLock()
	for _, p := range s.pending[r.ID] {
		if p.Deferred {
			continue
		}
		uuid = p.CommandUUID
		break
	}
	s.mu.RUnlock()
	if uuid == "" {
		return nil, nil
	}
	cmd, err := s.readCommand(uuid)
	if err != nil {
		return nil, fmt.Errorf("next command of %q: %w", r.ID, err)
	}
	return cmd, nil
}

// StoreCommandReport implements storage.CommandQueueStore: a report for a
// pending command writes the enrollment's result file for it (two syncs),
// then updates the in-memory queue. Anything else writes nothing.
func (s *Store) StoreCommandReport(r *mdm.Request, report *mdm.CommandResults) error {
	now := time.Now()
	s.touchSeen(r.ID, now)
	if report.Status == "" || report.Status == mdm.StatusIdle {
		s.endDeferral(r.ID)
		return nil
	}
	mu := s.stripe(r.DeviceID())
	mu.Lock()
	defer mu.Unlock()

	// Under the stripe nothing else can answer or clear this
	// enrollment's commands, so what is read here still holds below.
	s.mu.RLock()
	var p memindex.Pending
	i := memindex.Find(s.pending[r.ID], report.CommandUUID)
	if i >= 0 {
		p = *s.pending[r.ID][i]
	}
	s.mu.RUnlock()
	if i < 0 {
		// Unknown, already final, or someone else's: the first final
		// answer wins, so there is nothing to do.
		return nil
	}

	notNow := report.Status == mdm.StatusNotNow
	if notNow {
		p.CountNotNow(now)
	}
	rec := newResultRecord(&p, report.Status, now)
	rec.Result = report.Raw
	if err := s.writeJSON(s.resultPath(r.ID, report.CommandUUID), rec); err != nil {
		return fmt.Errorf("storing command report: %w", err)
	}

	var done bool
	s.mu.Lock()
	q := s.pending[r.ID]
	if i = memindex.Find(q, report.CommandUUID); i >= 0 {
		if notNow {
			*q[i] = p // deferred until the next Idle
		} else {
			done = s.removePendingLocked(r.ID, i)
		}
	}
	s.mu.Unlock()
	if done {
		s.removeQueued([]string{report.CommandUUID})
	}
	return nil
}

// endDeferral makes the enrollment's NotNow'd commands eligible again (an
// Idle report). It only touches memory, and only when something is
// deferred.
func (s *Store) endDeferral(id string) {
	s.mu.RLock()
	any := slices.ContainsFunc(s.pending[id], func(p *memindex.Pending) bool { return p.Deferred })
	s.mu.RUnlock()
	if !any {
		return
	}
	s.mu.Lock()
	for _, p := range s.pending[id] {
		p.Deferred = false
	}
	s.mu.Unlock()
}
