package storage

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"time"

	"github.com/picomdm/picomdm/mdm"
)

// Errors the inspection reads return besides ErrNotFound.
var (
	// ErrBadCursor says a pagination cursor was not one this backend
	// issued (the API answers 400).
	ErrBadCursor = errors.New("storage: bad cursor")
	// ErrAlreadyAnswered says a command cannot be cancelled for an
	// enrollment that already gave it a final answer (the API answers 409).
	ErrAlreadyAnswered = errors.New("storage: command already answered")
)

// MaxPageLimit is the largest page the inspection reads return.
const MaxPageLimit = 1000

// Page asks for one page of a listing: Limit items (1…MaxPageLimit) after
// Cursor ("" for the first page). Listings are in a stable order (by
// enrollment ID) and backed by an index, so a page costs the same however
// large the table (keyset pagination).
type Page struct {
	Cursor string
	Limit  int
}

// Size returns p.Limit clamped to 1…MaxPageLimit: 0 or less asks for the
// most.
func (p Page) Size() int {
	if p.Limit <= 0 || p.Limit > MaxPageLimit {
		return MaxPageLimit
	}
	return p.Limit
}

// EnrollmentFilter narrows ListEnrollments; zero fields match everything.
type EnrollmentFilter struct {
	Type     mdm.EnrollType // exact type
	Enabled  *bool
	Serial   string // the device's serial number
	Topic    string
	DeviceID string // the device channel and its user channels
	// SeenBefore/SeenAfter bound last_seen_at (exclusive).
	SeenBefore, SeenAfter time.Time
}

// EnrollmentInfo is one enrollment as the inspection API shows it.
type EnrollmentInfo struct {
	ID                   string
	Type                 mdm.EnrollType
	ParentID             string
	SerialNumber         string
	Topic                string
	Enabled              bool
	TokenUpdateTally     int
	EnrolledAt           time.Time
	LastSeenAt           time.Time
	PushTokenValid       bool
	IdentityCertNotAfter time.Time // zero if unknown
	PendingCommands      int
}

// QueuedCommand is one pending command of an enrollment.
type QueuedCommand struct {
	CommandUUID  string
	RequestType  string
	EnqueuedAt   time.Time
	Status       string // "" or "NotNow"
	NotNowCount  int
	LastNotNowAt time.Time // zero if never
}

// CommandInfo is an enqueued command.
type CommandInfo struct {
	CommandUUID string
	RequestType string
	EnqueuedAt  time.Time
	Raw         []byte
}

// CommandState is one enrollment's state for a command: "pending",
// "NotNow", or its final Status (Acknowledged, Error, CommandFormatError, …),
// with the result plist for answered ones.
type CommandState struct {
	EnrollmentID string
	State        string
	NotNowCount  int
	EnqueuedAt   time.Time
	AnsweredAt   time.Time // zero while pending
	Result       []byte    // the last report's raw plist; nil while pending
}

// InspectionStore is the read side of the inspection API, plus the two
// queue edits operators need. Every backend implements it.
type InspectionStore interface {
	// ListEnrollments returns a page of enrollments matching f, in ID
	// order, and the cursor of the next page ("" after the last).
	ListEnrollments(ctx context.Context, f EnrollmentFilter, p Page) ([]EnrollmentInfo, string, error)
	// RetrieveEnrollment returns one enrollment; ErrNotFound if unknown.
	RetrieveEnrollment(ctx context.Context, id string) (*EnrollmentInfo, error)
	// RetrieveQueue returns the enrollment's pending commands in delivery
	// order; ErrNotFound for an unknown enrollment.
	RetrieveQueue(ctx context.Context, id string) ([]QueuedCommand, error)
	// ClearQueue drops every pending command of the enrollment and
	// returns how many; ErrNotFound for an unknown enrollment.
	ClearQueue(ctx context.Context, id string) (int, error)
	// CancelCommand drops one pending command of the enrollment:
	// ErrAlreadyAnswered if it was answered finally, ErrNotFound if it was
	// never queued for it. A cancelled command is never delivered after.
	CancelCommand(ctx context.Context, id, commandUUID string) error
	// RetrieveCommand returns an enqueued command; ErrNotFound if unknown
	// (or purged).
	RetrieveCommand(ctx context.Context, commandUUID string) (*CommandInfo, error)
	// ListCommandStates returns a page of the per-enrollment states of a
	// command, in enrollment ID order, and the next cursor; ErrNotFound for
	// an unknown command.
	ListCommandStates(ctx context.Context, commandUUID string, p Page) ([]CommandState, string, error)
	// RetrieveCommandResult returns one enrollment's state for a command,
	// with its result plist; ErrNotFound if there is none.
	RetrieveCommandResult(ctx context.Context, commandUUID, id string) (*CommandState, error)
}

// EncodeCursor returns the pagination cursor of the page after id: the
// base64url of the last ID of a page. Every backend's keyset pagination
// uses it.
func EncodeCursor(id string) string { return base64.RawURLEncoding.EncodeToString([]byte(id)) }

// DecodeCursor returns the ID a cursor names ("" for the first page), or
// an error wrapping ErrBadCursor.
func DecodeCursor(cursor string) (string, error) {
	if cursor == "" {
		return "", nil
	}
	b, err := base64.RawURLEncoding.DecodeString(cursor)
	if err != nil || len(b) == 0 {
		return "", fmt.Errorf("cursor %q: %w", cursor, ErrBadCursor)
	}
	return string(b), nil
}
