package sqlstore

import (
	"context"
	"database/sql"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/picomdm/picomdm/storage"
)

// MaxLastError bounds the last_error text an outbox event keeps: a
// receiver's answer may be long or binary (and strict SQL modes would
// refuse longer text rather than store the outcome).
const MaxLastError = 4096

// OutboxColumns are the outbox columns ScanOutboxEvent reads, in order.
const OutboxColumns = `seq, id, enrollment_id, topic, body, created_at, state, attempts,
	next_attempt_at, last_error`

// DBTime is t as the SQL backends store it: UTC, microseconds, so that a
// time compared in SQL is the one stored, whichever way a driver rounds.
func DBTime(t time.Time) time.Time { return t.UTC().Truncate(time.Microsecond) }

// NullTime is t as a nullable time column: NULL for the zero time.
func NullTime(t time.Time) sql.NullTime {
	if t.IsZero() {
		return sql.NullTime{}
	}
	return sql.NullTime{Time: DBTime(t), Valid: true}
}

// LastErrorText is s as last_error stores it: valid UTF-8 without NUL
// (what MySQL's utf8mb4 and PostgreSQL's TEXT take), at most MaxLastError
// bytes, cut on a rune boundary.
func LastErrorText(s string) string {
	s = strings.ReplaceAll(strings.ToValidUTF8(s, "\uFFFD"), "\x00", "\uFFFD")
	if len(s) <= MaxLastError {
		return s
	}
	cut := MaxLastError
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut]
}

// ScanOutboxEvent reads one row of OutboxColumns.
func ScanOutboxEvent(sc interface{ Scan(...any) error }) (seq int64, ev storage.OutboxEvent, err error) {
	var next sql.NullTime
	if err := sc.Scan(&seq, &ev.ID, &ev.EnrollmentID, &ev.Topic, &ev.Body, &ev.CreatedAt, &ev.State,
		&ev.Attempts, &next, &ev.LastError); err != nil {
		return 0, ev, err
	}
	ev.CreatedAt = ev.CreatedAt.UTC()
	ev.NextAttemptAt = UTC(next)
	if ev.Body == nil {
		ev.Body = []byte{}
	}
	return seq, ev, nil
}

// DecodeSeqCursor returns the seq a ListEvents cursor names (0 for the
// first page), or an error wrapping storage.ErrBadCursor.
func DecodeSeqCursor(cursor string) (int64, error) {
	s, err := storage.DecodeCursor(cursor)
	if err != nil || s == "" {
		return 0, err
	}
	seq, err := strconv.ParseInt(s, 10, 64)
	if err != nil || seq <= 0 {
		return 0, fmt.Errorf("cursor %q: %w", cursor, storage.ErrBadCursor)
	}
	return seq, nil
}

// TrimQueries are one dialect's statements for TrimOutbox. Failed deletes
// a batch of failed events stored before its first argument, Oldest the
// oldest events of the state given as its first argument; the last
// placeholder of both is the batch size. Count counts every event.
type TrimQueries struct {
	Failed, Oldest, Count string
}

// BatchExec runs a statement, retrying as the backend retries transient
// conflicts, and returns the rows it affected.
type BatchExec func(ctx context.Context, query string, args ...any) (int64, error)

// TrimOutbox is storage.OutboxStore.TrimOutbox for both SQL backends,
// batch rows per DELETE (each a short transaction): the failed events
// stored before failedBefore, then, while the outbox holds more than
// maxEvents, the oldest failed events and then the oldest pending ones.
// The count is taken once: events stored meanwhile are left for the next
// trim.
func TrimOutbox(ctx context.Context, db *sql.DB, exec BatchExec, q TrimQueries, batch, maxEvents int, failedBefore time.Time) (int, error) {
	total := 0
	if !failedBefore.IsZero() {
		n, err := trimBatches(ctx, exec, batch, -1, q.Failed, DBTime(failedBefore))
		total += n
		if err != nil {
			return total, fmt.Errorf("trimming the outbox: %w", err)
		}
	}
	if maxEvents <= 0 {
		return total, nil
	}
	var count int
	if err := db.QueryRowContext(ctx, q.Count).Scan(&count); err != nil {
		return total, fmt.Errorf("trimming the outbox: counting: %w", err)
	}
	excess := count - maxEvents
	for _, state := range []string{storage.OutboxFailed, storage.OutboxPending} {
		if excess <= 0 {
			break
		}
		n, err := trimBatches(ctx, exec, batch, excess, q.Oldest, state)
		total += n
		excess -= n
		if err != nil {
			return total, fmt.Errorf("trimming the outbox: %w", err)
		}
	}
	return total, nil
}

// trimBatches runs query (whose last placeholder is the batch size) until
// it deleted upTo rows (-1: until a run deletes less than a batch) and
// returns the rows deleted.
func trimBatches(ctx context.Context, exec BatchExec, batch, upTo int, query string, args ...any) (int, error) {
	total := 0
	for upTo < 0 || total < upTo {
		size := batch
		if upTo >= 0 {
			size = min(size, upTo-total)
		}
		n, err := exec(ctx, query, append(args, size)...)
		if err != nil {
			return total, err
		}
		total += int(n)
		if n < int64(size) {
			break
		}
	}
	return total, nil
}
