package webhook

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"regexp"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden.json from the events sent")

// Enrollment keys of the test devices.
const (
	deviceUDID   = "00008101-000A1B2C3D4E5F60"
	userID       = "A1B2C3D4-E5F6-4711-8899-AABBCCDDEEFF"
	ueEnrollment = "F3A7C1E0-2B4D-4E6F-8A9B-0C1D2E3F4A5B"
	ueUser       = "9E8D7C6B-5A49-4837-A625-1F0E2D3C4B5A"
)

// goldenCases is one message of every topic, on a device channel, a user
// channel and a User Enrollment, in the order they are sent (the tallies
// count up in that order).
var goldenCases = []struct {
	name   string
	params map[string]string
	msg    map[string]any
}{
	{"device_authenticate", map[string]string{"org": "acme", "site": "paris"}, map[string]any{
		"MessageType": "Authenticate", "UDID": deviceUDID, "Topic": "com.apple.mgmt.External.example",
		"SerialNumber": "C02XK0ABCDEF", "Model": "MacBookPro18,3", "ModelName": "MacBook Pro",
		"ProductName": "MacBookPro18,3", "OSVersion": "15.3", "BuildVersion": "24D60", "DeviceName": "Anna's MacBook Pro",
	}},
	{"device_token_update", map[string]string{"org": "acme"}, map[string]any{
		"MessageType": "TokenUpdate", "UDID": deviceUDID, "Topic": "com.apple.mgmt.External.example",
		"PushMagic": "3F1C8A5E-7B2D-4C9E-A1F0-6D5B4A3C2E1F", "Token": []byte("device push token 32 bytes......"),
		"UnlockToken": []byte("unlock"), "AwaitingConfiguration": true,
	}},
	{"device_set_bootstrap_token", nil, map[string]any{
		"MessageType": "SetBootstrapToken", "UDID": deviceUDID, "BootstrapToken": []byte("bootstrap token"),
	}},
	{"device_get_bootstrap_token", nil, map[string]any{
		"MessageType": "GetBootstrapToken", "UDID": deviceUDID, "AwaitingConfiguration": true,
	}},
	{"device_declarative_management", nil, map[string]any{
		"MessageType": "DeclarativeManagement", "UDID": deviceUDID, "Endpoint": "tokens",
	}},
	{"device_get_token", nil, map[string]any{
		"MessageType": "GetToken", "UDID": deviceUDID, "TokenServiceType": "com.apple.maid",
		"TokenParameters": map[string]any{"PhoneUDID": "0000-PHONE"},
	}},
	{"device_connect_idle", map[string]string{"org": "acme"}, report(deviceUDID, "Idle", "")},
	{"device_connect_acknowledged", nil, map[string]any{
		"UDID": deviceUDID, "Status": "Acknowledged", "CommandUUID": "5E0F7C6A-1D2B-4A3C-9E8F-7A6B5C4D3E2F",
		"ProfileList": []any{},
	}},
	{"device_connect_error", nil, map[string]any{
		"UDID": deviceUDID, "Status": "Error", "CommandUUID": "6A1B2C3D-4E5F-4061-8273-94A5B6C7D8E9",
		"ErrorChain": []any{map[string]any{"ErrorCode": 12021, "ErrorDomain": "MCMDMErrorDomain", "LocalizedDescription": "Unknown command"}},
	}},
	{"user_user_authenticate", nil, map[string]any{
		"MessageType": "UserAuthenticate", "UDID": deviceUDID, "UserID": userID,
		"UserShortName": "anna", "UserLongName": "Anna Example",
	}},
	{"user_token_update", nil, map[string]any{
		"MessageType": "TokenUpdate", "UDID": deviceUDID, "UserID": userID, "UserShortName": "anna",
		"UserLongName": "Anna Example", "Topic": "com.apple.mgmt.External.example",
		"PushMagic": "8C7B6A59-4837-4261-9F0E-D1C2B3A49586", "Token": []byte("user push token"),
	}},
	{"user_connect_idle", nil, map[string]any{"UDID": deviceUDID, "UserID": userID, "Status": "Idle"}},
	{"device_token_update_again", nil, map[string]any{
		"MessageType": "TokenUpdate", "UDID": deviceUDID, "Topic": "com.apple.mgmt.External.example",
		"PushMagic": "3F1C8A5E-7B2D-4C9E-A1F0-6D5B4A3C2E1F", "Token": []byte("device push token 32 bytes......"),
	}},
	{"user_enrollment_authenticate", nil, map[string]any{
		"MessageType": "Authenticate", "EnrollmentID": ueEnrollment, "Topic": "com.apple.mgmt.External.example",
		"Model": "iPhone15,2", "ModelName": "iPhone", "ProductName": "iPhone15,2", "OSVersion": "18.3",
	}},
	{"user_enrollment_token_update", map[string]string{"byod": "1"}, map[string]any{
		"MessageType": "TokenUpdate", "EnrollmentID": ueEnrollment, "Topic": "com.apple.mgmt.External.example",
		"PushMagic": "1B2C3D4E-5F60-4172-8394-A5B6C7D8E9F0", "Token": []byte("ue push token"),
	}},
	{"user_enrollment_user_connect_acknowledged", nil, map[string]any{
		"EnrollmentID": ueEnrollment, "EnrollmentUserID": ueUser, "Status": "Acknowledged",
		"CommandUUID": "0D9C8B7A-6F5E-4D3C-8B2A-190817161514",
	}},
	{"user_enrollment_checkout", nil, map[string]any{
		"MessageType": "CheckOut", "EnrollmentID": ueEnrollment, "Topic": "com.apple.mgmt.External.example",
	}},
	{"device_checkout", nil, map[string]any{
		"MessageType": "CheckOut", "UDID": deviceUDID, "Topic": "com.apple.mgmt.External.example",
	}},
}

var uuidRE = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)

// normalise checks the fields that change on every run (event_id,
// created_at), replaces them with fixed values, and returns the event
// indented with sorted keys.
func normalise(t *testing.T, body []byte) []byte {
	t.Helper()
	var ev map[string]any
	if err := json.Unmarshal(body, &ev); err != nil {
		t.Fatal(err)
	}
	id, _ := ev["event_id"].(string)
	if !uuidRE.MatchString(id) {
		t.Errorf("event_id %q is not a random UUID", id)
	}
	created, _ := ev["created_at"].(string)
	at, err := time.Parse(time.RFC3339Nano, created)
	if err != nil || at.Location() != time.UTC || time.Since(at) > time.Minute {
		t.Errorf("created_at %q is not a recent RFC 3339 UTC time (%v)", created, err)
	}
	ev["event_id"] = "c0ffee00-0000-4000-8000-000000000000"
	ev["created_at"] = "2025-01-01T12:00:00.123456789Z"
	out, err := json.MarshalIndent(ev, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	return append(out, '\n')
}

// TestGoldenEvents sends one message of every topic and compares each
// event with testdata/NAME.golden.json. Run with -update to rewrite them.
func TestGoldenEvents(t *testing.T) {
	rc := newReceiver(t)
	w := newTestWebhook(t, rc.URL(), new(tallies))
	for i, c := range goldenCases {
		raw := send(t, w, c.params, c.msg)
		d := rc.waitDeliveries(t, i+1)[i]
		ev := d.event(t)
		// raw_payload is the message exactly as received.
		var payload []byte
		switch {
		case ev.CheckinEvent != nil && ev.AcknowledgeEvent == nil:
			payload = ev.CheckinEvent.RawPayload
		case ev.AcknowledgeEvent != nil && ev.CheckinEvent == nil:
			payload = ev.AcknowledgeEvent.RawPayload
		default:
			t.Fatalf("%s: want exactly one of checkin_event and acknowledge_event: %s", c.name, d.body)
		}
		if !bytes.Equal(payload, raw) {
			t.Errorf("%s: raw_payload is not the message as sent", c.name)
		}
		got := normalise(t, d.body)
		path := filepath.Join("testdata", c.name+".golden.json")
		if *update {
			if err := os.WriteFile(path, got, 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		want, err := os.ReadFile(path)
		if err != nil {
			t.Fatalf("%v (run go test -update to create it)", err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s: event differs from %s\ngot:\n%s\nwant:\n%s", c.name, path, got, want)
		}
	}
}

// TestEventFields checks the contract of the golden files field by field,
// so a wrong -update cannot slip through unnoticed.
func TestEventFields(t *testing.T) {
	rc := newReceiver(t)
	w := newTestWebhook(t, rc.URL(), new(tallies))
	wantTopics := map[string]string{
		"device_authenticate": TopicAuthenticate, "device_token_update": TopicTokenUpdate,
		"device_set_bootstrap_token": TopicSetBootstrapToken, "device_get_bootstrap_token": TopicGetBootstrapToken,
		"device_declarative_management": TopicDeclarativeManagement, "device_get_token": TopicGetToken,
		"device_connect_idle": TopicConnect, "device_connect_acknowledged": TopicConnect,
		"device_connect_error": TopicConnect, "user_user_authenticate": TopicUserAuthenticate,
		"user_token_update": TopicTokenUpdate, "user_connect_idle": TopicConnect,
		"device_token_update_again": TopicTokenUpdate, "user_enrollment_authenticate": TopicAuthenticate,
		"user_enrollment_token_update": TopicTokenUpdate, "user_enrollment_user_connect_acknowledged": TopicConnect,
		"user_enrollment_checkout": TopicCheckOut, "device_checkout": TopicCheckOut,
	}
	seen := map[string]bool{}
	events := map[string]*Event{}
	for i, c := range goldenCases {
		send(t, w, c.params, c.msg)
		ev := rc.waitDeliveries(t, i+1)[i].event(t)
		events[c.name] = ev
		if ev.Topic != wantTopics[c.name] {
			t.Errorf("%s: topic %q, want %q", c.name, ev.Topic, wantTopics[c.name])
		}
		seen[ev.Topic] = true
	}
	for _, topic := range []string{TopicAuthenticate, TopicTokenUpdate, TopicCheckOut, TopicConnect, TopicUserAuthenticate,
		TopicSetBootstrapToken, TopicGetBootstrapToken, TopicDeclarativeManagement, TopicGetToken} {
		if !seen[topic] {
			t.Errorf("no golden event for %s", topic)
		}
	}

	dev := events["device_authenticate"].CheckinEvent
	if dev.UDID != deviceUDID || dev.EnrollmentID != "" ||
		dev.IDs != (IDs{ID: deviceUDID, Type: "Device"}) || dev.Params["org"] != "acme" || dev.Params["site"] != "paris" {
		t.Errorf("device Authenticate: %+v", dev)
	}
	if dev.TokenUpdateTally != nil {
		t.Error("token_update_tally on an Authenticate")
	}
	if p := events["device_get_token"].CheckinEvent.Params; p != nil {
		t.Errorf("url_params = %v for a request without any; want it omitted", p)
	}
	user := events["user_token_update"].CheckinEvent
	if user.UDID != deviceUDID || user.IDs != (IDs{ID: deviceUDID + ":" + userID, ParentID: deviceUDID, Type: "User"}) {
		t.Errorf("user TokenUpdate: %+v", user)
	}
	ue := events["user_enrollment_token_update"].CheckinEvent
	if ue.UDID != "" || ue.EnrollmentID != ueEnrollment || ue.IDs != (IDs{ID: ueEnrollment, Type: "User Enrollment (Device)"}) {
		t.Errorf("User Enrollment TokenUpdate: %+v", ue)
	}
	ack := events["user_enrollment_user_connect_acknowledged"].AcknowledgeEvent
	if ack.Status != "Acknowledged" || ack.CommandUUID != "0D9C8B7A-6F5E-4D3C-8B2A-190817161514" || ack.EnrollmentID != ueEnrollment ||
		ack.IDs != (IDs{ID: ueEnrollment + ":" + ueUser, ParentID: ueEnrollment, Type: "User Enrollment"}) {
		t.Errorf("User Enrollment user report: %+v", ack)
	}
	idle := events["device_connect_idle"].AcknowledgeEvent
	if idle.Status != "Idle" || idle.CommandUUID != "" || idle.Params["org"] != "acme" {
		t.Errorf("Idle report: %+v", idle)
	}
	// Tallies: per enrollment, counting up.
	for name, want := range map[string]int{"device_token_update": 1, "device_token_update_again": 2, "user_token_update": 1, "user_enrollment_token_update": 1} {
		if got := events[name].CheckinEvent.TokenUpdateTally; got == nil || *got != want {
			t.Errorf("%s: token_update_tally = %v, want %d", name, got, want)
		}
	}
	// raw_payload is standard base64 in the JSON.
	var rawJSON struct {
		CheckinEvent struct {
			RawPayload string `json:"raw_payload"`
		} `json:"checkin_event"`
	}
	body, _ := json.Marshal(events["device_authenticate"])
	if err := json.Unmarshal(body, &rawJSON); err != nil {
		t.Fatal(err)
	}
	if _, err := base64.StdEncoding.DecodeString(rawJSON.CheckinEvent.RawPayload); err != nil {
		t.Errorf("raw_payload is not standard base64: %v", err)
	}
}
