package mdm

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
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
//
// Every key the ID is made of is checked here, once (DESIGN §2): a UDID or
// EnrollmentID with a ':' (the separator of a user channel's ID, so that
// UDID "<victim>:<UserID>" cannot name another device's user channel), a
// key with a control character or invalid UTF-8, or a key longer than
// MaxIDBytes is an *InvalidIDError (errors.Is ErrInvalidID). An EnrollID
// Resolve returns is valid by construction: nothing after it re-checks.
func (e *Enrollment) Resolve() (*EnrollID, error) {
	switch {
	case e.UDID != "":
		if err := checkIDPart("UDID", e.UDID, false); err != nil {
			return nil, err
		}
		switch {
		case e.UserID == "":
			return &EnrollID{Type: Device, ID: e.UDID}, nil
		case strings.EqualFold(e.UserID, SharedIPadUserID):
			if e.UserShortName == "" {
				return nil, errors.New("mdm: Shared iPad message has no UserShortName")
			}
			if err := checkIDPart("UserShortName", e.UserShortName, true); err != nil {
				return nil, err
			}
			return &EnrollID{Type: SharedIPad, ID: e.UDID + ":" + e.UserShortName, ParentID: e.UDID}, nil
		default:
			if err := checkIDPart("UserID", e.UserID, true); err != nil {
				return nil, err
			}
			return &EnrollID{Type: User, ID: e.UDID + ":" + e.UserID, ParentID: e.UDID}, nil
		}
	case e.EnrollmentID != "":
		if err := checkIDPart("EnrollmentID", e.EnrollmentID, false); err != nil {
			return nil, err
		}
		if e.EnrollmentUserID != "" {
			if err := checkIDPart("EnrollmentUserID", e.EnrollmentUserID, true); err != nil {
				return nil, err
			}
			return &EnrollID{Type: UserEnrollment, ID: e.EnrollmentID + ":" + e.EnrollmentUserID, ParentID: e.EnrollmentID}, nil
		}
		return &EnrollID{Type: UserEnrollmentDevice, ID: e.EnrollmentID}, nil
	}
	return nil, ErrNoEnrollmentID
}

// MaxIDBytes is the longest, in bytes, each part of an enrollment ID (UDID,
// UserID, UserShortName, EnrollmentID, EnrollmentUserID) and a CommandUUID
// may be. Apple's are UUIDs or short names, well under it; the bound keeps
// what one request can make storage index small and known.
const MaxIDBytes = 255

// ErrInvalidID is what every *InvalidIDError is (errors.Is): an identifier
// from the wire that breaks DESIGN §2's rules.
var ErrInvalidID = errors.New("mdm: invalid identifier")

// maxShownIDBytes is how much of a refused identifier an error shows: it
// goes into log lines and API answers, and may be huge.
const maxShownIDBytes = 64

// InvalidIDError says an identifier (an enrollment ID or one of its parts,
// or a CommandUUID) breaks DESIGN §2's rules: longer than MaxIDBytes, a
// control character or invalid UTF-8, a ':' in a UDID or EnrollmentID, or
// an empty part. Devices get a 400 for it (wrapped in a *ParseError), as
// do API clients.
type InvalidIDError struct {
	// Key names the identifier, e.g. "UDID", "CommandUUID" or
	// "enrollment ID".
	Key string
	// Value is the identifier, cut to its first 64 bytes.
	Value string
	// Len is the identifier's whole length in bytes.
	Len int
	// Reason says which rule it breaks.
	Reason string
}

// Error implements error. The identifier is quoted (control characters
// escaped) and cut, so that the text is safe in a log line or a JSON
// answer.
func (e *InvalidIDError) Error() string {
	shown := strconv.Quote(e.Value)
	if e.Len > len(e.Value) {
		shown += "…"
	}
	return fmt.Sprintf("mdm: invalid %s %s (%d bytes): %s", e.Key, shown, e.Len, e.Reason)
}

// Is reports whether target is ErrInvalidID.
func (e *InvalidIDError) Is(target error) bool { return target == ErrInvalidID }

func invalidID(key, value, reason string) *InvalidIDError {
	shown := value
	if len(shown) > maxShownIDBytes {
		shown = shown[:maxShownIDBytes]
	}
	return &InvalidIDError{Key: key, Value: shown, Len: len(value), Reason: reason}
}

// checkIDPart checks one identifier against the rules every part shares:
// not empty, at most MaxIDBytes, valid UTF-8 without control characters
// (C0, DEL and C1: unicode.IsControl), and, unless colonOK, no ':'.
func checkIDPart(key, s string, colonOK bool) error {
	switch {
	case s == "":
		return invalidID(key, s, "empty")
	case len(s) > MaxIDBytes:
		return invalidID(key, s, fmt.Sprintf("longer than %d bytes", MaxIDBytes))
	case !colonOK && strings.IndexByte(s, ':') >= 0:
		return invalidID(key, s, "contains ':', the separator of a user channel's enrollment ID")
	}
	for i := 0; i < len(s); {
		if c := s[i]; c < utf8.RuneSelf {
			if c < 0x20 || c == 0x7f {
				return invalidID(key, s, fmt.Sprintf("contains control character %#02x at byte %d", c, i))
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			return invalidID(key, s, fmt.Sprintf("invalid UTF-8 at byte %d", i))
		}
		if unicode.IsControl(r) {
			return invalidID(key, s, fmt.Sprintf("contains control character %U at byte %d", r, i))
		}
		i += size
	}
	return nil
}

// CheckEnrollmentID checks an enrollment ID given whole (as the API takes
// it) against the rules Resolve applies to its parts: "A" or "A:B", where
// A, the device channel's ID (a UDID or EnrollmentID), is everything
// before the first ':' and B, the user part (UserID, UserShortName or
// EnrollmentUserID), everything after it. Neither may be empty or longer
// than MaxIDBytes, nor hold a control character or invalid UTF-8. These
// are exactly the IDs Resolve can produce. Failures are *InvalidIDError.
func CheckEnrollmentID(id string) error {
	// Length first, so that a huge ID costs no scan.
	if len(id) > 2*MaxIDBytes+1 {
		return invalidID("enrollment ID", id, fmt.Sprintf("longer than %d bytes", 2*MaxIDBytes+1))
	}
	device, user, isUser := strings.Cut(id, ":")
	if err := checkIDPart("enrollment ID", device, true); err != nil {
		return idPartError(err, id, "device part")
	}
	if isUser {
		if err := checkIDPart("enrollment ID", user, true); err != nil {
			return idPartError(err, id, "user part")
		}
	}
	return nil
}

// idPartError restates a part's *InvalidIDError for the whole ID, so that
// the error names the ID the caller gave.
func idPartError(err error, id, part string) error {
	var bad *InvalidIDError
	if !errors.As(err, &bad) {
		return err
	}
	return invalidID(bad.Key, id, part+" "+bad.Reason)
}
