package sqlstore

import (
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
