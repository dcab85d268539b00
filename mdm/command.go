package mdm

import "errors"

// Command report Status values from Apple's command protocol.
const (
	StatusIdle               = "Idle"
	StatusAcknowledged       = "Acknowledged"
	StatusError              = "Error"
	StatusCommandFormatError = "CommandFormatError"
	StatusNotNow             = "NotNow"
)

// ErrorChainItem is one entry of a command report's ErrorChain.
type ErrorChainItem struct {
	ErrorCode            int    `plist:",omitempty"`
	ErrorDomain          string `plist:",omitempty"`
	LocalizedDescription string `plist:",omitempty"`
	USEnglishDescription string `plist:",omitempty"`
}

// CommandResults is a device's command report: the answer to a command
// (or Idle when it asks for work), with Apple's Status values.
type CommandResults struct {
	Enrollment
	CommandUUID  string           `plist:",omitempty"`
	Status       string           `plist:",omitempty"`
	ErrorChain   []ErrorChainItem `plist:",omitempty"`
	NotOnConsole bool             `plist:",omitempty"`
	Raw          []byte           `plist:"-"`
}

// EnrollmentKeys returns the report's identifying keys.
func (r *CommandResults) EnrollmentKeys() *Enrollment { return &r.Enrollment }

// ErrEmptyStatus is wrapped when a command report has no Status.
var ErrEmptyStatus = errors.New("mdm: command report has no Status")

// DecodeCommandResults decodes a command report body. A body that does not
// decode, has an empty Status, or a CommandUUID CheckCommandUUID refuses,
// is a *ParseError.
func DecodeCommandResults(raw []byte) (*CommandResults, error) {
	report := new(CommandResults)
	if err := unmarshal(raw, report); err != nil {
		return nil, &ParseError{What: "command report", Err: err}
	}
	if report.Status == "" {
		return nil, &ParseError{What: "command report", Err: ErrEmptyStatus}
	}
	// An empty CommandUUID is left to the service (Idle carries none).
	if report.CommandUUID != "" {
		if err := CheckCommandUUID(report.CommandUUID); err != nil {
			return nil, &ParseError{What: "command report", Err: err}
		}
	}
	report.Raw = raw
	return report, nil
}

// Command is a queued MDM command: its UUID, its RequestType and the raw
// plist exactly as it was enqueued (and will be delivered).
type Command struct {
	CommandUUID string
	Command     struct {
		RequestType string
	}
	Raw []byte `plist:"-"`
}

// RequestType returns the command's Command.RequestType.
func (c *Command) RequestType() string { return c.Command.RequestType }

// Errors DecodeCommand wraps for a command missing a required key.
var (
	ErrNoCommandUUID = errors.New("mdm: command has no CommandUUID")
	ErrNoRequestType = errors.New("mdm: command has no Command.RequestType")
)

// DecodeCommand decodes a raw command plist, requiring CommandUUID (one
// CheckCommandUUID accepts) and Command.RequestType. Failures are
// *ParseError.
func DecodeCommand(raw []byte) (*Command, error) {
	cmd := new(Command)
	if err := unmarshal(raw, cmd); err != nil {
		return nil, &ParseError{What: "command", Err: err}
	}
	if cmd.CommandUUID == "" {
		return nil, &ParseError{What: "command", Err: ErrNoCommandUUID}
	}
	if err := CheckCommandUUID(cmd.CommandUUID); err != nil {
		return nil, &ParseError{What: "command", Err: err}
	}
	if cmd.Command.RequestType == "" {
		return nil, &ParseError{What: "command", Err: ErrNoRequestType}
	}
	cmd.Raw = raw
	return cmd, nil
}

// CheckCommandUUID checks a CommandUUID from the wire (a device's report or
// an enqueued command): not empty, at most MaxIDBytes, valid UTF-8 without
// control characters. Failures are *InvalidIDError.
func CheckCommandUUID(uuid string) error { return checkIDPart("CommandUUID", uuid, true) }
