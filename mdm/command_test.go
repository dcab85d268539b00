package mdm_test

import (
	"bytes"
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/micromdm/plist"

	"github.com/picomdm/picomdm/mdm"
)

// commandCase is one synthesised command.
type commandCase struct {
	Name   string // RequestType/format
	Schema schema
	UUID   string
	Values map[string]any // the whole command plist
	Raw    []byte
}

// commandCases synthesises, for every RequestType in Apple's schemas, a
// command with every payload key filled, in every format.
func commandCases(tb testing.TB) []commandCase {
	tb.Helper()
	var cases []commandCase
	for _, s := range commandSchemas(tb) {
		cmd := map[string]any{}
		for _, k := range s.PayloadKeys {
			cmd[k.Key] = schemaValue(k, s.RequestType+"."+k.Key)
		}
		cmd["RequestType"] = s.RequestType
		uuid := "0F1E2D3C-" + s.RequestType
		values := map[string]any{"CommandUUID": uuid, "Command": cmd}
		for _, f := range plistFormats {
			raw, err := f.Encode(values)
			if err != nil {
				tb.Fatalf("%s: encoding %s: %v", s.RequestType, f.Name, err)
			}
			cases = append(cases, commandCase{
				Name: s.RequestType + "/" + f.Name, Schema: s, UUID: uuid, Values: values, Raw: raw,
			})
		}
	}
	return cases
}

// TestDecodeCommandSchemas decodes a command of every RequestType Apple's
// schemas define, with every payload key filled, as XML and binary.
func TestDecodeCommandSchemas(t *testing.T) {
	cases := commandCases(t)
	if len(cases) < 2*50 { // Apple defines well over 50 commands
		t.Fatalf("only %d command cases", len(cases))
	}
	for _, c := range cases {
		t.Run(c.Name, func(t *testing.T) {
			cmd, err := mdm.DecodeCommand(c.Raw)
			if err != nil {
				t.Fatalf("DecodeCommand: %v", err)
			}
			if got := cmd.RequestType(); got != c.Schema.RequestType {
				t.Errorf("RequestType() = %q, want %q", got, c.Schema.RequestType)
			}
			if cmd.CommandUUID != c.UUID {
				t.Errorf("CommandUUID = %q, want %q", cmd.CommandUUID, c.UUID)
			}
			if !bytes.Equal(cmd.Raw, c.Raw) {
				t.Error("Raw differs from the input")
			}
			// The bytes kept are the whole command: every payload key
			// reads back with the value put in.
			var back map[string]any
			if err := plist.Unmarshal(cmd.Raw, &back); err != nil {
				t.Fatal(err)
			}
			if !sameValue(back, c.Values) {
				t.Errorf("Raw decodes to %#v, want %#v", back, c.Values)
			}
		})
	}
}

// TestDecodeCommandErrors checks the commands the API must refuse with a
// 400: each is a *mdm.ParseError wrapping the sentinel for what is missing.
func TestDecodeCommandErrors(t *testing.T) {
	tests := []struct {
		name string
		body []byte
		is   error
	}{
		{"nil body", nil, nil},
		{"empty body", []byte{}, nil},
		{"garbage", []byte("{not: a plist}"), nil},
		{"binary garbage", append([]byte("bplist00"), 1, 2, 3), mdm.ErrBadBinaryPlist},
		{"top-level array", mustXML(t, []any{"CommandUUID"}), nil},
		{"no CommandUUID", mustXML(t, map[string]any{"Command": map[string]any{"RequestType": "DeviceInformation"}}), mdm.ErrNoCommandUUID},
		{"empty CommandUUID", mustXML(t, map[string]any{"CommandUUID": "", "Command": map[string]any{"RequestType": "DeviceInformation"}}), mdm.ErrNoCommandUUID},
		{"no Command", mustXML(t, map[string]any{"CommandUUID": "u1"}), mdm.ErrNoRequestType},
		{"no RequestType", mustXML(t, map[string]any{"CommandUUID": "u1", "Command": map[string]any{"Queries": []any{"UDID"}}}), mdm.ErrNoRequestType},
		{"empty RequestType", mustXML(t, map[string]any{"CommandUUID": "u1", "Command": map[string]any{"RequestType": ""}}), mdm.ErrNoRequestType},
		{"Command not a dictionary", mustXML(t, map[string]any{"CommandUUID": "u1", "Command": "DeviceInformation"}), nil},
		{"RequestType not a string", mustXML(t, map[string]any{"CommandUUID": "u1", "Command": map[string]any{"RequestType": int64(3)}}), nil},
		{"CommandUUID not a string", mustXML(t, map[string]any{"CommandUUID": []byte("u1"), "Command": map[string]any{"RequestType": "DeviceInformation"}}), nil},
		{"CommandUUID 256 bytes", mustXML(t, commandWithUUID(strings.Repeat("u", mdm.MaxIDBytes+1))), mdm.ErrInvalidID},
		{"CommandUUID with newline", mustXML(t, commandWithUUID("u1\n")), mdm.ErrInvalidID},
		{"CommandUUID with DEL", mustXML(t, commandWithUUID("u1\x7f")), mdm.ErrInvalidID},
		{"CommandUUID with NUL", mustBinary(t, commandWithUUID("u1\x00")), mdm.ErrInvalidID},
		{"CommandUUID with ESC", mustBinary(t, commandWithUUID("\x1b[2J")), mdm.ErrInvalidID},
		{"CommandUUID with a C1 control", mustBinary(t, commandWithUUID("u1\u0085")), mdm.ErrInvalidID},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cmd, err := mdm.DecodeCommand(tt.body)
			if err == nil {
				t.Fatalf("DecodeCommand = %+v, want an error", cmd)
			}
			wantParseError(t, err, tt.is)
		})
	}
}

// reportCase is one synthesised command report.
type reportCase struct {
	Name    string // Status/channel/format
	Channel channel
	Values  map[string]any
	Raw     []byte
}

// testErrorChain is the ErrorChain of the Error reports.
var testErrorChain = []mdm.ErrorChainItem{
	{ErrorCode: 12021, ErrorDomain: "MCMDMErrorDomain", LocalizedDescription: "Unknown command", USEnglishDescription: "Unknown command"},
	{ErrorCode: -1, ErrorDomain: "NSPOSIXErrorDomain", LocalizedDescription: "Opération impossible"},
}

// reportCases synthesises a report of every Status on every channel, in
// every format. Idle carries no CommandUUID; Error carries an ErrorChain;
// user-channel reports carry NotOnConsole, as macOS sends it.
func reportCases(tb testing.TB) []reportCase {
	tb.Helper()
	chain := make([]any, len(testErrorChain))
	for i, e := range testErrorChain {
		item := map[string]any{"ErrorCode": int64(e.ErrorCode), "ErrorDomain": e.ErrorDomain, "LocalizedDescription": e.LocalizedDescription}
		if e.USEnglishDescription != "" {
			item["USEnglishDescription"] = e.USEnglishDescription
		}
		chain[i] = item
	}
	var cases []reportCase
	for _, status := range []string{mdm.StatusAcknowledged, mdm.StatusError, mdm.StatusNotNow, mdm.StatusIdle, mdm.StatusCommandFormatError} {
		for _, name := range []string{string(mdm.Device), string(mdm.User), string(mdm.SharedIPad), string(mdm.UserEnrollmentDevice), string(mdm.UserEnrollment)} {
			ch := channels[name]
			values := map[string]any{"Status": status}
			if status != mdm.StatusIdle {
				values["CommandUUID"] = "C0FFEE00-" + status
			}
			if status == mdm.StatusError {
				values["ErrorChain"] = chain
			}
			if status == mdm.StatusAcknowledged { // a response payload the report type ignores
				values["QueryResponses"] = map[string]any{"UDID": testUDID, "BatteryLevel": 0.5}
			}
			if ch.Type == mdm.User {
				values["NotOnConsole"] = true
			}
			for k, v := range ch.Keys {
				values[k] = v
			}
			for _, f := range plistFormats {
				raw, err := f.Encode(values)
				if err != nil {
					tb.Fatalf("%s: encoding %s: %v", status, f.Name, err)
				}
				cases = append(cases, reportCase{Name: status + "/" + name + "/" + f.Name, Channel: ch, Values: values, Raw: raw})
			}
		}
	}
	return cases
}

// TestDecodeCommandResults decodes a report of every Status on every
// channel and checks what the queue and webhooks read from it.
func TestDecodeCommandResults(t *testing.T) {
	for _, c := range reportCases(t) {
		t.Run(c.Name, func(t *testing.T) {
			report, err := mdm.DecodeCommandResults(c.Raw)
			if err != nil {
				t.Fatalf("DecodeCommandResults: %v", err)
			}
			if report.Status != c.Values["Status"] {
				t.Errorf("Status = %q, want %q", report.Status, c.Values["Status"])
			}
			wantUUID, _ := c.Values["CommandUUID"].(string)
			if report.CommandUUID != wantUUID {
				t.Errorf("CommandUUID = %q, want %q", report.CommandUUID, wantUUID)
			}
			var wantChain []mdm.ErrorChainItem
			if report.Status == mdm.StatusError {
				wantChain = testErrorChain
			}
			if !reflect.DeepEqual(report.ErrorChain, wantChain) {
				t.Errorf("ErrorChain = %+v, want %+v", report.ErrorChain, wantChain)
			}
			if want := c.Channel.Type == mdm.User; report.NotOnConsole != want {
				t.Errorf("NotOnConsole = %v, want %v", report.NotOnConsole, want)
			}
			if !bytes.Equal(report.Raw, c.Raw) {
				t.Error("Raw differs from the input")
			}
			id, err := report.EnrollmentKeys().Resolve()
			if err != nil {
				t.Fatalf("Resolve: %v", err)
			}
			if id.Type != c.Channel.Type || id.ID != c.Channel.WantID || id.ParentID != c.Channel.WantParent {
				t.Errorf("Resolve = %+v, want {%s %s %s}", *id, c.Channel.Type, c.Channel.WantID, c.Channel.WantParent)
			}
		})
	}
}

// TestDecodeCommandResultsErrors checks the reports a device must get a
// 400 for.
func TestDecodeCommandResultsErrors(t *testing.T) {
	tests := []struct {
		name string
		body []byte
		is   error
	}{
		{"nil body", nil, nil},
		{"empty body", []byte{}, nil},
		{"garbage", []byte("Status=Acknowledged"), nil},
		{"binary garbage", append([]byte("bplist00"), bytes.Repeat([]byte{0xaf}, 40)...), mdm.ErrBadBinaryPlist},
		{"empty Status", mustXML(t, map[string]any{"UDID": testUDID, "Status": "", "CommandUUID": "u1"}), mdm.ErrEmptyStatus},
		{"no Status", mustXML(t, map[string]any{"UDID": testUDID, "CommandUUID": "u1"}), mdm.ErrEmptyStatus},
		{"empty dictionary", mustXML(t, map[string]any{}), mdm.ErrEmptyStatus},
		{"Status not a string", mustXML(t, map[string]any{"UDID": testUDID, "Status": true}), nil},
		{"ErrorChain not an array", mustXML(t, map[string]any{"UDID": testUDID, "Status": "Error", "ErrorChain": "oops"}), nil},
		{"ErrorCode not an integer", mustXML(t, map[string]any{"UDID": testUDID, "Status": "Error", "ErrorChain": []any{map[string]any{"ErrorCode": "12021"}}}), nil},
		{"top-level array", mustXML(t, []any{"Acknowledged"}), nil},
		{"CommandUUID 256 bytes", mustXML(t, map[string]any{"UDID": testUDID, "Status": "Acknowledged", "CommandUUID": strings.Repeat("u", mdm.MaxIDBytes+1)}), mdm.ErrInvalidID},
		{"CommandUUID 256 bytes on Idle", mustXML(t, map[string]any{"UDID": testUDID, "Status": "Idle", "CommandUUID": strings.Repeat("u", mdm.MaxIDBytes+1)}), mdm.ErrInvalidID},
		{"CommandUUID with tab", mustXML(t, map[string]any{"UDID": testUDID, "Status": "Acknowledged", "CommandUUID": "u\t1"}), mdm.ErrInvalidID},
		{"CommandUUID with NUL", mustBinary(t, map[string]any{"UDID": testUDID, "Status": "Acknowledged", "CommandUUID": "u1\x00"}), mdm.ErrInvalidID},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			report, err := mdm.DecodeCommandResults(tt.body)
			if err == nil {
				t.Fatalf("DecodeCommandResults = %+v, want an error", report)
			}
			wantParseError(t, err, tt.is)
			if tt.is == nil && errors.Is(err, mdm.ErrEmptyStatus) {
				t.Errorf("error %v blames the Status of a body that did not decode", err)
			}
		})
	}
}

// FuzzDecodeReport feeds DecodeCommandResults arbitrary bodies. Its seeds
// (every synthesised report and garbage) also run in plain go test.
func FuzzDecodeReport(f *testing.F) {
	fuzzCorpus(f, reportCases(f), func(c reportCase) []byte { return c.Raw })
	f.Fuzz(func(t *testing.T, raw []byte) {
		report, ok := fuzzDecode(t, raw, mdm.DecodeCommandResults)
		if !ok {
			return
		}
		if report.Status == "" {
			t.Fatal("decoded a report with an empty Status")
		}
		if !bytes.Equal(report.Raw, raw) {
			t.Fatal("Raw differs from the input")
		}
		if report.CommandUUID != "" {
			if err := mdm.CheckCommandUUID(report.CommandUUID); err != nil {
				t.Fatalf("decoded a report whose CommandUUID is invalid: %v", err)
			}
		}
		if id, err := report.EnrollmentKeys().Resolve(); err == nil {
			if id.ID == "" {
				t.Fatal("Resolve succeeded with an empty ID")
			}
			// Valid by construction: whatever Resolve hands on passes
			// the rules the API applies to a whole ID.
			if err := mdm.CheckEnrollmentID(id.ID); err != nil {
				t.Fatalf("Resolve gave %q, which CheckEnrollmentID refuses: %v", id.ID, err)
			}
		} else if errors.Is(err, mdm.ErrInvalidID) {
			checkErrorText(t, err)
		}
	})
}

// commandWithUUID is a DeviceInformation command with the given
// CommandUUID.
func commandWithUUID(uuid string) map[string]any {
	return map[string]any{"CommandUUID": uuid, "Command": map[string]any{"RequestType": "DeviceInformation"}}
}

// mustBinary encodes v as a binary plist, which, unlike XML, can carry any
// character in a string.
func mustBinary(tb testing.TB, v any) []byte {
	tb.Helper()
	b, err := encodeBinaryPlist(v)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// TestCommandUUIDEdges checks that a CommandUUID of exactly MaxIDBytes,
// or holding anything but control characters, is accepted in a command
// and in a report, and kept as sent.
func TestCommandUUIDEdges(t *testing.T) {
	for _, uuid := range []string{
		strings.Repeat("u", mdm.MaxIDBytes),
		strings.Repeat("é", mdm.MaxIDBytes/2) + "u", // 255 bytes, 128 characters
		"urn:uuid:0F1E2D3C-4B5A-4968-8776-655443322110",
		"a command with spaces",
	} {
		for _, f := range plistFormats {
			raw, err := f.Encode(commandWithUUID(uuid))
			if err != nil {
				t.Fatal(err)
			}
			cmd, err := mdm.DecodeCommand(raw)
			if err != nil || cmd.CommandUUID != uuid {
				t.Errorf("%s: DecodeCommand(%.20q…) = %+v, %v", f.Name, uuid, cmd, err)
			}
			raw, err = f.Encode(map[string]any{"UDID": testUDID, "Status": "Acknowledged", "CommandUUID": uuid})
			if err != nil {
				t.Fatal(err)
			}
			report, err := mdm.DecodeCommandResults(raw)
			if err != nil || report.CommandUUID != uuid {
				t.Errorf("%s: DecodeCommandResults(%.20q…) = %+v, %v", f.Name, uuid, report, err)
			}
		}
	}
}

// BenchmarkDecodeReport decodes an Acknowledged report of the device
// channel (with a small response payload).
func BenchmarkDecodeReport(b *testing.B) {
	for _, c := range reportCases(b) {
		if c.Values["Status"] != mdm.StatusAcknowledged || c.Channel.Type != mdm.Device {
			continue
		}
		b.Run(c.Name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(c.Raw)))
			for b.Loop() {
				if _, err := mdm.DecodeCommandResults(c.Raw); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// TestCheckCommandUUID checks the CommandUUID rules on the string alone,
// including what no plist encoder here produces (invalid UTF-8).
func TestCheckCommandUUID(t *testing.T) {
	for uuid, ok := range map[string]bool{
		"0F1E2D3C-4B5A-4968-8776-655443322110":   true,
		strings.Repeat("u", mdm.MaxIDBytes):      true,
		strings.Repeat("u", mdm.MaxIDBytes+1):    false,
		"":                                       false,
		"u1\xff":                                 false,
		"u1\x00":                                 false,
		"u1\u009b":                               false,
		"a:b:c (colons are fine in a UUID)":      true,
		strings.Repeat("\x00", 1<<20):            false,
		"\u00e9\u4e16\U0001F600 (any printable)": true,
	} {
		err := mdm.CheckCommandUUID(uuid)
		if ok != (err == nil) {
			t.Errorf("CheckCommandUUID(%.40q) = %v, want ok %v", uuid, err, ok)
		}
		if err != nil {
			if !errors.Is(err, mdm.ErrInvalidID) {
				t.Errorf("CheckCommandUUID(%.40q) = %v, not ErrInvalidID", uuid, err)
			}
			checkErrorText(t, err)
		}
	}
}
