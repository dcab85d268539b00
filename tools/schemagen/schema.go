package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/picomdm/picomdm/mdm"
)

// yamlSchema is one file of Apple's device-management schemas: a check-in
// message or a command. Only the parts PicoMDM uses are decoded; response
// keys are ignored (they describe what a device answers, not what it is
// sent or sends in the request). Its keys decode straight into the model's
// Key, which convertKeys then checks and tidies.
type yamlSchema struct {
	Title   string `yaml:"title"`
	Payload struct {
		RequestType string                   `yaml:"requesttype"`
		SupportedOS map[string]yamlOSSupport `yaml:"supportedOS"`
	} `yaml:"payload"`
	PayloadKeys []Key `yaml:"payloadkeys"`
}

// yamlOSSupport is one OS entry of a payload's supportedOS: the model's
// Platform (but its OS, the entry's name) and the channel rules.
type yamlOSSupport struct {
	Platform       `yaml:",inline"`
	DeviceChannel  *bool         `yaml:"devicechannel"`
	UserChannel    *bool         `yaml:"userchannel"`
	SharedIPad     *yamlModeSpec `yaml:"sharedipad"`
	UserEnrollment *yamlModeSpec `yaml:"userenrollment"`
}

// yamlModeSpec is a sharedipad or userenrollment block.
type yamlModeSpec struct {
	Mode          string `yaml:"mode"`
	DeviceChannel *bool  `yaml:"devicechannel"`
	UserChannel   *bool  `yaml:"userchannel"`
}

// Schema is the generator's model of one check-in message or command: its
// request type (the check-in MessageType or the command's RequestType), the
// channels and platforms it exists on, and its typed payload keys.
type Schema struct {
	// Title is Apple's title of the message or command.
	Title string
	// RequestType is payload.requesttype: a MessageType for check-ins, a
	// Command.RequestType for commands.
	RequestType string
	// File is the schema's file name, for finding the source.
	File string
	// Channels lists the enrollment types (mdm.EnrollType spellings) the
	// message or command can travel on, in a fixed order.
	Channels []string
	// Platforms lists the operating systems that support it, sorted.
	Platforms []Platform
	// PayloadKeys are the request's keys, sorted by name at every level.
	PayloadKeys []Key
}

// Platform is one operating system that supports a message or command.
type Platform struct {
	// OS is Apple's OS name: iOS, macOS, tvOS, visionOS or watchOS.
	OS string `json:"os" yaml:"-"`
	// Introduced is the first OS version that supports it.
	Introduced string `json:"introduced" yaml:"introduced"`
	// Deprecated and Removed are OS versions, when Apple names them.
	Deprecated string `json:"deprecated,omitempty" yaml:"deprecated"`
	Removed    string `json:"removed,omitempty" yaml:"removed"`
	// Supervised says the device must be supervised.
	Supervised bool `json:"supervised,omitempty" yaml:"supervised"`
	// RequiresDEP says the device must be enrolled through Automated
	// Device Enrollment.
	RequiresDEP bool `json:"requires_dep,omitempty" yaml:"requiresdep"`
	// AccessRights names the MDM access right a command needs.
	AccessRights string `json:"access_rights,omitempty" yaml:"accessrights"`
}

// Key is one typed payload key, as the schemas spell it (yaml) and as the
// generated JSON does.
type Key struct {
	// Key is the key's name. In an array's subkeys it names the item type;
	// a name starting with "ANY" stands for any key.
	Key string `json:"key" yaml:"key"`
	// Title is Apple's short title of the key, when it has one.
	Title string `json:"title,omitempty" yaml:"title"`
	// Type is the plist type: <string>, <data>, <boolean>, <integer>,
	// <dictionary>, <array>, <date>, <real> or <any>.
	Type string `json:"type" yaml:"type"`
	// Presence is required or optional (empty for array item types).
	Presence string `json:"presence,omitempty" yaml:"presence"`
	// Default is the value a device assumes when the key is absent.
	Default any `json:"default,omitempty" yaml:"default"`
	// RangeList lists the allowed values, when the key is an enumeration.
	RangeList []any `json:"rangelist,omitempty" yaml:"rangelist"`
	// Range bounds a numeric key.
	Range *Range `json:"range,omitempty" yaml:"range"`
	// SubkeyType names a dictionary's shape, when Apple names it.
	SubkeyType string `json:"subkey_type,omitempty" yaml:"subkeytype"`
	// Content is Apple's description of the key.
	Content string `json:"content,omitempty" yaml:"content"`
	// Subkeys are a dictionary's keys, an array's item type(s), or, for a
	// <string>, the names it may take (DeviceInformation's queries).
	Subkeys []Key `json:"subkeys,omitempty" yaml:"subkeys"`
}

// Range bounds a numeric key.
type Range struct {
	// Min and Max are the inclusive bounds, when Apple gives them.
	Min *float64 `json:"min,omitempty" yaml:"min"`
	Max *float64 `json:"max,omitempty" yaml:"max"`
}

// knownTypes are the plist types a schema key may have.
var knownTypes = map[string]bool{
	"<string>": true, "<data>": true, "<boolean>": true, "<integer>": true,
	"<dictionary>": true, "<array>": true, "<date>": true, "<real>": true,
	"<any>": true,
}

// loadDir reads every *.yaml schema of dir, sorted by request type (then
// file name, for the one request type that could repeat).
func loadDir(dir string) ([]Schema, error) {
	files, err := filepath.Glob(filepath.Join(dir, "*.yaml"))
	if err != nil {
		return nil, err
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("no *.yaml schemas in %s", dir)
	}
	schemas := make([]Schema, 0, len(files))
	for _, file := range files {
		s, err := loadFile(file)
		if err != nil {
			return nil, err
		}
		schemas = append(schemas, s)
	}
	slices.SortFunc(schemas, func(a, b Schema) int {
		if c := strings.Compare(a.RequestType, b.RequestType); c != 0 {
			return c
		}
		return strings.Compare(a.File, b.File)
	})
	for i := 1; i < len(schemas); i++ {
		if schemas[i].RequestType == schemas[i-1].RequestType {
			return nil, fmt.Errorf("%s and %s both define %q", schemas[i-1].File, schemas[i].File, schemas[i].RequestType)
		}
	}
	return schemas, nil
}

// loadFile reads one schema file into the model.
func loadFile(file string) (Schema, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return Schema{}, err
	}
	var y yamlSchema
	if err := yaml.Unmarshal(b, &y); err != nil {
		return Schema{}, fmt.Errorf("parsing %s: %w", file, err)
	}
	if y.Payload.RequestType == "" {
		return Schema{}, fmt.Errorf("%s: no payload.requesttype", file)
	}
	keys, err := convertKeys(y.PayloadKeys, y.Payload.RequestType)
	if err != nil {
		return Schema{}, fmt.Errorf("%s: %w", file, err)
	}
	return Schema{
		Title:       strings.TrimSpace(y.Title),
		RequestType: y.Payload.RequestType,
		File:        filepath.Base(file),
		Channels:    channels(y.Payload.SupportedOS),
		Platforms:   platforms(y.Payload.SupportedOS),
		PayloadKeys: keys,
	}, nil
}

// convertKeys validates keys as decoded and returns them tidied (titles
// and descriptions trimmed, no empty subkey lists), sorted by name.
func convertKeys(in []Key, path string) ([]Key, error) {
	out := make([]Key, 0, len(in))
	for _, k := range in {
		p := path + "." + k.Key
		if k.Key == "" {
			return nil, fmt.Errorf("%s: key without a name", path)
		}
		if !knownTypes[k.Type] {
			return nil, fmt.Errorf("%s: unknown type %q", p, k.Type)
		}
		if k.Presence != "" && k.Presence != "required" && k.Presence != "optional" {
			return nil, fmt.Errorf("%s: unknown presence %q", p, k.Presence)
		}
		// Subkeys belong to collections, except that Apple lists the
		// values of one string enumeration (DeviceInformation's
		// Queries items) as subkeys rather than as a rangelist.
		if len(k.Subkeys) > 0 && k.Type != "<dictionary>" && k.Type != "<array>" && k.Type != "<string>" {
			return nil, fmt.Errorf("%s: subkeys on a %s", p, k.Type)
		}
		subkeys, err := convertKeys(k.Subkeys, p)
		if err != nil {
			return nil, err
		}
		if len(subkeys) == 0 {
			subkeys = nil
		}
		k.Title, k.Content, k.Subkeys = strings.TrimSpace(k.Title), strings.TrimSpace(k.Content), subkeys
		out = append(out, k)
	}
	slices.SortStableFunc(out, func(a, b Key) int { return strings.Compare(a.Key, b.Key) })
	for i := 1; i < len(out); i++ {
		if out[i].Key == out[i-1].Key {
			return nil, fmt.Errorf("%s: key %q appears twice", path, out[i].Key)
		}
	}
	return out, nil
}

// available reports whether an OS entry says the OS supports the request.
func available(s yamlOSSupport) bool { return s.Introduced != "n/a" }

// modeAllows reports whether a sharedipad/userenrollment block allows the
// request in that mode. A missing block means the mode does not apply.
func modeAllows(m *yamlModeSpec) bool {
	return m != nil && (m.Mode == "allowed" || m.Mode == "required")
}

// isTrue reports whether an optional YAML boolean is present and true.
func isTrue(b *bool) bool { return b != nil && *b }

// channels derives the enrollment types a request can travel on from its
// supportedOS block, following Apple's conventions: the device channel is
// the default unless devicechannel is false; a user channel (macOS) needs
// userchannel true; a Shared iPad user channel needs sharedipad allowed with
// userchannel true; a User Enrollment needs userenrollment allowed, on the
// device channel (EnrollmentID) or on a user channel (EnrollmentUserID).
func channels(supported map[string]yamlOSSupport) []string {
	var device, user, sharedIPad, ueDevice, ueUser bool
	for _, s := range supported {
		if !available(s) {
			continue
		}
		deviceChannel := s.DeviceChannel == nil || *s.DeviceChannel
		device = device || deviceChannel
		user = user || isTrue(s.UserChannel)
		sharedIPad = sharedIPad || (modeAllows(s.SharedIPad) && isTrue(s.SharedIPad.UserChannel))
		if modeAllows(s.UserEnrollment) {
			ueDevice = ueDevice || deviceChannel
			ueUser = ueUser || isTrue(s.UserChannel)
		}
	}
	out := []string{}
	for _, c := range []struct {
		ok bool
		t  mdm.EnrollType
	}{
		{device, mdm.Device},
		{user, mdm.User},
		{sharedIPad, mdm.SharedIPad},
		{ueDevice, mdm.UserEnrollmentDevice},
		{ueUser, mdm.UserEnrollment},
	} {
		if c.ok {
			out = append(out, string(c.t))
		}
	}
	return out
}

// platforms lists the OSes that support a request, sorted by name.
func platforms(supported map[string]yamlOSSupport) []Platform {
	out := []Platform{}
	for name, s := range supported {
		if !available(s) {
			continue
		}
		p := s.Platform
		p.OS = name
		out = append(out, p)
	}
	slices.SortFunc(out, func(a, b Platform) int { return strings.Compare(a.OS, b.OS) })
	return out
}

// checkinFile is the layout of checkin_schemas.json.
type checkinFile struct {
	Comment  string       `json:"comment"`
	Messages []schemaJSON `json:"messages"`
}

// commandFile is the layout of command_schemas.json.
type commandFile struct {
	Comment  string       `json:"comment"`
	Commands []schemaJSON `json:"commands"`
}

// schemaJSON is one message or command in the output files: the check-in
// file names its request type message_type, the command file
// request_type, and leaves the other out.
type schemaJSON struct {
	Title       string     `json:"title"`
	MessageType string     `json:"message_type,omitempty"`
	RequestType string     `json:"request_type,omitempty"`
	File        string     `json:"file"`
	Channels    []string   `json:"channels"`
	Platforms   []Platform `json:"platforms"`
	PayloadKeys []Key      `json:"payload_keys"`
}

// generatedComment heads every output file.
const generatedComment = "Code generated by tools/schemagen from Apple's device-management schemas (%s); DO NOT EDIT."

// Output file names, written to the output directory.
const (
	checkinOutput = "checkin_schemas.json"
	commandOutput = "command_schemas.json"
)

// render builds the output files' contents from the schema directory,
// keyed by file name: the JSON test data by its name in mdm/testdata, the
// Go source by specsOutput (its path from the repository root).
func render(schemaDir string) (map[string][]byte, error) {
	checkins, err := loadDir(filepath.Join(schemaDir, "mdm", "checkin"))
	if err != nil {
		return nil, err
	}
	commands, err := loadDir(filepath.Join(schemaDir, "mdm", "commands"))
	if err != nil {
		return nil, err
	}
	cf := checkinFile{Comment: fmt.Sprintf(generatedComment, "mdm/checkin"), Messages: []schemaJSON{}}
	for _, s := range checkins {
		o := s.output()
		o.MessageType, o.RequestType = o.RequestType, ""
		cf.Messages = append(cf.Messages, o)
	}
	mf := commandFile{Comment: fmt.Sprintf(generatedComment, "mdm/commands"), Commands: []schemaJSON{}}
	for _, s := range commands {
		mf.Commands = append(mf.Commands, s.output())
	}
	specs, err := renderSpecs(commands)
	if err != nil {
		return nil, err
	}
	out := map[string][]byte{specsOutput: specs}
	for name, v := range map[string]any{checkinOutput: cf, commandOutput: mf} {
		b, err := marshal(v)
		if err != nil {
			return nil, fmt.Errorf("encoding %s: %w", name, err)
		}
		out[name] = b
	}
	return out, nil
}

// output converts the model to the command file's JSON layout (the
// check-in file only renames request_type to message_type).
func (s Schema) output() schemaJSON {
	keys := s.PayloadKeys
	if keys == nil {
		keys = []Key{}
	}
	return schemaJSON{
		Title:       s.Title,
		RequestType: s.RequestType,
		File:        s.File,
		Channels:    s.Channels,
		Platforms:   s.Platforms,
		PayloadKeys: keys,
	}
}

// marshal encodes v as indented JSON without HTML escaping (the schemas'
// descriptions are full of '<' and '&'), ending in a newline.
func marshal(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}
