package mysql

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
// The pending count is a correlated COUNT on queue_id_command (id, …): one
// index range per listed enrollment, covering.
const enrollmentSelect = `SELECT e.id, e.type, e.parent_id, d.serial_number, e.topic, e.enabled,
	e.token_update_tally, e.enrolled_at, e.last_seen_at, e.push_token_valid,
	COALESCE(e.identity_cert_not_after, d.identity_cert_not_after),
	(SELECT COUNT(*) FROM queue q WHERE q.id = e.id)
FROM enrollments e LEFT JOIN devices d ON d.id = e.device_id`

// The command-state branches, for the pending rows (q) and the final
// answers (r). A pending row with a NotNow result is pending; a NotNow
// result without a queue row is no state at all. An enrollment is in at
// most one branch: a final answer deletes its queue row in the same
// transaction.
const (
	pendingStateSelect = `SELECT q.id, IF(q.not_now_count > 0, 'NotNow', 'pending') AS state, q.not_now_count,
	NULL AS answered_at, NULL AS result FROM queue q`
	pendingStateIndex   = ` FORCE INDEX (queue_command_id)`
	answerStateIndex    = ` FORCE INDEX (results_command_id)`
	answeredStateSelect = `SELECT r.id, r.status, r.not_now_count, r.answered_at, r.result
	FROM results r`
)

// inspectSQL are the inspection statements.
var inspectSQL = sqlstore.InspectSQL{
	Placeholder: dialect{}.Placeholder,
	// PRIMARY range; with DeviceID, the enrollments_device (device_id,
	// id) range.
	Enrollments: enrollmentSelect,
	Enrollment:  enrollmentSelect + " WHERE e.id = ?",
	// PRIMARY.
	EnrollmentExists: "SELECT 1 FROM enrollments WHERE id = ?",
	// queue_id_command range, each command by PRIMARY.
	Queue: `SELECT q.command_uuid, c.request_type, c.created_at,
	q.not_now_count, q.last_not_now_at
FROM queue q JOIN commands c ON c.command_uuid = q.command_uuid
WHERE q.id = ? ORDER BY q.seq`,
	// queue_id_command prefix; results PRIMARY.
	ClearNotNow: `DELETE r FROM results r JOIN queue q
	ON q.id = r.id AND q.command_uuid = r.command_uuid
WHERE r.id = ? AND r.status = 'NotNow'`,
	ClearQueued: "DELETE FROM queue WHERE id = ?",
	// queue_id_command; results PRIMARY.
	CancelQueued: "DELETE FROM queue WHERE id = ? AND command_uuid = ?",
	CancelNotNow: "DELETE FROM results WHERE id = ? AND command_uuid = ? AND status = 'NotNow'",
	ResultStatus: "SELECT status FROM results WHERE id = ? AND command_uuid = ?",
	// commands PRIMARY.
	Command:        "SELECT command_uuid, request_type, created_at, command FROM commands WHERE command_uuid = ?",
	CommandCreated: "SELECT created_at FROM commands WHERE command_uuid = ?",
	// The pending rows (queue_command_id range) merged with the final
	// answers (results_command_id range), each branch limited to n+1
	// rows (FORCE INDEX: the optimizer otherwise may pick a PRIMARY range
	// on id > cursor, whose cost grows with the other commands' rows).
	CommandStates: `SELECT * FROM (
	(` + pendingStateSelect + pendingStateIndex + ` WHERE q.command_uuid = ? AND q.id > ? ORDER BY q.id LIMIT ?)
	UNION ALL
	(` + answeredStateSelect + answerStateIndex + ` WHERE r.command_uuid = ? AND r.id > ? AND r.status <> 'NotNow' ORDER BY r.id LIMIT ?)
) t ORDER BY 1 LIMIT ?`,
	// Pending (queue_id_command) or its final answer (results PRIMARY).
	CommandResult: `(` + pendingStateSelect + ` WHERE q.id = ? AND q.command_uuid = ?)
UNION ALL
(` + answeredStateSelect + ` WHERE r.id = ? AND r.command_uuid = ? AND r.status <> 'NotNow')
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
