package main

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// schemaDirOrSkip finds the shared schemas the way the generator does,
// skipping the test when this checkout has none beside it.
func schemaDirOrSkip(t *testing.T) (root, schemas string) {
	t.Helper()
	root, err := findRepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	schemas, err = findSchemaDir(root)
	if errors.Is(err, errNoSchemas) {
		t.Skipf("skipping: Apple's schemas (%s) are not beside this checkout, so the generated test data cannot be checked", schemaSubdir)
	}
	if err != nil {
		t.Fatal(err)
	}
	return root, schemas
}

// TestGeneratedUpToDate re-runs the generator into a temporary directory
// and fails if the committed mdm/testdata or picocmd table differs.
func TestGeneratedUpToDate(t *testing.T) {
	root, schemas := schemaDirOrSkip(t)
	out := t.TempDir()
	table := filepath.Join(out, "commands_gen.go")
	if err := run(schemas, out, table); err != nil {
		t.Fatal(err)
	}
	for _, f := range []struct{ fresh, committed string }{
		{filepath.Join(out, checkinOutput), filepath.Join(root, "mdm", "testdata", checkinOutput)},
		{filepath.Join(out, commandOutput), filepath.Join(root, "mdm", "testdata", commandOutput)},
		{table, filepath.Join(root, filepath.FromSlash(tableOutput))},
	} {
		want, err := os.ReadFile(f.fresh)
		if err != nil {
			t.Fatal(err)
		}
		committed := f.committed
		got, err := os.ReadFile(committed)
		if err != nil {
			t.Fatalf("%v (run: go generate ./mdm)", err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s is stale: run `go generate ./mdm` and commit the result", committed)
		}
	}
}

// TestRenderDeterministic checks that two runs give identical bytes (map
// iteration in the YAML must not leak into the output).
func TestRenderDeterministic(t *testing.T) {
	_, schemas := schemaDirOrSkip(t)
	first, err := render(schemas)
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		again, err := render(schemas)
		if err != nil {
			t.Fatal(err)
		}
		for name, b := range first {
			if !bytes.Equal(b, again[name]) {
				t.Fatalf("%s differs between runs", name)
			}
		}
	}
}

// TestCheckinModel spot-checks the model against facts of Apple's
// check-in protocol that DESIGN.md relies on.
func TestCheckinModel(t *testing.T) {
	_, schemas := schemaDirOrSkip(t)
	checkins, err := loadDir(filepath.Join(schemas, "mdm", "checkin"))
	if err != nil {
		t.Fatal(err)
	}
	byType := map[string]Schema{}
	for _, s := range checkins {
		byType[s.RequestType] = s
	}
	for _, mt := range []string{"Authenticate", "TokenUpdate", "CheckOut", "UserAuthenticate", "SetBootstrapToken", "GetBootstrapToken", "DeclarativeManagement", "GetToken"} {
		if _, ok := byType[mt]; !ok {
			t.Errorf("no schema for check-in %s", mt)
		}
	}
	tests := []struct {
		messageType string
		channels    []string
		key, typ    string
	}{
		{"Authenticate", []string{"Device", "User Enrollment (Device)"}, "Topic", "<string>"},
		{"TokenUpdate", []string{"Device", "User", "Shared iPad", "User Enrollment (Device)", "User Enrollment"}, "Token", "<data>"},
		{"UserAuthenticate", []string{"User"}, "DigestResponse", "<string>"},
		{"SetBootstrapToken", []string{"Device"}, "BootstrapToken", "<data>"},
		{"GetToken", []string{"Device", "User", "Shared iPad", "User Enrollment (Device)", "User Enrollment"}, "TokenParameters", "<dictionary>"},
	}
	for _, tt := range tests {
		s := byType[tt.messageType]
		if !slices.Equal(s.Channels, tt.channels) {
			t.Errorf("%s channels = %q, want %q", tt.messageType, s.Channels, tt.channels)
		}
		i := slices.IndexFunc(s.PayloadKeys, func(k Key) bool { return k.Key == tt.key })
		if i < 0 {
			t.Errorf("%s has no key %s", tt.messageType, tt.key)
			continue
		}
		if got := s.PayloadKeys[i].Type; got != tt.typ {
			t.Errorf("%s.%s type = %s, want %s", tt.messageType, tt.key, got, tt.typ)
		}
	}
	// Response keys must not leak into the request model.
	for _, k := range byType["GetToken"].PayloadKeys {
		if k.Key == "TokenData" {
			t.Error("GetToken's response key TokenData is listed as a payload key")
		}
	}
}

// TestConvertKeysRejects checks that schema shapes the model cannot carry
// fail loudly instead of producing wrong test data.
func TestConvertKeysRejects(t *testing.T) {
	for name, keys := range map[string][]yamlKey{
		"unknown type":     {{Key: "A", Type: "<set>"}},
		"unknown presence": {{Key: "A", Type: "<string>", Presence: "sometimes"}},
		"no name":          {{Type: "<string>"}},
		"duplicate":        {{Key: "A", Type: "<string>"}, {Key: "A", Type: "<data>"}},
		"scalar subkeys":   {{Key: "A", Type: "<integer>", Subkeys: []yamlKey{{Key: "B", Type: "<string>"}}}},
	} {
		if _, err := convertKeys(keys, "Test"); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

// TestChannelsDefaults checks the supportedOS conventions channels relies
// on: no entry or n/a means unsupported, devicechannel defaults to true.
func TestChannelsDefaults(t *testing.T) {
	no := false
	got := channels(map[string]yamlOSSupport{
		"tvOS":    {Introduced: "10.2"},
		"watchOS": {Introduced: "n/a", UserChannel: new(true)},
		"macOS":   {Introduced: "10.7", DeviceChannel: &no, UserEnrollment: &yamlModeSpec{Mode: "allowed"}},
	})
	if want := []string{"Device"}; !slices.Equal(got, want) {
		t.Errorf("channels = %q, want %q", got, want)
	}
	if got := channels(nil); len(got) != 0 {
		t.Errorf("channels(nil) = %q, want none", got)
	}
}
