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

// TrimOutbox is storage.OutboxStore.TrimOutbox for both SQL backends,
// batch rows per DELETE (each a short transaction): the failed events
// stored before failedBefore, then, while the outbox holds more than
// maxEvents, the oldest failed events and then the oldest pending ones.
// The count is taken once: events stored meanwhile are left for the next
// trim.
func TrimOutbox(ctx context.Context, db Querier, exec ExecFunc, q TrimQueries, batch, maxEvents int, failedBefore time.Time) (int, error) {
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
func trimBatches(ctx context.Context, exec ExecFunc, batch, upTo int, query string, args ...any) (int, error) {
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

// EventArgs are the arguments, in order, of a dialect's statement storing
// ev as a new pending event (the state is the statement's own): id,
// enrollment_id, topic, body, created_at, attempts, next_attempt_at,
// last_error. A zero CreatedAt is now.
func EventArgs(ev *storage.OutboxEvent) []any {
	created := ev.CreatedAt
	if created.IsZero() {
		created = time.Now()
	}
	body := ev.Body
	if body == nil {
		body = []byte{}
	}
	return []any{ev.ID, ev.EnrollmentID, ev.Topic, body, DBTime(created),
		max(ev.Attempts, 0), NullTime(ev.NextAttemptAt), LastErrorText(ev.LastError)}
}

// eventExec runs query, a statement on event id, with exec, and answers
// none when it touched nothing. what names the operation in errors.
func eventExec(ctx context.Context, exec ExecFunc, what, id string, none error, query string, args ...any) error {
	n, err := exec(ctx, query, args...)
	if err != nil {
		return fmt.Errorf("%s event %s: %w", what, id, err)
	}
	if n == 0 {
		return fmt.Errorf("%s event %s: %w", what, id, none)
	}
	return nil
}

// The statements on a claimed event change it only while owner still
// holds the claim: storage.ErrLeaseLost when they touch nothing (the claim
// expired and another owner took the event, or it is gone).

// CompleteEvent implements storage.OutboxStore.CompleteEvent: query
// deletes the event; its arguments are id, owner.
func CompleteEvent(ctx context.Context, exec ExecFunc, query, id, owner string) error {
	return eventExec(ctx, exec, "completing", id, storage.ErrLeaseLost, query, id, owner)
}

// RetryEvent implements storage.OutboxStore.RetryEvent: query records
// the attempt and releases the claim; its arguments are attempts,
// next_attempt_at, last_error, id, owner.
func RetryEvent(ctx context.Context, exec ExecFunc, query, id, owner string, attempts int, next time.Time, lastErr string) error {
	return eventExec(ctx, exec, "retrying", id, storage.ErrLeaseLost, query,
		max(attempts, 0), NullTime(next), LastErrorText(lastErr), id, owner)
}

// SetAsideEvent implements storage.OutboxStore.SetAsideEvent: query
// marks the event failed and releases the claim; its arguments are
// attempts, last_error, id, owner.
func SetAsideEvent(ctx context.Context, exec ExecFunc, query, id, owner string, attempts int, lastErr string) error {
	return eventExec(ctx, exec, "setting aside", id, storage.ErrLeaseLost, query,
		max(attempts, 0), LastErrorText(lastErr), id, owner)
}

// ReleaseEvents implements storage.OutboxStore.ReleaseEvents: query drops
// the claims of its one argument, owner.
func ReleaseEvents(ctx context.Context, exec ExecFunc, query, owner string) error {
	if _, err := exec(ctx, query, owner); err != nil {
		return fmt.Errorf("releasing events of %s: %w", owner, err)
	}
	return nil
}

// ListEvents implements storage.OutboxStore.ListEvents: query selects
// OutboxColumns of the events in a state after a seq, in seq order; its
// arguments are state, the cursor's seq, the row limit. A cursor is the
// base64url of the last seq of the previous page.
func ListEvents(ctx context.Context, db Querier, query, state string, p storage.Page) ([]storage.OutboxEvent, string, error) {
	after, err := DecodeSeqCursor(p.Cursor)
	if err != nil {
		return nil, "", err
	}
	limit := p.Size()
	rows, err := db.QueryContext(ctx, query, state, after, limit+1)
	if err != nil {
		return nil, "", fmt.Errorf("listing %s events: %w", state, err)
	}
	defer rows.Close()
	out := []storage.OutboxEvent{}
	var last int64
	for rows.Next() {
		seq, ev, err := ScanOutboxEvent(rows)
		if err != nil {
			return nil, "", fmt.Errorf("listing %s events: %w", state, err)
		}
		if len(out) == limit {
			return out, storage.EncodeCursor(strconv.FormatInt(last, 10)), nil
		}
		last = seq
		out = append(out, ev)
	}
	if err := rows.Err(); err != nil {
		return nil, "", fmt.Errorf("listing %s events: %w", state, err)
	}
	return out, "", nil
}

// RedeliverEvent implements storage.OutboxStore.RedeliverEvent: query
// makes the failed event id, its one argument, pending again.
func RedeliverEvent(ctx context.Context, exec ExecFunc, query, id string) error {
	return eventExec(ctx, exec, "redelivering", id, fmt.Errorf("no such failed event: %w", storage.ErrNotFound), query, id)
}

// DropEvent implements storage.OutboxStore.DropEvent: query deletes the
// event id, its one argument.
func DropEvent(ctx context.Context, exec ExecFunc, query, id string) error {
	return eventExec(ctx, exec, "dropping", id, storage.ErrNotFound, query, id)
}

// OutboxStats implements storage.OutboxStore.OutboxStats: query selects
// the pending count, the failed count and the created_at of the oldest
// pending event (NULL for none).
func OutboxStats(ctx context.Context, db Querier, query string) (storage.OutboxStats, error) {
	var st storage.OutboxStats
	var oldest sql.NullTime
	if err := db.QueryRowContext(ctx, query).Scan(&st.Pending, &st.Failed, &oldest); err != nil {
		return st, fmt.Errorf("outbox stats: %w", err)
	}
	st.OldestPending = UTC(oldest)
	return st, nil
}

// StoreEvent implements storage.OutboxStore.StoreEvent: query stores the
// event (EventArgs), and stores nothing for an event ID already there, so
// a call retried after an unknown outcome stores the event once.
func StoreEvent(ctx context.Context, exec ExecFunc, query string, ev *storage.OutboxEvent) error {
	if _, err := exec(ctx, query, EventArgs(ev)...); err != nil {
		return fmt.Errorf("storing event %s: %w", ev.ID, err)
	}
	return nil
}
