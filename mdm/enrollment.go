package mdm

import (
	"errors"
	"strings"
)

// EnrollType is the kind of MDM channel an enrollment ID names, spelled as
// it is written to storage and webhooks.
type EnrollType string

// The enrollment types, one per MDM channel kind.
const (
	// Device is a device channel identified by its UDID.
	Device EnrollType = "Device"
	// User is a user channel (macOS) identified by UDID:UserID.
	User EnrollType = "User"
	// UserEnrollmentDevice is the device channel of a User Enrollment
	// (BYOD), identified by its EnrollmentID.
	UserEnrollmentDevice EnrollType = "User Enrollment (Device)"
	// UserEnrollment is the user channel of a User Enrollment, identified
	// by EnrollmentID:EnrollmentUserID.
	UserEnrollment EnrollType = "User Enrollment"
	// SharedIPad is a Shared iPad user channel, identified by
	// UDID:UserShortName.
	SharedIPad EnrollType = "Shared iPad"
)

// SharedIPadUserID is the UserID a Shared iPad user channel reports.
const SharedIPadUserID = "FFFFFFFF-FFFF-FFFF-FFFF-FFFFFFFFFFFF"

// IsUserChannel reports whether t names a user channel (one with a parent
// device channel).
func (t EnrollType) IsUserChannel() bool {
	return t == User || t == UserEnrollment || t == SharedIPad
}

// ErrNoEnrollmentID is returned when a message carries neither a UDID nor
// an EnrollmentID.
var ErrNoEnrollmentID = errors.New("mdm: message has no UDID or EnrollmentID")

// Enrollment holds the identifying keys every check-in message and command
// report carries. Which keys are present depends on the channel: see
// Apple's check-in protocol documentation.
type Enrollment struct {
	UDID             string `plist:",omitempty"`
	UserID           string `plist:",omitempty"`
	UserShortName    string `plist:",omitempty"`
	UserLongName     string `plist:",omitempty"`
	EnrollmentID     string `plist:",omitempty"`
	EnrollmentUserID string `plist:",omitempty"`
}

// EnrollID is a resolved enrollment identifier: the channel's ID, its type
// and, for user channels, the ID of its device channel.
type EnrollID struct {
	Type     EnrollType
	ID       string
	ParentID string
}

// DeviceID returns the ID of the device channel this enrollment belongs to:
// its parent for a user channel, else itself.
func (e *EnrollID) DeviceID() string {
	if e.ParentID != "" {
		return e.ParentID
	}
	return e.ID
}

// Resolve derives the enrollment ID from the message's identifying keys.
// A UDID wins over an EnrollmentID; a UserID turns the device channel into a
// user channel, and the Shared iPad UserID into a Shared iPad channel.
func (e *Enrollment) Resolve() (*EnrollID, error) {
	switch {
	case e.UDID != "":
		switch {
		case e.UserID == "":
			return &EnrollID{Type: Device, ID: e.UDID}, nil
		case strings.EqualFold(e.UserID, SharedIPadUserID):
			if e.UserShortName == "" {
				return nil, errors.New("mdm: Shared iPad message has no UserShortName")
			}
			return &EnrollID{Type: SharedIPad, ID: e.UDID + ":" + e.UserShortName, ParentID: e.UDID}, nil
		default:
			return &EnrollID{Type: User, ID: e.UDID + ":" + e.UserID, ParentID: e.UDID}, nil
		}
	case e.EnrollmentID != "":
		if e.EnrollmentUserID != "" {
			return &EnrollID{Type: UserEnrollment, ID: e.EnrollmentID + ":" + e.EnrollmentUserID, ParentID: e.EnrollmentID}, nil
		}
		return &EnrollID{Type: UserEnrollmentDevice, ID: e.EnrollmentID}, nil
	}
	return nil, ErrNoEnrollmentID
}
