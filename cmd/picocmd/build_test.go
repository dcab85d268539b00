package main

import (
	"bytes"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/micromdm/plist"

	"github.com/picomdm/picomdm/mdm"
)

// sampleArg returns a key=value argument for key and the value the plist
// must then carry.
func sampleArg(t *testing.T, k keySpec) (arg string, want any) {
	t.Helper()
	switch k.Type {
	case "<string>":
		return k.Name + "=sample", "sample"
	case "<integer>":
		return k.Name + "=42", int64(42)
	case "<real>":
		return k.Name + "=1.5", 1.5
	case "<boolean>":
		return k.Name + "=true", true
	case "<date>":
		return k.Name + "=2026-01-02T03:04:05Z", time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	case "<data>":
		return k.Name + "=AAEC", []byte{0, 1, 2}
	case "<dictionary>":
		return k.Name + `={"A":1,"B":"b"}`, map[string]any{"A": int64(1), "B": "b"}
	case "<array>":
		item, _ := itemType(k)
		switch item {
		case "<integer>":
			return k.Name + "=1,2", []any{int64(1), int64(2)}
		case "<data>":
			return k.Name + "=AAEC,AQI=", []any{[]byte{0, 1, 2}, []byte{1, 2}}
		case "<dictionary>", "<array>", "<any>":
			return k.Name + `=[{"A":true}]`, []any{map[string]any{"A": true}}
		}
		return k.Name + "=x,y", []any{"x", "y"}
	}
	t.Fatalf("no sample for %s %s", k.Name, k.Type)
	return "", nil
}

// TestBuildEveryRequestType builds every command in the table with all
// its keys set (required and optional) and checks the plist decodes as a
// command carrying each key with its schema type.
func TestBuildEveryRequestType(t *testing.T) {
	if len(commandTable) < 60 {
		t.Fatalf("command table has %d RequestTypes, want the full schema set", len(commandTable))
	}
	for _, spec := range commandTable {
		t.Run(spec.RequestType, func(t *testing.T) {
			for _, only := range []string{"required", "all"} {
				var args []string
				want := map[string]any{}
				for _, k := range spec.Keys {
					if only == "required" && !k.Required {
						continue
					}
					arg, v := sampleArg(t, k)
					args = append(args, arg)
					want[k.Name] = v
				}
				raw, err := Build(spec.RequestType, args, "", nil)
				if err != nil {
					t.Fatalf("%s keys: %v", only, err)
				}
				cmd, err := mdm.DecodeCommand(raw)
				if err != nil {
					t.Fatalf("%s keys: %v", only, err)
				}
				if cmd.RequestType() != spec.RequestType {
					t.Errorf("RequestType = %q", cmd.RequestType())
				}
				if cmd.CommandUUID == "" || cmd.CommandUUID != strings.ToUpper(cmd.CommandUUID) {
					t.Errorf("CommandUUID = %q, want upper case", cmd.CommandUUID)
				}
				var got struct{ Command map[string]any }
				if err := plist.Unmarshal(raw, &got); err != nil {
					t.Fatal(err)
				}
				for name, v := range want {
					if !equalValue(got.Command[name], v) {
						t.Errorf("%s = %#v, want %#v", name, got.Command[name], v)
					}
				}
				if len(got.Command) != len(want)+1 {
					t.Errorf("command has %d keys, want %d", len(got.Command), len(want)+1)
				}
			}
		})
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
// data, repeated array keys.
func TestBuildValues(t *testing.T) {
	readFile := func(name string) ([]byte, error) {
		if name == "p.mobileconfig" {
			return []byte("profile"), nil
		}
		return nil, errors.New("no such file")
	}
	raw, err := Build("InstallProfile", []string{"Payload=@p.mobileconfig"}, "FIXED-UUID", readFile)
	if err != nil {
		t.Fatal(err)
	}
	var got struct {
		CommandUUID string
		Command     struct{ Payload []byte }
	}
	if err := plist.Unmarshal(raw, &got); err != nil {
		t.Fatal(err)
	}
	if got.CommandUUID != "FIXED-UUID" || string(got.Command.Payload) != "profile" {
		t.Errorf("got %+v", got)
	}
	if _, err := Build("InstallProfile", []string{"Payload=@missing"}, "", readFile); err == nil {
		t.Error("missing @file: no error")
	}

	raw, err = Build("DeviceInformation", []string{"Queries=UDID,OSVersion", "Queries=SerialNumber"}, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	var q struct{ Command struct{ Queries []string } }
	if err := plist.Unmarshal(raw, &q); err != nil {
		t.Fatal(err)
	}
	if want := []string{"UDID", "OSVersion", "SerialNumber"}; !slices.Equal(q.Command.Queries, want) {
		t.Errorf("Queries = %q, want %q", q.Command.Queries, want)
	}
}

// TestBuildRefuses checks that mistakes are refused with a message that
// helps: close RequestTypes, or the valid keys with their types.
func TestBuildRefuses(t *testing.T) {
	tests := []struct {
		name        string
		requestType string
		args        []string
		wantIn      []string
	}{
		{"unknown RequestType", "DeviceInfromation", nil, []string{`unknown RequestType "DeviceInfromation"`, "DeviceInformation"}},
		{"unrelated RequestType", "Zzzzzzzzzzzzzzzzzzzz", nil, []string{"valid:", "RemoveProfile"}},
		{"unknown key", "RemoveProfile", []string{"Identifer=x"}, []string{`no key "Identifer"`, "Identifier <string> (required)"}},
		{"not key=value", "RemoveProfile", []string{"Identifier"}, []string{"not key=value", "Identifier <string>"}},
		{"bad integer", "InstallApplication", []string{"iTunesStoreID=x"}, []string{"want an integer", "iTunesStoreID <integer>"}},
		{"bad boolean", "EraseDevice", []string{"PreserveDataPlan=yes"}, []string{"want true or false", "PreserveDataPlan <boolean>"}},
		{"bad data", "InstallProfile", []string{"Payload=!!"}, []string{"want base64 or @file", "Payload <data> (required)"}},
		{"bad dictionary", "RotateFileVaultKey", []string{"KeyType=personal", "FileVaultUnlock=[1]"}, []string{"want a JSON object"}},
		{"missing required", "RemoveProfile", nil, []string{"RemoveProfile needs Identifier"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Build(tt.requestType, tt.args, "", nil)
			if err == nil {
				t.Fatal("no error")
			}
			for _, s := range tt.wantIn {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q does not contain %q", err, s)
				}
			}
		})
	}
}

// TestRunListAndKeys checks the -list and -keys modes.
func TestRunListAndKeys(t *testing.T) {
	var out, errOut bytes.Buffer
	if code := run([]string{"-list"}, &out, &errOut); code != 0 {
		t.Fatalf("-list exit %d: %s", code, errOut.String())
	}
	if lines := strings.Count(out.String(), "\n"); lines != len(commandTable) {
		t.Errorf("-list printed %d lines, want %d", lines, len(commandTable))
	}
	out.Reset()
	if code := run([]string{"-keys", "RemoveProfile"}, &out, &errOut); code != 0 {
		t.Fatalf("-keys exit %d: %s", code, errOut.String())
	}
	if want := "  Identifier <string> (required)\n"; out.String() != want {
		t.Errorf("-keys printed %q, want %q", out.String(), want)
	}
	out.Reset()
	if code := run([]string{"-uuid", "U1", "RemoveProfile", "Identifier=com.example"}, &out, &errOut); code != 0 {
		t.Fatalf("exit %d: %s", code, errOut.String())
	}
	cmd, err := mdm.DecodeCommand(out.Bytes())
	if err != nil || cmd.CommandUUID != "U1" {
		t.Errorf("decoded %+v, %v", cmd, err)
	}
}
