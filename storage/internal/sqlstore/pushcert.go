package sqlstore

import (
	"context"
	"database/sql"
	"fmt"

	"github.com/picomdm/picomdm/storage"
)

// PushCertInfos lists the push_certs table (topic, not_after) in topic
// order; both SQL backends share the table's shape and this query (push
// certificates are few: a full scan of the primary key).
func PushCertInfos(ctx context.Context, db *sql.DB) ([]storage.PushCertInfo, error) {
	rows, err := db.QueryContext(ctx, "SELECT topic, not_after FROM push_certs ORDER BY topic")
	if err != nil {
		return nil, fmt.Errorf("listing push certs: %w", err)
	}
	defer rows.Close()
	var out []storage.PushCertInfo
	for rows.Next() {
		var info storage.PushCertInfo
		var notAfter sql.NullTime
		if err := rows.Scan(&info.Topic, &notAfter); err != nil {
			return nil, fmt.Errorf("listing push certs: %w", err)
		}
		info.NotAfter = notAfter.Time
		out = append(out, info)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("listing push certs: %w", err)
	}
	return out, nil
}
