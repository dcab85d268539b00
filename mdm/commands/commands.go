// Package commands knows every MDM command Apple documents: its
// RequestType, platforms and typed payload keys, generated from Apple's
// device-management schemas (tools/schemagen). It validates a command given
// as JSON against that description and converts it to the command plist a
// device receives, and converts a device's result plist to JSON. The API
// (POST /v1/commands) and picocmd share it: one validator, one converter.
//
// # Validation
//
// FromJSON takes one JSON object: "RequestType" (a string naming a
// documented command, compared exactly, as Apple's RequestType is) and the
// command's keys. Every key must be one the schema lists for its
// dictionary; a dictionary's Key named "ANY…" accepts any other key name
// with its type, and a dictionary or an array for which Apple lists no
// keys at all takes any content (converted as <any>). Keys the schema
// marks required must be there. Values convert as follows:
//
//   - string: a JSON string. Strings (and key names) may not hold
//     characters XML cannot carry (controls other than tab, newline and
//     carriage return, U+FFFE, U+FFFF): a plist is XML, and the encoder
//     would silently replace them.
//   - integer: a JSON number written as an integer (no fraction, no
//     exponent: 1.0 and 1e3 are refused) that fits an int64; it becomes an
//     int64.
//   - real: any JSON number that fits a float64; it becomes a float64.
//   - boolean: true or false.
//   - date: an RFC 3339 string; it becomes a time.Time in UTC, truncated
//     to whole seconds (the precision of an XML plist date), in years 0 to
//     9999.
//   - data: a standard base64 string (RFC 4648 §4, padded or not; line
//     breaks are ignored; the URL-safe alphabet is refused); it becomes a
//     []byte.
//   - dictionary: a JSON object; it becomes a map[string]any.
//   - array: a JSON array; it becomes a []any whose items follow the
//     array's item Key. Where Apple lists several item types (Settings'
//     Settings, one dictionary per setting), the item type is chosen by
//     the key that every item type has as a required one-value string
//     enumeration (Settings' "Item"): an item without it is refused as
//     "required" at that key, an item with another value as outside the
//     enumeration. Item types without such a key are tried in order and
//     the first that accepts the item wins.
//   - any: any JSON value but null: numbers become int64 when written as
//     integers that fit, float64 otherwise; objects map[string]any;
//     arrays []any.
//
// JSON null is never a value. An enumerated key's value must be one of
// its AllowedValues, compared after conversion; a <string> for which
// Apple lists subkeys instead of a rangelist (DeviceInformation's Queries
// items, the names of the queries) is an enumeration of those names too.
// A numeric key must lie within Min and Max when Apple gives them. A
// command nested deeper than MaxDepth levels, a duplicate key, and
// anything but exactly one JSON object are refused.
//
// Every violation is a *PathError whose Path names the key from
// "command": dictionary keys as ".Name" (or `["name"]` for a name that is
// not letters, digits, '_' and '-'), array items as "[i]", e.g.
// "command.Settings[2].Item: required".
package commands

import (
	"encoding/json"
	"errors"
	"github.com/picomdm/picomdm/mdm"
	"slices"
)

// Spec is the machine-readable description of one command RequestType,
// as GET /v1/commands/schema serves it.
type Spec struct {
	// RequestType is the command's Command.RequestType.
	RequestType string `json:"request_type"`
	// Title is Apple's title of the command.
	Title string `json:"title,omitempty"`
	// Channels lists the enrollment types the command can be sent on.
	Channels []string `json:"channels,omitempty"`
	// Platforms lists the operating systems that support it.
	Platforms []Platform `json:"platforms,omitempty"`
	// Keys are the command's payload keys (next to RequestType in the
	// Command dictionary), sorted by name.
	Keys []Key `json:"keys"`
}

// Platform is one operating system that supports a command.
type Platform struct {
	OS           string `json:"os"`
	Introduced   string `json:"introduced"`
	Deprecated   string `json:"deprecated,omitempty"`
	Removed      string `json:"removed,omitempty"`
	Supervised   bool   `json:"supervised,omitempty"`
	RequiresDEP  bool   `json:"requires_dep,omitempty"`
	AccessRights string `json:"access_rights,omitempty"`
}

// Key is one typed payload key.
type Key struct {
	// Name is the key's name; in an array's Keys it names the item type,
	// and a name starting with "ANY" stands for any key name.
	Name string `json:"name"`
	// Type is the plist type without brackets: string, integer, real,
	// boolean, date, data, dictionary, array or any.
	Type string `json:"type"`
	// Required says the key must be present.
	Required bool `json:"required,omitempty"`
	// AllowedValues lists the values an enumerated key may take.
	AllowedValues []any `json:"allowed_values,omitempty"`
	// Min and Max bound a numeric key (inclusive), when Apple does.
	Min *float64 `json:"min,omitempty"`
	Max *float64 `json:"max,omitempty"`
	// Keys are a dictionary's keys or an array's item type.
	Keys []Key `json:"keys,omitempty"`
}

// ErrUnknownRequestType is wrapped by the errors for a RequestType Apple
// does not document.
var ErrUnknownRequestType = errors.New("unknown RequestType")

// PathError is a command that breaks its schema, naming where: Path is
// the key path from the command object, e.g. "command.Settings[2].Item",
// and Reason what is wrong, e.g. "required". Its text is
// "command.Settings[2].Item: required".
type PathError struct {
	Path   string
	Reason string
	// err is what the error wraps (ErrUnknownRequestType), if anything.
	err error
}

// Error implements error.
func (e *PathError) Error() string { return e.Path + ": " + e.Reason }

// Unwrap returns the error e wraps: ErrUnknownRequestType for a
// RequestType Apple does not document, nil otherwise.
func (e *PathError) Unwrap() error { return e.err }

// MaxDepth is how deeply FromJSON lets a command nest: the command object
// is level 1, each dictionary or array inside it one more. Apple's
// deepest command (Settings) nests 5 levels before its <any> values.
const MaxDepth = 32

// Specs returns every command Apple documents, sorted by RequestType.
// The Specs share their Keys with the package: do not modify them.
func Specs() []Spec { return slices.Clone(specs) }

// Lookup returns the Spec of requestType.
// It is shared with the package: do not modify it.
func Lookup(requestType string) (*Spec, bool) {
	n, ok := defaultCatalog().lookup(requestType)
	if !ok {
		return nil, false
	}
	return n.spec, true
}

// FromJSON validates command, a JSON object with Apple's key names
// ({"RequestType": "InstallProfile", "Payload": "<base64>", …}), against
// its RequestType's schema and converts its values to plist types (data
// from base64, dates from RFC 3339, integer vs real, nested dictionaries
// and arrays). Every violation is a *PathError (ErrUnknownRequestType
// wrapped in one for an undocumented RequestType).
func FromJSON(command json.RawMessage) (requestType string, dict map[string]any, err error) {
	return defaultCatalog().fromJSON(command)
}

// Plist encodes the command plist a device receives: {CommandUUID,
// Command: dict}, where dict is what FromJSON returned (RequestType
// included).
//
// The plist is XML with Apple's header, tab-indented. A commandUUID
// mdm.CheckCommandUUID refuses is an error wrapping its
// *mdm.InvalidIDError (errors.Is mdm.ErrInvalidID); a dict without a
// string RequestType, one wrapping mdm.ErrNoRequestType.
func Plist(commandUUID string, dict map[string]any) ([]byte, error) {
	return encodeCommand(commandUUID, dict)
}

// BuildJSON is FromJSON then Plist; an empty commandUUID gets a fresh
// random one, which it returns.
// The fresh UUID is a random (version 4) UUID in upper case, the
// spelling of Apple's examples.
func BuildJSON(command json.RawMessage, commandUUID string) (raw []byte, uuid, requestType string, err error) {
	requestType, dict, err := FromJSON(command)
	if err != nil {
		return nil, "", "", err
	}
	if commandUUID == "" {
		commandUUID = mdm.NewUUID()
	}
	raw, err = Plist(commandUUID, dict)
	if err != nil {
		return nil, "", "", err
	}
	return raw, commandUUID, requestType, nil
}

// ResultJSON converts a device's result plist to JSON: data as base64,
// dates as RFC 3339, every other type as its JSON counterpart.
//
// The plist (XML or binary) comes from a device, so it goes through the
// hardened decoder a device's report goes through (mdm.DecodeCommandResults:
// bounded depth, binary object graphs checked before decoding) and must be
// a command report, with a Status; anything else is an error. Dates are
// RFC 3339 in UTC, with the fraction of a second a binary plist may carry;
// a real that is NaN or infinite, which JSON cannot spell, becomes the
// string "nan", "inf" or "-inf", as XML plists write them. A binary
// plist's integers are read as signed 64-bit ones, as Apple writes
// negative numbers (micromdm/plist reads them unsigned). Object keys are
// sorted.
func ResultJSON(plist []byte) ([]byte, error) { return resultJSON(plist) }
