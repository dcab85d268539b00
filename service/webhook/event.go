package webhook

import (
	"strings"
	"time"

	"github.com/picomdm/picomdm/mdm"
)

// The event topics, as MicroMDM and NanoMDM name them: "mdm." followed by
// the check-in MessageType, and mdm.Connect for every command report.
const (
	TopicAuthenticate          = "mdm." + mdm.MessageAuthenticate
	TopicTokenUpdate           = "mdm." + mdm.MessageTokenUpdate
	TopicCheckOut              = "mdm." + mdm.MessageCheckOut
	TopicUserAuthenticate      = "mdm." + mdm.MessageUserAuthenticate
	TopicSetBootstrapToken     = "mdm." + mdm.MessageSetBootstrapToken
	TopicGetBootstrapToken     = "mdm." + mdm.MessageGetBootstrapToken
	TopicDeclarativeManagement = "mdm." + mdm.MessageDeclarativeManagement
	TopicGetToken              = "mdm." + mdm.MessageGetToken
	TopicConnect               = "mdm.Connect"
)

// Event is the JSON document POSTed to the webhook URL for every check-in
// message and command report. It follows MicroMDM's webhook format, with
// NanoMDM's additions (enrollment_id, ids, token_update_tally). Exactly one
// of CheckinEvent and AcknowledgeEvent is set.
type Event struct {
	// Topic names the message: mdm.<MessageType> for check-ins,
	// mdm.Connect for command reports.
	Topic string `json:"topic"`
	// EventID is a random UUID, unique per event: receivers can use it to
	// discard a redelivered event.
	EventID string `json:"event_id"`
	// CreatedAt is when the server received the message, in UTC.
	CreatedAt time.Time `json:"created_at"`

	AcknowledgeEvent *AcknowledgeEvent `json:"acknowledge_event,omitempty"`
	CheckinEvent     *CheckinEvent     `json:"checkin_event,omitempty"`
}

// IDs is the enrollment a message belongs to, as PicoMDM resolves it (see
// mdm.EnrollID).
type IDs struct {
	// ID is the enrollment ID (UDID, UDID:UserID, EnrollmentID, …).
	ID string `json:"id"`
	// ParentID is the device-channel ID of a user channel; empty (and
	// omitted) for a device channel.
	ParentID string `json:"parent_id,omitempty"`
	// Type is the enrollment type, e.g. "Device" or
	// "User Enrollment (Device)".
	Type string `json:"type"`
}

// CheckinEvent describes a check-in message.
type CheckinEvent struct {
	// UDID is the message's UDID key; empty for a User Enrollment, which
	// has none.
	UDID string `json:"udid"`
	// EnrollmentID is the message's EnrollmentID key (User Enrollment
	// only); omitted when empty.
	EnrollmentID string `json:"enrollment_id,omitempty"`
	// Params are the URL query parameters of the device's request.
	Params map[string]string `json:"url_params,omitempty"`
	// RawPayload is the message's plist exactly as received (base64 in
	// JSON).
	RawPayload []byte `json:"raw_payload"`
	IDs        IDs    `json:"ids"`
	// TokenUpdateTally is how many TokenUpdates the enrollment has sent
	// since it (re-)enrolled, 1 for the first; TokenUpdate only.
	TokenUpdateTally *int `json:"token_update_tally,omitempty"`
}

// AcknowledgeEvent describes a command report (Idle included).
type AcknowledgeEvent struct {
	// UDID is the report's UDID key; empty for a User Enrollment.
	UDID string `json:"udid"`
	// EnrollmentID is the report's EnrollmentID key; omitted when empty.
	EnrollmentID string `json:"enrollment_id,omitempty"`
	// Status is Apple's Status: Idle, Acknowledged, Error,
	// CommandFormatError or NotNow.
	Status string `json:"status"`
	// CommandUUID is the command answered; omitted for Idle.
	CommandUUID string `json:"command_uuid,omitempty"`
	// Params are the URL query parameters of the device's request.
	Params map[string]string `json:"url_params,omitempty"`
	// RawPayload is the report's plist exactly as received.
	RawPayload []byte `json:"raw_payload"`
	IDs        IDs    `json:"ids"`
}

// idsOf returns the IDs of r's enrollment (empty when unresolved).
func idsOf(r *mdm.Request) IDs {
	if r.EnrollID == nil {
		return IDs{}
	}
	return IDs{ID: r.ID, ParentID: r.ParentID, Type: string(r.Type)}
}

// copyParams copies the URL parameters, so the queued event never shares a
// map with the request; nil when there are none (url_params is omitted).
func copyParams(params map[string]string) map[string]string {
	if len(params) == 0 {
		return nil
	}
	out := make(map[string]string, len(params))
	for k, v := range params {
		out[k] = v
	}
	return out
}

// newCheckinEvent builds the event for a check-in message.
func newCheckinEvent(r *mdm.Request, msg mdm.Checkin, now time.Time) *Event {
	keys := msg.EnrollmentKeys()
	return &Event{
		Topic:     "mdm." + msg.Type(),
		EventID:   strings.ToLower(mdm.NewUUID()),
		CreatedAt: now.UTC(),
		CheckinEvent: &CheckinEvent{
			UDID:         keys.UDID,
			EnrollmentID: keys.EnrollmentID,
			Params:       copyParams(r.Params),
			RawPayload:   msg.RawBytes(),
			IDs:          idsOf(r),
		},
	}
}

// newAcknowledgeEvent builds the event for a command report.
func newAcknowledgeEvent(r *mdm.Request, results *mdm.CommandResults, now time.Time) *Event {
	return &Event{
		Topic:     TopicConnect,
		EventID:   strings.ToLower(mdm.NewUUID()),
		CreatedAt: now.UTC(),
		AcknowledgeEvent: &AcknowledgeEvent{
			UDID:         results.UDID,
			EnrollmentID: results.EnrollmentID,
			Status:       results.Status,
			CommandUUID:  results.CommandUUID,
			Params:       copyParams(r.Params),
			RawPayload:   results.Raw,
			IDs:          idsOf(r),
		},
	}
}
