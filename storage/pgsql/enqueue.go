package pgsql

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/lib/pq"
	"github.com/lib/pq/pqerror"
	"github.com/picomdm/picomdm/mdm"
	"github.com/picomdm/picomdm/storage"
)

// enqueueSQL is a whole multi-target enqueue as ONE set-based statement:
// the IDs travel as one array parameter ($1), so there is no query per ID
// and no limit on the number of targets (a statement takes at most 65,535
// bind parameters; an array is one).
//
//   - targets: the distinct IDs that name known enrollments (an
//     enrollment is known from its first TokenUpdate, enabled or not).
//     Joined against the enrollments primary key.
//   - cmd: the command row, written only if there is at least one target,
//     so a call naming only unknown IDs leaves nothing behind and can be
//     retried with the same CommandUUID. An existing CommandUUID fails the
//     whole statement with a unique violation on commands_pkey
//     (ErrCommandExists): nothing is queued.
//   - the queue rows, one per target, inserted in ID order. Their seq
//     values come from the identity column as they are inserted, after
//     those of every enqueue committed before this one: that is what
//     per-enrollment FIFO needs. Their order among the targets of this one
//     command does not matter (each enrollment gets one row of it), and ID
//     order makes the index inserts sequential rather than scattered.
//   - returned: the IDs that were not queued (unknown), for the per-ID
//     error map; nothing at all in the common case.
//
// One statement is one transaction, on purpose, even for 100,000 targets
// (about a second): the enqueue is all or nothing. Per-chunk transactions
// would let a failure half-way leave the command queued to some targets
// and not others, with its CommandUUID taken, so the API client could
// neither retry it nor tell who got it. The long transaction costs little
// here: it only inserts new rows (nobody waits on their locks — devices
// see the command once it commits), and its WAL is written sequentially.
const enqueueSQL = `
WITH targets AS (
    SELECT e.id FROM enrollments e
    WHERE e.id IN (SELECT DISTINCT unnest($1::text[]))
), cmd AS (
    INSERT INTO commands (command_uuid, request_type, command)
    SELECT $2::text, $3::text, $4::bytea WHERE EXISTS (SELECT 1 FROM targets)
    RETURNING command_uuid
), queued AS (
    INSERT INTO command_queue (id, command_uuid)
    SELECT t.id, cmd.command_uuid FROM targets t CROSS JOIN cmd
    ORDER BY t.id
)
SELECT u.id FROM unnest($1::text[]) AS u(id)
WHERE NOT EXISTS (SELECT 1 FROM targets t WHERE t.id = u.id)`

// EnqueueCommand implements storage.CommandEnqueuer in one statement (see
// enqueueSQL). IDs that are queued to are absent from the returned map.
func (s *Store) EnqueueCommand(ctx context.Context, ids []string, cmd *mdm.Command) (map[string]error, error) {
	if cmd == nil || cmd.CommandUUID == "" {
		return nil, errors.New("enqueue: command has no CommandUUID")
	}
	uuid := cmd.CommandUUID
	errs := make(map[string]error)
	// An ID PostgreSQL cannot store as text (a NUL byte, invalid UTF-8)
	// names no enrollment; sending it would fail the whole statement.
	storableIDs := ids
	if slices.ContainsFunc(ids, func(id string) bool { return !storable(id) }) {
		storableIDs = storableOnly(ids, nil)
	}
	var unknown []string
	st, err := s.stmts.get(ctx, enqueueSQL)
	if err != nil {
		return nil, fmt.Errorf("enqueue %s: %w", uuid, err)
	}
	err = withRetry(ctx, func() error {
		unknown = unknown[:0]
		rows, err := st.QueryContext(ctx, pq.Array(storableIDs), uuid, cmd.RequestType(), rawOrEmpty(cmd.Raw))
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var id string
			if err := rows.Scan(&id); err != nil {
				return err
			}
			unknown = append(unknown, id)
		}
		return rows.Err()
	})
	if pq.As(err, pqerror.UniqueViolation) != nil {
		return nil, fmt.Errorf("enqueue %s: %w", uuid, storage.ErrCommandExists)
	}
	if err != nil {
		return nil, fmt.Errorf("enqueue %s: %w", uuid, err)
	}
	for _, id := range ids {
		if !storable(id) {
			unknown = append(unknown, id)
		}
	}
	if len(unknown) == len(ids) {
		// Nothing was queued, so the statement wrote no command and could
		// not notice an existing one: look, so that an existing
		// CommandUUID is refused whatever the targets. Index: commands
		// primary key.
		var exists bool
		if err := s.db.QueryRowContext(ctx, `SELECT EXISTS (SELECT 1 FROM commands WHERE command_uuid = $1)`, uuid).Scan(&exists); err != nil {
			return nil, fmt.Errorf("enqueue %s: %w", uuid, err)
		}
		if exists {
			return nil, fmt.Errorf("enqueue %s: %w", uuid, storage.ErrCommandExists)
		}
	}
	for _, id := range unknown {
		errs[id] = fmt.Errorf("enqueue %s to %q: %w", uuid, id, storage.ErrNotFound)
	}
	return errs, nil
}

// storable reports whether id can be a PostgreSQL text value, and so
// possibly an enrollment ID.
func storable(id string) bool {
	return utf8.ValidString(id) && !strings.ContainsRune(id, 0)
}

// storableOnly appends the storable IDs of ids to out.
func storableOnly(ids, out []string) []string {
	for _, id := range ids {
		if storable(id) {
			out = append(out, id)
		}
	}
	return out
}
