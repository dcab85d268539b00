package mysql

import (
	"context"
	"fmt"

	"github.com/picomdm/picomdm/mdm"
	"github.com/picomdm/picomdm/storage"
)

// migrationPage is how many devices RetrieveMigrationCheckins reads per
// round trip pair.
const migrationPage = 500

// RetrieveMigrationCheckins implements storage.MigrationStore. Devices
// come in ID order, migrationPage at a time: one query pages through the
// enabled device channels (PRIMARY range), one reads those devices' rows
// and their user channels (enrollments_device, then devices by PRIMARY).
// Each page is read completely before any of it is yielded, so a slow
// consumer holds no query open.
func (s *Store) RetrieveMigrationCheckins(ctx context.Context, yield func(raw []byte) error) error {
	after := ""
	for {
		devices, err := s.migrationDevices(ctx, after)
		if err != nil {
			return fmt.Errorf("migration: %w", err)
		}
		if len(devices) == 0 {
			return nil
		}
		msgs, err := s.migrationCheckins(ctx, devices)
		if err != nil {
			return fmt.Errorf("migration: %w", err)
		}
		for _, raw := range msgs {
			if err := ctx.Err(); err != nil {
				return fmt.Errorf("migration: %w", err)
			}
			if err := yield(raw); err != nil {
				return fmt.Errorf("migration: %w", err)
			}
		}
		after = devices[len(devices)-1]
	}
}

// migrationDevices returns the next page of enabled device channels with
// an ID after after.
func (s *Store) migrationDevices(ctx context.Context, after string) ([]string, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT id FROM enrollments
WHERE id > ? AND parent_id IS NULL AND enabled = TRUE
ORDER BY id LIMIT ?`, after, migrationPage)
	if err != nil {
		return nil, fmt.Errorf("listing devices: %w", err)
	}
	defer rows.Close()
	var ids []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, fmt.Errorf("listing devices: %w", err)
		}
		ids = append(ids, id)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("listing devices: %w", err)
	}
	return ids, nil
}

// migrationCheckins returns the check-in messages that recreate devices
// (in order) and their enabled user channels.
func (s *Store) migrationCheckins(ctx context.Context, devices []string) ([][]byte, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT e.device_id, e.id, e.type, e.parent_id IS NULL,
	e.token_update, d.authenticate, d.unlock_token, d.bootstrap_token
FROM enrollments e
LEFT JOIN devices d ON e.parent_id IS NULL AND d.id = e.id
WHERE e.device_id IN (`+placeholders(len(devices), 1)+`) AND e.enabled = TRUE
ORDER BY e.device_id, e.parent_id IS NOT NULL, e.id`, stringArgs(devices)...)
	if err != nil {
		return nil, fmt.Errorf("reading devices: %w", err)
	}
	defer rows.Close()
	var out [][]byte
	// A device's user channels are yielded only after its own row (it
	// sorts first): one disabled since the page was listed has no row
	// here, and its user channels are skipped with it. Its
	// SetBootstrapToken, if any, waits in tail until its user channels
	// are out.
	current := ""
	var tail []byte
	for rows.Next() {
		var deviceID, id, typ string
		var isDevice bool
		var tokenUpdate, authenticate, unlockToken, bootstrapToken []byte
		if err := rows.Scan(&deviceID, &id, &typ, &isDevice, &tokenUpdate, &authenticate, &unlockToken, &bootstrapToken); err != nil {
			return nil, fmt.Errorf("reading devices: %w", err)
		}
		if isDevice {
			if tail != nil {
				out = append(out, tail)
				tail = nil
			}
			current = deviceID
			if len(authenticate) > 0 {
				out = append(out, authenticate)
			}
			if len(bootstrapToken) > 0 {
				keys := mdm.Enrollment{UDID: id}
				if mdm.EnrollType(typ) == mdm.UserEnrollmentDevice {
					keys = mdm.Enrollment{EnrollmentID: id}
				}
				if tail, err = storage.SetBootstrapTokenCheckin(keys, bootstrapToken); err != nil {
					return nil, fmt.Errorf("device %q: %w", id, err)
				}
			}
		} else if deviceID != current {
			continue
		}
		tu, err := storage.TokenUpdateWithUnlockToken(tokenUpdate, unlockToken)
		if err != nil {
			return nil, fmt.Errorf("enrollment %q: %w", id, err)
		}
		out = append(out, tu)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("reading devices: %w", err)
	}
	if tail != nil {
		out = append(out, tail)
	}
	return out, nil
}
