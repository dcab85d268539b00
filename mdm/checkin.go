package mdm

import (
	"errors"
	"fmt"
	"reflect"
)

// The check-in MessageType values PicoMDM understands, from Apple's check-in
// protocol documentation.
const (
	MessageAuthenticate          = "Authenticate"
	MessageTokenUpdate           = "TokenUpdate"
	MessageCheckOut              = "CheckOut"
	MessageUserAuthenticate      = "UserAuthenticate"
	MessageSetBootstrapToken     = "SetBootstrapToken"
	MessageGetBootstrapToken     = "GetBootstrapToken"
	MessageDeclarativeManagement = "DeclarativeManagement"
	MessageGetToken              = "GetToken"
)

// MessageTypes lists every check-in MessageType PicoMDM decodes.
var MessageTypes = []string{
	MessageAuthenticate, MessageTokenUpdate, MessageCheckOut, MessageUserAuthenticate,
	MessageSetBootstrapToken, MessageGetBootstrapToken, MessageDeclarativeManagement, MessageGetToken,
}

// ErrUnknownMessageType is wrapped by DecodeCheckin for a MessageType it does
// not know.
var ErrUnknownMessageType = errors.New("mdm: unknown check-in MessageType")

// ParseError says a request body could not be decoded. Devices get a 400
// for it.
type ParseError struct {
	// What names what was being decoded, e.g. "check-in".
	What string
	Err  error
}

// Error implements error.
func (e *ParseError) Error() string { return fmt.Sprintf("mdm: decoding %s: %v", e.What, e.Err) }

// Unwrap returns the underlying error.
func (e *ParseError) Unwrap() error { return e.Err }

// MessageType is the key every check-in message carries.
type MessageType struct {
	MessageType string
}

// Raw keeps the bytes a message was decoded from.
type Raw struct {
	Raw []byte `plist:"-"`
}

// Authenticate is the first message of an enrollment: Apple's
// "Authenticate" check-in message.
type Authenticate struct {
	Enrollment
	MessageType
	Topic        string
	BuildVersion string `plist:",omitempty"`
	DeviceName   string `plist:",omitempty"`
	IMEI         string `plist:",omitempty"`
	MEID         string `plist:",omitempty"`
	Model        string `plist:",omitempty"`
	ModelName    string `plist:",omitempty"`
	OSVersion    string `plist:",omitempty"`
	ProductName  string `plist:",omitempty"`
	SerialNumber string `plist:",omitempty"`
	Raw
}

// Push holds what APNs needs to wake an enrollment.
type Push struct {
	PushMagic string
	Token     []byte
	Topic     string
}

// TokenUpdate carries a channel's push token: Apple's "TokenUpdate"
// check-in message.
type TokenUpdate struct {
	Enrollment
	MessageType
	Push
	UnlockToken           []byte `plist:",omitempty"`
	AwaitingConfiguration bool   `plist:",omitempty"`
	NotOnConsole          bool   `plist:",omitempty"`
	Raw
}

// CheckOut says the device removed its MDM profile: Apple's "CheckOut"
// check-in message.
type CheckOut struct {
	Enrollment
	MessageType
	Topic string `plist:",omitempty"`
	Raw
}

// UserAuthenticate asks whether a network user may get a user channel:
// Apple's "UserAuthenticate" check-in message.
type UserAuthenticate struct {
	Enrollment
	MessageType
	DigestResponse string `plist:",omitempty"`
	Raw
}

// SetBootstrapToken escrows the device's bootstrap token: Apple's
// "SetBootstrapToken" check-in message.
type SetBootstrapToken struct {
	Enrollment
	MessageType
	BootstrapToken        []byte `plist:",omitempty"`
	AwaitingConfiguration bool   `plist:",omitempty"`
	Raw
}

// GetBootstrapToken asks for the escrowed bootstrap token: Apple's
// "GetBootstrapToken" check-in message.
type GetBootstrapToken struct {
	Enrollment
	MessageType
	AwaitingConfiguration bool `plist:",omitempty"`
	Raw
}

// BootstrapToken is the answer to GetBootstrapToken.
type BootstrapToken struct {
	BootstrapToken []byte
}

// DeclarativeManagement carries a Declarative Device Management request:
// Apple's "DeclarativeManagement" check-in message.
type DeclarativeManagement struct {
	Enrollment
	MessageType
	Endpoint string
	Data     []byte `plist:",omitempty"`
	Raw
}

// GetToken asks the server for a token of some service type: Apple's
// "GetToken" check-in message.
type GetToken struct {
	Enrollment
	MessageType
	TokenServiceType string
	TokenParameters  map[string]interface{} `plist:",omitempty"`
	Raw
}

// GetTokenResponse is the answer to GetToken.
type GetTokenResponse struct {
	TokenData []byte
}

// Checkin is implemented by every decoded check-in message.
type Checkin interface {
	// EnrollmentKeys returns the message's identifying keys.
	EnrollmentKeys() *Enrollment
	// Type returns the MessageType.
	Type() string
	// RawBytes returns the bytes the message was decoded from.
	RawBytes() []byte
}

// EnrollmentKeys implements Checkin.
func (e *Enrollment) EnrollmentKeys() *Enrollment { return e }

// Type implements Checkin.
func (m *MessageType) Type() string { return m.MessageType }

// RawBytes implements Checkin.
func (r *Raw) RawBytes() []byte { return r.Raw }

// newCheckin returns an empty message of the given MessageType.
func newCheckin(messageType string) (Checkin, error) {
	switch messageType {
	case MessageAuthenticate:
		return new(Authenticate), nil
	case MessageTokenUpdate:
		return new(TokenUpdate), nil
	case MessageCheckOut:
		return new(CheckOut), nil
	case MessageUserAuthenticate:
		return new(UserAuthenticate), nil
	case MessageSetBootstrapToken:
		return new(SetBootstrapToken), nil
	case MessageGetBootstrapToken:
		return new(GetBootstrapToken), nil
	case MessageDeclarativeManagement:
		return new(DeclarativeManagement), nil
	case MessageGetToken:
		return new(GetToken), nil
	}
	return nil, fmt.Errorf("%w: %q", ErrUnknownMessageType, messageType)
}

// DecodeCheckin decodes a check-in request body into one of the message
// types above (always a pointer), keeping raw as its Raw bytes. An
// undecodable body or unknown MessageType is a *ParseError.
func DecodeCheckin(raw []byte) (Checkin, error) {
	if msg, done, err := decodeCheckinXML(raw); done || err != nil {
		return msg, err
	}
	return decodeCheckinPlist(raw)
}

// decodeCheckinPlist is DecodeCheckin with github.com/micromdm/plist.
func decodeCheckinPlist(raw []byte) (Checkin, error) {
	var d checkinDecoder
	if err := unmarshalPlist(raw, &d); err != nil {
		what := "check-in"
		if d.msg != nil {
			what += " " + d.msg.Type()
		}
		return nil, &ParseError{What: what, Err: err}
	}
	setRaw(d.msg, raw)
	return d.msg, nil
}

// decodeCheckinXML is DecodeCheckin's fast path for XML (see
// xmlplist.go): the document is scanned once, read for its MessageType,
// then into the message type it names. It reports whether it decoded raw;
// if not, and without an error, raw is for micromdm/plist to decode.
func decodeCheckinXML(raw []byte) (msg Checkin, done bool, err error) {
	if isBinaryPlist(raw) {
		return nil, false, nil
	}
	d := getXMLDoc()
	defer putXMLDoc(d)
	switch d.scan(raw) {
	case tooDeep:
		return nil, false, &ParseError{What: "check-in", Err: fmt.Errorf("%w: deeper than %d", errXMLTooDeep, plistMaxDepth)}
	case unsupported:
		return nil, false, nil
	}
	var mt MessageType
	if !d.decodeRoot(reflect.ValueOf(&mt).Elem()) {
		return nil, false, nil
	}
	msg, err = newCheckin(mt.MessageType)
	if err != nil {
		return nil, false, &ParseError{What: "check-in", Err: err}
	}
	if !d.decodeRoot(reflect.ValueOf(msg).Elem()) {
		return nil, false, nil
	}
	setRaw(msg, raw)
	return msg, true, nil
}

// checkinDecoder decodes a check-in in one parse of the body: the plist
// decoder hands UnmarshalPlist the parsed document, which is read once for
// its MessageType and once more into the message type it names. Parsing
// is what costs (XML in particular); the second read only walks the parsed
// values.
type checkinDecoder struct {
	msg Checkin
}

// UnmarshalPlist implements plist.Unmarshaler.
func (d *checkinDecoder) UnmarshalPlist(decode func(any) error) error {
	var mt MessageType
	if err := decode(&mt); err != nil {
		return err
	}
	msg, err := newCheckin(mt.MessageType)
	if err != nil {
		return err
	}
	// Set before decoding, so that a failure names the MessageType.
	d.msg = msg
	return decode(msg)
}

func setRaw(msg Checkin, raw []byte) {
	if r, ok := msg.(interface{ setRawBytes([]byte) }); ok {
		r.setRawBytes(raw)
	}
}

func (r *Raw) setRawBytes(b []byte) { r.Raw = b }
