package pgsql

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"time"

	"github.com/picomdm/picomdm/storage"
)

// purgeBatch is how many rows one purge statement deletes: small enough
// that each statement is a short transaction holding few locks and
// writing little WAL at once, so devices never notice the purge.
const purgeBatch = 1000

// Purge statements.
const (
	// purgeResultsSQL deletes one batch of results answered before the
	// cutoff. It selects their physical row addresses (ctid) through
	// command_results_answered_at and deletes by them (a TID scan). A row
	// updated in between has a new ctid and is simply not deleted this
	// time. This includes an interim NotNow of a command still pending for
	// longer than the retention: losing that old interim answer is
	// harmless (the queue row keeps the NotNow count, and the next answer
	// writes a result again).
	purgeResultsSQL = `
DELETE FROM command_results WHERE ctid = ANY (ARRAY(
    SELECT ctid FROM command_results WHERE answered_at < $1 LIMIT $2
))`

	// purgeCommandsSQL examines one batch of commands created before the
	// cutoff, after a keyset cursor (commands_created_at), and deletes
	// those no queue row and no result refers to any more (probes of the
	// command_queue primary key and command_results_command_uuid). The
	// cursor moves past commands that are still referenced, so a pile of
	// commands pending on long-offline devices cannot stall the purge. It
	// returns how many it examined and deleted, and the cursor.
	//
	// Deleting an unreferenced command is race-free: a command row is only
	// ever referred to by the statement that creates it (EnqueueCommand),
	// so nothing can start referring to one this statement sees unreferenced.
	purgeCommandsSQL = `
WITH batch AS (
    SELECT command_uuid, created_at FROM commands
    WHERE created_at < $1 AND (created_at, command_uuid) > ($2::timestamptz, $3::text)
    ORDER BY created_at, command_uuid
    LIMIT $4
), gone AS (
    DELETE FROM commands c USING batch b
    WHERE c.command_uuid = b.command_uuid
      AND NOT EXISTS (SELECT 1 FROM command_queue q WHERE q.command_uuid = c.command_uuid)
      AND NOT EXISTS (SELECT 1 FROM command_results r WHERE r.command_uuid = c.command_uuid)
    RETURNING 1
)
SELECT (SELECT count(*) FROM batch), (SELECT count(*) FROM gone), b.created_at, b.command_uuid
FROM batch b
ORDER BY b.created_at DESC, b.command_uuid DESC
LIMIT 1`
)

var _ storage.Purger = (*Store)(nil)

// PurgeInterval is how often Purge should run: the purge_interval
// storage option (default 10m), which the app's background runner reads.
func (s *Store) PurgeInterval() time.Duration { return s.opts.PurgeInterval }

// Purge implements storage.Purger: one round of purge as of now (nothing
// when neither delete=1 nor a retention asks for one). The app's
// background runner calls it on one replica at a time, under a lease. It
// reports the results deleted; with delete=1 there are none, only
// commands nothing refers to any more.
func (s *Store) Purge(ctx context.Context, now time.Time) (int, error) {
	if !s.opts.Delete && s.opts.Retention <= 0 {
		return 0, nil
	}
	st, err := s.purge(ctx, now)
	if st.results > 0 || st.commands > 0 {
		s.logger.DebugContext(ctx, "purged answered commands", "results", st.results, "commands", st.commands)
	}
	return int(st.results), err
}

// purgeStats counts what one purge deleted.
type purgeStats struct {
	results, commands int64
	// skipped is set when another replica held the purge lock.
	skipped bool
}

// purge deletes, as of now, results older than the retention, then
// commands nothing refers to any more (with delete=1: all of them; else
// those also created before the retention cutoff). It is idempotent.
// Besides the runner's lease, it takes a PostgreSQL advisory lock without
// waiting, and skips this round if another replica holds it, so that two
// rounds never overlap even when a lease ran out mid-round.
func (s *Store) purge(ctx context.Context, now time.Time) (st purgeStats, err error) {
	conn, err := s.db.Conn(ctx)
	if err != nil {
		return st, fmt.Errorf("purge: connecting: %w", err)
	}
	var locked bool
	if err := conn.QueryRowContext(ctx, "SELECT pg_try_advisory_lock($1)", purgeLockKey).Scan(&locked); err != nil {
		conn.Close()
		return st, fmt.Errorf("purge: taking lock: %w", err)
	}
	if !locked {
		conn.Close()
		st.skipped = true
		return st, nil
	}
	defer func() {
		var released bool
		uerr := conn.QueryRowContext(context.WithoutCancel(ctx), "SELECT pg_advisory_unlock($1)", purgeLockKey).Scan(&released)
		if uerr != nil || !released {
			// Never hand a connection that may still hold the lock back
			// to the pool: it would keep every replica from purging.
			// driver.ErrBadConn makes database/sql close it instead.
			conn.Raw(func(any) error { return driver.ErrBadConn })
			if err == nil {
				if uerr == nil {
					uerr = errors.New("lock was not held")
				}
				err = fmt.Errorf("purge: releasing lock: %w", uerr)
			}
		}
		conn.Close()
	}()

	commandCutoff := now
	if s.opts.Retention > 0 {
		resultCutoff := now.Add(-s.opts.Retention)
		if st.results, err = purgeResults(ctx, conn, resultCutoff); err != nil {
			return st, err
		}
		if !s.opts.Delete {
			commandCutoff = resultCutoff
		}
	}
	st.commands, err = purgeCommands(ctx, conn, commandCutoff)
	return st, err
}

// purgeResults deletes results answered before cutoff, a batch per
// statement.
func purgeResults(ctx context.Context, conn *sql.Conn, cutoff time.Time) (int64, error) {
	var total int64
	for {
		res, err := conn.ExecContext(ctx, purgeResultsSQL, cutoff, purgeBatch)
		if err != nil {
			return total, fmt.Errorf("purge: deleting results: %w", err)
		}
		n, err := res.RowsAffected()
		if err != nil {
			return total, fmt.Errorf("purge: deleting results: %w", err)
		}
		total += n
		if n < purgeBatch {
			return total, nil
		}
	}
}

// purgeCommands deletes unreferenced commands created before cutoff, a
// batch per statement.
func purgeCommands(ctx context.Context, conn *sql.Conn, cutoff time.Time) (int64, error) {
	var total int64
	var afterAt time.Time // zero: before every command
	afterUUID := ""
	for {
		var examined, deleted int64
		err := conn.QueryRowContext(ctx, purgeCommandsSQL, cutoff, afterAt, afterUUID, purgeBatch).
			Scan(&examined, &deleted, &afterAt, &afterUUID)
		if errors.Is(err, sql.ErrNoRows) {
			return total, nil // nothing (left) before the cutoff
		}
		if err != nil {
			return total, fmt.Errorf("purge: deleting commands: %w", err)
		}
		total += deleted
		if examined < purgeBatch {
			return total, nil
		}
	}
}
