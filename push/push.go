// Package push sends APNs push notifications that wake MDM enrollments so
// they come and fetch their commands.
package push

import (
	"context"
	"errors"
)

// ErrNotConfigured is the per-ID error of a Pusher that cannot push at all
// (no APNs provider configured).
var ErrNotConfigured = errors.New("push: not configured")

// Result is the outcome of one push to one enrollment.
type Result struct {
	// APNsID is the apns-id APNs returned for a successful push.
	APNsID string
	// Err is set when the push failed (for APNs refusals, it carries the
	// APNs reason).
	Err error
}

// Pusher pushes to enrollments by ID.
type Pusher interface {
	// Push pushes to every id and returns a result per id. A non-nil error
	// means the whole call failed and no result map applies.
	Push(ctx context.Context, ids []string) (map[string]*Result, error)
}
