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
// and fails if the committed mdm/testdata or commands spec table
// differs.
func TestGeneratedUpToDate(t *testing.T) {
	root, schemas := schemaDirOrSkip(t)
	out := t.TempDir()
	specs := filepath.Join(out, "specs_gen.go")
	if err := run(schemas, out, specs); err != nil {
		t.Fatal(err)
	}
	for _, f := range []struct{ fresh, committed string }{
		{filepath.Join(out, checkinOutput), filepath.Join(root, "mdm", "testdata", checkinOutput)},
		{filepath.Join(out, commandOutput), filepath.Join(root, "mdm", "testdata", commandOutput)},
		{specs, filepath.Join(root, filepath.FromSlash(specsOutput))},
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
	for name, keys := range map[string][]Key{
		"unknown type":     {{Key: "A", Type: "<set>"}},
		"unknown presence": {{Key: "A", Type: "<string>", Presence: "sometimes"}},
		"no name":          {{Type: "<string>"}},
		"duplicate":        {{Key: "A", Type: "<string>"}, {Key: "A", Type: "<data>"}},
		"scalar subkeys":   {{Key: "A", Type: "<integer>", Subkeys: []Key{{Key: "B", Type: "<string>"}}}},
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
		"tvOS":    {Platform: Platform{Introduced: "10.2"}},
		"watchOS": {Platform: Platform{Introduced: "n/a"}, UserChannel: new(true)},
		"macOS":   {Platform: Platform{Introduced: "10.7"}, DeviceChannel: &no, UserEnrollment: &yamlModeSpec{Mode: "allowed"}},
	})
	if want := []string{"Device"}; !slices.Equal(got, want) {
		t.Errorf("channels = %q, want %q", got, want)
	}
	if got := channels(nil); len(got) != 0 {
		t.Errorf("channels(nil) = %q, want none", got)
	}
}

// TestRenderSpecsRejects checks that key shapes package commands' Spec
// cannot carry faithfully fail loudly instead of producing a table that
// validates the wrong thing.
func TestRenderSpecsRejects(t *testing.T) {
	one := 1.0
	for name, key := range map[string]Key{
		"rangelist of the wrong type": {Key: "A", Type: "<integer>", RangeList: []any{"x"}},
		"fractional integer value":    {Key: "A", Type: "<integer>", RangeList: []any{1.5}},
		"rangelist on a date":         {Key: "A", Type: "<date>", RangeList: []any{"2020-01-01"}},
		"rangelist on a dictionary":   {Key: "A", Type: "<dictionary>", RangeList: []any{1}},
		"range on a string":           {Key: "A", Type: "<string>", Range: &Range{Min: &one}},
		"rangelist and subkeys":       {Key: "A", Type: "<string>", RangeList: []any{"x"}, Subkeys: []Key{{Key: "y", Type: "<string>"}}},
		"nested string subkeys":       {Key: "A", Type: "<string>", Subkeys: []Key{{Key: "y", Type: "<string>", Subkeys: []Key{{Key: "z", Type: "<string>"}}}}},
	} {
		if _, err := renderSpecs([]Schema{{RequestType: "Test", PayloadKeys: []Key{key}}}); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
	ok := []Key{
		{Key: "I", Type: "<integer>", Presence: "required", RangeList: []any{1, 2.0}},
		{Key: "R", Type: "<real>", RangeList: []any{1, 0.5}, Range: &Range{Min: &one}},
		{Key: "S", Type: "<string>", Subkeys: []Key{{Key: "x", Type: "<string>"}}},
		{Key: "L", Type: "<array>", Subkeys: []Key{{Key: "Item", Type: "<string>", Presence: "required"}}},
	}
	src, err := renderSpecs([]Schema{{RequestType: "Test", PayloadKeys: ok}})
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		`{Name: "I", Type: "integer", Required: true, AllowedValues: []any{int64(1), int64(2)}}`,
		`{Name: "R", Type: "real", AllowedValues: []any{float64(1), float64(0.5)}, Min: bound(float64(1))}`,
		`{Name: "S", Type: "string", AllowedValues: []any{"x"}}`,
		`{Name: "Item", Type: "string"}`, // an item's presence means nothing
	} {
		if !bytes.Contains(src, []byte(want)) {
			t.Errorf("no %s in\n%s", want, src)
		}
	}
}
