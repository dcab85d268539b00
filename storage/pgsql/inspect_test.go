package pgsql

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

func openInspect(t *testing.T) *Store { return openFresh(t, nil) }

// BenchmarkInspection: go test -run '^$' -bench Inspection ./storage/pgsql
func BenchmarkInspection(b *testing.B) {
	s := openFresh(b, nil)
	if _, err := s.db.Exec(`INSERT INTO enrollments (id, device_id, type, topic, push_magic, token, token_update)
SELECT 'bench-' || lpad(n::text, 6, '0'), 'bench-' || lpad(n::text, 6, '0'), 'Device', 'topic', 'magic', '\x00'::bytea, '\x00'::bytea
FROM generate_series(0, $1 - 1) n`, benchEnrollments); err != nil {
		b.Fatal(err)
	}
	cmd := storagetest.NewCommand("ProfileList")
	if _, err := s.db.Exec("INSERT INTO commands (command_uuid, request_type, command) VALUES ($1, 'ProfileList', $2)",
		cmd.CommandUUID, cmd.Raw); err != nil {
		b.Fatal(err)
	}
	if _, err := s.db.Exec("INSERT INTO command_queue (id, command_uuid) SELECT id, $1 FROM enrollments ORDER BY id", cmd.CommandUUID); err != nil {
		b.Fatal(err)
	}
	// Every other enrollment has answered it: its row moved to results.
	if _, err := s.db.Exec(`WITH answered AS (DELETE FROM command_queue WHERE seq % 2 = 0 RETURNING id, command_uuid)
INSERT INTO command_results (id, command_uuid, status, result) SELECT id, command_uuid, 'Acknowledged', '\x00'::bytea FROM answered`); err != nil {
		b.Fatal(err)
	}
	if _, err := s.db.Exec("VACUUM ANALYZE enrollments, command_queue, command_results"); err != nil {
		b.Fatal(err)
	}
	storagetest.BenchmarkInspectionPages(b, s, cmd.CommandUUID, storage.EncodeCursor(fmt.Sprintf("bench-%06d", benchEnrollments-500)))
}
