package mysql

import (
	"context"
	"fmt"

	"github.com/picomdm/picomdm/mdm"
)

// RetrievePushInfo implements storage.PushStore: idChunk IDs per query,
// PRIMARY lookups.
func (s *Store) RetrievePushInfo(ctx context.Context, ids []string) (map[string]*mdm.Push, error) {
	out := make(map[string]*mdm.Push)
	err := chunks(uniqueIDs(ids), func(chunk []string) error {
		rows, err := s.db.QueryContext(ctx, `SELECT id, token, push_magic, topic FROM enrollments
WHERE id IN (`+placeholders(len(chunk), 1)+`) AND enabled = TRUE`, stringArgs(chunk)...)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var id string
			p := new(mdm.Push)
			if err := rows.Scan(&id, &p.Token, &p.PushMagic, &p.Topic); err != nil {
				return err
			}
			if len(p.Token) > 0 {
				out[id] = p
			}
		}
		return rows.Err()
	})
	if err != nil {
		return nil, fmt.Errorf("retrieving push info: %w", err)
	}
	return out, nil
}
