package pgsql

import (
	"context"
	"fmt"

	"github.com/lib/pq"
	"github.com/picomdm/picomdm/mdm"
	"github.com/picomdm/picomdm/storage"
)

// migrationPage is how many devices RetrieveMigrationCheckins reads per
// round trip. Each page is read whole, then yielded with no connection or
// snapshot held, so a slow consumer never pins database resources.
const migrationPage = 500

// Migration reads enabled device channels in ID order with a keyset
// cursor (enrollments primary key), then the enabled user channels of a
// page of devices at once (enrollments_device_id).
const (
	migrationDevicesSQL = `
SELECT e.id, e.type, e.token_update, d.authenticate, d.unlock_token, d.bootstrap_token
FROM enrollments e LEFT JOIN devices d ON d.id = e.id
WHERE e.id > $1 AND e.parent_id IS NULL AND e.enabled
ORDER BY e.id
LIMIT $2`
	migrationUsersSQL = `
SELECT device_id, token_update FROM enrollments
WHERE device_id = ANY ($1::text[]) AND parent_id IS NOT NULL AND enabled
ORDER BY device_id, id`
)

// migrationDevice is one device channel and what it replays as.
type migrationDevice struct {
	id, typ                                  string
	tokenUpdate, authenticate, unlock, token []byte
	users                                    [][]byte
}

// RetrieveMigrationCheckins implements storage.MigrationStore.
func (s *Store) RetrieveMigrationCheckins(ctx context.Context, yield func(raw []byte) error) error {
	cursor := ""
	for {
		devs, err := s.migrationPage(ctx, cursor)
		if err != nil {
			return fmt.Errorf("migration: %w", err)
		}
		for _, d := range devs {
			if err := d.replay(yield); err != nil {
				return fmt.Errorf("migration of %q: %w", d.id, err)
			}
		}
		if len(devs) < migrationPage {
			return nil
		}
		cursor = devs[len(devs)-1].id
	}
}

// migrationPage reads the next page of devices after cursor, with their
// user channels.
func (s *Store) migrationPage(ctx context.Context, cursor string) ([]*migrationDevice, error) {
	rows, err := s.db.QueryContext(ctx, migrationDevicesSQL, cursor, migrationPage)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var devs []*migrationDevice
	byID := make(map[string]*migrationDevice)
	for rows.Next() {
		d := new(migrationDevice)
		if err := rows.Scan(&d.id, &d.typ, &d.tokenUpdate, &d.authenticate, &d.unlock, &d.token); err != nil {
			return nil, err
		}
		devs = append(devs, d)
		byID[d.id] = d
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	if len(devs) == 0 {
		return nil, nil
	}
	ids := make([]string, len(devs))
	for i, d := range devs {
		ids[i] = d.id
	}
	users, err := s.db.QueryContext(ctx, migrationUsersSQL, pq.Array(ids))
	if err != nil {
		return nil, err
	}
	defer users.Close()
	for users.Next() {
		var deviceID string
		var tokenUpdate []byte
		if err := users.Scan(&deviceID, &tokenUpdate); err != nil {
			return nil, err
		}
		if d := byID[deviceID]; d != nil {
			d.users = append(d.users, tokenUpdate)
		}
	}
	return devs, users.Err()
}

// replay yields the device's check-ins in replay order: Authenticate, its
// TokenUpdate (with the UnlockToken put back), its user channels'
// TokenUpdates, then SetBootstrapToken.
func (d *migrationDevice) replay(yield func([]byte) error) error {
	if len(d.authenticate) > 0 {
		if err := yield(d.authenticate); err != nil {
			return err
		}
	}
	tu, err := storage.TokenUpdateWithUnlockToken(d.tokenUpdate, d.unlock)
	if err != nil {
		return err
	}
	if err := yield(tu); err != nil {
		return err
	}
	for _, u := range d.users {
		if err := yield(u); err != nil {
			return err
		}
	}
	if len(d.token) == 0 {
		return nil
	}
	keys := mdm.Enrollment{UDID: d.id}
	if mdm.EnrollType(d.typ) == mdm.UserEnrollmentDevice {
		keys = mdm.Enrollment{EnrollmentID: d.id}
	}
	raw, err := storage.SetBootstrapTokenCheckin(keys, d.token)
	if err != nil {
		return err
	}
	return yield(raw)
}
