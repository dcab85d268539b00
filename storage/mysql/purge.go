package mysql

import (
	"context"
	"database/sql"
	"fmt"
	"github.com/picomdm/picomdm/storage/internal/sqlstore"
	"time"

	"github.com/picomdm/picomdm/storage"
)

// purgeBatch is how many rows one purge DELETE removes: small enough that
// each statement is a short transaction that holds few locks and writes a
// small undo log and binlog event.
const purgeBatch = 1000

var _ storage.Purger = (*Store)(nil)

// PurgeInterval is how often Purge should run: the purge_interval
// storage option (default 10m), which the app's background runner reads.
func (s *Store) PurgeInterval() time.Duration { return s.opts.PurgeInterval }

// Purge implements storage.Purger: one round of the retention purge as of
// now (nothing when retention=0 keeps results forever). The app's
// background runner calls it on one replica at a time, under a lease.
func (s *Store) Purge(ctx context.Context, now time.Time) (int, error) {
	if s.opts.Retention <= 0 {
		return 0, nil
	}
	results, commands, err := s.purge(ctx, now)
	if results > 0 || commands > 0 {
		s.logger.DebugContext(ctx, "purged answered commands", "results", results, "commands", commands)
	}
	return int(results), err
}

// purge deletes the results answered longer than the retention before
// now and then the commands no queue or results row names any more,
// purgeBatch rows per statement. Besides the runner's lease, it takes a
// non-blocking GET_LOCK (a replica that finds it taken skips its turn), so
// that two rounds never overlap even when a lease ran out mid-round; it
// would be correct in several at once anyway: every statement is
// idempotent and re-checks its conditions.
func (s *Store) purge(ctx context.Context, now time.Time) (results, commands int64, err error) {
	conn, err := s.db.Conn(ctx)
	if err != nil {
		return 0, 0, fmt.Errorf("purge: connecting: %w", err)
	}
	defer conn.Close()
	lock := s.lockName("purge")
	var got sql.NullInt64
	if err := conn.QueryRowContext(ctx, "SELECT GET_LOCK(?, 0)", lock).Scan(&got); err != nil {
		return 0, 0, fmt.Errorf("purge: GET_LOCK: %w", err)
	}
	if got.Int64 != 1 {
		return 0, 0, nil // another replica is purging
	}
	defer func() {
		var released sql.NullInt64
		conn.QueryRowContext(context.WithoutCancel(ctx), "SELECT RELEASE_LOCK(?)", lock).Scan(&released)
	}()

	cutoff := sqlstore.DBTime(now.Add(-s.opts.Retention))
	// results_answered, oldest first; the NOT EXISTS probe
	// (queue_id_command) keeps the NotNow result of a command that is
	// still pending, which its final answer will update.
	results, err = s.purgeBatches(ctx, conn, `DELETE FROM results
WHERE answered_at < ?
	AND NOT EXISTS (SELECT 1 FROM queue q
		WHERE q.id = results.id AND q.command_uuid = results.command_uuid)
ORDER BY answered_at
LIMIT ?`, cutoff)
	if err != nil {
		return results, 0, fmt.Errorf("purge: results: %w", err)
	}
	// commands_created, oldest first, each probed in queue_command and
	// results_command. A command is created before any of its results,
	// so one whose results just went is older than the cutoff too. No
	// queue row can appear for a command once none is left: the enqueue
	// transaction that stored it inserted all of them.
	commands, err = s.purgeBatches(ctx, conn, `DELETE FROM commands
WHERE created_at < ?
	AND NOT EXISTS (SELECT 1 FROM queue q WHERE q.command_uuid = commands.command_uuid)
	AND NOT EXISTS (SELECT 1 FROM results r WHERE r.command_uuid = commands.command_uuid)
ORDER BY created_at
LIMIT ?`, cutoff)
	if err != nil {
		return results, commands, fmt.Errorf("purge: commands: %w", err)
	}
	return results, commands, nil
}

// purgeBatches runs query (whose last placeholder is the LIMIT) on conn,
// the connection holding the purge lock (so that the purge needs one
// connection of the pool, not two), until a run deletes fewer than
// purgeBatch rows, and returns the rows deleted.
func (s *Store) purgeBatches(ctx context.Context, conn *sql.Conn, query string, args ...any) (int64, error) {
	args = append(args, purgeBatch)
	var total int64
	for {
		var n int64
		err := s.retry(ctx, func() error {
			res, err := conn.ExecContext(ctx, query, args...)
			if err != nil {
				return err
			}
			n, err = res.RowsAffected()
			return err
		})
		if err != nil {
			return total, err
		}
		total += n
		if n < purgeBatch {
			return total, nil
		}
	}
}
