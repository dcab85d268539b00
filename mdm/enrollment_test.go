package mdm_test

import (
	"errors"
	"testing"

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
