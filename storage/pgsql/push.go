package pgsql

import (
	"context"
	"fmt"

	"github.com/lib/pq"
	"github.com/picomdm/picomdm/mdm"
)

// retrievePushInfoSQL reads the push info of many enrollments at once;
// the IDs travel as one array parameter. Index: enrollments primary key
// (one probe per ID).
const retrievePushInfoSQL = `
SELECT id, token, push_magic, topic FROM enrollments
WHERE id = ANY ($1::text[]) AND enabled AND length(token) > 0`

// RetrievePushInfo implements storage.PushStore in one query.
func (s *Store) RetrievePushInfo(ctx context.Context, ids []string) (map[string]*mdm.Push, error) {
	out := make(map[string]*mdm.Push)
	if len(ids) == 0 {
		return out, nil
	}
	st, err := s.stmts.get(ctx, retrievePushInfoSQL)
	if err != nil {
		return nil, fmt.Errorf("retrieving push info: %w", err)
	}
	rows, err := st.QueryContext(ctx, pq.Array(storableOnly(ids, nil)))
	if err != nil {
		return nil, fmt.Errorf("retrieving push info: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var id string
		p := new(mdm.Push)
		if err := rows.Scan(&id, &p.Token, &p.PushMagic, &p.Topic); err != nil {
			return nil, fmt.Errorf("retrieving push info: %w", err)
		}
		out[id] = p
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("retrieving push info: %w", err)
	}
	return out, nil
}
