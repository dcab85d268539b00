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

// ErrNoPushInfo is the per-ID error for an enrollment with nothing to push
// to: unknown, disabled (checked out or re-enrolling), or without a push
// token. No push is attempted.
var ErrNoPushInfo = errors.New("no push info: unknown or disabled enrollment")

// ErrNoPushCert is wrapped by the per-ID error of an enrollment whose
// topic has no push certificate stored. No push is attempted.
var ErrNoPushCert = errors.New("no push certificate for topic")

// Refusal is implemented by the per-ID error of a push the provider
// refused (apns.Error): RefusalReason names the refusal in a word, APNs'
// reason or else the HTTP status text, at most 64 bytes long. Metrics
// count pushes by it (errors.As finds it in a wrapped error) without
// knowing the provider.
type Refusal interface {
	error
	RefusalReason() string
}

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
