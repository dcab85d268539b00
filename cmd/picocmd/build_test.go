package main

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/micromdm/plist"

	"github.com/picomdm/picomdm/mdm"
	"github.com/picomdm/picomdm/mdm/commands"
)

// sampleDate is the <date> every generated command carries.
var sampleDate = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

// sampleInt returns an integer that key allows: its first allowed value,
// or 42 moved inside its bounds.
func sampleInt(k commands.Key) int64 {
	if len(k.AllowedValues) > 0 {
		return k.AllowedValues[0].(int64)
	}
	n := int64(42)
	if k.Max != nil {
		n = min(n, int64(math.Floor(*k.Max)))
	}
	if k.Min != nil {
		n = max(n, int64(math.Ceil(*k.Min)))
	}
	return n
}

// sampleReal is sampleInt for a <real>.
func sampleReal(k commands.Key) float64 {
	if len(k.AllowedValues) > 0 {
		return k.AllowedValues[0].(float64)
	}
	f := 1.5
	if k.Max != nil {
		f = min(f, *k.Max)
	}
	if k.Min != nil {
		f = max(f, *k.Min)
	}
	return f
}

// sampleJSON returns a JSON value for key, as the API takes it, and the
// value the command plist must then carry. A dictionary gets its
// required keys, or every key when all is set (a key named ANY as
// "SampleKey"); an array one item of each item type.
func sampleJSON(t *testing.T, k commands.Key, all bool) (jsonValue, want any) {
	t.Helper()
	switch k.Type {
	case "string":
		if len(k.AllowedValues) > 0 {
			s := k.AllowedValues[0].(string)
			return s, s
		}
		return "sample", "sample"
	case "integer":
		n := sampleInt(k)
		return n, n
	case "real":
		f := sampleReal(k)
		return f, f
	case "boolean":
		if len(k.AllowedValues) > 0 {
			b := k.AllowedValues[0].(bool)
			return b, b
		}
		return true, true
	case "date":
		return sampleDate.Format(time.RFC3339), sampleDate
	case "data":
		return "AAEC", []byte{0, 1, 2}
	case "any":
		return "sample", "sample"
	case "dictionary":
		j, w := map[string]any{}, map[string]any{}
		for _, sub := range k.Keys {
			if !all && !sub.Required {
				continue
			}
			name := sub.Name
			if strings.HasPrefix(name, "ANY") {
				name = "SampleKey"
			}
			j[name], w[name] = sampleJSON(t, sub, all)
		}
		return j, w
	case "array":
		var j, w []any
		for _, item := range k.Keys {
			jv, wv := sampleJSON(t, item, all)
			j, w = append(j, jv), append(w, wv)
		}
		return j, w
	}
	t.Fatalf("no sample for %s <%s>", k.Name, k.Type)
	return nil, nil
}

// sampleArg returns a key=value argument for key, spelled as picocmd
// documents it, and the value the command plist must then carry.
func sampleArg(t *testing.T, k commands.Key, all bool) (arg string, want any) {
	t.Helper()
	literal := func() (string, any) {
		j, w := sampleJSON(t, k, all)
		raw, err := json.Marshal(j)
		if err != nil {
			t.Fatal(err)
		}
		return k.Name + "=" + string(raw), w
	}
	switch k.Type {
	case "string", "any":
		_, w := sampleJSON(t, k, all)
		return k.Name + "=" + w.(string), w
	case "integer", "real", "boolean":
		_, w := sampleJSON(t, k, all)
		return fmt.Sprintf("%s=%v", k.Name, w), w
	case "date":
		return k.Name + "=" + sampleDate.Format(time.RFC3339), sampleDate
	case "data":
		return k.Name + "=AAEC", []byte{0, 1, 2}
	case "dictionary":
		return literal()
	case "array":
		item, ok := arrayItem(k)
		if !ok || item.Type == "dictionary" || item.Type == "array" || item.Type == "any" {
			return literal()
		}
		// Scalars as a comma-separated list of two items: the first two
		// allowed values when there are some.
		var parts []string
		var want []any
		for i := range 2 {
			it := item
			if len(item.AllowedValues) > 1 {
				it.AllowedValues = item.AllowedValues[i:]
			}
			a, w := sampleArg(t, it, all)
			_, v, _ := strings.Cut(a, "=")
			parts, want = append(parts, v), append(want, w)
		}
		return k.Name + "=" + strings.Join(parts, ","), want
	}
	t.Fatalf("no sample for %s <%s>", k.Name, k.Type)
	return "", nil
}

// TestBuildEveryRequestType builds every command Apple documents from
// generated arguments, once with its required keys and once with every
// key (and every key of nested dictionaries), and checks that the plist
// decodes to exactly the expected dictionary, types included. The -json
// body for the same arguments must carry a command commands.FromJSON
// accepts and that commands.BuildJSON turns into the same plist.
func TestBuildEveryRequestType(t *testing.T) {
	specs := commands.Specs()
	if len(specs) < 60 {
		t.Fatalf("%d RequestTypes, want the full schema set", len(specs))
	}
	for _, spec := range specs {
		t.Run(spec.RequestType, func(t *testing.T) {
			for _, all := range []bool{false, true} {
				var args []string
				want := map[string]any{"RequestType": spec.RequestType}
				for _, k := range spec.Keys {
					if !all && !k.Required {
						continue
					}
					arg, v := sampleArg(t, k, all)
					args = append(args, arg)
					want[k.Name] = v
				}
				raw, uuid, err := Build(spec.RequestType, args, "", nil)
				if err != nil {
					t.Fatalf("all keys %v: %v", all, err)
				}
				cmd, err := mdm.DecodeCommand(raw)
				if err != nil {
					t.Fatalf("all keys %v: %v", all, err)
				}
				if cmd.RequestType() != spec.RequestType || cmd.CommandUUID != uuid || uuid == "" {
					t.Errorf("RequestType %q, CommandUUID %q, Build said %q", cmd.RequestType(), cmd.CommandUUID, uuid)
				}
				var got struct{ Command map[string]any }
				if err := plist.Unmarshal(raw, &got); err != nil {
					t.Fatal(err)
				}
				if !equalValue(got.Command, want) {
					t.Errorf("all keys %v: command\n%#v\nwant\n%#v", all, got.Command, want)
				}

				body, err := BuildBody(spec.RequestType, args, uuid, nil, nil)
				if err != nil {
					t.Fatalf("-json, all keys %v: %v", all, err)
				}
				checkBody(t, body, spec.RequestType, uuid, []string{}, raw)
			}
		})
	}
}

// checkBody checks a -json body: exactly the four POST /v1/commands
// fields, the targets and CommandUUID given, a command FromJSON accepts
// as requestType and that BuildJSON turns into wantPlist.
func checkBody(t *testing.T, out []byte, requestType, uuid string, targets []string, wantPlist []byte) {
	t.Helper()
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(out, &fields); err != nil {
		t.Fatalf("-json output is not a JSON object: %v\n%s", err, out)
	}
	if names := slices.Sorted(maps.Keys(fields)); !slices.Equal(names, []string{"command", "command_uuid", "nopush", "targets"}) {
		t.Errorf("-json fields %q", names)
	}
	var b body
	dec := json.NewDecoder(bytes.NewReader(out))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&b); err != nil {
		t.Fatal(err)
	}
	if b.CommandUUID != uuid || b.NoPush || !slices.Equal(b.Targets, targets) || b.Targets == nil {
		t.Errorf("body command_uuid %q nopush %v targets %q, want %q false %q", b.CommandUUID, b.NoPush, b.Targets, uuid, targets)
	}
	rt, _, err := commands.FromJSON(b.Command)
	if err != nil || rt != requestType {
		t.Fatalf("FromJSON(%s) = %q, %v", b.Command, rt, err)
	}
	raw, _, _, err := commands.BuildJSON(b.Command, uuid)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(raw, wantPlist) {
		t.Errorf("BuildJSON of the -json command\n%s\nwant the plist picocmd prints\n%s", raw, wantPlist)
	}
}

// equalValue compares a decoded plist value with the expected one,
// normalising integer widths the decoder may pick.
func equalValue(got, want any) bool {
	switch w := want.(type) {
	case int64:
		switch g := got.(type) {
		case int64:
			return g == w
		case uint64:
			return int64(g) == w
		case int:
			return int64(g) == w
		}
		return false
	case []byte:
		g, ok := got.([]byte)
		return ok && bytes.Equal(g, w)
	case time.Time:
		g, ok := got.(time.Time)
		return ok && g.Equal(w)
	case []any:
		g, ok := got.([]any)
		if !ok || len(g) != len(w) {
			return false
		}
		for i := range w {
			if !equalValue(g[i], w[i]) {
				return false
			}
		}
		return true
	case map[string]any:
		g, ok := got.(map[string]any)
		if !ok || len(g) != len(w) {
			return false
		}
		for k, v := range w {
			if !equalValue(g[k], v) {
				return false
			}
		}
		return true
	}
	return got == want
}

// TestBuildValues checks the value spellings: a fixed CommandUUID, @file
// data, repeated array keys, JSON arrays, nested data and dates in JSON
// as base64 and RFC 3339.
func TestBuildValues(t *testing.T) {
	const uuid = "0F0E0D0C-0B0A-4908-8706-050403020100"
	readFile := func(name string) ([]byte, error) {
		if name == "p.mobileconfig" {
			return []byte("profile"), nil
		}
		return nil, errors.New("no such file")
	}
	raw, got, err := Build("InstallProfile", []string{"Payload=@p.mobileconfig"}, uuid, readFile)
	if err != nil {
		t.Fatal(err)
	}
	var p struct {
		CommandUUID string
		Command     struct{ Payload []byte }
	}
	if err := plist.Unmarshal(raw, &p); err != nil {
		t.Fatal(err)
	}
	if got != uuid || p.CommandUUID != uuid || string(p.Command.Payload) != "profile" {
		t.Errorf("got %q %+v", got, p)
	}
	if _, _, err := Build("InstallProfile", []string{"Payload=@missing"}, "", readFile); err == nil || !strings.Contains(err.Error(), "command.Payload: reading data") {
		t.Errorf("missing @file: %v", err)
	}

	for _, args := range [][]string{
		{"Queries=UDID,OSVersion", "Queries=SerialNumber"},
		{`Queries=["UDID","OSVersion"]`, "Queries=SerialNumber"},
	} {
		raw, _, err = Build("DeviceInformation", args, "", nil)
		if err != nil {
			t.Fatal(err)
		}
		var q struct{ Command struct{ Queries []string } }
		if err := plist.Unmarshal(raw, &q); err != nil {
			t.Fatal(err)
		}
		if want := []string{"UDID", "OSVersion", "SerialNumber"}; !slices.Equal(q.Command.Queries, want) {
			t.Errorf("%q: Queries = %q, want %q", args, q.Command.Queries, want)
		}
	}

	// A dictionary's <data> is base64 in its JSON, as in the API's.
	raw, _, err = Build("AccountConfiguration", []string{`AutoSetupAdminAccounts=[{"shortName":"admin","passwordHash":"AAEC"}]`}, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	var a struct {
		Command struct {
			AutoSetupAdminAccounts []struct {
				ShortName    string `plist:"shortName"`
				PasswordHash []byte `plist:"passwordHash"`
			}
		}
	}
	if err := plist.Unmarshal(raw, &a); err != nil {
		t.Fatal(err)
	}
	if acc := a.Command.AutoSetupAdminAccounts; len(acc) != 1 || acc[0].ShortName != "admin" || !bytes.Equal(acc[0].PasswordHash, []byte{0, 1, 2}) {
		t.Errorf("AutoSetupAdminAccounts = %+v", acc)
	}
}

// TestBuildRefuses checks that mistakes are refused with the API's
// message, naming the key, and with what helps: close RequestTypes, or
// the valid keys with their types.
func TestBuildRefuses(t *testing.T) {
	tests := []struct {
		name        string
		requestType string
		args        []string
		path        string // of the *commands.PathError, "" for none
		wantIn      []string
	}{
		{"unknown RequestType", "DeviceInfromation", nil, "command.RequestType", []string{`unknown RequestType "DeviceInfromation"`, "did you mean: DeviceInformation"}},
		{"unrelated RequestType", "Zzzzzzzzzzzzzzzzzzzz", nil, "command.RequestType", []string{"valid:", "RemoveProfile"}},
		{"unknown key", "RemoveProfile", []string{"Identifier=x", "Identifer=x"}, "command.Identifer", []string{"unknown key", "Identifier <string> (required)"}},
		{"not key=value", "RemoveProfile", []string{"Identifier"}, "", []string{"not key=value", "Identifier <string>"}},
		{"bad integer", "InstallApplication", []string{"iTunesStoreID=x"}, "command.iTunesStoreID", []string{"want integer", "iTunesStoreID <integer>"}},
		{"real for integer", "InstallApplication", []string{"iTunesStoreID=1.5"}, "command.iTunesStoreID", []string{"iTunesStoreID <integer>"}},
		{"bad boolean", "EraseDevice", []string{"PreserveDataPlan=yes"}, "command.PreserveDataPlan", []string{"want boolean", "PreserveDataPlan <boolean>"}},
		{"bad data", "InstallProfile", []string{"Payload=!!"}, "command.Payload", []string{"want data", "Payload <data> (required)"}},
		{"not JSON dictionary", "RotateFileVaultKey", []string{"KeyType=personal", "FileVaultUnlock={"}, "command.FileVaultUnlock", []string{"want a JSON object"}},
		{"array for dictionary", "RotateFileVaultKey", []string{"KeyType=personal", "FileVaultUnlock=[1]"}, "command.FileVaultUnlock", []string{"want dictionary"}},
		{"not JSON array", "DeviceInformation", []string{"Queries=[UDID"}, "command.Queries", []string{"want a JSON array"}},
		{"not allowed", "DeviceInformation", []string{"Queries=UDID,Nope"}, "command.Queries[1]", nil},
		{"missing required", "RemoveProfile", nil, "command.Identifier", []string{"required", "Identifier <string> (required)"}},
		{"missing nested required", "Settings", []string{`Settings=[{"Item":"Bluetooth"}]`}, "command.Settings[0].Enabled", []string{"required"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, json := range []bool{false, true} {
				var err error
				if json {
					_, err = BuildBody(tt.requestType, tt.args, "", nil, nil)
				} else {
					_, _, err = Build(tt.requestType, tt.args, "", nil)
				}
				if err == nil {
					t.Fatalf("json %v: no error", json)
				}
				var pe *commands.PathError
				if errors.As(err, &pe) != (tt.path != "") || tt.path != "" && !strings.HasPrefix(pe.Path, tt.path) {
					t.Errorf("json %v: error %q, want a PathError at %q", json, err, tt.path)
				}
				if tt.path != "" && !strings.HasPrefix(err.Error(), pe.Error()) {
					t.Errorf("json %v: error %q does not start with the API's %q", json, err, pe)
				}
				for _, s := range tt.wantIn {
					if !strings.Contains(err.Error(), s) {
						t.Errorf("json %v: error %q does not contain %q", json, err, s)
					}
				}
			}
		})
	}
	if _, _, err := Build("DeviceInfromation", nil, "", nil); !errors.Is(err, commands.ErrUnknownRequestType) {
		t.Errorf("unknown RequestType: %v does not wrap ErrUnknownRequestType", err)
	}
	// A CommandUUID the API refuses is not the command's fault: no keys.
	if _, _, err := Build("RemoveProfile", []string{"Identifier=x"}, "bad\tuuid", nil); err == nil || strings.Contains(err.Error(), "takes:") {
		t.Errorf("bad CommandUUID: %v", err)
	}
}

// TestRunListAndKeys checks the -list and -keys modes and a plain run.
func TestRunListAndKeys(t *testing.T) {
	var out, errOut bytes.Buffer
	if code := run([]string{"-list"}, &out, &errOut); code != 0 {
		t.Fatalf("-list exit %d: %s", code, errOut.String())
	}
	var want strings.Builder
	for _, s := range commands.Specs() {
		want.WriteString(s.RequestType + "\n")
	}
	if out.String() != want.String() {
		t.Errorf("-list printed\n%s\nwant\n%s", out.String(), want.String())
	}
	for _, tt := range []struct {
		requestType string
		want        []string
	}{
		{"RemoveProfile", []string{"  Identifier <string> (required)\n"}},
		{"DeviceLock", []string{"  Message <string>\n", "  PIN <string>\n", "  PhoneNumber <string>\n"}},
		{"DeviceInformation", []string{"  Queries <array> of <string> (required) one of: ", ", UDID,"}},
		{"AccountConfiguration", []string{"  AutoSetupAdminAccounts <array> of <dictionary>\n", "    shortName <string> (required)\n"}},
		{"Settings", []string{"  Settings <array> (required)\n", "    Bluetooth <dictionary>\n", "      Enabled <boolean> (required)\n"}},
		{"ProfileList", []string{"  ManagedOnly <boolean>\n"}},
	} {
		out.Reset()
		if code := run([]string{"-keys", tt.requestType}, &out, &errOut); code != 0 {
			t.Fatalf("-keys %s exit %d: %s", tt.requestType, code, errOut.String())
		}
		for _, s := range tt.want {
			if !strings.Contains(out.String(), s) {
				t.Errorf("-keys %s printed\n%s\nwithout %q", tt.requestType, out.String(), s)
			}
		}
	}
	out.Reset()
	if code := run([]string{"-keys", "RemovProfile"}, &out, &errOut); code != 1 || out.Len() != 0 || !strings.Contains(errOut.String(), "did you mean: RemoveProfile") {
		t.Errorf("-keys RemovProfile: exit %d, stdout %q, stderr %q", code, out.String(), errOut.String())
	}
	out.Reset()
	const uuid = "0F0E0D0C-0B0A-4908-8706-050403020100"
	if code := run([]string{"-uuid", uuid, "RemoveProfile", "Identifier=com.example"}, &out, &errOut); code != 0 {
		t.Fatalf("exit %d: %s", code, errOut.String())
	}
	cmd, err := mdm.DecodeCommand(out.Bytes())
	if err != nil || cmd.CommandUUID != uuid {
		t.Errorf("decoded %+v, %v", cmd, err)
	}
}

// TestRunJSON checks -json: the POST /v1/commands body with -targets
// (none by default), a command FromJSON accepts that BuildJSON turns into
// the plist picocmd prints without -json for the same CommandUUID, a
// fresh CommandUUID without -uuid, and refusals that print nothing.
func TestRunJSON(t *testing.T) {
	const uuid = "0F0E0D0C-0B0A-4908-8706-050403020100"
	args := []string{"DeviceInformation", "Queries=UDID,OSVersion", "DeviceAttestationNonce=AAEC"}
	var plistOut, errOut bytes.Buffer
	if code := run(append([]string{"-uuid", uuid}, args...), &plistOut, &errOut); code != 0 {
		t.Fatalf("exit %d: %s", code, errOut.String())
	}
	for _, tt := range []struct {
		flags   []string
		targets []string
	}{
		{[]string{"-json", "-uuid", uuid}, []string{}},
		{[]string{"-json", "-uuid", uuid, "-targets", "00008101-000A1B2C3D4E5F60, 00008101-000A1B2C3D4E5F61,"}, []string{"00008101-000A1B2C3D4E5F60", "00008101-000A1B2C3D4E5F61"}},
	} {
		var out bytes.Buffer
		if code := run(append(tt.flags, args...), &out, &errOut); code != 0 {
			t.Fatalf("%q exit %d: %s", tt.flags, code, errOut.String())
		}
		checkBody(t, out.Bytes(), "DeviceInformation", uuid, tt.targets, plistOut.Bytes())
		// The command is what was asked for, RequestType first.
		var b body
		if err := json.Unmarshal(out.Bytes(), &b); err != nil {
			t.Fatal(err)
		}
		var compact bytes.Buffer
		if err := json.Compact(&compact, b.Command); err != nil {
			t.Fatal(err)
		}
		if want := `{"RequestType":"DeviceInformation","Queries":["UDID","OSVersion"],"DeviceAttestationNonce":"AAEC"}`; compact.String() != want {
			t.Errorf("command %s, want %s", compact.String(), want)
		}
	}

	var out bytes.Buffer
	if code := run(append([]string{"-json"}, args...), &out, &errOut); code != 0 {
		t.Fatalf("-json exit %d: %s", code, errOut.String())
	}
	var b body
	if err := json.Unmarshal(out.Bytes(), &b); err != nil {
		t.Fatal(err)
	}
	if err := mdm.CheckCommandUUID(b.CommandUUID); err != nil || b.CommandUUID != strings.ToUpper(b.CommandUUID) {
		t.Errorf("fresh command_uuid %q: %v", b.CommandUUID, err)
	}

	for _, tt := range []struct {
		args []string
		code int
	}{
		{[]string{"-json", "RemoveProfile"}, 1},
		{[]string{"-json", "-uuid", "bad\tuuid", "ProfileList"}, 1},
		{[]string{"-targets", "X", "ProfileList"}, 2},
	} {
		out.Reset()
		errOut.Reset()
		if code := run(tt.args, &out, &errOut); code != tt.code || out.Len() != 0 || errOut.Len() == 0 {
			t.Errorf("%q: exit %d, stdout %q, stderr %q; want exit %d, only stderr", tt.args, code, out.String(), errOut.String(), tt.code)
		}
	}
}

// TestJSONValue checks how command-line values are spelled as JSON
// before the API's checks: numbers only when they are JSON numbers,
// booleans only as true/false, the rest passed on as strings.
func TestJSONValue(t *testing.T) {
	files := func(string) ([]byte, error) { return []byte{0xff, 0}, nil }
	tests := []struct {
		key   commands.Key
		value string
		want  string
	}{
		{commands.Key{Type: "integer"}, "5", `5`},
		{commands.Key{Type: "integer"}, "-5", `-5`},
		{commands.Key{Type: "integer"}, "5]", `"5]"`},
		{commands.Key{Type: "integer"}, "0x10", `"0x10"`},
		{commands.Key{Type: "real"}, "1e3", `1e3`},
		{commands.Key{Type: "boolean"}, "true", `true`},
		{commands.Key{Type: "boolean"}, "1", `"1"`},
		{commands.Key{Type: "string"}, "5", `"5"`},
		{commands.Key{Type: "string"}, "<a&b>", `"<a&b>"`},
		{commands.Key{Type: "date"}, "2026-01-02T03:04:05Z", `"2026-01-02T03:04:05Z"`},
		{commands.Key{Type: "data"}, "@f", `"` + base64.StdEncoding.EncodeToString([]byte{0xff, 0}) + `"`},
		{commands.Key{Type: "data"}, "AAEC", `"AAEC"`},
		{commands.Key{Type: "any"}, `{"a":1}`, `{"a":1}`},
		{commands.Key{Type: "any"}, `plain`, `"plain"`},
		{commands.Key{Type: "array", Keys: []commands.Key{{Type: "integer"}}}, "1, 2", `[1,2]`},
		{commands.Key{Type: "array", Keys: []commands.Key{{Type: "data"}}}, "@f,AAEC", `["/wA=","AAEC"]`},
		{commands.Key{Type: "array"}, "a,b", `["a","b"]`},
	}
	for _, tt := range tests {
		v, err := jsonValue(tt.key, tt.value, files)
		if err != nil {
			t.Errorf("<%s> %q: %v", tt.key.Type, tt.value, err)
			continue
		}
		var b bytes.Buffer
		if err := writeJSON(&b, v); err != nil || b.String() != tt.want {
			t.Errorf("<%s> %q = %s, %v; want %s", tt.key.Type, tt.value, b.String(), err, tt.want)
		}
	}
}
