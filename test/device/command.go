package device

import (
	"context"
	"errors"
	"fmt"
	"maps"

	"github.com/micromdm/plist"
	"github.com/picomdm/picomdm/mdm"
)

// Command is a command the server handed out in answer to a report.
type Command struct {
	CommandUUID string
	RequestType string
	// Raw is the command plist exactly as the server sent it.
	Raw []byte
}

// Decode unmarshals the raw command plist into v.
func (c *Command) Decode(v any) error { return plist.Unmarshal(c.Raw, v) }

// ErrDrainLimit is returned by Drain when the server keeps handing out
// commands beyond the device's drain limit.
var ErrDrainLimit = errors.New("device: drain limit reached")

// AnswerFunc decides how a device answers a command: the report Status
// and any keys to add to the report (ErrorChain, query responses, …).
type AnswerFunc func(*Command) (status string, extra map[string]any)

// Answer returns an AnswerFunc that answers every command with status and
// no extra keys.
func Answer(status string) AnswerFunc {
	return func(*Command) (string, map[string]any) { return status, nil }
}

// ErrorChain returns report keys for a Status of Error: an ErrorChain with
// one entry.
func ErrorChain(code int, domain, description string) map[string]any {
	return map[string]any{"ErrorChain": []mdm.ErrorChainItem{{
		ErrorCode:            code,
		ErrorDomain:          domain,
		LocalizedDescription: description,
		USEnglishDescription: description,
	}}}
}

// Idle sends an Idle report, as a device does when woken by a push, and
// returns the next command, or nil if the server answered with an empty
// body.
func (d *Device) Idle(ctx context.Context) (*Command, error) {
	return d.Report(ctx, "", mdm.StatusIdle, nil)
}

// Report sends a command report for commandUUID with status (Acknowledged,
// Error, NotNow, CommandFormatError, …) plus the keys in extra, and
// returns the next command, or nil if the server answered with an empty
// body.
func (d *Device) Report(ctx context.Context, commandUUID, status string, extra map[string]any) (*Command, error) {
	body, err := d.reportBody(commandUUID, status, extra)
	if err != nil {
		return nil, err
	}
	resp, err := d.exchange(ctx, d.ServerURL, ContentTypeReport, body)
	if err != nil {
		return nil, fmt.Errorf("report %s %s: %w", status, d.ID(), err)
	}
	if len(resp) == 0 {
		return nil, nil
	}
	cmd, err := mdm.DecodeCommand(resp)
	if err != nil {
		return nil, fmt.Errorf("report %s %s: server answered with a bad command: %w", status, d.ID(), err)
	}
	return &Command{CommandUUID: cmd.CommandUUID, RequestType: cmd.RequestType(), Raw: resp}, nil
}

// reportBody encodes a command report; extra keys are merged in through a
// map, since mdm.CommandResults only knows the common ones.
func (d *Device) reportBody(commandUUID, status string, extra map[string]any) ([]byte, error) {
	body, err := plist.Marshal(&mdm.CommandResults{
		Enrollment:  d.enrollment(),
		CommandUUID: commandUUID,
		Status:      status,
	})
	if err != nil || len(extra) == 0 {
		if err != nil {
			err = fmt.Errorf("device: encoding report: %w", err)
		}
		return body, err
	}
	var report map[string]any
	if err := plist.Unmarshal(body, &report); err != nil {
		return nil, fmt.Errorf("device: encoding report: %w", err)
	}
	maps.Copy(report, extra)
	if body, err = plist.Marshal(report); err != nil {
		return nil, fmt.Errorf("device: encoding report: %w", err)
	}
	return body, nil
}

// Drain empties the channel's queue the way a device does after a push:
// it sends Idle, answers each command it gets with what answer returns
// (Acknowledged if answer is nil), and stops when the server answers with
// an empty body. It returns the commands received, in order; after more
// than the drain limit it stops with ErrDrainLimit.
func (d *Device) Drain(ctx context.Context, answer func(*Command) (status string, extra map[string]any)) ([]*Command, error) {
	if answer == nil {
		answer = Answer(mdm.StatusAcknowledged)
	}
	var received []*Command
	cmd, err := d.Idle(ctx)
	for err == nil && cmd != nil {
		if len(received) >= d.drainLimit {
			return received, fmt.Errorf("%s: %w (%d commands)", d.ID(), ErrDrainLimit, d.drainLimit)
		}
		received = append(received, cmd)
		status, extra := answer(cmd)
		cmd, err = d.Report(ctx, cmd.CommandUUID, status, extra)
	}
	return received, err
}
