package pgsql

import (
	"context"

	"github.com/picomdm/picomdm/storage"
	"github.com/picomdm/picomdm/storage/internal/sqlstore"
)

// The inspection reads (storage.InspectionStore): sqlstore.InspectSQL
// over this dialect's statements. Listings are keyset paginated, each read
// as one index range, so a page deep in a table costs what the first one
// does.

var _ storage.InspectionStore = (*Store)(nil)

// enrollmentSelect reads the EnrollmentInfo columns (sqlstore.InspectSQL).
// The pending count is a correlated COUNT on command_queue_next (id,
// seq): one index range per listed enrollment, covering.
const enrollmentSelect = `SELECT e.id, e.type, e.parent_id, d.serial_number, e.topic, e.enabled,
	e.token_update_tally, e.enrolled_at, e.last_seen_at, e.push_token_valid,
	COALESCE(e.identity_cert_not_after, d.identity_cert_not_after),
	(SELECT COUNT(*) FROM command_queue q WHERE q.id = e.id)
FROM enrollments e LEFT JOIN devices d ON d.id = e.device_id`

// The command-state branches, for the pending rows (q) and the final
// answers (r). A pending row with a NotNow result is pending; a NotNow
// result without a queue row is no state at all. An enrollment is in at
// most one branch: a final answer deletes its queue row in the same
// transaction.
const (
	pendingStateSelect = `SELECT q.id, CASE WHEN q.not_now_count > 0 THEN 'NotNow' ELSE 'pending' END AS state, q.not_now_count,
	NULL::timestamptz AS answered_at, NULL::bytea AS result FROM command_queue q`
	answeredStateSelect = `SELECT r.id, r.status, r.not_now_count, r.answered_at, r.result
	FROM command_results r`
)

// inspectSQL are the inspection statements.
var inspectSQL = sqlstore.InspectSQL{
	Placeholder: dialect{}.Placeholder,
	// Primary key range; with DeviceID, the enrollments_device_id index.
	Enrollments: enrollmentSelect,
	Enrollment:  enrollmentSelect + " WHERE e.id = $1",
	// Primary key.
	EnrollmentExists: "SELECT 1 FROM enrollments WHERE id = $1",
	// command_queue_next range, each command by its primary key.
	Queue: `SELECT q.command_uuid, c.request_type, c.created_at,
	q.not_now_count, q.last_not_now_at
FROM command_queue q JOIN commands c ON c.command_uuid = q.command_uuid
WHERE q.id = $1 ORDER BY q.seq`,
	// command_queue_next prefix; command_results primary key.
	ClearNotNow: `DELETE FROM command_results r USING command_queue q
WHERE q.id = r.id AND q.command_uuid = r.command_uuid
	AND r.id = $1 AND r.status = 'NotNow'`,
	ClearQueued: "DELETE FROM command_queue WHERE id = $1",
	// command_queue and command_results primary keys.
	CancelQueued: "DELETE FROM command_queue WHERE id = $1 AND command_uuid = $2",
	CancelNotNow: "DELETE FROM command_results WHERE id = $1 AND command_uuid = $2 AND status = 'NotNow'",
	ResultStatus: "SELECT status FROM command_results WHERE id = $1 AND command_uuid = $2",
	// commands primary key.
	Command:        "SELECT command_uuid, request_type, created_at, command FROM commands WHERE command_uuid = $1",
	CommandCreated: "SELECT created_at FROM commands WHERE command_uuid = $1",
	// The pending rows (command_queue primary key (command_uuid, id)
	// range) merged with the final answers (command_results_command_id
	// range), each branch limited to n+1 rows.
	CommandStates: `SELECT * FROM (
	(` + pendingStateSelect + ` WHERE q.command_uuid = $1 AND q.id > $2 ORDER BY q.id LIMIT $3)
	UNION ALL
	(` + answeredStateSelect + ` WHERE r.command_uuid = $4 AND r.id > $5 AND r.status <> 'NotNow' ORDER BY r.id LIMIT $6)
) t ORDER BY 1 LIMIT $7`,
	// Pending (command_queue primary key) or its final answer
	// (command_results primary key).
	CommandResult: `(` + pendingStateSelect + ` WHERE q.id = $1 AND q.command_uuid = $2)
UNION ALL
(` + answeredStateSelect + ` WHERE r.id = $3 AND r.command_uuid = $4 AND r.status <> 'NotNow')
LIMIT 1`,
}

// ListEnrollments implements storage.InspectionStore (inspectSQL).
func (s *Store) ListEnrollments(ctx context.Context, f storage.EnrollmentFilter, p storage.Page) ([]storage.EnrollmentInfo, string, error) {
	return inspectSQL.ListEnrollments(ctx, s.db, f, p)
}

// RetrieveEnrollment implements storage.InspectionStore (inspectSQL).
func (s *Store) RetrieveEnrollment(ctx context.Context, id string) (*storage.EnrollmentInfo, error) {
	return inspectSQL.RetrieveEnrollment(ctx, s.db, id)
}

// RetrieveQueue implements storage.InspectionStore (inspectSQL).
func (s *Store) RetrieveQueue(ctx context.Context, id string) ([]storage.QueuedCommand, error) {
	return inspectSQL.RetrieveQueue(ctx, s.db, id)
}

// ClearQueue implements storage.InspectionStore (inspectSQL).
func (s *Store) ClearQueue(ctx context.Context, id string) (int, error) {
	return inspectSQL.ClearQueue(ctx, s.inTx, id)
}

// CancelCommand implements storage.InspectionStore (inspectSQL).
func (s *Store) CancelCommand(ctx context.Context, id, commandUUID string) error {
	return inspectSQL.CancelCommand(ctx, s.inTx, id, commandUUID)
}

// RetrieveCommand implements storage.InspectionStore (inspectSQL).
func (s *Store) RetrieveCommand(ctx context.Context, commandUUID string) (*storage.CommandInfo, error) {
	return inspectSQL.RetrieveCommand(ctx, s.db, commandUUID)
}

// ListCommandStates implements storage.InspectionStore (inspectSQL).
func (s *Store) ListCommandStates(ctx context.Context, commandUUID string, p storage.Page) ([]storage.CommandState, string, error) {
	return inspectSQL.ListCommandStates(ctx, s.db, commandUUID, p)
}

// RetrieveCommandResult implements storage.InspectionStore (inspectSQL).
func (s *Store) RetrieveCommandResult(ctx context.Context, commandUUID, id string) (*storage.CommandState, error) {
	return inspectSQL.RetrieveCommandResult(ctx, s.db, commandUUID, id)
}
