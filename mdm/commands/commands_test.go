package commands_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/picomdm/picomdm/mdm"
	"github.com/picomdm/picomdm/mdm/commands"
	"github.com/picomdm/picomdm/mdm/commands/commandstest"
)

// TestSpecs checks the table's order, Lookup's exactness and that Specs
// hands out a copy.
func TestSpecs(t *testing.T) {
	specs := commands.Specs()
	if len(specs) < 60 {
		t.Fatalf("%d specs", len(specs))
	}
	if !slices.IsSortedFunc(specs, func(a, b commands.Spec) int { return strings.Compare(a.RequestType, b.RequestType) }) {
		t.Error("specs are not sorted by RequestType")
	}
	for i, s := range specs {
		if i > 0 && specs[i-1].RequestType == s.RequestType {
			t.Errorf("%s twice", s.RequestType)
		}
		got, ok := commands.Lookup(s.RequestType)
		if !ok || !reflect.DeepEqual(*got, s) {
			t.Errorf("Lookup(%q) = %v, %v", s.RequestType, got, ok)
		}
		if s.Keys == nil {
			t.Errorf("%s: Keys is nil, want [] in JSON", s.RequestType)
		}
		if len(s.Platforms) == 0 || len(s.Channels) == 0 || s.Title == "" {
			t.Errorf("%s: no platforms, channels or title", s.RequestType)
		}
	}
	for _, rt := range []string{"", "devicelock", "DEVICELOCK", "DeviceLock ", "Device"} {
		if _, ok := commands.Lookup(rt); ok {
			t.Errorf("Lookup(%q) found something", rt)
		}
	}
	specs[0].RequestType = "Changed"
	if commands.Specs()[0].RequestType == "Changed" {
		t.Error("Specs returns the package's own slice")
	}
}

// schemaKey is one key of mdm/testdata/command_schemas.json, which
// tools/schemagen writes from the same YAML as the spec table.
type schemaKey struct {
	Key       string `json:"key"`
	Type      string `json:"type"`
	Presence  string `json:"presence"`
	RangeList []any  `json:"rangelist"`
	Range     *struct{ Min, Max *float64 }
	Subkeys   []schemaKey `json:"subkeys"`
}

// TestSpecsMatchSchemaData checks the spec table against the other
// generated view of Apple's schemas, key by key: the conversion rules
// (brackets, presence, rangelist, a <string>'s subkeys as its values).
func TestSpecsMatchSchemaData(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "testdata", "command_schemas.json"))
	if err != nil {
		t.Fatal(err)
	}
	var file struct {
		Commands []struct {
			RequestType string      `json:"request_type"`
			Channels    []string    `json:"channels"`
			PayloadKeys []schemaKey `json:"payload_keys"`
		} `json:"commands"`
	}
	if err := json.Unmarshal(b, &file); err != nil {
		t.Fatal(err)
	}
	specs := commands.Specs()
	if len(specs) != len(file.Commands) {
		t.Fatalf("%d specs, %d commands in command_schemas.json", len(specs), len(file.Commands))
	}
	for i, c := range file.Commands {
		s := specs[i]
		if s.RequestType != c.RequestType || !slices.Equal(s.Channels, c.Channels) {
			t.Errorf("spec %d: %s %q, schema data %s %q", i, s.RequestType, s.Channels, c.RequestType, c.Channels)
			continue
		}
		compareKeys(t, s.RequestType, s.Keys, c.PayloadKeys, false)
	}
}

func compareKeys(t *testing.T, path string, got []commands.Key, want []schemaKey, items bool) {
	t.Helper()
	if len(got) != len(want) {
		t.Errorf("%s: %d keys, want %d", path, len(got), len(want))
		return
	}
	for i, w := range want {
		g := got[i]
		p := path + "." + w.Key
		if g.Name != w.Key || "<"+g.Type+">" != w.Type || g.Required != (w.Presence == "required" && !items) {
			t.Errorf("%s: %s %s required=%v, want %s %s %s", p, g.Name, g.Type, g.Required, w.Key, w.Type, w.Presence)
		}
		var allowed []any
		for _, v := range w.RangeList {
			allowed = append(allowed, v)
		}
		if w.Type == "<string>" && len(w.Subkeys) > 0 {
			for _, s := range w.Subkeys {
				allowed = append(allowed, s.Key)
			}
		}
		if len(g.AllowedValues) != len(allowed) {
			t.Errorf("%s: allowed %v, want %v", p, g.AllowedValues, allowed)
		}
		for j := range min(len(allowed), len(g.AllowedValues)) {
			var gv any = g.AllowedValues[j]
			if n, ok := gv.(int64); ok {
				gv = float64(n) // JSON numbers decode as float64
			}
			if gv != allowed[j] {
				t.Errorf("%s: allowed value %d is %#v, want %#v", p, j, g.AllowedValues[j], allowed[j])
			}
		}
		if w.Range != nil && (!reflect.DeepEqual(g.Min, w.Range.Min) || !reflect.DeepEqual(g.Max, w.Range.Max)) {
			t.Errorf("%s: bounds %v %v, want %v", p, g.Min, g.Max, w.Range)
		}
		if w.Type != "<string>" {
			compareKeys(t, p, g.Keys, w.Subkeys, w.Type == "<array>")
		}
	}
}

// xmlHeader is how every command plist starts: Apple's XML declaration and
// document type.
const xmlHeader = `<?xml version="1.0" encoding="UTF-8"?>` + "\n" +
	`<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">` + "\n" +
	`<plist version="1.0">`

// TestEveryRequestType sends a generated command of every RequestType,
// once with its required keys and once with every key, through FromJSON
// and Plist, and decodes the plist as a device would.
func TestEveryRequestType(t *testing.T) {
	for _, spec := range commands.Specs() {
		for _, allOptional := range []bool{false, true} {
			name := spec.RequestType + "/required"
			if allOptional {
				name = spec.RequestType + "/all"
			}
			t.Run(name, func(t *testing.T) {
				body, want := commandstest.SampleJSON(spec, allOptional)
				checkRoundTrip(t, body, want)
				if allOptional {
					for _, k := range spec.Keys {
						if _, ok := want[k.Name]; !ok && !strings.HasPrefix(k.Name, "ANY") {
							t.Errorf("sample has no %s", k.Name)
						}
					}
				}
			})
		}
	}
}

// checkRoundTrip checks that FromJSON converts body to want and that the
// plist Plist makes of it carries exactly want.
func checkRoundTrip(t *testing.T, body []byte, want map[string]any) {
	t.Helper()
	rt, dict, err := commands.FromJSON(body)
	if err != nil {
		t.Fatalf("FromJSON(%s): %v", body, err)
	}
	if rt != want["RequestType"] {
		t.Errorf("RequestType %q, want %q", rt, want["RequestType"])
	}
	if !reflect.DeepEqual(dict, want) {
		t.Fatalf("FromJSON(%s) = %#v, want %#v (%s)", body, dict, want, commandstest.Diff(dict, want))
	}
	const uuid = "0F1E2D3C-4B5A-4978-8695-A4B3C2D1E0F0"
	raw, err := commands.Plist(uuid, dict)
	if err != nil {
		t.Fatalf("Plist: %v", err)
	}
	if !bytes.HasPrefix(raw, []byte(xmlHeader)) {
		t.Errorf("plist does not start with Apple's header:\n%s", raw)
	}
	cmd, err := mdm.DecodeCommand(raw)
	if err != nil || cmd.CommandUUID != uuid || cmd.RequestType() != rt {
		t.Fatalf("mdm.DecodeCommand: %v, %+v", err, cmd)
	}
	gotUUID, got, err := commandstest.DecodeCommand(raw)
	if err != nil || gotUUID != uuid {
		t.Fatalf("decoding the plist: %q, %v", gotUUID, err)
	}
	if d := commandstest.Diff(got, want); d != "" {
		t.Errorf("delivered command differs: %s\n%s", d, raw)
	}
}

// wantDelivered checks that the plist Plist makes of dict decodes, as a
// device reads it, to exactly want.
func wantDelivered(t *testing.T, dict, want map[string]any) {
	t.Helper()
	raw, err := commands.Plist("U", dict)
	if err != nil {
		t.Fatalf("Plist: %v", err)
	}
	_, got, err := commandstest.DecodeCommand(raw)
	if err != nil {
		t.Fatalf("decoding the plist: %v", err)
	}
	if d := commandstest.Diff(got, want); d != "" {
		t.Errorf("delivered command differs: %s\n%s", d, raw)
	}
}

// syntheticSpecs have the shapes Apple's command schemas lack today
// (dates, reals, bounds, keyless collections, an array of several item
// types without a discriminating key) and the ones they have.
var syntheticSpecs = []commands.Spec{{
	RequestType: "Synthetic",
	Keys: []commands.Key{
		{Name: "Blob", Type: "data"},
		{Name: "Count", Type: "integer", Min: commands.Bound(1), Max: commands.Bound(10)},
		{Name: "Free", Type: "dictionary"},
		{Name: "FreeList", Type: "array"},
		{Name: "Level", Type: "real", Min: commands.Bound(0), Max: commands.Bound(1)},
		{Name: "Low", Type: "integer", Max: commands.Bound(-5)},
		{Name: "Mixed", Type: "array", Keys: []commands.Key{
			{Name: "MixedString", Type: "string"},
			{Name: "MixedInteger", Type: "integer"},
		}},
		{Name: "Ratio", Type: "real", AllowedValues: []any{0.5, 2.0}},
		{Name: "Some", Type: "any"},
		{Name: "Values", Type: "dictionary", Keys: []commands.Key{
			{Name: "ANYName", Type: "real"},
			{Name: "Fixed", Type: "boolean", Required: true},
		}},
		{Name: "When", Type: "date", Required: true},
		{Name: "Whole", Type: "real"},
	},
}}

// syntheticBody is the JSON of a Synthetic command with keys (JSON
// members), and the required When unless keys set it.
func syntheticBody(keys string) string {
	if strings.HasPrefix(keys, `"When"`) {
		return `{"RequestType":"Synthetic",` + keys + `}`
	}
	return `{"RequestType":"Synthetic","When":"2026-01-02T15:04:05Z",` + keys + `}`
}

// fromSynthetic is FromJSON against syntheticSpecs.
func fromSynthetic(body string) (map[string]any, error) {
	_, dict, err := commands.FromJSONWith(syntheticSpecs, []byte(body))
	return dict, err
}

// TestSyntheticSamples runs the sample generator over syntheticSpecs.
func TestSyntheticSamples(t *testing.T) {
	for _, allOptional := range []bool{false, true} {
		body, want := commandstest.SampleJSON(syntheticSpecs[0], allOptional)
		dict, err := fromSynthetic(string(body))
		if err != nil {
			t.Fatalf("%s: %v", body, err)
		}
		if !reflect.DeepEqual(dict, want) {
			t.Fatalf("%s: got %#v, want %#v", body, dict, want)
		}
		wantDelivered(t, dict, want)
	}
}

// TestConversions checks the value rules the package doc lists, on the
// edges the issue leaves to decide.
func TestConversions(t *testing.T) {
	tests := []struct {
		name, body string
		key        string
		want       any
	}{
		{"date offset and fraction to UTC seconds", `"When":"2026-01-02T17:04:05.999+02:00"`, "When", commandstest.SampleDate},
		{"date year 0", `"When":"0000-01-01T00:00:00Z"`, "When", mustDate(t, "0000-01-01T00:00:00Z")},
		{"padded base64", `"Blob":"YQ=="`, "Blob", []byte("a")},
		{"unpadded base64", `"Blob":"YQ"`, "Blob", []byte("a")},
		{"wrapped base64", `"Blob":"YWJj\nZGVm"`, "Blob", []byte("abcdef")},
		{"empty data", `"Blob":""`, "Blob", []byte{}},
		{"integer at min", `"Count":1`, "Count", int64(1)},
		{"integer at max", `"Count":10`, "Count", int64(10)},
		{"int64 minimum under a lone max", `"Low":-9223372036854775808`, "Low", int64(-9223372036854775808)},
		{"real at bounds", `"Level":1`, "Level", 1.0},
		{"whole real", `"Whole":2`, "Whole", 2.0},
		{"real exponent", `"Whole":-1.5e3`, "Whole", -1500.0},
		{"real underflow is zero", `"Whole":1e-400`, "Whole", 0.0},
		{"real enumeration", `"Ratio":2`, "Ratio", 2.0},
		{"ANY key with its type", `"Values":{"Fixed":false,"any name":1}`, "Values", map[string]any{"Fixed": false, "any name": 1.0}},
		{"keyless dictionary takes anything", `"Free":{"a":[1,2.5,"x",{"b":true}]}`, "Free", map[string]any{"a": []any{int64(1), 2.5, "x", map[string]any{"b": true}}}},
		{"keyless array takes anything", `"FreeList":[1,{"c":"d"},[]]`, "FreeList", []any{int64(1), map[string]any{"c": "d"}, []any{}}},
		{"any big integer is a real", `"Some":18446744073709551616`, "Some", 18446744073709551616.0},
		{"any integer", `"Some":-3`, "Some", int64(-3)},
		{"any fraction", `"Some":1.0`, "Some", 1.0},
		{"item types tried in order", `"Mixed":["a",2]`, "Mixed", []any{"a", int64(2)}},
		{"carriage return and tab", `"Some":"a\r\n\tb"`, "Some", "a\r\n\tb"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			body := syntheticBody(tt.body)
			dict, err := fromSynthetic(body)
			if err != nil {
				t.Fatalf("%s: %v", body, err)
			}
			if !reflect.DeepEqual(dict[tt.key], tt.want) {
				t.Errorf("%s = %#v, want %#v", tt.key, dict[tt.key], tt.want)
			}
			wantDelivered(t, dict, dict)
		})
	}
}

func mustDate(t *testing.T, s string) any {
	t.Helper()
	_, dict, err := commands.FromJSONWith(syntheticSpecs, []byte(`{"RequestType":"Synthetic","When":"`+s+`"}`))
	if err != nil {
		t.Fatal(err)
	}
	return dict["When"]
}

// nested returns n JSON arrays, one inside the other.
func nested(n int) string { return strings.Repeat("[", n) + strings.Repeat("]", n) }

// TestFromJSONErrors has one case per kind of violation, with the exact
// error, against Apple's schemas.
func TestFromJSONErrors(t *testing.T) {
	// The keys these cases use, as the schema has them: a change there
	// should fail here, loudly, rather than test something else.
	for _, k := range []struct{ requestType, path, typ string }{
		{"DeviceLock", "PIN", "string"},
		{"InstallProfile", "Payload", "data"},
		{"CertificateList", "ManagedOnly", "boolean"},
		{"InstallApplication", "ManagementFlags", "integer"},
		{"InstallApplication", "iTunesStoreID", "integer"},
		{"InstallApplication", "Configuration", "dictionary"},
		{"EraseDevice", "ObliterationBehavior", "string"},
		{"EraseDevice", "ReturnToService", "dictionary"},
		{"Settings", "Settings", "array"},
		{"DeviceInformation", "Queries", "array"},
	} {
		spec, ok := commands.Lookup(k.requestType)
		i := -1
		if ok {
			i = slices.IndexFunc(spec.Keys, func(key commands.Key) bool { return key.Name == k.path })
		}
		if i < 0 || spec.Keys[i].Type != k.typ {
			t.Fatalf("%s.%s is not a %s in the schema any more: update this test", k.requestType, k.path, k.typ)
		}
	}
	deep := func(n int) string { // n levels in all, the command included
		return `{"RequestType":"InstallApplication","Configuration":{"K":` + nested(n-2) + `}}`
	}
	tests := []struct {
		name, body, want string
	}{
		{"unknown key", `{"RequestType":"DeviceLock","Nope":1}`, "command.Nope: unknown key"},
		{"unknown nested key", `{"RequestType":"EraseDevice","ReturnToService":{"Enabled":true,"Nope":1}}`, "command.ReturnToService.Nope: unknown key"},
		{"odd key name quoted", `{"RequestType":"DeviceLock","a.b[0]":1}`, `command["a.b[0]"]: unknown key`},
		{"long key name cut", `{"RequestType":"DeviceLock","` + strings.Repeat("x", 100) + `":1}`, `command["` + strings.Repeat("x", 64) + `"…]: unknown key`},
		{"RequestType in a nested dictionary", `{"RequestType":"EraseDevice","ReturnToService":{"Enabled":true,"RequestType":"EraseDevice"}}`, "command.ReturnToService.RequestType: unknown key"},
		{"required", `{"RequestType":"InstallProfile"}`, "command.Payload: required"},
		{"required nested", `{"RequestType":"EraseDevice","ReturnToService":{}}`, "command.ReturnToService.Enabled: required"},
		{"required in an array of dictionaries", `{"RequestType":"Settings","Settings":[{"Item":"Bluetooth","Enabled":true},{"Item":"DataRoaming","Enabled":false},{"Enabled":true}]}`, "command.Settings[2].Item: required"},
		{"required key of an item type", `{"RequestType":"Settings","Settings":[{"Item":"Bluetooth","Enabled":true},{"Item":"DataRoaming"}]}`, "command.Settings[1].Enabled: required"},
		{"item type by discriminator", `{"RequestType":"Settings","Settings":[{"Item":"Bluetooth","Enabled":true},{"Item":"DeviceName","Enabled":true,"DeviceName":"x"}]}`, "command.Settings[1].Enabled: unknown key"},
		{"discriminator outside its values", `{"RequestType":"Settings","Settings":[{"Item":"Bluetoth","Enabled":true}]}`, "command.Settings[0].Item: want one of AccessibilitySettings, AppAnalytics, ApplicationAttributes, ApplicationConfiguration, Bluetooth, DataRoaming, DeviceName, DiagnosticSubmission, HostName, MDMOptions, … (19 values; see the schema)"},
		{"discriminator not a string", `{"RequestType":"Settings","Settings":[{"Item":1}]}`, "command.Settings[0].Item: want string"},
		{"item not a dictionary", `{"RequestType":"Settings","Settings":["Bluetooth"]}`, "command.Settings[0]: want dictionary"},
		{"want string", `{"RequestType":"DeviceLock","PIN":123456}`, "command.PIN: want string"},
		{"want boolean", `{"RequestType":"CertificateList","ManagedOnly":"true"}`, "command.ManagedOnly: want boolean"},
		{"want array", `{"RequestType":"DeviceInformation","Queries":"UDID"}`, "command.Queries: want array"},
		{"want dictionary", `{"RequestType":"EraseDevice","ReturnToService":[]}`, "command.ReturnToService: want dictionary"},
		{"wrong item type", `{"RequestType":"DeviceInformation","Queries":["UDID",7]}`, "command.Queries[1]: want string"},
		{"null", `{"RequestType":"DeviceLock","PIN":null}`, "command.PIN: want string"},
		{"null in any", `{"RequestType":"InstallApplication","Configuration":{"K":[null]}}`, "command.Configuration.K[0]: null is not a value"},
		{"bad base64", `{"RequestType":"InstallProfile","Payload":"not base64!"}`, "command.Payload: want data (a standard base64 string)"},
		{"URL-safe base64", `{"RequestType":"InstallProfile","Payload":"-_-_"}`, "command.Payload: want data (a standard base64 string)"},
		{"data not a string", `{"RequestType":"InstallProfile","Payload":[1]}`, "command.Payload: want data (a standard base64 string)"},
		{"integer with a fraction", `{"RequestType":"InstallApplication","iTunesStoreID":1.5}`, "command.iTunesStoreID: want integer"},
		{"integer written as a real", `{"RequestType":"InstallApplication","iTunesStoreID":1.0}`, "command.iTunesStoreID: want integer"},
		{"integer with an exponent", `{"RequestType":"InstallApplication","iTunesStoreID":1e3}`, "command.iTunesStoreID: want integer"},
		{"integer as a string", `{"RequestType":"InstallApplication","iTunesStoreID":"1"}`, "command.iTunesStoreID: want integer"},
		{"integer beyond int64", `{"RequestType":"InstallApplication","iTunesStoreID":9223372036854775808}`, "command.iTunesStoreID: out of range: want an integer that fits 64 bits"},
		{"integer outside enumeration", `{"RequestType":"InstallApplication","ManagementFlags":2}`, "command.ManagementFlags: want one of 1, 4, 5"},
		{"string outside enumeration", `{"RequestType":"EraseDevice","ObliterationBehavior":"Sometimes"}`, "command.ObliterationBehavior: want one of Default, DoNotObliterate, ObliterateWithWarning, Always"},
		{"enumeration is case-sensitive", `{"RequestType":"EraseDevice","ObliterationBehavior":"default"}`, "command.ObliterationBehavior: want one of Default, DoNotObliterate, ObliterateWithWarning, Always"},
		{"query name outside the schema's", `{"RequestType":"DeviceInformation","Queries":["UDID","NoSuchQuery"]}`, "command.Queries[1]: want one of AccessibilitySettings, ActiveManagedUsers, AppAnalyticsEnabled, AutoSetupAdminAccounts, AvailableDeviceCapacity, AwaitingConfiguration, BatteryLevel, BluetoothMAC, BuildVersion, CarrierSettingsVersion, … (85 values; see the schema)"},
		{"control character", `{"RequestType":"DeviceLock","Message":"a\u0000b"}`, "command.Message: string holds U+0000, which a plist cannot carry"},
		{"noncharacter", `{"RequestType":"DeviceLock","Message":"\uffff"}`, "command.Message: string holds U+FFFF, which a plist cannot carry"},
		{"control character in an ANY key name", `{"RequestType":"InstallApplication","Configuration":{"a\u001fb":1}}`, `command.Configuration["a\x1fb"]: key name holds U+001F, which a plist cannot carry`},
		{"control character in a nested any key name", `{"RequestType":"InstallApplication","Configuration":{"K":{"\u0007":1}}}`, `command.Configuration.K["\a"]: key name holds U+0007, which a plist cannot carry`},
		{"duplicate key", `{"RequestType":"DeviceLock","PIN":"1","PIN":"2"}`, "command.PIN: duplicate key"},
		{"duplicate RequestType", `{"RequestType":"DeviceLock","RequestType":"EraseDevice"}`, "command.RequestType: duplicate key"},
		{"duplicate key in a long object", `{"RequestType":"InstallApplication","Configuration":{"a":1,"b":1,"c":1,"d":1,"e":1,"f":1,"g":1,"h":1,"i":1,"a":2}}`, "command.Configuration.a: duplicate key"},
		{"no RequestType", `{"PIN":"1"}`, "command.RequestType: required"},
		{"RequestType not a string", `{"RequestType":7}`, "command.RequestType: want string"},
		{"unknown RequestType", `{"RequestType":"NoSuchCommand"}`, `command.RequestType: unknown RequestType "NoSuchCommand"`},
		{"RequestType case", `{"RequestType":"devicelock"}`, `command.RequestType: unknown RequestType "devicelock"`},
		{"not an object: array", `[{"RequestType":"DeviceLock"}]`, "command: want a JSON object"},
		{"not an object: string", `"DeviceLock"`, "command: want a JSON object"},
		{"not an object: null", `null`, "command: want a JSON object"},
		{"empty", ``, "command: want a JSON object"},
		{"trailing object", `{"RequestType":"DeviceLock"}{}`, "command: trailing data after the JSON object"},
		{"trailing garbage", `{"RequestType":"DeviceLock"} x`, "command: trailing data after the JSON object"},
		{"not JSON", `{RequestType: DeviceLock}`, "command: invalid JSON at byte 1: invalid character 'R'"},
		{"cut short", `{"RequestType":"DeviceLock","PIN":`, "command: invalid JSON: unexpected end"},
		{"too deep", deep(commands.MaxDepth + 1), "command.Configuration.K" + strings.Repeat("[0]", commands.MaxDepth-2) + ": nested deeper than 32 levels"},
		{"far too deep", deep(100000), "command.Configuration.K" + strings.Repeat("[0]", commands.MaxDepth-2) + ": nested deeper than 32 levels"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rt, dict, err := commands.FromJSON([]byte(tt.body))
			if err == nil {
				t.Fatalf("accepted: %q %v", rt, dict)
			}
			var pe *commands.PathError
			if !errors.As(err, &pe) {
				t.Fatalf("%T %v is not a *PathError", err, err)
			}
			if err.Error() != tt.want {
				t.Errorf("error\n%s\nwant\n%s", err, tt.want)
			}
			if pe.Path+": "+pe.Reason != tt.want {
				t.Errorf("Path %q, Reason %q", pe.Path, pe.Reason)
			}
			if rt != "" || dict != nil {
				t.Errorf("refused, yet returned %q %v", rt, dict)
			}
		})
	}
	if _, _, err := commands.FromJSON([]byte(deep(commands.MaxDepth))); err != nil {
		t.Errorf("%d levels: %v", commands.MaxDepth, err)
	}
}

// TestSyntheticErrors covers the violations only synthetic shapes have.
func TestSyntheticErrors(t *testing.T) {
	tests := []struct {
		name, body, want string
	}{
		{"below min", `"Count":0`, "command.Count: out of range: want 1 to 10"},
		{"above max", `"Count":11`, "command.Count: out of range: want 1 to 10"},
		{"real above max", `"Level":1.0000001`, "command.Level: out of range: want 0 to 1"},
		{"real below min", `"Level":-0.5`, "command.Level: out of range: want 0 to 1"},
		{"above a lone max", `"Low":-4`, "command.Low: out of range: want at most -5"},
		{"real overflow", `"Whole":1e400`, "command.Whole: out of range: want a number that fits a 64-bit real"},
		{"real as a string", `"Whole":"1.5"`, "command.Whole: want real"},
		{"real outside enumeration", `"Ratio":1`, "command.Ratio: want one of 0.5, 2"},
		{"date not RFC 3339", `"When":"2026-01-02 15:04:05"`, "command.When: want date (an RFC 3339 string)"},
		{"date without zone", `"When":"2026-01-02T15:04:05"`, "command.When: want date (an RFC 3339 string)"},
		{"date as a number", `"When":1767366245`, "command.When: want date (an RFC 3339 string)"},
		{"date beyond year 9999 in UTC", `"When":"9999-12-31T23:00:00-05:00"`, "command.When: out of range: want a date in years 0 to 9999 UTC"},
		{"date before year 0 in UTC", `"When":"0000-01-01T00:00:00+01:00"`, "command.When: out of range: want a date in years 0 to 9999 UTC"},
		{"ANY key of the wrong type", `"Values":{"Fixed":true,"x":"y"}`, "command.Values.x: want real"},
		{"ANY keys are not required", `"Values":{}`, "command.Values.Fixed: required"},
		{"keyless dictionary wants a dictionary", `"Free":[1]`, "command.Free: want dictionary"},
		{"keyless array wants an array", `"FreeList":{}`, "command.FreeList: want array"},
		{"no item type matches", `"Mixed":["a",true]`, "command.Mixed[1]: matches none of the array's item types"},
		{"any has no null", `"Some":{"a":null}`, "command.Some.a: null is not a value"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			body := syntheticBody(tt.body)
			_, err := fromSynthetic(body)
			var pe *commands.PathError
			if !errors.As(err, &pe) || err.Error() != tt.want {
				t.Errorf("%s:\n%v\nwant\n%s", body, err, tt.want)
			}
		})
	}
	if _, err := fromSynthetic(`{"RequestType":"Synthetic"}`); err == nil || err.Error() != "command.When: required" {
		t.Errorf("no When: %v", err)
	}
}

// TestUnknownRequestType checks that the refusal is both a *PathError and
// ErrUnknownRequestType, and that other refusals are not the latter.
func TestUnknownRequestType(t *testing.T) {
	_, _, err := commands.FromJSON([]byte(`{"RequestType":"NoSuchCommand"}`))
	var pe *commands.PathError
	if !errors.Is(err, commands.ErrUnknownRequestType) || !errors.As(err, &pe) || pe.Path != "command.RequestType" {
		t.Errorf("%v: not ErrUnknownRequestType at command.RequestType", err)
	}
	if _, ok := err.(*commands.PathError); !ok {
		t.Errorf("%T is not a *PathError itself", err)
	}
	_, _, _, err = commands.BuildJSON([]byte(`{"RequestType":"NoSuchCommand"}`), "")
	if !errors.Is(err, commands.ErrUnknownRequestType) {
		t.Errorf("BuildJSON: %v", err)
	}
	_, _, err = commands.FromJSON([]byte(`{"RequestType":"DeviceLock","Nope":1}`))
	if errors.Is(err, commands.ErrUnknownRequestType) {
		t.Errorf("%v is ErrUnknownRequestType", err)
	}
}

// uuidPattern is a version 4 UUID in upper case.
var uuidPattern = regexp.MustCompile(`^[0-9A-F]{8}-[0-9A-F]{4}-4[0-9A-F]{3}-[89AB][0-9A-F]{3}-[0-9A-F]{12}$`)

// TestBuildJSON checks the CommandUUID BuildJSON generates or takes.
func TestBuildJSON(t *testing.T) {
	body := []byte(`{"RequestType":"DeviceLock","PIN":"123456"}`)
	raw, uuid, rt, err := commands.BuildJSON(body, "")
	if err != nil || rt != "DeviceLock" || !uuidPattern.MatchString(uuid) {
		t.Fatalf("BuildJSON = %q, %q, %v", uuid, rt, err)
	}
	cmd, err := mdm.DecodeCommand(raw)
	if err != nil || cmd.CommandUUID != uuid || cmd.RequestType() != "DeviceLock" {
		t.Fatalf("DecodeCommand: %v %+v", err, cmd)
	}
	_, again, _, _ := commands.BuildJSON(body, "")
	if again == uuid {
		t.Error("two commands got the same CommandUUID")
	}
	raw, uuid, _, err = commands.BuildJSON(body, "my-uuid")
	if cmd, _ := mdm.DecodeCommand(raw); err != nil || uuid != "my-uuid" || cmd == nil || cmd.CommandUUID != "my-uuid" {
		t.Errorf("given CommandUUID: %q %v", uuid, err)
	}
	for _, bad := range []string{"a\nb", strings.Repeat("A", mdm.MaxIDBytes+1), "\xff"} {
		raw, uuid, _, err := commands.BuildJSON(body, bad)
		var pe *commands.PathError
		if !errors.Is(err, mdm.ErrInvalidID) || errors.As(err, &pe) || raw != nil || uuid != "" {
			t.Errorf("CommandUUID %q: %v", bad, err)
		}
	}
}

// TestPlistRefuses checks Plist's own checks: what it is given is not
// always FromJSON's.
func TestPlistRefuses(t *testing.T) {
	if _, err := commands.Plist("U", map[string]any{"PIN": "1"}); !errors.Is(err, mdm.ErrNoRequestType) {
		t.Errorf("no RequestType: %v", err)
	}
	if _, err := commands.Plist("U", map[string]any{"RequestType": 1}); !errors.Is(err, mdm.ErrNoRequestType) {
		t.Errorf("RequestType not a string: %v", err)
	}
	if _, err := commands.Plist("", map[string]any{"RequestType": "DeviceLock"}); !errors.Is(err, mdm.ErrInvalidID) {
		t.Errorf("empty CommandUUID: %v", err)
	}
	for _, v := range []any{nil, make(chan int), func() {}} {
		if _, err := commands.Plist("U", map[string]any{"RequestType": "DeviceLock", "X": v}); err == nil {
			t.Errorf("%T encoded", v)
		}
	}
}
