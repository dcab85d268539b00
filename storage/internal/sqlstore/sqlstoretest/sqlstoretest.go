// Package sqlstoretest holds the tests both SQL backends (mysql, pgsql)
// run against their own databases, for what the conformance suite
// (storagetest) cannot see from outside a store: a row another session
// holds locked, the bytes a column stores, the migration lock. Each
// backend hands in its dialect's SQL and its Open.
package sqlstoretest

import (
	"context"
	"database/sql"
	"errors"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	pmlog "github.com/picomdm/picomdm/log"
	"github.com/picomdm/picomdm/storage"
	"github.com/picomdm/picomdm/storage/internal/sqlstore"
	"github.com/picomdm/picomdm/storage/storagetest"
	"github.com/picomdm/picomdm/test/logtest"
)

// Closing ends a test's Open: it fails the test on err, else has s closed
// when the test ends (failing it if Close fails) and returns s.
func Closing[S io.Closer](tb testing.TB, s S, err error) S {
	tb.Helper()
	if err != nil {
		tb.Fatalf("Open: %v", err)
	}
	tb.Cleanup(func() {
		if err := s.Close(); err != nil {
			tb.Errorf("Close: %v", err)
		}
	})
	return s
}

// OpenReplicas opens n stores at once with open (replicas starting
// together on one database) and has them closed when the test ends; an
// Open failing fails the test.
func OpenReplicas[S io.Closer](t *testing.T, n int, open func() (S, error)) []S {
	t.Helper()
	stores := make([]S, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { stores[i], errs[i] = open() })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("replica %d: Open: %v", i, err)
		}
		t.Cleanup(func() { stores[i].Close() })
	}
	return stores
}

// MigratedOnce checks that db's schema_migrations records each of
// migrations exactly once, and nothing else.
func MigratedOnce(t *testing.T, db *sql.DB, migrations []sqlstore.Migration) {
	t.Helper()
	rows, err := db.Query("SELECT version, COUNT(*) FROM schema_migrations GROUP BY version ORDER BY version")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	n := 0
	for rows.Next() {
		var version, count int
		if err := rows.Scan(&version, &count); err != nil {
			t.Fatal(err)
		}
		if n >= len(migrations) || version != migrations[n].Version || count != 1 {
			t.Fatalf("schema_migrations: version %d recorded %d times, want the %d migrations once each", version, count, len(migrations))
		}
		n++
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if n != len(migrations) {
		t.Fatalf("schema_migrations has %d versions, want %d", n, len(migrations))
	}
}

// Column returns the one column of query's rows, as strings.
func Column(t *testing.T, db sqlstore.Querier, query string, args ...any) []string {
	t.Helper()
	rows, err := db.QueryContext(t.Context(), query, args...)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var v string
		if err := rows.Scan(&v); err != nil {
			t.Fatal(err)
		}
		out = append(out, v)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// outboxEvent returns a new event of enrollment.
func outboxEvent(enrollment string, created time.Time) *storage.OutboxEvent {
	return &storage.OutboxEvent{
		ID:           storagetest.NewUUID(),
		EnrollmentID: enrollment,
		Topic:        "mdm.Connect",
		Body:         []byte(`{"topic":"mdm.Connect"}`),
		CreatedAt:    created,
	}
}

// claimIDs claims for owner at now and returns the claimed event IDs.
func claimIDs(t *testing.T, ctx context.Context, s storage.OutboxStore, owner string, now time.Time) []string {
	t.Helper()
	evs, err := s.ClaimEvents(ctx, owner, now, now.Add(time.Minute), 10)
	if err != nil {
		t.Fatalf("ClaimEvents(%s): %v", owner, err)
	}
	var ids []string
	for _, ev := range evs {
		ids = append(ids, ev.ID)
	}
	return ids
}

// ClaimBehindLockedHead: while another transaction holds an enrollment's
// oldest pending event locked (another replica claiming it at this
// moment), a claim of s neither waits for it nor takes the event behind
// it; other enrollments' events are claimed as usual. lockEvent, run in a
// transaction of db, locks the outbox row of the event ID it is given
// (SELECT … FOR UPDATE).
func ClaimBehindLockedHead(t *testing.T, s storage.OutboxStore, db *sql.DB, lockEvent string) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	now := time.Now().UTC()
	e, f := storagetest.NewUUID(), storagetest.NewUUID()
	head, behind, other := outboxEvent(e, now), outboxEvent(e, now), outboxEvent(f, now)
	for _, ev := range []*storage.OutboxEvent{head, behind, other} {
		if err := s.StoreEvent(ctx, ev); err != nil {
			t.Fatal(err)
		}
	}
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	var seq int64
	if err := tx.QueryRowContext(ctx, lockEvent, head.ID).Scan(&seq); err != nil {
		t.Fatal(err)
	}
	if got := claimIDs(t, ctx, s, "b", now); len(got) != 1 || got[0] != other.ID {
		t.Fatalf("claim while %s's head is locked: %v; want only %s", e, got, other.ID)
	}
	if err := tx.Rollback(); err != nil {
		t.Fatal(err)
	}
	if got := claimIDs(t, ctx, s, "c", now); len(got) != 1 || got[0] != head.ID {
		t.Fatalf("claim once the head is free: %v; want %s", got, head.ID)
	}
}

// LastErrorStored: a long last error with bytes a text column refuses
// (invalid UTF-8, NUL) is stored cut to sqlstore.MaxLastError bytes of
// valid UTF-8, not refused (which would leave the outcome unrecorded and
// the event retried forever).
func LastErrorStored(t *testing.T, s storage.OutboxStore) {
	ctx := context.Background()
	now := time.Now().UTC()
	ev := outboxEvent(storagetest.NewUUID(), now)
	if err := s.StoreEvent(ctx, ev); err != nil {
		t.Fatal(err)
	}
	if got := claimIDs(t, ctx, s, "a", now); len(got) != 1 {
		t.Fatalf("claimed %v, want %s", got, ev.ID)
	}
	lastErr := "bad\xff\x00" + strings.Repeat("é", sqlstore.MaxLastError)
	if err := s.RetryEvent(ctx, ev.ID, "a", 1, now, lastErr); err != nil {
		t.Fatalf("RetryEvent: %v", err)
	}
	evs, _, err := s.ListEvents(ctx, storage.OutboxPending, storage.Page{Limit: 10})
	if err != nil || len(evs) != 1 {
		t.Fatalf("ListEvents: %v, %v", evs, err)
	}
	got := evs[0].LastError
	if len(got) > sqlstore.MaxLastError || len(got) < sqlstore.MaxLastError-1 || !utf8.ValidString(got) || !strings.HasPrefix(got, "bad\uFFFD\uFFFDéé") {
		t.Fatalf("last error stored as %d bytes (valid UTF-8: %v), prefix %q", len(got), utf8.ValidString(got), got[:min(len(got), 12)])
	}
}

// RawKeys returns storagetest.RunKeySealing's reader of the private keys
// as db stores them: the key_pem columns of push_certs and scep_ca.
func RawKeys(db *sql.DB) func(t *testing.T) [][]byte {
	return func(t *testing.T) [][]byte {
		rows, err := db.Query("SELECT key_pem FROM push_certs UNION ALL SELECT key_pem FROM scep_ca")
		if err != nil {
			t.Fatalf("reading raw keys: %v", err)
		}
		defer rows.Close()
		var keys [][]byte
		for rows.Next() {
			var k []byte
			if err := rows.Scan(&k); err != nil {
				t.Fatalf("reading raw keys: %v", err)
			}
			keys = append(keys, k)
		}
		if err := rows.Err(); err != nil {
			t.Fatalf("reading raw keys: %v", err)
		}
		return keys
	}
}

// Conn returns a connection of its own to the database of dsn (a session
// apart from any store's), closed when the test ends.
func Conn(t *testing.T, driverName, dsn string) *sql.Conn {
	t.Helper()
	db, err := sql.Open(driverName, dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	conn, err := db.Conn(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// JSONLogger returns a logger writing JSON lines to b.
func JSONLogger(t *testing.T, b *logtest.Buffer) *slog.Logger {
	t.Helper()
	logger, err := pmlog.New(b, "json", true)
	if err != nil {
		t.Fatal(err)
	}
	return logger
}

// MigrationLogged checks that a store opened on a fresh database logged
// its migration to logs (its given logger, JSON), tagged storage=backend
// and with the versions applied.
func MigrationLogged(t *testing.T, logs *logtest.Buffer, backend string) {
	t.Helper()
	line := logs.Find(t, "storage schema migrated")
	if line == nil || line["storage"] != backend || line["versions"] == nil {
		t.Fatalf("migration line %v, want one with storage=%s and the versions applied: %v", line, backend, logs.Lines(t))
	}
}

// MigrationGivesUpAtDeadline: while another session holds the migration
// lock (the caller took it), Open waits (and says so), then fails at its
// deadline with an error instead of hanging; once the lock is free it
// migrates. open opens a store with the migration timeout and logger
// given; migrated reports, from the failed Open's error or the database,
// whether the migrations ran regardless; release frees the lock.
func MigrationGivesUpAtDeadline(t *testing.T, open func(timeout time.Duration, logger *slog.Logger) (io.Closer, error),
	migrated func(openErr error) bool, release func()) {
	const deadline = 300 * time.Millisecond
	var logs logtest.Buffer
	start := time.Now()
	s, err := open(deadline, JSONLogger(t, &logs))
	elapsed := time.Since(start)
	if err == nil {
		s.Close()
		t.Fatal("Open migrated although another session held the migration lock")
	}
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Open: %v, want the migration deadline", err)
	}
	if elapsed < deadline || elapsed > deadline+5*time.Second {
		t.Errorf("Open gave up after %v, want about %v", elapsed, deadline)
	}
	if migrated(err) {
		t.Errorf("the migration ran without its lock: %v", err)
	}
	if logs.Find(t, "waiting for the schema migration lock, held by another replica") == nil {
		t.Errorf("the wait was not logged: %v", logs.Lines(t))
	}

	release()
	s, err = open(time.Minute, JSONLogger(t, &logs))
	if err != nil {
		t.Fatalf("Open once the lock is free: %v", err)
	}
	s.Close()
}
