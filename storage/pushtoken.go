package storage

import "context"

// PushTokenStore records that APNs refused an enrollment's push token.
//
// The push service marks a token when APNs answers that it will never be
// deliverable (Unregistered, BadDeviceToken, DeviceTokenNotForTopic, and
// the other 410 reasons). The mark is visible in storage (with the APNs
// reason and the time it was set) and is cleared by the enrollment's next
// TokenUpdate, which carries the token the device registered anew. It is
// information for operators and later policies only: RetrievePushInfo
// still returns a marked enrollment, so a push to it is attempted and
// reported as before.
type PushTokenStore interface {
	// InvalidatePushToken marks enrollment id's current push token as
	// invalid, storing reason (APNs' reason, such as "Unregistered") and
	// the current time; marking a marked token again replaces both. It
	// fails with an error wrapping ErrNotFound for an unknown id; a
	// disabled enrollment is marked like an enabled one.
	InvalidatePushToken(ctx context.Context, id string, reason string) error
	// PushTokenValid reports whether enrollment id's push token is
	// unmarked: true after every TokenUpdate, false from
	// InvalidatePushToken until the next TokenUpdate. It fails with an
	// error wrapping ErrNotFound for an unknown id.
	PushTokenValid(ctx context.Context, id string) (bool, error)
}
