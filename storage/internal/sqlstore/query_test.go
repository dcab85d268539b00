package sqlstore

import (
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/picomdm/picomdm/mdm"
	"github.com/picomdm/picomdm/storage"
)

// TestEnrollmentQuery: the listing's WHERE takes one placeholder per
// filter set, numbered in argument order in the dialect's own syntax,
// and the row limit last.
func TestEnrollmentQuery(t *testing.T) {
	enabled := false
	seen := time.Date(2025, 1, 2, 3, 4, 5, 0, time.FixedZone("x", 3600))
	f := storage.EnrollmentFilter{Type: mdm.EnrollType("Device"), Enabled: &enabled, Serial: "S", SeenAfter: seen}
	for _, tc := range []struct {
		name        string
		placeholder func(int) string
		want        string
	}{
		{"mysql", func(int) string { return "?" },
			"SELECT x WHERE e.id > ? AND e.type = ? AND e.enabled = ? AND d.serial_number = ? AND e.last_seen_at > ? ORDER BY e.id LIMIT ?"},
		{"pgsql", func(n int) string { return fmt.Sprintf("$%d", n) },
			"SELECT x WHERE e.id > $1 AND e.type = $2 AND e.enabled = $3 AND d.serial_number = $4 AND e.last_seen_at > $5 ORDER BY e.id LIMIT $6"},
	} {
		q := InspectSQL{Placeholder: tc.placeholder, Enrollments: "SELECT x"}
		query, args := q.enrollmentQuery(f, "after", 11)
		if query != tc.want {
			t.Errorf("%s: query\n%s\nwant\n%s", tc.name, query, tc.want)
		}
		wantArgs := []any{"after", "Device", false, "S", seen.UTC(), 11}
		if !reflect.DeepEqual(args, wantArgs) {
			t.Errorf("%s: args %v, want %v", tc.name, args, wantArgs)
		}
	}
	query, args := InspectSQL{Placeholder: func(int) string { return "?" }, Enrollments: "S"}.enrollmentQuery(storage.EnrollmentFilter{}, "", 2)
	if query != "S WHERE e.id > ? ORDER BY e.id LIMIT ?" || !reflect.DeepEqual(args, []any{"", 2}) {
		t.Errorf("unfiltered: %q %v", query, args)
	}
}

// TestLatestPushRecords: each ID once, with its last record, in the
// order the IDs first appear.
func TestLatestPushRecords(t *testing.T) {
	rec := func(id string, repushes int) storage.PushRecord {
		return storage.PushRecord{ID: id, Repushes: repushes}
	}
	got := LatestPushRecords([]storage.PushRecord{rec("a", 1), rec("b", 1), rec("a", 2), rec("c", 1), rec("b", 3)})
	want := []storage.PushRecord{rec("a", 2), rec("b", 3), rec("c", 1)}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("LatestPushRecords = %v, want %v", got, want)
	}
	if got := LatestPushRecords(nil); len(got) != 0 {
		t.Fatalf("LatestPushRecords(nil) = %v", got)
	}
}
