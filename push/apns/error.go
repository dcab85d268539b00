package apns

import (
	"fmt"
	"net/http"
	"time"

	"github.com/picomdm/picomdm/push"
)

// APNs reasons PicoMDM acts on, as APNs spells them in the "reason" of a
// refused request (Apple, "Handling notification responses from APNs").
const (
	// ReasonBadDeviceToken (400): the token is not a valid device token
	// (wrong environment, or garbage).
	ReasonBadDeviceToken = "BadDeviceToken"
	// ReasonDeviceTokenNotForTopic (400): the token belongs to another
	// topic.
	ReasonDeviceTokenNotForTopic = "DeviceTokenNotForTopic"
	// ReasonBadTopic (400): the apns-topic is invalid.
	ReasonBadTopic = "BadTopic"
	// ReasonTopicDisallowed (400): the certificate may not push to the
	// apns-topic.
	ReasonTopicDisallowed = "TopicDisallowed"
	// ReasonBadCertificate (403): the client certificate is invalid.
	ReasonBadCertificate = "BadCertificate"
	// ReasonBadCertificateEnvironment (403): the certificate is for the
	// other environment (production vs development).
	ReasonBadCertificateEnvironment = "BadCertificateEnvironment"
	// ReasonUnregistered (410): the token is no longer active for the
	// topic.
	ReasonUnregistered = "Unregistered"
	// ReasonExpiredToken (410): the token has expired.
	ReasonExpiredToken = "ExpiredToken"
	// ReasonTooManyRequests (429): too many pushes to the same device.
	ReasonTooManyRequests = "TooManyRequests"
	// ReasonInternalServerError (500): an APNs fault.
	ReasonInternalServerError = "InternalServerError"
	// ReasonServiceUnavailable (503): APNs is unavailable.
	ReasonServiceUnavailable = "ServiceUnavailable"
	// ReasonShutdown (503): the APNs server is shutting down.
	ReasonShutdown = "Shutdown"
)

// Error is APNs' refusal of a push: the HTTP status and the reason from
// the JSON body. The push service returns it (wrapped) as the per-ID
// error, so its text carries the reason to the API's push_error.
type Error struct {
	// Status is the HTTP status APNs answered with.
	Status int
	// Reason is APNs' reason, such as "Unregistered"; empty if the body
	// carried none.
	Reason string
	// APNsID is the apns-id of the refused request, if APNs sent one.
	APNsID string
	// Timestamp is, for a 410, when APNs last confirmed that the token
	// was no longer valid for the topic.
	Timestamp time.Time
}

// Error implements error: "apns: <reason> (<status> <status text>)".
func (e *Error) Error() string {
	reason := e.Reason
	if reason == "" {
		reason = "no reason given"
	}
	return fmt.Sprintf("apns: %s (%d %s)", reason, e.Status, http.StatusText(e.Status))
}

var _ push.Refusal = (*Error)(nil)

// maxRefusalReason bounds RefusalReason: a longer reason is not one of
// Apple's, and is not passed on to metric labels.
const maxRefusalReason = 64

// RefusalReason implements push.Refusal: e's reason, or the text of its
// HTTP status if the reason is missing or longer than 64 bytes.
func (e *Error) RefusalReason() string {
	if e.Reason != "" && len(e.Reason) <= maxRefusalReason {
		return e.Reason
	}
	return http.StatusText(e.Status)
}

// Unregistered reports whether APNs says the token is no longer active
// for the topic: status 410 (reasons Unregistered and ExpiredToken).
func (e *Error) Unregistered() bool {
	return e.Status == http.StatusGone || e.Reason == ReasonUnregistered || e.Reason == ReasonExpiredToken
}

// BadToken reports whether APNs says the token itself is wrong: not a
// device token of this environment (BadDeviceToken) or not one of this
// topic (DeviceTokenNotForTopic).
func (e *Error) BadToken() bool {
	return e.Reason == ReasonBadDeviceToken || e.Reason == ReasonDeviceTokenNotForTopic
}

// InvalidToken reports whether pushing to this token again is pointless
// until the device registers a new one: Unregistered or BadToken. The
// push service marks such tokens in storage.
func (e *Error) InvalidToken() bool { return e.Unregistered() || e.BadToken() }

// Retryable reports whether the same push may succeed if tried again
// later: TooManyRequests (429) and APNs faults (5xx).
func (e *Error) Retryable() bool {
	return e.Status == http.StatusTooManyRequests || e.Status >= 500
}

// CertificateProblem reports whether APNs refused the client certificate
// (403 BadCertificate or BadCertificateEnvironment): a sign that the
// topic's certificate may have been replaced since it was loaded.
func (e *Error) CertificateProblem() bool {
	return e.Reason == ReasonBadCertificate || e.Reason == ReasonBadCertificateEnvironment
}
