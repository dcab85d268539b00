package tee

import (
	"context"

	"github.com/picomdm/picomdm/storage"
)

// ClearQueue implements storage.InspectionStore: the primary's count is
// the answer; the others are cleared too.
func (s *Store) ClearQueue(ctx context.Context, id string) (int, error) {
	n, err := s.Store.ClearQueue(ctx, id)
	err = s.copyTo(ctx, "ClearQueue", err, func(o storage.Store) error {
		_, err := o.ClearQueue(ctx, id)
		return err
	})
	return n, err
}

// CancelCommand implements storage.InspectionStore.
func (s *Store) CancelCommand(ctx context.Context, id, commandUUID string) error {
	return s.copyTo(ctx, "CancelCommand", s.Store.CancelCommand(ctx, id, commandUUID), func(o storage.Store) error {
		return o.CancelCommand(ctx, id, commandUUID)
	})
}
