package mdm_test

import (
	"errors"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"

	"github.com/picomdm/picomdm/mdm"
)

// TestResolve checks the enrollment ID rules of DESIGN.md §2 on the
// identifying keys alone.
func TestResolve(t *testing.T) {
	tests := []struct {
		name       string
		keys       mdm.Enrollment
		wantType   mdm.EnrollType
		wantID     string
		wantParent string
	}{
		{"device", mdm.Enrollment{UDID: testUDID}, mdm.Device, testUDID, ""},
		{"user", mdm.Enrollment{UDID: testUDID, UserID: testUserID, UserShortName: testUserShortName, UserLongName: testUserLongName},
			mdm.User, testUDID + ":" + testUserID, testUDID},
		{"user without names", mdm.Enrollment{UDID: testUDID, UserID: testUserID}, mdm.User, testUDID + ":" + testUserID, testUDID},
		{"Shared iPad", mdm.Enrollment{UDID: testUDID, UserID: mdm.SharedIPadUserID, UserShortName: testSharedIPadUser},
			mdm.SharedIPad, testUDID + ":" + testSharedIPadUser, testUDID},
		{"Shared iPad, lower-case UserID", mdm.Enrollment{UDID: testUDID, UserID: "ffffffff-ffff-ffff-ffff-ffffffffffff", UserShortName: testSharedIPadUser},
			mdm.SharedIPad, testUDID + ":" + testSharedIPadUser, testUDID},
		{"User Enrollment device", mdm.Enrollment{EnrollmentID: testEnrollmentID}, mdm.UserEnrollmentDevice, testEnrollmentID, ""},
		{"User Enrollment user", mdm.Enrollment{EnrollmentID: testEnrollmentID, EnrollmentUserID: testEnrollmentUserID},
			mdm.UserEnrollment, testEnrollmentID + ":" + testEnrollmentUserID, testEnrollmentID},
		{"UDID wins over EnrollmentID", mdm.Enrollment{UDID: testUDID, EnrollmentID: testEnrollmentID}, mdm.Device, testUDID, ""},
		{"UDID wins over EnrollmentUserID", mdm.Enrollment{UDID: testUDID, UserID: testUserID, EnrollmentID: testEnrollmentID, EnrollmentUserID: testEnrollmentUserID},
			mdm.User, testUDID + ":" + testUserID, testUDID},
		{"user names without UserID stay on the device channel", mdm.Enrollment{UDID: testUDID, UserShortName: testUserShortName}, mdm.Device, testUDID, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id, err := tt.keys.Resolve()
			if err != nil {
				t.Fatalf("Resolve: %v", err)
			}
			if id.Type != tt.wantType || id.ID != tt.wantID || id.ParentID != tt.wantParent {
				t.Errorf("Resolve = %+v, want {%s %s %s}", *id, tt.wantType, tt.wantID, tt.wantParent)
			}
			checkEnrollID(t, id)
		})
	}
}

// checkEnrollID checks the invariants between an ID's type, parent and
// device ID.
func checkEnrollID(t *testing.T, id *mdm.EnrollID) {
	t.Helper()
	if got, want := id.Type.IsUserChannel(), id.ParentID != ""; got != want {
		t.Errorf("%s.IsUserChannel() = %v, but ParentID is %q", id.Type, got, id.ParentID)
	}
	want := id.ID
	if id.ParentID != "" {
		want = id.ParentID
	}
	if got := id.DeviceID(); got != want {
		t.Errorf("DeviceID() = %q, want %q", got, want)
	}
}

// TestResolveErrors checks the keys that name no enrollment.
func TestResolveErrors(t *testing.T) {
	for name, keys := range map[string]mdm.Enrollment{
		"no keys":                    {},
		"UserID only":                {UserID: testUserID, UserShortName: testUserShortName},
		"EnrollmentUserID only":      {EnrollmentUserID: testEnrollmentUserID},
		"Shared iPad UserID no UDID": {UserID: mdm.SharedIPadUserID, UserShortName: testSharedIPadUser},
	} {
		if id, err := keys.Resolve(); !errors.Is(err, mdm.ErrNoEnrollmentID) {
			t.Errorf("%s: Resolve = %+v, %v; want ErrNoEnrollmentID", name, id, err)
		}
	}
	// A Shared iPad user channel is named by its UserShortName: without one
	// there is no ID, but there is a UDID, so the error is a different one.
	noShortName := mdm.Enrollment{UDID: testUDID, UserID: mdm.SharedIPadUserID}
	id, err := noShortName.Resolve()
	if err == nil || errors.Is(err, mdm.ErrNoEnrollmentID) {
		t.Errorf("Shared iPad without UserShortName: Resolve = %+v, %v; want an error other than ErrNoEnrollmentID", id, err)
	}
}

// TestResolveCheckinSchemas resolves every synthesised check-in message
// (every MessageType, every channel its schema allows, XML and binary).
func TestResolveCheckinSchemas(t *testing.T) {
	for _, c := range checkinCases(t) {
		t.Run(c.Name, func(t *testing.T) {
			msg, err := mdm.DecodeCheckin(c.Raw)
			if err != nil {
				t.Fatalf("DecodeCheckin: %v", err)
			}
			id, err := msg.EnrollmentKeys().Resolve()
			if err != nil {
				t.Fatalf("Resolve: %v", err)
			}
			if id.Type != c.Channel.Type || id.ID != c.Channel.WantID || id.ParentID != c.Channel.WantParent {
				t.Errorf("Resolve = %+v, want {%s %s %s}", *id, c.Channel.Type, c.Channel.WantID, c.Channel.WantParent)
			}
			checkEnrollID(t, id)
		})
	}
}

// TestResolveCheckinSchemasEdgeCases decodes every MessageType without any
// identifying key (ErrNoEnrollmentID) and with both a UDID and an
// EnrollmentID (the UDID wins).
func TestResolveCheckinSchemasEdgeCases(t *testing.T) {
	for _, s := range checkinSchemas(t) {
		for _, f := range plistFormats {
			t.Run(s.MessageType+"/"+f.Name, func(t *testing.T) {
				values := payload(s.PayloadKeys, s.MessageType)
				values["MessageType"] = s.MessageType
				id := resolveValues(t, f, values)
				if !errors.Is(id.err, mdm.ErrNoEnrollmentID) {
					t.Errorf("no identifying keys: Resolve = %+v, %v; want ErrNoEnrollmentID", id.id, id.err)
				}

				values["UDID"] = testUDID
				values["EnrollmentID"] = testEnrollmentID
				id = resolveValues(t, f, values)
				if id.err != nil || id.id.Type != mdm.Device || id.id.ID != testUDID {
					t.Errorf("UDID and EnrollmentID: Resolve = %+v, %v; want the device channel %s", id.id, id.err, testUDID)
				}
			})
		}
	}
}

// resolved is what Resolve returned.
type resolved struct {
	id  *mdm.EnrollID
	err error
}

// resolveValues encodes values, decodes them as a check-in and resolves
// the message's enrollment ID.
func resolveValues(t *testing.T, f plistFormat, values map[string]any) resolved {
	t.Helper()
	raw, err := f.Encode(values)
	if err != nil {
		t.Fatal(err)
	}
	msg, err := mdm.DecodeCheckin(raw)
	if err != nil {
		t.Fatalf("DecodeCheckin: %v", err)
	}
	id, err := msg.EnrollmentKeys().Resolve()
	return resolved{id, err}
}

// TestResolveValidation checks DESIGN §2's identifier rules on every part
// an enrollment ID is made of, at their edges: 255 bytes pass, 256 do not;
// a ':' is refused in a UDID or EnrollmentID only; control characters and
// invalid UTF-8 are refused everywhere.
func TestResolveValidation(t *testing.T) {
	max := strings.Repeat("a", mdm.MaxIDBytes)
	over := max + "a"
	// An ID that is valid UTF-8 and exactly 255 bytes with multi-byte
	// runes: the limit counts bytes, not characters.
	maxMultiByte := strings.Repeat("é", mdm.MaxIDBytes/2) + "a"
	tests := []struct {
		name    string
		keys    mdm.Enrollment
		wantKey string // "" when Resolve must succeed
	}{
		{"UDID 255 bytes", mdm.Enrollment{UDID: max}, ""},
		{"UDID 255 bytes, multi-byte", mdm.Enrollment{UDID: maxMultiByte}, ""},
		{"UDID 256 bytes", mdm.Enrollment{UDID: over}, "UDID"},
		{"UDID with ':'", mdm.Enrollment{UDID: testUDID + ":" + testUserID}, "UDID"},
		{"UDID with ':' on a user channel", mdm.Enrollment{UDID: testUDID + ":x", UserID: testUserID}, "UDID"},
		{"UDID with NUL", mdm.Enrollment{UDID: testUDID + "\x00"}, "UDID"},
		{"UDID with newline", mdm.Enrollment{UDID: testUDID + "\n"}, "UDID"},
		{"UDID with DEL", mdm.Enrollment{UDID: "\x7f" + testUDID}, "UDID"},
		{"UDID with a C1 control", mdm.Enrollment{UDID: testUDID + "\u0085"}, "UDID"},
		{"UDID with invalid UTF-8", mdm.Enrollment{UDID: testUDID + "\xff"}, "UDID"},
		{"UDID with a truncated rune", mdm.Enrollment{UDID: testUDID + "\xc3"}, "UDID"},
		{"UDID with space and non-ASCII", mdm.Enrollment{UDID: "Mac de José 1"}, ""},
		{"UserID 255 bytes", mdm.Enrollment{UDID: max, UserID: max}, ""},
		{"UserID 256 bytes", mdm.Enrollment{UDID: testUDID, UserID: over}, "UserID"},
		{"UserID with tab", mdm.Enrollment{UDID: testUDID, UserID: "a\tb"}, "UserID"},
		{"UserID with ':'", mdm.Enrollment{UDID: testUDID, UserID: "a:b"}, ""},
		{"UserShortName 255 bytes", mdm.Enrollment{UDID: testUDID, UserID: mdm.SharedIPadUserID, UserShortName: max}, ""},
		{"UserShortName 256 bytes", mdm.Enrollment{UDID: testUDID, UserID: mdm.SharedIPadUserID, UserShortName: over}, "UserShortName"},
		{"UserShortName with CR", mdm.Enrollment{UDID: testUDID, UserID: mdm.SharedIPadUserID, UserShortName: "student\r"}, "UserShortName"},
		{"UserShortName with invalid UTF-8", mdm.Enrollment{UDID: testUDID, UserID: mdm.SharedIPadUserID, UserShortName: "\xc0\xaf"}, "UserShortName"},
		{"EnrollmentID 255 bytes", mdm.Enrollment{EnrollmentID: max}, ""},
		{"EnrollmentID 256 bytes", mdm.Enrollment{EnrollmentID: over}, "EnrollmentID"},
		{"EnrollmentID with ':'", mdm.Enrollment{EnrollmentID: testEnrollmentID + ":" + testEnrollmentUserID}, "EnrollmentID"},
		{"EnrollmentID with ESC", mdm.Enrollment{EnrollmentID: "\x1b[31m"}, "EnrollmentID"},
		{"EnrollmentUserID 255 bytes", mdm.Enrollment{EnrollmentID: max, EnrollmentUserID: max}, ""},
		{"EnrollmentUserID 256 bytes", mdm.Enrollment{EnrollmentID: testEnrollmentID, EnrollmentUserID: over}, "EnrollmentUserID"},
		{"EnrollmentUserID with NUL", mdm.Enrollment{EnrollmentID: testEnrollmentID, EnrollmentUserID: "\x00"}, "EnrollmentUserID"},
		// Keys the ID is not made of are not looked at: a UDID wins over
		// an EnrollmentID, and a user channel's ID holds no UserShortName.
		{"ignored EnrollmentID", mdm.Enrollment{UDID: testUDID, EnrollmentID: "bad:\x00"}, ""},
		{"ignored UserShortName", mdm.Enrollment{UDID: testUDID, UserID: testUserID, UserShortName: over}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id, err := tt.keys.Resolve()
			if tt.wantKey == "" {
				if err != nil {
					t.Fatalf("Resolve: %v", err)
				}
				checkEnrollID(t, id)
				return
			}
			var bad *mdm.InvalidIDError
			if !errors.As(err, &bad) || !errors.Is(err, mdm.ErrInvalidID) {
				t.Fatalf("Resolve = %+v, %v; want an *InvalidIDError", id, err)
			}
			if id != nil {
				t.Errorf("Resolve returned %+v with its error", id)
			}
			if bad.Key != tt.wantKey {
				t.Errorf("error names %q, want %q (%v)", bad.Key, tt.wantKey, err)
			}
			checkErrorText(t, err)
		})
	}
}

// checkErrorText checks that an identifier error's text is safe to log
// and to answer with: no control characters, valid UTF-8, bounded.
func checkErrorText(t *testing.T, err error) {
	t.Helper()
	msg := err.Error()
	if !utf8.ValidString(msg) || strings.ContainsFunc(msg, unicode.IsControl) {
		t.Errorf("error text %q holds control characters or invalid UTF-8", msg)
	}
	if len(msg) > 400 { // 64 bytes shown, each at most 4 once quoted
		t.Errorf("error text is %d bytes: %q", len(msg), msg)
	}
}

// TestCheckEnrollmentID checks the rules for an enrollment ID given whole,
// as the API takes it: "A" or "A:B", each part non-empty, at most 255
// bytes, without control characters.
func TestCheckEnrollmentID(t *testing.T) {
	max := strings.Repeat("b", mdm.MaxIDBytes)
	over := max + "b"
	tests := []struct {
		id string
		ok bool
	}{
		{testUDID, true},
		{testUDID + ":" + testUserID, true},
		{testEnrollmentID + ":" + testEnrollmentUserID, true},
		{testUDID + ":" + testSharedIPadUser, true},
		{max, true},
		{max + ":" + max, true},
		{over, false},
		{over + ":" + testUserID, false},
		{testUDID + ":" + over, false},
		{strings.Repeat("x", 100000), false},
		// Everything after the first ':' is the user part, which may hold
		// a ':' as on the device path (UserShortName "a:b").
		{testUDID + ":a:b", true},
		{"", false},
		{":" + testUserID, false},
		{testUDID + ":", false},
		{testUDID + "\n", false},
		{testUDID + ":" + "\x00", false},
		{testUDID + "\x7f", false},
		{testUDID + "\xff", false},
		{testUDID + ":\u009f", false},
	}
	for _, tt := range tests {
		err := mdm.CheckEnrollmentID(tt.id)
		if tt.ok {
			if err != nil {
				t.Errorf("CheckEnrollmentID(%.40q): %v", tt.id, err)
			}
			continue
		}
		if !errors.Is(err, mdm.ErrInvalidID) {
			t.Errorf("CheckEnrollmentID(%.40q) = %v, want ErrInvalidID", tt.id, err)
			continue
		}
		checkErrorText(t, err)
	}
	// Every ID Resolve produces passes.
	for _, c := range checkinCases(t) {
		msg, err := mdm.DecodeCheckin(c.Raw)
		if err != nil {
			t.Fatal(err)
		}
		id, err := msg.EnrollmentKeys().Resolve()
		if err != nil {
			t.Fatal(err)
		}
		if err := mdm.CheckEnrollmentID(id.ID); err != nil {
			t.Errorf("%s: Resolve gave %q, which CheckEnrollmentID refuses: %v", c.Name, id.ID, err)
		}
	}
}

// TestInvalidIDErrorText checks that a huge identifier is cut in the error
// text, which still says how long it was.
func TestInvalidIDErrorText(t *testing.T) {
	huge := strings.Repeat("\x01", 10000)
	err := mdm.CheckEnrollmentID(huge)
	if err == nil {
		t.Fatal("CheckEnrollmentID accepted 10,000 control characters")
	}
	checkErrorText(t, err)
	if !strings.Contains(err.Error(), "(10000 bytes)") || !strings.Contains(err.Error(), "…") {
		t.Errorf("error %q does not say the ID was cut and how long it was", err)
	}
}

func TestNewUUID(t *testing.T) {
	a, b := mdm.NewUUID(), mdm.NewUUID()
	if a == b || len(a) != 36 || a[14] != '4' || !strings.ContainsAny(a[19:20], "89AB") || strings.ToUpper(a) != a {
		t.Fatalf("NewUUID() = %q, %q: want distinct upper-case version 4 UUIDs", a, b)
	}
	if err := mdm.CheckCommandUUID(a); err != nil {
		t.Fatalf("NewUUID() is not a valid CommandUUID: %v", err)
	}
}
