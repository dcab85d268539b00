package file

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/picomdm/picomdm/storage"
)

// The re-push records live in one append-only journal, pushes.log: a JSON
// line per recorded push ({"id", "pushed_at", "repushes",
// "next_repush_at"}), the last line of an enrollment winning. RecordPushes
// appends a whole batch with one write and one sync, where a file per
// enrollment cost a create, a write and a rename each (60% of a 1,000-ID
// push fan-out). The journal is compacted — rewritten from the in-memory
// index, crash-safely — once it holds several times more lines than
// records. Enrollments' push.json files (written by earlier versions) are
// still read at start, before the journal, which supersedes them.

// pushLogName is the journal's file name in the storage directory.
const pushLogName = "pushes.log"

// pushLogMinCompact is the fewest lines the journal holds before a
// compaction is worth its rewrite.
const pushLogMinCompact = 4096

// pushLogLine is one journal line.
type pushLogLine struct {
	ID string `json:"id"`
	pushRecord
}

func (s *Store) pushLogPath() string { return filepath.Join(s.dir, pushLogName) }

// loadPushLog replays the journal into the index (after the enrollments
// are loaded): lines of unknown enrollments, and a torn last line of a
// crash mid-append, are skipped.
func (s *Store) loadPushLog() error {
	data, err := os.ReadFile(s.pushLogPath())
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("reading %s: %w", pushLogName, err)
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		s.pushLogLines++
		var line pushLogLine
		if json.Unmarshal(sc.Bytes(), &line) != nil || s.enrollments[line.ID] == nil {
			continue
		}
		s.pushRecords[line.ID] = storage.PushRecord{ID: line.ID, PushedAt: line.PushedAt, Repushes: line.Repushes, NextRepushAt: line.NextRepushAt}
	}
	return sc.Err()
}

// appendPushLog appends records to the journal with one write, synced
// (when the store syncs), then compacts it if it grew enough. s.pushMu is
// held.
func (s *Store) appendPushLog(records []storage.PushRecord) error {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	for _, r := range records {
		if err := enc.Encode(pushLogLine{ID: r.ID, pushRecord: pushRecord{PushedAt: r.PushedAt, Repushes: r.Repushes, NextRepushAt: r.NextRepushAt}}); err != nil {
			return fmt.Errorf("encoding push record: %w", err)
		}
	}
	if s.pushLog == nil {
		f, err := os.OpenFile(s.pushLogPath(), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
		if err != nil {
			return fmt.Errorf("opening %s: %w", pushLogName, err)
		}
		s.pushLog = f
	}
	if _, err := s.pushLog.Write(buf.Bytes()); err != nil {
		return fmt.Errorf("appending to %s: %w", pushLogName, err)
	}
	if s.sync {
		if err := s.pushLog.Sync(); err != nil {
			return fmt.Errorf("syncing %s: %w", pushLogName, err)
		}
	}
	s.pushLogLines += len(records)
	if s.pushLogLines > max(pushLogMinCompact, 4*len(s.pushRecords)) {
		return s.compactPushLog()
	}
	return nil
}

// compactPushLog rewrites the journal with one line per record of the
// index: a new file renamed over the old one (and the directory synced),
// so a crash leaves the old journal or the new one. s.pushMu is held.
func (s *Store) compactPushLog() error {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	for _, r := range s.pushRecords {
		if err := enc.Encode(pushLogLine{ID: r.ID, pushRecord: pushRecord{PushedAt: r.PushedAt, Repushes: r.Repushes, NextRepushAt: r.NextRepushAt}}); err != nil {
			return fmt.Errorf("encoding push record: %w", err)
		}
	}
	if err := s.writeFile(s.pushLogPath(), buf.Bytes()); err != nil {
		return fmt.Errorf("compacting %s: %w", pushLogName, err)
	}
	if s.pushLog != nil {
		s.pushLog.Close()
		s.pushLog = nil
	}
	s.pushLogLines = len(s.pushRecords)
	return nil
}

// closePushLog closes the journal's append handle.
func (s *Store) closePushLog() error {
	s.pushMu.Lock()
	defer s.pushMu.Unlock()
	if s.pushLog == nil {
		return nil
	}
	err := s.pushLog.Close()
	s.pushLog = nil
	return err
}
