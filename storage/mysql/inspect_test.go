package mysql

import (
	"fmt"
	"testing"

	"github.com/picomdm/picomdm/storage"
	"github.com/picomdm/picomdm/storage/storagetest"
)

// TestInspection is this backend's own end-to-end pass over
// storage.InspectionStore on a fresh database (unfiltered listings).
func TestInspection(t *testing.T) {
	storagetest.InspectFresh(t, openInspect(t))
}

// benchEnrollments is how many enrollments BenchmarkInspection lists.
const benchEnrollments = 100_000

func openInspect(t *testing.T) *Store {
	s, _ := openTest(t, nil)
	return s
}

// BenchmarkInspection: go test -run '^$' -bench Inspection ./storage/mysql
func BenchmarkInspection(b *testing.B) {
	s, _ := openTest(b, nil)
	// benchEnrollments enrollments bench-000000…, generated set-based
	// from a cross join of digits.
	const digits = "(SELECT 0 d UNION ALL SELECT 1 UNION ALL SELECT 2 UNION ALL SELECT 3 UNION ALL SELECT 4 " +
		"UNION ALL SELECT 5 UNION ALL SELECT 6 UNION ALL SELECT 7 UNION ALL SELECT 8 UNION ALL SELECT 9)"
	if _, err := s.db.Exec(`INSERT INTO enrollments (id, device_id, type, topic, push_magic, token,
	token_update, enrolled_at, last_seen_at, updated_at)
SELECT CONCAT('bench-', LPAD(n, 6, '0')), CONCAT('bench-', LPAD(n, 6, '0')), 'Device', 'topic', 'magic', 'token',
	'tu', UTC_TIMESTAMP(6), UTC_TIMESTAMP(6), UTC_TIMESTAMP(6)
FROM (SELECT a.d + 10*b.d + 100*c.d + 1000*e.d + 10000*f.d AS n
	FROM ` + digits + ` a, ` + digits + ` b, ` + digits + ` c, ` + digits + ` e, ` + digits + ` f) t`); err != nil {
		b.Fatal(err)
	}
	cmd := storagetest.NewCommand("ProfileList")
	if _, err := s.db.Exec("INSERT INTO commands (command_uuid, request_type, command, created_at) VALUES (?, 'ProfileList', ?, UTC_TIMESTAMP(6))",
		cmd.CommandUUID, cmd.Raw); err != nil {
		b.Fatal(err)
	}
	if _, err := s.db.Exec("INSERT INTO queue (id, command_uuid) SELECT id, ? FROM enrollments ORDER BY id", cmd.CommandUUID); err != nil {
		b.Fatal(err)
	}
	// Every other enrollment has answered it: its row moved to results.
	if _, err := s.db.Exec(`INSERT INTO results (id, command_uuid, status, result, answered_at)
SELECT id, command_uuid, 'Acknowledged', 'result', UTC_TIMESTAMP(6) FROM queue WHERE seq % 2 = 0`); err != nil {
		b.Fatal(err)
	}
	if _, err := s.db.Exec("DELETE FROM queue WHERE seq % 2 = 0"); err != nil {
		b.Fatal(err)
	}
	if _, err := s.db.Exec("ANALYZE TABLE enrollments, queue, results"); err != nil {
		b.Fatal(err)
	}
	storagetest.BenchmarkInspectionPages(b, s, cmd.CommandUUID, storage.EncodeCursor(fmt.Sprintf("bench-%06d", benchEnrollments-500)))
}
