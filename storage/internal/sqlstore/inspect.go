package sqlstore

import (
	"database/sql"
	"time"

	"github.com/picomdm/picomdm/mdm"
	"github.com/picomdm/picomdm/storage"
)

// The inspection reads of both SQL backends page with keysets: ORDER BY
// id, WHERE id > cursor, LIMIT n+1 (the extra row says whether there is a
// next page). A cursor is the base64url of the last ID of the previous
// page.

// PageLimit clamps a page size into 1…storage.MaxPageLimit.
func PageLimit(n int) int { return min(max(n, 1), storage.MaxPageLimit) }

// UTC returns t in UTC, or the zero time for NULL.
func UTC(t sql.NullTime) time.Time {
	if !t.Valid {
		return time.Time{}
	}
	return t.Time.UTC()
}

// EnrollmentWhere builds the WHERE conditions (with "?" placeholders) and
// arguments of a listing of enrollments e (joined to their device d) after
// the cursor's ID, filtered by f.
func EnrollmentWhere(f storage.EnrollmentFilter, after string) ([]string, []any) {
	where := []string{"e.id > ?"}
	args := []any{after}
	add := func(cond string, arg any) {
		where = append(where, cond)
		args = append(args, arg)
	}
	if f.Type != "" {
		add("e.type = ?", string(f.Type))
	}
	if f.Enabled != nil {
		add("e.enabled = ?", *f.Enabled)
	}
	if f.Serial != "" {
		add("d.serial_number = ?", f.Serial)
	}
	if f.Topic != "" {
		add("e.topic = ?", f.Topic)
	}
	if f.DeviceID != "" {
		add("e.device_id = ?", f.DeviceID)
	}
	if !f.SeenBefore.IsZero() {
		add("e.last_seen_at < ?", f.SeenBefore.UTC())
	}
	if !f.SeenAfter.IsZero() {
		add("e.last_seen_at > ?", f.SeenAfter.UTC())
	}
	return where, args
}

// ScanEnrollment reads one row of the backends' enrollment select: id,
// type, parent_id, serial_number, topic, enabled, token_update_tally,
// enrolled_at, last_seen_at, push_token_valid, identity cert not_after,
// pending count.
func ScanEnrollment(sc interface{ Scan(...any) error }) (*storage.EnrollmentInfo, error) {
	var (
		e              storage.EnrollmentInfo
		typ            string
		parent, serial sql.NullString
		notAfter       sql.NullTime
	)
	if err := sc.Scan(&e.ID, &typ, &parent, &serial, &e.Topic, &e.Enabled, &e.TokenUpdateTally,
		&e.EnrolledAt, &e.LastSeenAt, &e.PushTokenValid, &notAfter, &e.PendingCommands); err != nil {
		return nil, err
	}
	e.Type = mdm.EnrollType(typ)
	e.ParentID = parent.String
	e.SerialNumber = serial.String
	e.EnrolledAt = e.EnrolledAt.UTC()
	e.LastSeenAt = e.LastSeenAt.UTC()
	e.IdentityCertNotAfter = UTC(notAfter)
	return &e, nil
}
