package service

import (
	"fmt"
	"log/slog"

	"github.com/micromdm/plist"
	pmlog "github.com/picomdm/picomdm/log"
	"github.com/picomdm/picomdm/mdm"
)

// resolve sets r.EnrollID from the message's identifying keys; a message
// without any is a parse error (400), like an undecodable body.
func resolve(r *mdm.Request, keys *mdm.Enrollment) error {
	id, err := keys.Resolve()
	if err != nil {
		return &mdm.ParseError{What: "enrollment ID", Err: err}
	}
	r.EnrollID = id
	// Every later log line of the request names the enrollment.
	r.Context = pmlog.With(r.Context, slog.String("enrollment_id", id.ID))
	return nil
}

// CheckinRequest decodes a check-in body, resolves its enrollment ID into r
// and dispatches it to svc. It returns the bytes to answer with (nil for an
// empty 200).
func CheckinRequest(svc Checkin, r *mdm.Request, body []byte) ([]byte, error) {
	msg, err := mdm.DecodeCheckin(body)
	if err != nil {
		return nil, err
	}
	if err := resolve(r, msg.EnrollmentKeys()); err != nil {
		return nil, err
	}
	return DispatchCheckin(svc, r, msg)
}

// DispatchCheckin calls the svc method for msg's type and returns the bytes
// to answer with. r.EnrollID must already be resolved.
func DispatchCheckin(svc Checkin, r *mdm.Request, msg mdm.Checkin) ([]byte, error) {
	switch m := msg.(type) {
	case *mdm.Authenticate:
		return nil, svc.Authenticate(r, m)
	case *mdm.TokenUpdate:
		return nil, svc.TokenUpdate(r, m)
	case *mdm.CheckOut:
		return nil, svc.CheckOut(r, m)
	case *mdm.UserAuthenticate:
		return svc.UserAuthenticate(r, m)
	case *mdm.SetBootstrapToken:
		return nil, svc.SetBootstrapToken(r, m)
	case *mdm.GetBootstrapToken:
		tok, err := svc.GetBootstrapToken(r, m)
		if err != nil || tok == nil {
			return nil, err
		}
		return marshal(tok)
	case *mdm.DeclarativeManagement:
		return svc.DeclarativeManagement(r, m)
	case *mdm.GetToken:
		tok, err := svc.GetToken(r, m)
		if err != nil || tok == nil {
			return nil, err
		}
		return marshal(tok)
	}
	return nil, &mdm.ParseError{What: "check-in", Err: fmt.Errorf("%w: %T", mdm.ErrUnknownMessageType, msg)}
}

// CommandReportRequest decodes a command report body, resolves its
// enrollment ID into r and passes it to svc. It returns the raw bytes of the
// next command, or nil for an empty 200.
func CommandReportRequest(svc CommandAndReportResults, r *mdm.Request, body []byte) ([]byte, error) {
	report, err := mdm.DecodeCommandResults(body)
	if err != nil {
		return nil, err
	}
	if err := resolve(r, report.EnrollmentKeys()); err != nil {
		return nil, err
	}
	if report.CommandUUID != "" {
		r.Context = pmlog.With(r.Context, slog.String("command_uuid", report.CommandUUID))
	}
	cmd, err := svc.CommandAndReportResults(r, report)
	if err != nil || cmd == nil {
		return nil, err
	}
	return cmd.Raw, nil
}

func marshal(v interface{}) ([]byte, error) {
	b, err := plist.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("encoding response: %w", err)
	}
	return b, nil
}
